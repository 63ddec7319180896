//! The background sweeper on a real sled store.

mod common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{girder_scopes, Users};
use scopegate::{clock::ManualClock, store::SledStore, NewToken, ScopeGate};

#[tokio::test]
async fn sweeper_purges_expired_tokens_in_the_background_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let users = Users::default();
    let bob = users.add("bob", false);
    let clock = ManualClock::new(Utc::now());
    let gate = ScopeGate::builder(SledStore::open(dir.path()).unwrap(), users)
        .without_cache()
        .with_registry(girder_scopes())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let short = gate
        .create_token(
            NewToken::for_user(bob.clone()).lifetime(Duration::from_secs_f64(1.0 * 86_400.0)),
        )
        .await
        .unwrap();
    let long = gate
        .create_token(NewToken::for_user(bob).lifetime(Duration::from_secs_f64(10.0 * 86_400.0)))
        .await
        .unwrap();
    clock.advance(TimeDelta::days(2));

    let sweeper = gate.spawn_sweeper(Duration::from_millis(10));
    let mut purged = false;
    for _ in 0..500 {
        if gate
            .store()
            .token_by_id(&short.token.id)
            .await
            .unwrap()
            .is_none()
        {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(purged, "the sweeper did not purge within 5 s");
    assert!(gate
        .store()
        .token_by_id(&long.token.id)
        .await
        .unwrap()
        .is_some());
    tokio::time::timeout(Duration::from_secs(5), sweeper.shutdown())
        .await
        .expect("shutdown must not hang");

    // Stopped: what expires now stays until the next purge.
    clock.advance(TimeDelta::days(10));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(gate
        .store()
        .token_by_id(&long.token.id)
        .await
        .unwrap()
        .is_some());
    assert!(
        common::refused(gate.authenticate(long.secret.expose()).await),
        "yet it no longer authenticates"
    );
}

#[tokio::test]
async fn a_revoked_keys_tokens_are_purged_at_once_not_at_the_sweepers_next_period() {
    let f = common::Fixture::new(|place| SledStore::open(place).unwrap());
    let bob = f.user("bob");
    let sweeper = f.gate.spawn_sweeper(Duration::from_secs(3600));
    let key = f.key(&bob, scopegate::NewApiKey::new("ci")).await;
    for _ in 0..3 {
        f.gate
            .exchange_api_key(key.secret.expose(), scopegate::TokenRequest::new())
            .await
            .unwrap();
    }
    // The sweeper's first pass, at once, found nothing to purge.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f.probe.purged_tokens(), 0);
    f.gate.delete_api_key(&key.key.id).await.unwrap();
    let mut waited = 0;
    while f.probe.purged_tokens() < 3 && waited < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(
        f.probe.purged_tokens(),
        3,
        "the revocation did not wake the sweeper within 5 s"
    );
    sweeper.shutdown().await;
}
