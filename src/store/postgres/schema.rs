//! The tables, created and upgraded by numbered migrations.
//!
//! Migrations run in one transaction under an advisory lock, so replicas starting
//! together apply each exactly once. A statement that waits for a lock longer
//! than a moment gives the attempt up, and the migration tries again, so it
//! never holds a fleet's queries behind it. An up-to-date schema is only read:
//! a role without DDL rights starts on it. `{s}` stands for the configured schema.

use std::{future::Future, pin::Pin, time::Duration};

use sqlx::{Connection, PgConnection, Row};

use super::{
    errors::{corrupt, db, NewerSchema},
    feed::FeedKey,
};
use crate::store::{StoreError, StoreErrorKind};

/// Migration `n` is `MIGRATIONS[n - 1]`. Never edit one that has shipped: add one.
const MIGRATIONS: &[&str] = &[
    // 1: keys and tokens, by digest, owner and expiry.
    r#"
    CREATE TABLE {s}.api_keys (
        id              text PRIMARY KEY,
        user_id         text NOT NULL,
        name            text NOT NULL,
        scope           text[],
        token_duration  double precision,
        active          boolean NOT NULL,
        created         timestamptz NOT NULL,
        last_use        timestamptz,
        expires         timestamptz,
        digest          bytea NOT NULL UNIQUE CHECK (length(digest) = 32),
        start           text NOT NULL,
        retired_digest  bytea UNIQUE CHECK (length(retired_digest) = 32),
        retired_until   timestamptz,
        CHECK ((retired_digest IS NULL) = (retired_until IS NULL))
    );
    CREATE INDEX api_keys_by_user ON {s}.api_keys (user_id, created, id COLLATE "C");
    CREATE INDEX api_keys_by_expiry ON {s}.api_keys (expires) WHERE expires IS NOT NULL;
    CREATE INDEX api_keys_by_retirement ON {s}.api_keys (retired_until)
        WHERE retired_until IS NOT NULL;
    CREATE TABLE {s}.tokens (
        digest      bytea PRIMARY KEY CHECK (length(digest) = 32),
        id          text NOT NULL UNIQUE,
        user_id     text,
        scopes      text[] NOT NULL,
        created     timestamptz NOT NULL,
        expires     timestamptz NOT NULL,
        api_key_id  text
    );
    CREATE INDEX tokens_by_user ON {s}.tokens (user_id, created, id COLLATE "C")
        WHERE user_id IS NOT NULL;
    CREATE INDEX tokens_by_key ON {s}.tokens (api_key_id) WHERE api_key_id IS NOT NULL;
    CREATE INDEX tokens_by_expiry ON {s}.tokens (expires);
    "#,
    // 2: when each token last authenticated a request.
    r#"
    ALTER TABLE {s}.tokens ADD COLUMN last_use timestamptz;
    "#,
    // 3: keys an administrator deactivated, which only an administrator reactivates.
    r#"
    ALTER TABLE {s}.api_keys ADD COLUMN locked boolean NOT NULL DEFAULT false;
    ALTER TABLE {s}.api_keys ADD CHECK (NOT (locked AND active));
    "#,
    // 4: revocations of every token of a key or a user in one small write
    // (`revocations.rs`): tokens carry the sequence of their insert, keys and
    // users the sequence below which theirs are revoked, and the records wait
    // for the sweeper in `pending_purges`. Keys count their live tokens. Copy
    // pages of keys (byte order) get an index of their own.
    r#"
    CREATE SEQUENCE {s}.token_sequence;
    ALTER TABLE {s}.tokens ADD COLUMN sequence bigint NOT NULL DEFAULT 0;
    ALTER TABLE {s}.tokens ALTER COLUMN sequence SET DEFAULT nextval('{s}.token_sequence');
    ALTER TABLE {s}.api_keys ADD COLUMN revoked_below bigint NOT NULL DEFAULT 0;
    ALTER TABLE {s}.api_keys ADD COLUMN live_tokens bigint NOT NULL DEFAULT 0;
    UPDATE {s}.api_keys k SET live_tokens =
        (SELECT count(*) FROM {s}.tokens t WHERE t.api_key_id = k.id);
    CREATE TABLE {s}.revoked_users (
        user_id        text PRIMARY KEY,
        revoked_below  bigint NOT NULL
    );
    CREATE TABLE {s}.pending_purges (
        kind  text NOT NULL CHECK (kind IN ('key', 'user')),
        id    text NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE INDEX api_keys_in_byte_order ON {s}.api_keys (id COLLATE "C");
    "#,
    // 5: an earlier key expiry caps the key's older tokens in one small write
    // (`revocations.rs`): tokens below `capped_below` expire by `capped_at`.
    r#"
    ALTER TABLE {s}.api_keys ADD COLUMN capped_below bigint;
    ALTER TABLE {s}.api_keys ADD COLUMN capped_at timestamptz;
    ALTER TABLE {s}.api_keys ADD CHECK ((capped_below IS NULL) = (capped_at IS NULL));
    CREATE INDEX api_keys_by_cap ON {s}.api_keys (capped_at) WHERE capped_at IS NOT NULL;
    "#,
    // 6: the key that seals the invalidation feed's payloads (`feed.rs`), made
    // by the server's strong random source, for roles granted this table only.
    r#"
    CREATE TABLE {s}.feed_key (
        only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        key       bytea NOT NULL CHECK (length(key) = 32)
    );
    REVOKE ALL ON {s}.feed_key FROM PUBLIC;
    INSERT INTO {s}.feed_key (key) VALUES
        (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
    "#,
];

/// The schema version this build writes.
pub(super) const VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings `schema` up to [`VERSION`] and reads its feed key; refuses a database
/// from a newer build.
///
/// Boxed as `Send` here, where lifetimes are concrete: left to inference, a caller
/// that needs a `Send` future (`tokio::spawn`) hits rustc's "`Executor` is not
/// general enough" on sqlx's executor impls.
/// Its statements may take up to `limit` each (the connection's own limit is
/// the per-call one, meant for requests).
pub(super) fn migrate<'a>(
    conn: &'a mut PgConnection,
    schema: &'a str,
    limit: Duration,
) -> Pin<Box<dyn Future<Output = Result<FeedKey, StoreError>> + Send + 'a>> {
    Box::pin(async move {
        run_migrations(conn, schema, limit).await?;
        feed_key(conn, schema).await
    })
}

/// The key sealing the feed's payloads.
async fn feed_key(conn: &mut PgConnection, schema: &str) -> Result<FeedKey, StoreError> {
    let key: Vec<u8> = sqlx::query(&format!("SELECT key FROM {schema}.feed_key"))
        .fetch_one(conn)
        .await
        .map_err(db)?
        .try_get("key")
        .map_err(db)?;
    FeedKey::from_bytes(&key).ok_or_else(|| corrupt(BadFeedKey))
}

/// The stored feed key is not 32 bytes (the table's check forbids it).
#[derive(Debug, thiserror::Error)]
#[error("the scopegate schema's feed_key is not 32 bytes")]
struct BadFeedKey;

/// How long one migration statement waits for a lock before the migration
/// gives up and tries again. A DDL statement waiting for its table's lock makes
/// every later query on the table queue behind it: on a busy fleet, a long wait
/// would stall every replica's requests.
const LOCK_WAIT_MS: u32 = 500;

/// The pause before another attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

async fn run_migrations(
    conn: &mut PgConnection,
    schema: &str,
    limit: Duration,
) -> Result<(), StoreError> {
    // The caller bounds the whole by its connect timeout.
    loop {
        // An up-to-date schema needs no DDL, and so no rights to run any.
        if version(conn, schema).await? == Some(VERSION) {
            return Ok(());
        }
        match migrate_once(conn, schema, limit).await {
            Err(err) if is_lock_timeout(&err) => tokio::time::sleep(RETRY_PAUSE).await,
            outcome => return outcome,
        }
    }
}

/// The schema's version, if it has been set up.
async fn version(conn: &mut PgConnection, schema: &str) -> Result<Option<i32>, StoreError> {
    let exists: bool = sqlx::query("SELECT to_regclass($1) IS NOT NULL AS exists")
        .bind(format!("{schema}.schema_version"))
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?
        .try_get("exists")
        .map_err(db)?;
    if !exists {
        return Ok(None);
    }
    stored_version(conn, schema).await.map(Some)
}

/// The version `schema_version` records (0 if none), which must exist.
async fn stored_version(conn: &mut PgConnection, schema: &str) -> Result<i32, StoreError> {
    sqlx::query(&format!(
        "SELECT coalesce(max(version), 0) AS version FROM {schema}.schema_version"
    ))
    .fetch_one(conn)
    .await
    .map_err(db)?
    .try_get("version")
    .map_err(db)
}

/// Whether `err` is a lock wait cut short by `lock_timeout` (SQLSTATE 55P03).
fn is_lock_timeout(err: &StoreError) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<sqlx::Error>())
        .and_then(|err| err.as_database_error())
        .and_then(|err| err.code())
        .is_some_and(|code| code == "55P03")
}

async fn migrate_once(
    conn: &mut PgConnection,
    schema: &str,
    limit: Duration,
) -> Result<(), StoreError> {
    let mut tx = conn.begin().await.map_err(db)?;
    // `SET` takes no parameters; the values are our own integers.
    sqlx::query(&format!(
        "SET LOCAL statement_timeout = {}",
        limit.as_millis().max(1)
    ))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    sqlx::query(&format!("SET LOCAL lock_timeout = {LOCK_WAIT_MS}"))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // One migrator at a time per schema, across every replica.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("scopegate migrations {schema}"))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let setup = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_version (version integer NOT NULL);"
    );
    execute_all(&mut tx, &setup).await?;
    // Read again under the lock: another replica may have migrated meanwhile.
    let found = stored_version(&mut tx, schema).await?;
    if found > VERSION {
        return Err(StoreError::new(
            StoreErrorKind::Backend,
            NewerSchema {
                found,
                known: VERSION,
            },
        ));
    }
    for (n, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        execute_all(&mut tx, &migration.replace("{s}", schema)).await?;
        sqlx::query(&format!("DELETE FROM {schema}.schema_version"))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(&format!("INSERT INTO {schema}.schema_version VALUES ($1)"))
            .bind(n as i32 + 1)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

/// Runs each `;`-separated statement of `script` (ours: no `;` inside literals).
async fn execute_all(conn: &mut PgConnection, script: &str) -> Result<(), StoreError> {
    for statement in script.split(';').filter(|s| !s.trim().is_empty()) {
        sqlx::query(statement)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok(())
}
