//! The PostgreSQL backend against baselines measured in the same run:
//!
//! - cached authenticate on `PgStore` vs `SledStore`;
//! - uncached authenticate vs a raw single-row `SELECT` by primary key, and a
//!   durable exchange (through the cache, and on `PgStore` alone) vs a raw
//!   `INSERT` + `COMMIT`, each with 1 and 32 clients;
//! - how long a revocation on one replica takes to be refused on another, with
//!   the feed connected and with its connection killed;
//! - what the feeds' liveness round trips (one `SELECT 1` per replica per 50 ms)
//!   cost the database, with 2 and 20 replicas idle: transaction ids and WAL
//!   per second.
//!
//! ```text
//! eval "$(.ci/postgres start)"
//! cargo bench -p scopegate-benches --features postgres --bench postgres
//! .ci/postgres stop "$SCOPEGATE_PG_DIR"
//! ```
//!
//! `PG_BENCH=exchange` (parts: `cached`, `uncached`, `exchange`,
//! `propagation`, `liveness`, comma-separated) runs only those.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use common::Users;
use scopegate::{
    store::{PgConfig, PgStore, SledStore, TokenStore},
    Error, NewApiKey, NewToken, ScopeGate, ScopeGateBuilder, TokenRequest, UserId,
};
use sqlx::PgPool;

const ROUNDS: usize = 5;
const CACHED_CALLS: usize = 100_000;
const WINDOW: Duration = Duration::from_secs(2);

fn main() {
    let Ok(url) = std::env::var("SCOPEGATE_TEST_DATABASE_URL") else {
        eprintln!("set SCOPEGATE_TEST_DATABASE_URL (eval \"$(.ci/postgres start)\") first");
        std::process::exit(2);
    };
    common::runtime().block_on(run(&url));
}

fn gate(store: impl TokenStore) -> ScopeGate {
    ScopeGate::builder(store, Users).build().unwrap()
}

/// A gate with no cache in front of `store`.
fn uncached(store: impl TokenStore) -> ScopeGate {
    ScopeGate::builder(store, Users)
        .without_cache()
        .build()
        .unwrap()
}

/// A gate with room for every round's tokens on one key.
fn unlimited(gate: ScopeGateBuilder) -> ScopeGate {
    gate.with_max_tokens_per_key(u64::MAX).build().unwrap()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(url: &str) {
    let schema = format!("bench_{}", std::process::id());
    let config = PgConfig::default()
        .with_schema(&schema)
        .unwrap()
        .with_max_connections(40)
        .with_timeout(Duration::from_secs(30));
    let pg = PgStore::connect_with(url, config.clone()).await.unwrap();
    let dir = common::scratch_dir();
    let sled = SledStore::open(dir.path()).unwrap();
    let raw = pg.pool().clone();
    let table = format!("{schema}.raw");
    sqlx::query(&format!(
        "CREATE TABLE {table} (digest bytea PRIMARY KEY, id text NOT NULL UNIQUE, user_id text, \
         scopes text[] NOT NULL, created timestamptz NOT NULL, expires timestamptz NOT NULL, \
         api_key_id text)"
    ))
    .execute(&raw)
    .await
    .unwrap();

    let only = std::env::var("PG_BENCH").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    if wanted("cached") {
        cached_authenticate(&pg, &sled).await;
    }
    if wanted("uncached") {
        uncached_authenticate(&pg, &raw, &table).await;
    }
    if wanted("exchange") {
        exchange(&pg, &raw, &table).await;
    }
    if wanted("propagation") {
        propagation(url, &config).await;
    }
    if wanted("liveness") {
        liveness(url, &config).await;
    }
}

async fn cached_authenticate(pg: &PgStore, sled: &SledStore) {
    let on_pg = gate(pg.clone());
    let on_sled = gate(sled.clone());
    let bob = UserId::from("bob");
    let mut ratios = Vec::new();
    let mut per_call = (Vec::new(), Vec::new());
    // Let the feed connect, so the pg cache serves from memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t_pg = on_pg
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    let t_sled = on_sled.create_token(NewToken::for_user(bob)).await.unwrap();
    for _ in 0..ROUNDS {
        let time = |gate: ScopeGate, secret: String| async move {
            let started = Instant::now();
            for _ in 0..CACHED_CALLS {
                gate.authenticate(&secret).await.unwrap();
            }
            started.elapsed().as_secs_f64() / CACHED_CALLS as f64 * 1e9
        };
        let ns_pg = time(on_pg.clone(), t_pg.secret.expose().into()).await;
        let ns_sled = time(on_sled.clone(), t_sled.secret.expose().into()).await;
        per_call.0.push(ns_pg);
        per_call.1.push(ns_sled);
        ratios.push(ns_pg / ns_sled);
    }
    println!("## cached authenticate ({ROUNDS} rounds × {CACHED_CALLS} calls, medians)");
    println!(
        "cached PgStore {:.0} ns/call, cached SledStore {:.0} ns/call: ratio {:.3}",
        median(per_call.0),
        median(per_call.1),
        median(ratios)
    );
}

/// Runs `op` from `clients` tasks for `WINDOW`; returns ops/s and sorted latencies.
async fn load<F, Fut>(clients: usize, op: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + WINDOW;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let op = op.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let started = Instant::now();
                op(client, n).await;
                latencies.push(started.elapsed());
                n += 1;
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(latencies) = tasks.join_next().await {
        all.extend(latencies.unwrap());
    }
    all.sort();
    (all.len() as f64 / WINDOW.as_secs_f64(), all)
}

/// One run of [`load`]: ops/s and sorted latencies.
type Run = (f64, Vec<Duration>);

fn report(name: &str, ours: &[Run], raw: &[Run]) {
    let med = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let ops = |r: &Run| r.0;
    let p50 = |r: &Run| percentile(&r.1, 0.5).as_secs_f64() * 1e6;
    let p99 = |r: &Run| percentile(&r.1, 0.99).as_secs_f64() * 1e6;
    let ratios: Vec<f64> = ours.iter().zip(raw).map(|(a, b)| a.0 / b.0).collect();
    println!(
        "| {name} | {:.0} | {:.0} µs | {:.0} µs | {:.0} | {:.0} µs | {:.0} µs | {:.2} |",
        med(ours, ops),
        med(ours, p50),
        med(ours, p99),
        med(raw, ops),
        med(raw, p50),
        med(raw, p99),
        median(ratios)
    );
}

fn header(what: &str, baseline: &str) {
    println!();
    println!("## {what} vs {baseline} ({ROUNDS} rounds of {WINDOW:?} each, medians)");
    println!("| clients | ops/s | p50 | p99 | baseline ops/s | p50 | p99 | throughput ratio |");
    println!("|---|---|---|---|---|---|---|---|");
}

async fn uncached_authenticate(pg: &PgStore, raw: &PgPool, table: &str) {
    let uncached = self::uncached(pg.clone());
    let bob = UserId::from("bob");
    let mut secrets = Vec::new();
    for _ in 0..64 {
        let issued = uncached
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        // The same row in the raw table, to read back by primary key.
        let t = &issued.token;
        sqlx::query(&format!(
            "INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&t.digest.as_bytes()[..])
        .bind(t.id.as_str())
        .bind("bob")
        .bind(vec!["core.user_auth".to_owned()])
        .bind(t.created)
        .bind(t.expires)
        .bind(None::<String>)
        .execute(raw)
        .await
        .unwrap();
        secrets.push((issued.secret.expose().to_owned(), *t.digest.as_bytes()));
    }
    let secrets = Arc::new(secrets);
    header(
        "uncached authenticate (PgStore, no cache)",
        "raw SELECT by primary key",
    );
    for clients in [1, 32] {
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let (g, s) = (uncached.clone(), secrets.clone());
            ours.push(
                load(clients, move |c, n| {
                    let (g, s) = (g.clone(), s.clone());
                    async move {
                        g.authenticate(&s[(c + n) % s.len()].0).await.unwrap();
                    }
                })
                .await,
            );
            let (pool, s, sql) = (
                raw.clone(),
                secrets.clone(),
                Arc::new(format!("SELECT * FROM {table} WHERE digest = $1")),
            );
            base.push(
                load(clients, move |c, n| {
                    let (pool, s, sql) = (pool.clone(), s.clone(), sql.clone());
                    async move {
                        sqlx::query(&sql)
                            .bind(&s[(c + n) % s.len()].1[..])
                            .fetch_one(&pool)
                            .await
                            .unwrap();
                    }
                })
                .await,
            );
        }
        report(&clients.to_string(), &ours, &base);
    }
}

async fn exchange(pg: &PgStore, raw: &PgPool, table: &str) {
    let uncached = unlimited(ScopeGate::builder(pg.clone(), Users).without_cache());
    let bob = UserId::from("bob");
    // One key per client: exchanges of one key serialize on its row lock.
    let (mut keys, mut ids) = (Vec::new(), Vec::new());
    for i in 0..32 {
        let key = uncached
            .create_api_key(&bob, NewApiKey::new(format!("bench{i}")))
            .await
            .unwrap();
        keys.push(key.secret.expose().to_owned());
        ids.push(key.key.id.to_string());
    }
    let (keys, ids) = (Arc::new(keys), Arc::new(ids));
    // What apps run (the gate's default cache): the key is read from the
    // cache, and the exchange is the mint's one statement.
    let cached = unlimited(ScopeGate::builder(pg.clone(), Users));
    tokio::time::sleep(Duration::from_millis(500)).await; // the feed connects
                                                          // The second baseline: the rows an exchange writes, written by hand.
    let schema = table.split('.').next().unwrap();
    sqlx::query(&format!(
        "CREATE TABLE {schema}.hand_tokens (LIKE {schema}.tokens INCLUDING ALL)"
    ))
    .execute(raw)
    .await
    .unwrap();
    let (mut minimal, mut by_hand) = (Vec::new(), Vec::new());
    for (store, gate) in [("PgStore", uncached), ("cached", cached)] {
        for clients in [1, 32] {
            let (mut ours, mut base, mut hand) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                // Each goes first in turn: what the one before leaves the
                // server to flush falls on all alike.
                for turn in 0..3 {
                    match (round + turn) % 3 {
                        0 => ours.push(exchanges(&gate, &keys, clients).await),
                        1 => base.push(raw_inserts(raw, table, clients, round).await),
                        _ => hand.push(hand_writes(raw, schema, &ids, clients).await),
                    }
                }
            }
            let name = format!("{clients}, {store}");
            minimal.push((name.clone(), ours.clone(), base));
            by_hand.push((name, ours, hand));
        }
    }
    header("durable exchange (key → token)", "raw INSERT + COMMIT");
    for (name, ours, base) in &minimal {
        report(name, ours, base);
    }
    header(
        "durable exchange (key → token)",
        "its writes by hand (BEGIN, UPDATE the key's row, INSERT with the token table's indexes, COMMIT)",
    );
    for (name, ours, hand) in &by_hand {
        report(name, ours, hand);
    }
}

/// [`load`] of the second baseline: what an exchange writes, by hand.
async fn hand_writes(raw: &PgPool, schema: &str, ids: &Arc<Vec<String>>, clients: usize) -> Run {
    let (pool, ids) = (raw.clone(), ids.clone());
    let key_sql = Arc::new(format!(
        "UPDATE {schema}.api_keys SET last_use = $2, live_tokens = live_tokens + 1 WHERE id = $1"
    ));
    let token_sql = Arc::new(format!(
        "INSERT INTO {schema}.hand_tokens (digest, id, user_id, scopes, created, expires, \
         api_key_id) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ));
    load(clients, move |c, _| {
        let (pool, ids, key_sql, token_sql) = (
            pool.clone(),
            ids.clone(),
            key_sql.clone(),
            token_sql.clone(),
        );
        async move {
            let digest: [u8; 32] = rand::random();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(&key_sql)
                .bind(&ids[c])
                .bind(Utc::now())
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(&token_sql)
                .bind(&digest[..])
                .bind(format!("hand-{}", rand::random::<u64>()))
                .bind("bob")
                .bind(vec!["core.user_auth".to_owned()])
                .bind(Utc::now())
                .bind(Utc::now())
                .bind(&ids[c])
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    })
    .await
}

/// [`load`] of exchanges from `clients` tasks, each with its own key.
async fn exchanges(gate: &ScopeGate, keys: &Arc<Vec<String>>, clients: usize) -> Run {
    let (g, k) = (gate.clone(), keys.clone());
    load(clients, move |c, _| {
        let (g, k) = (g.clone(), k.clone());
        async move {
            g.exchange_api_key(&k[c], TokenRequest::default())
                .await
                .unwrap();
        }
    })
    .await
}

/// [`load`] of the baseline: a token-sized row inserted and committed.
async fn raw_inserts(raw: &PgPool, table: &str, clients: usize, round: usize) -> Run {
    let (pool, sql) = (
        raw.clone(),
        Arc::new(format!(
            "INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )),
    );
    load(clients, move |c, n| {
        let (pool, sql) = (pool.clone(), sql.clone());
        async move {
            let id = format!("raw-{clients}-{round}-{c}-{n}-{}", rand::random::<u64>());
            let digest: [u8; 32] = rand::random();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(&sql)
                .bind(&digest[..])
                .bind(&id)
                .bind("bob")
                .bind(vec!["core.user_auth".to_owned()])
                .bind(Utc::now())
                .bind(Utc::now())
                .bind(None::<String>)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    })
    .await
}

/// Polls `gate` until it refuses `secret`.
async fn refused_after(gate: &ScopeGate, secret: &str, started: Instant) -> Duration {
    loop {
        match gate.authenticate(secret).await {
            Ok(_) => tokio::task::yield_now().await,
            Err(Error::InvalidToken(_)) => return started.elapsed(),
            Err(other) => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3
    );
}

async fn propagation(url: &str, config: &PgConfig) {
    let a = gate(PgStore::connect_with(url, config.clone()).await.unwrap());
    let b = gate(PgStore::connect_with(url, config.clone()).await.unwrap());
    while !b.is_serving_from_cache() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bob = UserId::from("bob");
    let mut connected = Vec::new();
    for _ in 0..600 {
        let issued = a
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        b.authenticate(issued.secret.expose()).await.unwrap();
        let started = Instant::now();
        a.revoke_token(&issued.token.id).await.unwrap();
        connected.push(refused_after(&b, issued.secret.expose(), started).await);
    }
    let killer = PgPool::connect(url).await.unwrap();
    let mut killed = Vec::new();
    for _ in 0..30 {
        while !b.is_serving_from_cache() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let issued = a
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        b.authenticate(issued.secret.expose()).await.unwrap();
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1",
        )
        .bind(format!("scopegate feed {}", config.channel()))
        .execute(&killer)
        .await
        .unwrap();
        let started = Instant::now();
        a.revoke_token(&issued.token.id).await.unwrap();
        killed.push(refused_after(&b, issued.secret.expose(), started).await);
    }
    println!();
    println!(
        "## revocation on replica A until replica B refuses (from the start of the revoking call)"
    );
    println!("| feed | revocations | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    summary("connected", connected);
    summary("listener killed just before", killed);
}

/// The database's counters: the next transaction id, WAL written.
async fn counters(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, \
                pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn liveness(url: &str, config: &PgConfig) {
    println!();
    println!("## the feeds' liveness, replicas idle: what the database spends per second");
    println!("| replicas | transaction ids/s | WAL bytes/s |");
    println!("|---|---|---|");
    let stats = PgPool::connect(url).await.unwrap();
    const SECONDS: u64 = 10;
    for replicas in [2usize, 20] {
        let mut caches = Vec::new();
        for _ in 0..replicas {
            let store = PgStore::connect_with(url, config.clone()).await.unwrap();
            caches.push(gate(store));
        }
        while !caches.iter().all(ScopeGate::is_serving_from_cache) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = counters(&stats).await;
        tokio::time::sleep(Duration::from_secs(SECONDS)).await;
        let after = counters(&stats).await;
        let per_second = |a: i64, b: i64| (b - a) as f64 / SECONDS as f64;
        println!(
            "| {replicas} | {:.1} | {:.0} |",
            per_second(before.0, after.0),
            per_second(before.1, after.1)
        );
        drop(caches);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
