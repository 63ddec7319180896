//! The invalidation feed under partitions and load: a replica cut off from the
//! database stops serving revoked credentials within the lag limit and refuses
//! calls at once instead of holding them; the feed keeps its own connection, its
//! liveness takes no transaction ids, garbage on its channel changes nothing, and
//! a replica frozen mid-transaction does not lock a key for long.
#![cfg(feature = "postgres")]

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{
    assert_unavailable, girder_scopes,
    instrumented::{instrumented, Probe},
    is_unavailable,
    link::{server_of, Link},
    pg,
    pg_server::PgServer,
    Users,
};
use scopegate::{
    store::{user_tag, PgConfig, PgStore},
    ApiKeyUpdate, Error, InvalidTokenReason, IssuedToken, NewApiKey, NewToken, ScopeGate, UserId,
};

/// Notifications in the backlog test (6.5 KB each): about 10 s at the 1 MiB/s
/// the test lets B read.
const FLOOD: i32 = 1_500;

/// `PgConfig`'s default lag limit.
const LAG_LIMIT: Duration = Duration::from_millis(200);

struct Replica {
    gate: ScopeGate,
    store: PgStore,
    /// Counts the digest lookups that reach the store, past the gate's cache.
    probe: Probe,
}

impl Replica {
    /// Whether the replica answers for `secret` from memory: it authenticates
    /// it without a store read.
    async fn serves_from_memory(&self, secret: &str) -> bool {
        let before = self.probe.digest_reads();
        self.gate.authenticate(secret).await.is_ok() && self.probe.digest_reads() == before
    }
}

async fn replica(url: &str, config: PgConfig, users: &Users) -> Replica {
    let store = PgStore::connect_with(url, config).await.unwrap();
    let (instrumented, probe) = instrumented(store.clone());
    let gate = ScopeGate::builder(instrumented, users.clone())
        .with_registry(girder_scopes())
        .build()
        .unwrap();
    common::wait_until_serving(&gate, Duration::from_secs(2)).await;
    Replica { gate, store, probe }
}

/// A replica reaching the server at `url` over a link the test can cut.
async fn linked_replica(url: &str, config: PgConfig, users: &Users) -> (Link, Replica) {
    let link = Link::to(server_of(url)).await;
    let replica = replica(&link.url(url), config, users).await;
    (link, replica)
}

/// Two replicas on a fresh schema of the server at `url`, and a user of theirs.
async fn two_replicas(url: &str) -> (Replica, Replica, UserId, String) {
    let schema = fresh_schema();
    let users = Users::default();
    let bob = users.add("bob", false);
    let a = replica(url, pg::config(&schema), &users).await;
    let b = replica(url, pg::config(&schema), &users).await;
    (a, b, bob, schema)
}

/// A token of `user` issued on `a` and served from `b`'s cache (twice: the
/// second answer comes from its hot table).
async fn cached_on(b: &Replica, a: &Replica, user: &UserId) -> IssuedToken {
    let issued = a
        .gate
        .create_token(NewToken::for_user(user.clone()))
        .await
        .unwrap();
    for _ in 0..2 {
        b.gate.authenticate(issued.secret.expose()).await.unwrap();
    }
    issued
}

fn fresh_schema() -> String {
    pg::schema_of(tempfile::tempdir().unwrap().path())
}

fn own_server() -> Option<PgServer> {
    let server = PgServer::start();
    if server.is_none() {
        common::skip("no PostgreSQL server binaries under /usr/lib/postgresql");
    }
    server
}

/// Polls `gate` until it stops accepting `secret`; returns how long after
/// `started` it last accepted it (as it answered), and what it answered next.
async fn time_until_refused(gate: &ScopeGate, secret: &str, started: Instant) -> (Duration, Error) {
    let mut accepted = Duration::ZERO;
    loop {
        match gate.authenticate(secret).await {
            Ok(_) => accepted = started.elapsed(),
            Err(err) => return (accepted, err),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still accepted after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn count(url: &str, sql: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_stops_serving_a_revoked_token_within_the_lag_limit_and_refuses_at_once_until_the_link_is_back(
) {
    let schema = fresh_schema();
    let users = Users::default();
    let bob = users.add("bob", false);
    let (link, a) = linked_replica(&pg::url(), pg::config(&schema), &users).await;
    let b = replica(&pg::url(), pg::config(&schema), &users).await;
    let issued = b
        .gate
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    let other = b.gate.create_token(NewToken::for_user(bob)).await.unwrap();
    let secret = issued.secret.expose();
    a.gate.authenticate(secret).await.unwrap();
    a.gate.authenticate(secret).await.unwrap(); // from A's cache now

    // A lookup in flight when the link goes: the store call hangs on the cut.
    link.cut();
    let in_flight = {
        let gate = a.gate.clone();
        let secret = other.secret.expose().to_owned();
        tokio::spawn(async move {
            let started = Instant::now();
            (gate.authenticate(&secret).await, started.elapsed())
        })
    };
    let started = Instant::now();
    b.gate.revoke_token(&issued.token.id).await.unwrap();
    let (took, refusal) = time_until_refused(&a.gate, secret, started).await;
    assert!(
        took < LAG_LIMIT + Duration::from_millis(100),
        "A served the revoked token for {took:?}"
    );
    // Unknown to A's cache now, and the database out of reach: a 503, not a 401.
    assert!(is_unavailable(&refusal), "{refusal:?}");
    // The lookup that was waiting on the cut fails with the breaker, not after
    // the call's 10 s limit.
    let (outcome, waited) = in_flight.await.unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(waited < Duration::from_secs(2), "in flight for {waited:?}");
    // While cut off, calls are refused at once: no request waits as a trial.
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let asked = Instant::now();
        let outcome = a.gate.authenticate(other.secret.expose()).await;
        slowest = slowest.max(asked.elapsed());
        assert_unavailable(&outcome);
    }
    eprintln!("served the revoked token for {took:?}; slowest refusal while cut: {slowest:?}");
    assert!(slowest < Duration::from_millis(50), "{slowest:?}");
    assert!(!a.gate.is_serving_from_cache());

    link.restore();
    let back = Instant::now();
    loop {
        match a.gate.authenticate(other.secret.expose()).await {
            Ok(_) => break,
            Err(_) => {
                assert!(
                    back.elapsed() < Duration::from_secs(15),
                    "A did not recover once the link was back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(matches!(
        a.gate.authenticate(secret).await,
        Err(Error::InvalidToken(InvalidTokenReason::Unknown))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_refused_while_cut_off_answer_long_before_the_call_limit() {
    let schema = fresh_schema();
    let users = Users::default();
    let bob = users.add("bob", false);
    let (link, a) = linked_replica(&pg::url(), pg::config(&schema), &users).await;
    let issued = a.gate.create_token(NewToken::for_user(bob)).await.unwrap();
    link.cut();
    // Once the feed's round trip goes unanswered for the lag limit, the breaker
    // is open: wait for that, then time each refusal.
    tokio::time::sleep(LAG_LIMIT * 2).await;
    // Spread over more than a second: the breaker's probes (at most a second
    // apart) go out meanwhile, on connections of their own.
    let mut times = Vec::new();
    for _ in 0..200 {
        let asked = Instant::now();
        let outcome = a.gate.authenticate(issued.secret.expose()).await;
        times.push(asked.elapsed());
        assert_unavailable(&outcome);
        // Fails at the first slow refusal, not after 200 call limits.
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "a refusal waited {:?}: the breaker is not open",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(7)).await;
    }
    times.sort();
    eprintln!(
        "refusals while cut: p50 {:?}, p99 {:?}, max {:?}",
        times[100], times[197], times[199]
    );
    assert!(times[199] < Duration::from_millis(50), "{times:?}");
    link.restore();
    let back = Instant::now();
    while a.gate.authenticate(issued.secret.expose()).await.is_err() {
        assert!(back.elapsed() < Duration::from_secs(15), "no recovery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_has_a_connection_of_its_own_so_a_one_connection_pool_keeps_serving_and_the_cache_stays_on(
) {
    let schema = fresh_schema();
    let users = Users::default();
    let bob = users.add("bob", false);
    let config = pg::config(&schema)
        .with_max_connections(1)
        .with_timeout(Duration::from_secs(2));
    let a = replica(&pg::url(), config, &users).await;
    let feeds = count(
        &pg::url(),
        &format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'scopegate feed {schema}_revoked'"
        ),
    )
    .await;
    assert_eq!(feeds, 1, "the feed listens on its own connection");
    // Keep the one pooled connection busy with writes for a second while
    // watching the cache: the feed never flaps, and every write gets through.
    let flapped = Arc::new(AtomicBool::new(false));
    let watching = {
        let (gate, flapped) = (a.gate.clone(), Arc::clone(&flapped));
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                if !gate.is_serving_from_cache() {
                    flapped.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let done = Arc::new(AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (gate, bob, done) = (a.gate.clone(), bob.clone(), Arc::clone(&done));
        writers.spawn(async move {
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                gate.create_token(NewToken::for_user(bob.clone()))
                    .await
                    .expect("a write on a one-connection pool");
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    while let Some(writer) = writers.join_next().await {
        writer.unwrap();
    }
    watching.await.unwrap();
    assert!(done.load(Ordering::SeqCst) > 0);
    assert!(
        !flapped.load(Ordering::SeqCst),
        "the cache stopped serving while the pool was busy"
    );
    assert_eq!(a.store.pool().size(), 1);
}

/// Sends `n` notifications on `channel` in one transaction from an outside
/// session, each `r:` and 100 made-up digests whose first bytes are `prefix`:
/// as large as revocations are written, and in their format, unsealed.
async fn flood(url: &str, channel: &str, prefix: [u8; 2], n: i32) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query(
        "SELECT count(pg_notify($1, 'r:' || array_to_string(ARRAY( \
             SELECT $2 || lpad(to_hex(g * 100 + i), 60, '0') FROM generate_series(0, 99) AS i), \
             ','))) \
         FROM generate_series(1, $3) AS g",
    )
    .bind(channel)
    .bind(format!("{:02x}{:02x}", prefix[0], prefix[1]))
    .bind(n)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

/// A prefix whose cache stripe (the first two bytes, as the cache reads them)
/// is none of `avoid`'s.
fn prefix_avoiding(avoid: &[scopegate::secret::SecretDigest]) -> [u8; 2] {
    let stripe = |b: [u8; 2]| u16::from_le_bytes(b) % (1 << 14);
    (0..=u16::MAX)
        .map(u16::to_le_bytes)
        .find(|p| {
            avoid
                .iter()
                .all(|d| stripe(*p) != stripe([d.as_bytes()[0], d.as_bytes()[1]]))
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_on_the_channel_does_not_keep_a_replica_serving_a_revocation_queued_behind_it() {
    // Its own server: every listener of a server reads every channel's queue.
    let Some(server) = own_server() else { return };
    let schema = fresh_schema();
    let users = Users::default();
    let bob = users.add("bob", false);
    let a = replica(&server.url(), pg::config(&schema), &users).await;
    // B reads the database over a link that can slow to a trickle: a listener
    // that keeps receiving, ever further behind.
    let (link, b) = linked_replica(&server.url(), pg::config(&schema), &users).await;
    let issued = cached_on(&b, &a, &bob).await;
    let secret = issued.secret.expose();
    let kept = cached_on(&b, &a, &bob).await;
    // Messages that keep B's listener receiving, and behind them the revocation.
    let prefix = prefix_avoiding(&[issued.token.digest, kept.token.digest, user_tag(&bob)]);
    link.trickle(Some(1 << 20));
    flood(&server.url(), &format!("{schema}_revoked"), prefix, FLOOD).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    a.gate.revoke_token(&issued.token.id).await.unwrap();
    let (took, refusal) = time_until_refused(&b.gate, secret, started).await;
    eprintln!("B accepted the revoked token until {took:?} after the revocation");
    assert!(
        matches!(refusal, Error::InvalidToken(InvalidTokenReason::Unknown)),
        "{refusal:?}"
    );
    assert!(
        took < LAG_LIMIT + Duration::from_millis(150),
        "B served a revocation stuck behind the backlog for {took:?}"
    );
    // The backlog was real: B's feed vouches again only once through it.
    link.trickle(None);
    while !b.gate.is_serving_from_cache() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "B never caught up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("B caught up {:?} after the revocation", started.elapsed());
    // Behind is not lost: B's cache kept what it held (a lost connection would
    // have emptied it).
    assert!(b.serves_from_memory(kept.secret.expose()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_channel_neither_empties_a_replicas_cache_nor_revokes_what_it_names() {
    let Some(server) = own_server() else { return };
    let (a, b, bob, schema) = two_replicas(&server.url()).await;
    let issued = cached_on(&b, &a, &bob).await;
    let digest = issued.token.digest;
    assert!(b.serves_from_memory(issued.secret.expose()).await);
    // Any role that can connect can NOTIFY: unreadable payloads, and a forged
    // revocation of the very token, in the format replicas write.
    let pool = sqlx::PgPool::connect(&server.url()).await.unwrap();
    let channel = format!("{schema}_revoked");
    for payload in [
        "v9:whatever".to_owned(),
        "garbage".to_owned(),
        format!("r:{}", digest.to_hex()),
        format!("{}:r:{}", "0".repeat(32), digest.to_hex()),
    ] {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&channel)
            .bind(payload)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("SELECT count(pg_notify($1, 'junk' || g)) FROM generate_series(1, 5000) g")
        .bind(&channel)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    // Two of B's round trips later, everything sent before has been delivered.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let waited = Instant::now();
    while !b.gate.is_serving_from_cache() {
        assert!(waited.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        b.serves_from_memory(issued.secret.expose()).await,
        "garbage on the channel dropped B's cached token"
    );
    // A sealed revocation from a replica still gets through.
    let started = Instant::now();
    a.gate.revoke_token(&issued.token.id).await.unwrap();
    let (took, _) = time_until_refused(&b.gate, issued.secret.expose(), started).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// The next transaction id the server will hand out (reading it takes none).
async fn next_xid(url: &str) -> i64 {
    count(
        url,
        "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feeds_liveness_takes_no_transaction_ids() {
    let Some(server) = own_server() else { return };
    let schema = fresh_schema();
    let users = Users::default();
    let mut replicas = Vec::new();
    for _ in 0..6 {
        replicas.push(replica(&server.url(), pg::config(&schema), &users).await);
    }
    let before = next_xid(&server.url()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = next_xid(&server.url()).await;
    // Six replicas, twenty round trips a second each: no transaction id among
    // them (the old heartbeats took one per beat: 30 here).
    assert!(
        after - before <= 2,
        "{} transaction ids in 1 s",
        after - before
    );
    assert!(replicas.iter().all(|r| r.gate.is_serving_from_cache()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_locked_by_a_replica_frozen_before_commit_can_be_deactivated_elsewhere_within_seconds(
) {
    let schema = fresh_schema();
    let users = Users::default();
    let owner = users.add("owner", false);
    let link = Link::to(server_of(&pg::url())).await;
    // The app hands A its own pool: no statement_timeout of the store's on it.
    let pool = sqlx::PgPool::connect(&link.url(&pg::url())).await.unwrap();
    let config = pg::config(&schema).with_timeout(Duration::from_secs(1));
    let store = PgStore::with_pool(pool, config).await.unwrap();
    let a = ScopeGate::builder(store, users.clone())
        .without_cache()
        .build()
        .unwrap();
    let b = replica(&pg::url(), pg::config(&schema), &users).await;
    let key = b
        .gate
        .create_api_key(&owner, NewApiKey::new("k"))
        .await
        .unwrap();
    // A locks the key's row, changes it, and freezes as it sends COMMIT.
    link.freeze_at_next_commit();
    let rename = ApiKeyUpdate {
        name: Some("renamed".into()),
        ..Default::default()
    };
    let frozen = a.update_api_key(&key.key.id, rename).await;
    assert!(link.froze(), "A froze at its COMMIT");
    assert!(frozen.is_err(), "A's call ran out of time: {frozen:?}");
    // The lock is A's until the server ends its idle transaction.
    let started = Instant::now();
    let off = ApiKeyUpdate {
        active: Some(false),
        ..Default::default()
    };
    b.gate
        .update_api_key(&key.key.id, off)
        .await
        .expect("deactivated from B while A is frozen");
    let took = started.elapsed();
    eprintln!("B deactivated the key {took:?} after A froze");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let stored = b.gate.api_key(&key.key.id).await.unwrap().unwrap();
    assert!(!stored.active);
    assert_eq!(stored.name, "k", "A's change never committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_while_the_feed_reconnects_is_noticed_within_the_lag_limit_not_the_connect_limit() {
    let schema = fresh_schema();
    let users = Users::default();
    let bob = users.add("bob", false);
    let (link, a) = linked_replica(&pg::url(), pg::config(&schema), &users).await;
    let issued = a.gate.create_token(NewToken::for_user(bob)).await.unwrap();
    // The feed loses its connection (an administrator ends it), and while it
    // waits to reconnect, the link goes silent: its next attempt hangs.
    let ended = count(
        &pg::url(),
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'scopegate feed {schema}_revoked'"
        ),
    )
    .await;
    assert_eq!(ended, 1);
    tokio::time::sleep(Duration::from_millis(30)).await;
    link.cut();
    // A lookup the cache cannot answer goes to the store over the dead link; the
    // breaker hears of the hanging attempt within the lag limit and fails it,
    // long before the 10 s limit of a call or of a connection attempt.
    let asked = Instant::now();
    let outcome = a.gate.authenticate(issued.secret.expose()).await;
    let waited = asked.elapsed();
    assert_unavailable(&outcome);
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    link.restore();
}
