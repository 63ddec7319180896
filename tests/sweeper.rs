//! The background sweeper on a real sled store.

mod common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{girder_scopes, Users};
use scopegate::{ManualClock, NewToken, ScopeGate, SledStore};

#[tokio::test]
async fn sweeper_purges_expired_tokens_in_the_background_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let users = Users::default();
    let bob = users.add("bob", false);
    let clock = ManualClock::new(Utc::now());
    let gate = ScopeGate::builder(SledStore::open(dir.path()).unwrap(), users)
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
