//! What revoking a busy key (or a busy user) costs: one key exchanged for N
//! tokens, then revoked while another task keeps writing, as logins of other
//! users would; then the sweeper's purge of the revoked records, still with
//! the writer going.
//!
//! For each N, a fresh store (sled under `target/`, a real disk where syncs
//! cost what they cost; or a fresh PostgreSQL schema): the revoking call's time,
//! the other writer's latencies before it (its baseline, same run), during it,
//! and during the purge that follows, and the purge's own time.
//!
//! ```text
//! cargo bench -p scopegate-benches --bench bulk_revocation
//! BULK_OP=revoke_user BULK_TOKENS=300000 cargo bench -p scopegate-benches --bench bulk_revocation
//! eval "$(.ci/postgres start)"
//! BULK_BACKEND=postgres BULK_TOKENS=1000000 \
//!   cargo bench -p scopegate-benches --features postgres --bench bulk_revocation
//! ```
//!
//! `BULK_TOKENS` (default `1000,10000,100000`) sets the token counts; `BULK_OP`
//! the revocation: `delete` (default), `deactivate`, `rotate` (no grace),
//! `scope` (a narrowing), `cap` (an earlier key expiry) or `revoke_user`; or
//! `expire`, no revocation: every token expires, for the sweeper to purge.
//! On sled the tokens are exchanged through the gate; on PostgreSQL they are
//! inserted by one `INSERT … SELECT` (exchanging a million takes long, and a
//! revocation costs the same whichever way its rows came).

#![allow(missing_docs)]

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{runtime, scratch_dir, setting, Users};
use scopegate::clock::ManualClock;

/// The clock of every gate here: `expire` moves it on.
static CLOCK: std::sync::LazyLock<ManualClock> =
    std::sync::LazyLock::new(|| ManualClock::new(chrono::Utc::now()));
use scopegate::{
    store::{Page, SledStore, TokenStore},
    ApiKeyUpdate, IssuedApiKey, NewApiKey, NewToken, ScopeGate, ScopeRegistry, TokenRequest,
};

fn main() {
    let counts: String = setting("BULK_TOKENS", "1000,10000,100000".to_owned());
    let op: String = setting("BULK_OP", "delete".to_owned());
    let backend: String = setting("BULK_BACKEND", "sled".to_owned());
    let rt = runtime();
    println!(
        "| {backend}: tokens | `{op}` answers in | other writes before: p50 / p99 / max | \
         during: p50 / p99 / max | purge takes | other writes during the purge: p99 / max | \
         the owner's first page of tokens: before / while the purge is pending |"
    );
    println!("|---|---|---|---|---|---|---|");
    for count in counts
        .split(',')
        .filter_map(|n| n.trim().parse::<usize>().ok())
    {
        let row = rt.block_on(async {
            match backend.as_str() {
                #[cfg(feature = "postgres")]
                "postgres" => postgres::measure(count, &op).await,
                _ => {
                    let dir = scratch_dir();
                    let store = SledStore::open(dir.path()).unwrap();
                    let (gate, key) = busy_key(store).await;
                    exchange_all(&gate, &key, count).await;
                    measure(&gate, &key, count, &op).await
                }
            }
        });
        println!("{row}");
    }
}

/// A gate over `store` that lets a key have any number of tokens, and a key
/// of user `busy`. The gate's clock is a manual one, set to now, so that
/// `BULK_OP=expire` can move it past the tokens' expiry.
async fn busy_key(store: impl TokenStore) -> (ScopeGate, IssuedApiKey) {
    let mut registry = ScopeRegistry::new();
    registry.register("ci.upload", "Upload", "Uploads").unwrap();
    let gate = ScopeGate::builder(store, Users)
        .with_clock(CLOCK.clone())
        .with_registry(registry)
        .with_max_tokens_per_key(u64::MAX)
        .build()
        .unwrap();
    let key = NewApiKey::new("ci").scope(["ci.upload"]);
    let key = gate.create_api_key(&"busy".into(), key).await.unwrap();
    (gate, key)
}

/// Exchanges `key` for `count` tokens, 256 at a time.
async fn exchange_all(gate: &ScopeGate, key: &IssuedApiKey, count: usize) {
    let secret = Arc::new(key.secret.expose().to_owned());
    let mut minted = 0;
    while minted < count {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..256.min(count - minted) {
            let (gate, secret) = (gate.clone(), secret.clone());
            batch.spawn(async move { gate.exchange_api_key(&secret, TokenRequest::new()).await });
        }
        while let Some(done) = batch.join_next().await {
            done.unwrap().unwrap();
            minted += 1;
        }
    }
}

/// Revokes `key`'s `count` tokens by `op`, then purges them, timing another
/// user's logins throughout.
async fn measure(gate: &ScopeGate, key: &IssuedApiKey, count: usize, op: &str) -> String {
    let token = gate
        .exchange_api_key(key.secret.expose(), TokenRequest::new())
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (gate, stop) = (gate.clone(), stop.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                gate.create_token(NewToken::for_user("bystander".into()))
                    .await
                    .unwrap();
                latencies.push((start, start.elapsed()));
            }
            latencies
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let listed_before = first_page(gate, key).await;
    let began = Instant::now();
    revoke(gate, key, op).await;
    let took = began.elapsed();
    let listed_pending = first_page(gate, key).await;
    // The revocation holds at once, whatever is left to purge.
    let refused = gate.authenticate(token.secret.expose()).await.is_err();
    // (An expired token is refused too.)
    assert!(
        refused || op == "cap",
        "a revoked token still authenticates"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let purge_began = Instant::now();
    let mut purged = 0;
    loop {
        let pass = gate.purge_expired().await.unwrap();
        purged += pass.tokens.len();
        if pass.tokens.is_empty() {
            break;
        }
    }
    let purge_took = purge_began.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let latencies = writer.await.unwrap();
    let overlapping = |from: Instant, to: Instant| -> Vec<Duration> {
        latencies
            .iter()
            .filter(|(start, t)| *start < to && *start + *t > from)
            .map(|(_, t)| *t)
            .collect()
    };
    let before: Vec<Duration> = latencies
        .iter()
        .filter(|(start, t)| *start + *t <= began)
        .map(|(_, t)| *t)
        .collect();
    let during = overlapping(began, began + took);
    let purging = overlapping(purge_began, purge_began + purge_took);
    let expected = if op == "cap" { 0 } else { count + 1 };
    assert!(purged >= expected, "purged {purged} of {expected}");
    format!(
        "| {count} | {:.1} ms | {} | {} | {:.0} ms ({purged} records) | {} | {:.1} / {:.1} ms |",
        took.as_secs_f64() * 1e3,
        spread(&before, true),
        spread(&during, true),
        purge_took.as_secs_f64() * 1e3,
        spread(&purging, false),
        listed_before.as_secs_f64() * 1e3,
        listed_pending.as_secs_f64() * 1e3,
    )
}

/// How long listing the first page of the key owner's tokens takes.
async fn first_page(gate: &ScopeGate, key: &IssuedApiKey) -> Duration {
    let started = Instant::now();
    gate.tokens_of_user(&key.key.user_id, Page::default())
        .await
        .unwrap();
    started.elapsed()
}

async fn revoke(gate: &ScopeGate, key: &IssuedApiKey, op: &str) {
    let id = &key.key.id;
    let update = |edit: fn(&mut ApiKeyUpdate)| {
        let mut update = ApiKeyUpdate::default();
        edit(&mut update);
        update
    };
    match op {
        "deactivate" => drop(
            gate.update_api_key(id, update(|u| u.active = Some(false)))
                .await
                .unwrap(),
        ),
        "rotate" => drop(gate.rotate_api_key(id, Duration::ZERO).await.unwrap()),
        "scope" => drop(
            gate.update_api_key(id, update(|u| u.scope = Some(None)))
                .await
                .unwrap(),
        ),
        "cap" => drop(
            gate.update_api_key(id, update(|u| u.expires_in_days = Some(Some(0.5))))
                .await
                .unwrap(),
        ),
        "revoke_user" => gate.revoke_user(&key.key.user_id).await.unwrap(),
        // Not a revocation: every token expires, and the sweeper purges them.
        "expire" => CLOCK.advance(chrono::TimeDelta::days(2)),
        _ => drop(gate.delete_api_key(id).await.unwrap()),
    }
}

/// p50 / p99 / max (or p99 / max) of `latencies`, in milliseconds.
fn spread(latencies: &[Duration], median: bool) -> String {
    if latencies.is_empty() {
        return "none".to_owned();
    }
    let mut latencies = latencies.to_vec();
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() - 1) as f64 * q).round() as usize;
        latencies[i].as_secs_f64() * 1e3
    };
    let head = match median {
        true => format!("{:.1} / ", at(0.5)),
        false => String::new(),
    };
    format!(
        "{head}{:.1} / {:.1} ms ({} writes)",
        at(0.99),
        at(1.0),
        latencies.len()
    )
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::Duration;

    use scopegate::store::{PgConfig, PgStore};

    pub(super) async fn measure(count: usize, op: &str) -> String {
        let url = std::env::var("SCOPEGATE_TEST_DATABASE_URL")
            .expect("set SCOPEGATE_TEST_DATABASE_URL (eval \"$(.ci/postgres start)\") first");
        let schema = format!("bulk_{}_{count}", std::process::id());
        let config = PgConfig::default()
            .with_schema(&schema)
            .unwrap()
            .with_max_connections(8)
            .with_timeout(Duration::from_secs(60));
        let pg = PgStore::connect_with(&url, config).await.unwrap();
        let pool = pg.pool().clone();
        let (gate, key) = super::busy_key(pg).await;
        // The key's tokens, as its exchanges would have stored them.
        let insert = format!(
            "INSERT INTO {schema}.tokens (digest, id, user_id, scopes, created, expires, api_key_id) \
             SELECT sha256(('bulk' || i)::bytea), 'bulk-' || i, $1, ARRAY['ci.upload'], \
                    now(), now() + interval '1 day', $2 \
             FROM generate_series(1, $3) AS i"
        );
        sqlx::query(&insert)
            .bind(key.key.user_id.as_str())
            .bind(key.key.id.as_str())
            .bind(count as i64)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(&format!("ANALYZE {schema}.tokens"))
            .execute(&pool)
            .await
            .unwrap();
        let row = super::measure(&gate, &key, count, op).await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&pool)
            .await
            .unwrap();
        row
    }
}
