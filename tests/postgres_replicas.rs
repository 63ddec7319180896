//! Two replicas of one app on one PostgreSQL database: separate pools, separate
//! caches, each subscribed to the other's revocations.
#![cfg(feature = "postgres")]

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{girder_scopes, pg, Users};
use scopegate::{
    store::PgStore, ApiKeyUpdate, Error, InvalidTokenReason, NewApiKey, NewToken, ScopeGate,
    Secret, TokenRequest,
};
use sqlx::Row;

/// The documented bound on a revocation reaching another replica whose feed's
/// connection was lost (README: the lag limit), with slack for a loaded machine.
const BOUND: Duration = Duration::from_secs(1);
/// `PgConfig`'s default lag limit: the longest a replica whose feed hears
/// nothing serves from memory.
const LAG_LIMIT: Duration = Duration::from_millis(200);

struct Replica {
    gate: ScopeGate,
}

/// Two replicas on a fresh schema, sharing one user table; both accept API keys
/// as credentials.
async fn replicas() -> (Replica, Replica, Users, String) {
    let schema = pg::schema_of(tempfile::tempdir().unwrap().path());
    let users = Users::default();
    let mut out = Vec::new();
    for _ in 0..2 {
        let gate = ScopeGate::builder(pg::open(&schema).await, users.clone())
            .with_registry(girder_scopes())
            .with_direct_api_keys()
            .build()
            .unwrap();
        common::wait_until_serving(&gate, Duration::from_secs(2)).await;
        out.push(Replica { gate });
    }
    let b = out.pop().unwrap();
    let a = out.pop().unwrap();
    (a, b, users, schema)
}

/// Polls `gate` until it refuses `secret`; returns how long that took.
async fn time_until_refused(gate: &ScopeGate, secret: &str, started: Instant) -> Duration {
    loop {
        match gate.authenticate(secret).await {
            Ok(_) => {}
            Err(Error::InvalidToken(
                InvalidTokenReason::Unknown | InvalidTokenReason::InactiveKey,
            )) => return started.elapsed(),
            Err(other) => panic!("unexpected {other:?}"),
        }
        assert!(
            started.elapsed() < 5 * BOUND,
            "the other replica still accepts a revoked token after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_on_one_replica_works_on_the_other_and_dies_on_both_when_revoked() {
    let (a, b, users, _) = replicas().await;
    let bob = users.add("bob", false);
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let issued = a
            .gate
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        let secret = issued.secret.expose();
        // Cached on both.
        b.gate.authenticate(secret).await.unwrap();
        b.gate.authenticate(secret).await.unwrap();
        a.gate.authenticate(secret).await.unwrap();
        let started = Instant::now();
        a.gate.revoke_token(&issued.token.id).await.unwrap();
        assert!(
            common::refused(a.gate.authenticate(secret).await),
            "refused at once where revoked"
        );
        worst = worst.max(time_until_refused(&b.gate, secret, started).await);
    }
    assert!(worst < BOUND, "slowest propagation {worst:?}");
    assert!(b.gate.is_serving_from_cache(), "the feed stayed connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivating_or_deleting_a_key_on_one_replica_kills_its_tokens_on_the_other() {
    let (a, b, users, _) = replicas().await;
    let bob = users.add("bob", false);
    for deactivate in [true, false] {
        let key = a
            .gate
            .create_api_key(&bob, NewApiKey::new("k"))
            .await
            .unwrap();
        let minted = b
            .gate
            .exchange_api_key(key.secret.expose(), TokenRequest::default())
            .await
            .unwrap();
        let secret = minted.secret.expose();
        b.gate.authenticate(secret).await.unwrap();
        let started = Instant::now();
        if deactivate {
            let off = ApiKeyUpdate {
                active: Some(false),
                ..Default::default()
            };
            a.gate.update_api_key(&key.key.id, off).await.unwrap();
        } else {
            a.gate.delete_api_key(&key.key.id).await.unwrap();
        }
        let took = time_until_refused(&b.gate, secret, started).await;
        assert!(took < BOUND, "took {took:?}");
    }
}

/// Mints from `key` on replica `a` with two tasks while `change` runs on `b`; every
/// token minted must be refused on both replicas once the change has propagated.
async fn race_exchange_against<F, Fut>(change: F)
where
    F: FnOnce(ScopeGate, scopegate::ApiKeyId) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    race_exchange_of(NewApiKey::new("k"), change, true, |_| false).await;
}

/// [`race_exchange_against`] for a key made from `new`: a minted token may still
/// authenticate after the change only with a principal `may_survive` accepts.
/// `refusing`: the change makes every later exchange refused, and each minter
/// must have met that refusal; otherwise each ran 20 exchanges past the change.
async fn race_exchange_of<F, Fut>(
    new: NewApiKey,
    change: F,
    refusing: bool,
    may_survive: impl Fn(&scopegate::Principal) -> bool,
) where
    F: FnOnce(ScopeGate, scopegate::ApiKeyId) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (a, b, users, _) = replicas().await;
    let bob = users.add("bob", false);
    let key = b.gate.create_api_key(&bob, new).await.unwrap();
    let secret = Arc::new(key.secret.clone());
    let started = Arc::new(AtomicUsize::new(0));
    let changed = Arc::new(AtomicBool::new(false));
    let mut minters = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (gate, secret) = (a.gate.clone(), secret.clone());
        let (started, changed) = (started.clone(), changed.clone());
        minters.spawn(async move {
            let mut minted = Vec::new();
            // Until refused, or 20 mints past the change: every minter straddles it.
            let mut after_change = 0;
            for _ in 0..10_000 {
                match gate
                    .exchange_api_key(secret.expose(), TokenRequest::default())
                    .await
                {
                    Ok(token) => {
                        if minted.is_empty() {
                            started.fetch_add(1, Ordering::SeqCst);
                        }
                        // Cache it on this replica as it is minted.
                        let _ = gate.authenticate(token.secret.expose()).await;
                        minted.push(token);
                    }
                    Err(Error::InvalidGrant) => return (minted, true),
                    Err(other) => panic!("{other:?}"),
                }
                if changed.load(Ordering::SeqCst) {
                    after_change += 1;
                    if after_change == 20 {
                        return (minted, false);
                    }
                }
            }
            panic!("a minter neither was refused nor saw the change");
        });
    }
    for _ in 0..5_000 {
        if started.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(started.load(Ordering::SeqCst), 2, "both minters minted");
    change(b.gate.clone(), key.key.id.clone()).await;
    changed.store(true, Ordering::SeqCst);
    let mut minted = Vec::new();
    while let Some(batch) = minters.join_next().await {
        let (batch, refused) = batch.unwrap();
        // A mint that read the key before a narrowing is refused too, rightly.
        assert!(refused || !refusing, "a minter was never refused");
        minted.extend(batch);
    }
    tokio::time::sleep(BOUND).await;
    for token in &minted {
        for gate in [&a.gate, &b.gate] {
            match gate.authenticate(token.secret.expose()).await {
                Ok(principal) => assert!(may_survive(&principal), "{principal:?} survived"),
                Err(Error::InvalidToken(_)) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_minted_on_one_replica_keeps_a_scope_narrowed_away_on_the_other() {
    let write = scopegate::Scope::from_static("core.data.write");
    let new = NewApiKey::new("k").scope(["core.data.read", "core.data.write"]);
    let narrow = |gate: ScopeGate, id| async move {
        let narrow = ApiKeyUpdate {
            scope: Some(Some(vec!["core.data.read".into()])),
            ..Default::default()
        };
        gate.update_api_key(&id, narrow).await.unwrap();
    };
    race_exchange_of(new, narrow, false, |p| !p.scopes().contains(&write)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_minted_on_one_replica_survives_a_deactivation_on_the_other() {
    race_exchange_against(|gate, id| async move {
        let off = ApiKeyUpdate {
            active: Some(false),
            ..Default::default()
        };
        gate.update_api_key(&id, off).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_minted_on_one_replica_survives_a_deletion_on_the_other() {
    race_exchange_against(|gate, id| async move {
        gate.delete_api_key(&id).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_minted_on_one_replica_survives_a_rotation_without_grace_on_the_other() {
    race_exchange_against(|gate, id| async move {
        gate.rotate_api_key(&id, Duration::ZERO).await.unwrap();
    })
    .await;
}

/// Runs `revoke` (made on another replica) while 4 readers look `secret` up on
/// `reader`: `reader` must refuse it within the bound, and still refuse it once the
/// readers, whatever they cached, are done.
async fn revoke_under_racing_lookups(
    reader: &ScopeGate,
    secret: &Secret,
    revoke: impl std::future::Future<Output = ()>,
    what: &str,
) {
    let secret = Arc::new(secret.clone());
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (gate, secret) = (reader.clone(), secret.clone());
        readers.spawn(async move {
            for _ in 0..50 {
                let _ = gate.authenticate(secret.expose()).await;
                tokio::task::yield_now().await;
            }
        });
    }
    let started = Instant::now();
    revoke.await;
    let took = time_until_refused(reader, secret.expose(), started).await;
    assert!(took < BOUND, "{what} took {took:?}");
    while readers.join_next().await.is_some() {}
    for _ in 0..20 {
        assert!(
            common::refused(reader.authenticate(secret.expose()).await),
            "{what} came back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_racing_lookups_on_the_other_replica_is_never_undone_by_them() {
    let (a, b, users, _) = replicas().await;
    let bob = users.add("bob", false);
    for _ in 0..10 {
        let issued = a
            .gate
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        let revoke = async { drop(b.gate.revoke_token(&issued.token.id).await.unwrap()) };
        revoke_under_racing_lookups(&a.gate, &issued.secret, revoke, "the token").await;
    }
}

/// Terminates the listening connections of `schema`'s feeds from the server side;
/// returns how many it ended.
async fn kill_listeners(schema: &str) -> usize {
    let pids = listener_pids(schema).await;
    let pool = sqlx::PgPool::connect(&pg::url()).await.unwrap();
    let killed = sqlx::query("SELECT pg_terminate_backend(pid) FROM unnest($1::int4[]) AS pid")
        .bind(&pids)
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .filter(|row| row.get::<bool, _>(0))
        .count();
    pool.close().await;
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_listener_killed_a_replica_still_refuses_revoked_tokens_within_the_bound() {
    let (a, b, users, schema) = replicas().await;
    let bob = users.add("bob", false);
    for round in 0..3 {
        let issued = a
            .gate
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        let secret = issued.secret.expose();
        b.gate.authenticate(secret).await.unwrap();
        let killed = listener_pids(&schema).await;
        assert_eq!(
            kill_listeners(&schema).await,
            2,
            "round {round}: both feeds listen"
        );
        let started = Instant::now();
        a.gate.revoke_token(&issued.token.id).await.unwrap();
        let took = time_until_refused(&b.gate, secret, started).await;
        assert!(took < BOUND, "round {round}: took {took:?}");
        // Both feeds reconnect and both caches serve again. The next round kills
        // both listeners, so it must not start before `a`'s is back too (`a` may
        // not even have noticed its loss yet): wait for two new ones on the server.
        let back = Instant::now();
        while !feeds_are_back([&a, &b], &schema, &killed).await {
            assert!(
                back.elapsed() < Duration::from_secs(5),
                "a feed did not reconnect"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Whether both replicas serve from their caches again, through two listeners
/// other than the `killed` ones.
async fn feeds_are_back(replicas: [&Replica; 2], schema: &str, killed: &[i32]) -> bool {
    if !replicas.iter().all(|r| r.gate.is_serving_from_cache()) {
        return false;
    }
    let listening = listener_pids(schema).await;
    listening.len() == 2 && !listening.iter().any(|pid| killed.contains(pid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_channel_of_the_apps_choosing_hear_each_others_revocations_there() {
    let schema = pg::schema_of(tempfile::tempdir().unwrap().path());
    let channel = format!("{schema}_auth_feed");
    let users = Users::default();
    let bob = users.add("bob", false);
    let mut gates = Vec::new();
    for _ in 0..2 {
        let config = pg::config(&schema).with_channel(&channel).unwrap();
        let store = PgStore::connect_with(&pg::url(), config).await.unwrap();
        let gate = ScopeGate::builder(store, users.clone()).build().unwrap();
        common::wait_until_serving(&gate, Duration::from_secs(2)).await;
        gates.push(gate);
    }
    let listening = listening_on(&channel).await;
    assert_eq!(listening.len(), 2, "both replicas listen on {channel}");
    assert!(listening_on(&format!("{schema}_revoked")).await.is_empty());
    let issued = gates[0]
        .create_token(NewToken::for_user(bob))
        .await
        .unwrap();
    let secret = issued.secret.expose();
    gates[1].authenticate(secret).await.unwrap(); // cached on the other replica
    let started = Instant::now();
    gates[0].revoke_token(&issued.token.id).await.unwrap();
    let took = time_until_refused(&gates[1], secret, started).await;
    assert!(took < BOUND, "propagation took {took:?}");
}

/// The pids of the feeds' connections listening on `channel`.
async fn listening_on(channel: &str) -> Vec<i32> {
    let pool = sqlx::PgPool::connect(&pg::url()).await.unwrap();
    let pids = sqlx::query("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
        .bind(format!("scopegate feed {channel}"))
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<i32, _>(0))
        .collect();
    pool.close().await;
    pids
}

/// The pids of the connections listening for `schema`'s revocations.
async fn listener_pids(schema: &str) -> Vec<i32> {
    listening_on(&format!("{schema}_revoked")).await
}

fn signal(pids: &[i32], signal: &str) {
    for pid in pids {
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }
}

/// Resumes stopped server processes even if the test fails.
struct Resume(Vec<i32>);

impl Drop for Resume {
    fn drop(&mut self) {
        signal(&self.0, "-CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_listener_silently_stalled_a_replica_refuses_revoked_tokens_within_the_lag_limit()
{
    let (a, b, users, schema) = replicas().await;
    let bob = users.add("bob", false);
    let issued = a
        .gate
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    let secret = issued.secret.expose();
    b.gate.authenticate(secret).await.unwrap();
    // The server processes behind both feeds freeze: their connections stay open
    // but deliver nothing, as over a dead network path. Only the unanswered
    // round trips can tell.
    let pids = listener_pids(&schema).await;
    assert_eq!(pids.len(), 2);
    signal(&pids, "-STOP");
    let resume = Resume(pids);
    let started = Instant::now();
    a.gate.revoke_token(&issued.token.id).await.unwrap();
    let took = time_until_refused(&b.gate, secret, started).await;
    // The notification could not arrive: the lag limit sent B to the store, at
    // most 200 ms after B's last answered round trip, which came before the stop.
    assert!(
        took < LAG_LIMIT + Duration::from_millis(100),
        "took {took:?}"
    );
    drop(resume);
    let back = Instant::now();
    while !b.gate.is_serving_from_cache() {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "feed did not come back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a replica can do to a key that must stop it on every replica.
#[derive(Debug, Clone, Copy)]
enum KeyChange {
    Deactivate,
    RotateWithoutGrace,
    Delete,
    RevokeOwner,
}

async fn apply(gate: &ScopeGate, change: KeyChange, key: &scopegate::ApiKey) {
    match change {
        KeyChange::Deactivate => {
            let off = ApiKeyUpdate {
                active: Some(false),
                ..Default::default()
            };
            gate.update_api_key(&key.id, off).await.unwrap();
        }
        KeyChange::RotateWithoutGrace => {
            gate.rotate_api_key(&key.id, Duration::ZERO).await.unwrap();
        }
        KeyChange::Delete => drop(gate.delete_api_key(&key.id).await.unwrap()),
        KeyChange::RevokeOwner => gate.revoke_user(&key.user_id).await.unwrap(),
    }
}

const KEY_CHANGES: [KeyChange; 4] = [
    KeyChange::Deactivate,
    KeyChange::RotateWithoutGrace,
    KeyChange::Delete,
    KeyChange::RevokeOwner,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sent_directly_works_on_the_other_replica_and_stops_there_within_the_bound() {
    let (a, b, users, _) = replicas().await;
    for (round, change) in KEY_CHANGES.into_iter().enumerate() {
        let owner = users.add(&format!("owner{round}"), false);
        let key = a
            .gate
            .create_api_key(&owner, NewApiKey::new("k"))
            .await
            .unwrap();
        let secret = key.secret.expose();
        // Twice: the second answer comes from B's cache.
        b.gate.authenticate(secret).await.unwrap();
        b.gate.authenticate(secret).await.unwrap();
        let started = Instant::now();
        apply(&a.gate, change, &key.key).await;
        let took = time_until_refused(&b.gate, secret, started).await;
        assert!(took < BOUND, "{change:?} took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_racing_lookups_on_the_other_replica_is_never_undone_by_them() {
    let (a, b, users, _) = replicas().await;
    for round in 0..12 {
        let change = KEY_CHANGES[round % KEY_CHANGES.len()];
        let owner = users.add(&format!("owner{round}"), false);
        let key = a
            .gate
            .create_api_key(&owner, NewApiKey::new("k"))
            .await
            .unwrap();
        let what = format!("the key ({change:?})");
        let revoke = apply(&b.gate, change, &key.key);
        revoke_under_racing_lookups(&a.gate, &key.secret, revoke, &what).await;
    }
}
