//! The conformance suite on the moka-cached sled store, plus the cache's own guarantees.

mod common;

conformance_tests!(crate::common::CachedSledBackend);

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use common::{instrumented::instrumented, Users};
use scopegate::{
    secret::{SecretCodec, SecretKind},
    store::{CacheConfig, SledStore, TokenStore},
    Error, NewApiKey, NewToken, ScopeGate, Token, TokenId, TokenRequest,
};

/// A gate over a cache over an instrumented sled store: its probe counts the store reads the cache let through.
fn cached_gate(
    config: CacheConfig,
) -> (
    ScopeGate,
    common::instrumented::Probe,
    Users,
    tempfile::TempDir,
) {
    common::cached_sled_gate(config, |gate| gate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_token_share_one_store_read() {
    let (gate, probe, users, _dir) = cached_gate(CacheConfig::default());
    let bob = users.add("bob", false);
    let token = gate.create_token(NewToken::for_user(bob)).await.unwrap();
    let before = probe.digest_reads();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (gate, secret) = (gate.clone(), token.secret.clone());
        tasks.spawn(async move { gate.authenticate(secret.expose()).await.map(|_| ()) });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(probe.digest_reads() - before, 1);
}

#[tokio::test]
async fn unknown_tokens_are_negatively_cached_for_a_short_time() {
    let config = CacheConfig::default().with_negative_ttl(Duration::from_millis(300));
    let (gate, probe, _users, _dir) = cached_gate(config);
    let (stranger, _) = SecretCodec::default().generate(SecretKind::Token);
    for _ in 0..5 {
        assert!(matches!(
            gate.authenticate(stranger.expose()).await,
            Err(Error::InvalidToken(_))
        ));
    }
    assert_eq!(probe.digest_reads(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(common::refused(gate.authenticate(stranger.expose()).await));
    assert_eq!(probe.digest_reads(), 2, "the negative entry must expire");
}

#[tokio::test]
async fn cached_token_does_not_outlive_its_own_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (sled, probe) = instrumented(SledStore::open(dir.path()).unwrap());
    let gate = ScopeGate::builder(sled, Users::default()).build().unwrap();
    // The gate's store: its cache in front of the probed one.
    let store = gate.store();
    let (_, digest) = SecretCodec::default().generate(SecretKind::Token);
    let now = Utc::now();
    let mut token = Token::new(
        TokenId::from("short-lived"),
        digest,
        now,
        now + chrono::TimeDelta::milliseconds(800),
    );
    token.scopes = [scopegate::Scope::ANONYMOUS_SESSION].into();
    store.insert_token(&token).await.unwrap();
    assert!(store.token_by_digest(&digest).await.unwrap().is_some());
    assert!(store.token_by_digest(&digest).await.unwrap().is_some());
    assert_eq!(probe.digest_reads(), 1, "second read is a cache hit");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    store.token_by_digest(&digest).await.unwrap();
    assert_eq!(
        probe.digest_reads(),
        2,
        "the entry must leave the cache at the token's expiry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_are_never_served_from_the_cache_under_concurrent_reads() {
    let (gate, _probe, users, _dir) = cached_gate(CacheConfig::default());
    let bob = users.add("bob", false);
    for round in 0..20 {
        let key = gate
            .create_api_key(&bob, NewApiKey::new(format!("k{round}")))
            .await
            .unwrap();
        let token = gate
            .exchange_api_key(key.secret.expose(), TokenRequest::default())
            .await
            .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (gate, secret, stop) = (gate.clone(), token.secret.clone(), stop.clone());
            readers.spawn(async move {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && reads < 10_000 {
                    let _ = gate.authenticate(secret.expose()).await;
                    reads += 1;
                    tokio::task::yield_now().await;
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        if round % 2 == 0 {
            gate.revoke_token(&token.token.id).await.unwrap();
        } else {
            gate.delete_api_key(&key.key.id).await.unwrap();
        }
        // From here on, no read may succeed, whatever the readers put in the cache.
        for _ in 0..50 {
            assert!(matches!(
                gate.authenticate(token.secret.expose()).await,
                Err(Error::InvalidToken(_))
            ));
            tokio::task::yield_now().await;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        while readers.join_next().await.is_some() {}
        assert!(common::refused(
            gate.authenticate(token.secret.expose()).await
        ));
    }
}

#[tokio::test]
async fn store_errors_are_not_cached_and_never_grant_access() {
    let (gate, probe, users, _dir) = cached_gate(CacheConfig::default());
    let bob = users.add("bob", false);
    let token = gate.create_token(NewToken::for_user(bob)).await.unwrap();
    probe.set_failing(true);
    for _ in 0..3 {
        assert!(matches!(
            gate.authenticate(token.secret.expose()).await,
            Err(Error::Store(_))
        ));
    }
    probe.set_failing(false);
    let principal = gate.authenticate(token.secret.expose()).await.unwrap();
    assert_eq!(principal.token_id(), Some(&token.token.id));
}

#[tokio::test]
async fn a_revocation_reported_as_failed_still_drops_the_cached_token() {
    let (gate, probe, users, _dir) = cached_gate(CacheConfig::default());
    let bob = users.add("bob", false);
    let key = gate
        .create_api_key(&bob, NewApiKey::new("k"))
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let token = gate
            .exchange_api_key(key.secret.expose(), TokenRequest::default())
            .await
            .unwrap();
        gate.authenticate(token.secret.expose()).await.unwrap();
        tokens.push(token);
    }
    let session = gate
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    gate.authenticate(session.secret.expose()).await.unwrap();
    let reads = probe.digest_reads();
    gate.authenticate(tokens[0].secret.expose()).await.unwrap();
    assert_eq!(probe.digest_reads(), reads, "cached");

    // The store deletes, then reports failure: the caller sees an error, and the
    // cache must not keep serving what the store no longer holds.
    probe.set_failing_after_writes(true);
    assert!(matches!(
        gate.revoke_token(&session.token.id).await,
        Err(Error::Store(_))
    ));
    assert!(matches!(
        gate.delete_api_key(&key.key.id).await,
        Err(Error::Store(_))
    ));
    probe.set_failing_after_writes(false);
    for token in tokens.iter().chain([&session]) {
        assert!(
            matches!(
                gate.authenticate(token.secret.expose()).await,
                Err(Error::InvalidToken(_))
            ),
            "a token the store deleted was served from the cache"
        );
    }
}

#[tokio::test]
async fn a_revocation_that_failed_before_the_store_sends_the_next_lookup_to_the_store() {
    let (gate, probe, users, _dir) = cached_gate(CacheConfig::default());
    let bob = users.add("bob", false);
    let token = gate.create_token(NewToken::for_user(bob)).await.unwrap();
    gate.authenticate(token.secret.expose()).await.unwrap();
    probe.set_failing(true);
    let failed = gate.revoke_token(&token.token.id).await;
    assert!(
        matches!(&failed, Err(Error::Store(e)) if e.kind() == scopegate::store::StoreErrorKind::Backend),
        "{failed:?}"
    );
    probe.set_failing(false);
    let reads = probe.digest_reads();
    // Not revoked (the store said so), but asked again rather than trusted.
    gate.authenticate(token.secret.expose()).await.unwrap();
    assert_eq!(probe.digest_reads(), reads + 1);
}

#[tokio::test]
async fn a_flood_of_unknown_tokens_does_not_evict_live_ones() {
    let config = CacheConfig::default()
        .with_max_capacity(500)
        .with_max_unknown(100);
    let (gate, probe, users, _dir) = cached_gate(config);
    let bob = users.add("bob", false);
    let mut live = Vec::new();
    for _ in 0..300 {
        let token = gate
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        gate.authenticate(token.secret.expose()).await.unwrap();
        live.push(token);
    }
    let codec = SecretCodec::default();
    for _ in 0..20_000 {
        let (bogus, _) = codec.generate(SecretKind::Token);
        assert!(common::refused(gate.authenticate(bogus.expose()).await));
    }
    let before = probe.digest_reads();
    for token in &live {
        gate.authenticate(token.secret.expose()).await.unwrap();
    }
    let misses = probe.digest_reads() - before;
    assert_eq!(
        misses, 0,
        "{misses} of 300 live tokens were evicted by the flood"
    );
}

#[tokio::test]
async fn unknown_digests_are_remembered_within_their_own_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let config = CacheConfig::default().with_max_unknown(100);
    let users = Users::default();
    let bob = users.add("bob", false);
    let gate = ScopeGate::builder(SledStore::open(dir.path()).unwrap(), users)
        .with_cache(config)
        .build()
        .unwrap();
    let live = gate.create_token(NewToken::for_user(bob)).await.unwrap();
    gate.authenticate(live.secret.expose()).await.unwrap();
    let codec = SecretCodec::default();
    for _ in 0..5_000 {
        let (bogus, _) = codec.generate(SecretKind::Token);
        assert!(common::refused(gate.authenticate(bogus.expose()).await));
    }
    let stats = gate.cache_stats().await.unwrap();
    assert!(stats.unknown <= 100, "{stats:?}");
    assert_eq!(stats.tokens, 1, "the live token is still cached: {stats:?}");
}

#[tokio::test]
async fn a_token_served_from_memory_shows_a_scope_change_and_a_revocation_at_once() {
    let (gate, probe, users, _dir) = cached_gate(CacheConfig::default());
    let bob = users.add("bob", false);
    let issued = gate
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    let secret = issued.secret.expose();
    gate.authenticate(secret).await.unwrap();
    let reads = probe.digest_reads();
    for _ in 0..3 {
        gate.authenticate(secret).await.unwrap();
    }
    assert_eq!(
        probe.digest_reads(),
        reads,
        "repeat requests are served from memory"
    );
    let extra = scopegate::Scope::ANONYMOUS_SESSION;
    gate.add_token_scopes(&issued.token.id, std::slice::from_ref(&extra))
        .await
        .unwrap();
    let principal = gate.authenticate(secret).await.unwrap();
    assert!(
        principal.scopes().contains(&extra),
        "the new scope is seen at once"
    );
    gate.authenticate(secret).await.unwrap();
    gate.revoke_token(&issued.token.id).await.unwrap();
    assert!(matches!(
        gate.authenticate(secret).await,
        Err(Error::InvalidToken(_))
    ));
}

#[tokio::test]
async fn lifetimes_moka_would_refuse_are_a_config_error_not_a_panic() {
    use scopegate::{store::MAX_CACHE_LIFETIME, AuthState, ConfigError};
    let too_long = MAX_CACHE_LIFETIME + Duration::from_secs(1);
    for config in [
        CacheConfig::default().with_ttl(Duration::MAX),
        CacheConfig::default().with_ttl(too_long),
        CacheConfig::default().with_negative_ttl(Duration::MAX),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let built = AuthState::builder(
            ScopeGate::builder(SledStore::open(dir.path()).unwrap(), Users::default())
                .with_cache(config),
        )
        .build();
        assert_eq!(built.err(), Some(ConfigError::InvalidCacheLifetime));
    }
    let dir = tempfile::tempdir().unwrap();
    let built = ScopeGate::builder(SledStore::open(dir.path()).unwrap(), Users::default())
        .with_last_use_interval(Duration::MAX)
        .build();
    assert_eq!(built.err(), Some(ConfigError::InvalidCacheLifetime));
    let dir = tempfile::tempdir().unwrap();
    let at_the_limit = CacheConfig::default().with_ttl(MAX_CACHE_LIFETIME);
    let built = AuthState::builder(
        ScopeGate::builder(SledStore::open(dir.path()).unwrap(), Users::default())
            .with_cache(at_the_limit)
            .with_last_use_interval(MAX_CACHE_LIFETIME),
    )
    .build();
    assert!(built.is_ok());
}

#[tokio::test]
async fn a_capacity_beyond_the_hot_tables_largest_still_caches() {
    let (gate, probe, users, _dir) =
        cached_gate(CacheConfig::default().with_max_capacity(u64::MAX));
    let bob = users.add("bob", false);
    let token = gate.create_token(NewToken::for_user(bob)).await.unwrap();
    for _ in 0..3 {
        gate.authenticate(token.secret.expose()).await.unwrap();
    }
    assert_eq!(probe.digest_reads(), 1, "one store read, then the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_caches_over_clones_of_one_sled_store_see_each_others_revocations() {
    use scopegate::{ApiKeyUpdate, AuthState};
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path()).unwrap();
    let users = Users::default();
    let bob = users.add("bob", false);
    let a = ScopeGate::builder(sled.clone(), users.clone())
        .build()
        .unwrap();
    // AuthState caches its store by default: a second cache over the same database.
    let state = AuthState::builder(ScopeGate::builder(sled.clone(), users.clone()))
        .build()
        .unwrap();
    let b = state.gate().clone();
    let login = a
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    let key = b.create_api_key(&bob, NewApiKey::new("k")).await.unwrap();
    let minted = b
        .exchange_api_key(key.secret.expose(), TokenRequest::default())
        .await
        .unwrap();
    for gate in [&a, &b] {
        for secret in [&login.secret, &minted.secret] {
            for _ in 0..3 {
                gate.authenticate(secret.expose()).await.unwrap();
            }
        }
    }
    a.revoke_token(&login.token.id).await.unwrap();
    let refused = b.authenticate(login.secret.expose()).await;
    assert!(
        matches!(refused, Err(Error::InvalidToken(_))),
        "{refused:?}"
    );
    let off = ApiKeyUpdate {
        active: Some(false),
        ..ApiKeyUpdate::default()
    };
    b.update_api_key(&key.key.id, off).await.unwrap();
    let refused = a.authenticate(minted.secret.expose()).await;
    assert!(
        matches!(refused, Err(Error::InvalidToken(_))),
        "{refused:?}"
    );
}

/// A feed the test drives by hand, as a shared backend's would report its
/// connection: the cache's own rules, without a database to unplug.
#[derive(Clone, Default)]
struct HandFeed(Arc<std::sync::Mutex<Option<scopegate::store::InvalidationSink>>>);

impl scopegate::store::InvalidationFeed for HandFeed {
    fn start(self: Box<Self>, sink: scopegate::store::InvalidationSink) {
        *self.0.lock().unwrap() = Some(sink);
    }
}

impl HandFeed {
    fn sink(&self) -> scopegate::store::InvalidationSink {
        self.0
            .lock()
            .unwrap()
            .clone()
            .expect("the cache started its feed")
    }
}

/// While the feed is down, the cache neither serves nor fills: a token looked up
/// meanwhile and then revoked where the feed would have told (another replica)
/// is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_its_feed_is_down_the_cache_serves_nothing_it_might_have_missed() {
    use common::parking::{parking_with, Feed};
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path()).unwrap();
    // The other replica: writes this cache hears of only through its feed.
    let elsewhere = sled.clone();
    let feed = HandFeed::default();
    let (parking, parks) = parking_with(sled, Feed::given(feed.clone()));
    let users = Users::default();
    let bob = users.add("bob", false);
    let gate = ScopeGate::builder(parking, users).build().unwrap();
    let token = gate.create_token(NewToken::for_user(bob)).await.unwrap();
    let secret = token.secret.expose();

    assert!(
        !gate.is_serving_from_cache(),
        "down until the feed says otherwise"
    );
    feed.sink().connected();
    assert!(gate.is_serving_from_cache());
    gate.authenticate(secret).await.unwrap();
    let calls = parks.calls();
    gate.authenticate(secret).await.unwrap();
    assert_eq!(
        parks.calls(),
        calls,
        "served from memory while the feed is up"
    );

    feed.sink().disconnected();
    assert!(!gate.is_serving_from_cache());
    for _ in 0..3 {
        let calls = parks.calls();
        gate.authenticate(secret).await.unwrap();
        assert!(
            parks.calls() > calls,
            "the store answers while the feed is down"
        );
    }
    elsewhere.delete_token(&token.token.id).await.unwrap();
    assert!(
        common::refused(gate.authenticate(secret).await),
        "served what it missed"
    );

    // Back up: the cache starts empty and serves again.
    feed.sink().connected();
    assert!(common::refused(gate.authenticate(secret).await));
    let other = gate
        .create_token(NewToken::for_user("bob".into()))
        .await
        .unwrap();
    gate.authenticate(other.secret.expose()).await.unwrap();
    let calls = parks.calls();
    gate.authenticate(other.secret.expose()).await.unwrap();
    assert_eq!(parks.calls(), calls, "serving from memory again");
}

/// sled's in-process feed needs no runtime: a cache built in a plain `fn main`,
/// before any runtime exists, serves from memory like one built inside.
#[test]
fn a_cache_over_sled_built_outside_a_runtime_still_serves_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let gate = ScopeGate::builder(SledStore::open(dir.path()).unwrap(), Users::default())
        .build()
        .unwrap();
    assert!(gate.is_serving_from_cache());
}
