//! The PostgreSQL backends of the conformance suite: each fixture gets its own
//! schema in the test database, named after its temporary directory.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
    time::Duration,
};

use scopegate::store::{PgConfig, PgStore};
use sqlx::Row;

use super::{pg_server::database_url, Backend};

/// The schema of the fixture whose place is `place`.
pub fn schema_of(place: &Path) -> String {
    let mut hasher = DefaultHasher::new();
    place.hash(&mut hasher);
    format!("t_{:016x}", hasher.finish())
}

pub fn url() -> String {
    database_url().expect(
        "the PostgreSQL tests need a database: set SCOPEGATE_TEST_DATABASE_URL, \
         or install PostgreSQL's server binaries (see .ci/postgres)",
    )
}

/// Test settings: a small pool per store, a short timeout.
pub fn config(schema: &str) -> PgConfig {
    PgConfig::default()
        .with_schema(schema)
        .unwrap()
        .with_max_connections(4)
        .with_timeout(Duration::from_secs(10))
}

pub async fn open(schema: &str) -> PgStore {
    PgStore::connect_with(&url(), config(schema)).await.unwrap()
}

/// `PgStore` on its own.
pub struct PgBackend;

impl Backend for PgBackend {
    type Store = PgStore;
    const CACHED: bool = false;

    async fn open(place: PathBuf) -> PgStore {
        open(&schema_of(&place)).await
    }

    async fn stored_bytes(place: PathBuf) -> Vec<u8> {
        dump(&schema_of(&place)).await
    }
}

/// `PgStore` behind its cache and invalidation feed.
pub struct CachedPgBackend;

impl Backend for CachedPgBackend {
    type Store = PgStore;
    const CACHED: bool = true;

    async fn open(place: PathBuf) -> Self::Store {
        open(&schema_of(&place)).await
    }

    async fn stored_bytes(place: PathBuf) -> Vec<u8> {
        dump(&schema_of(&place)).await
    }
}

/// Every row of every table in `schema`, as text.
pub async fn dump(schema: &str) -> Vec<u8> {
    let pool = sqlx::PgPool::connect(&url()).await.unwrap();
    let mut out = Vec::new();
    for table in ["api_keys", "tokens", "schema_version"] {
        let sql = format!("SELECT row_to_json(t)::text AS row FROM {schema}.{table} t");
        for row in sqlx::query(&sql).fetch_all(&pool).await.unwrap() {
            out.extend(row.get::<String, _>("row").into_bytes());
        }
    }
    pool.close().await;
    out
}

/// `PgStore`, as the cancellation harness's real backend: each case in a schema
/// of its own.
pub struct PgReal;

impl super::cancellation::Real for PgReal {
    type Store = PgStore;

    async fn open(place: PathBuf) -> PgStore {
        open(&schema_of(&place)).await
    }
}
