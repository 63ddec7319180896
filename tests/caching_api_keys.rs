//! API keys sent as credentials, through the cache: served from memory after
//! their first use, and never after a change, however lookups race it.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use common::Users;
use scopegate::{store::CacheConfig, ApiKeyUpdate, Error, NewApiKey, ScopeGate};

/// A gate accepting keys directly, over a cache over an instrumented sled store.
fn gate() -> (
    ScopeGate,
    common::instrumented::Probe,
    Users,
    tempfile::TempDir,
) {
    common::cached_sled_gate(CacheConfig::default(), |gate| gate.with_direct_api_keys())
}

#[tokio::test]
async fn a_key_sent_directly_is_read_from_the_store_once_then_served_from_the_cache() {
    let (gate, probe, users, _dir) = gate();
    let bob = users.add("bob", false);
    let key = gate
        .create_api_key(&bob, NewApiKey::new("k"))
        .await
        .unwrap();
    let before = probe.digest_reads();
    for _ in 0..100 {
        gate.authenticate(key.secret.expose()).await.unwrap();
    }
    // One load: the revocation epoch is read before it, so one read suffices.
    assert_eq!(probe.digest_reads() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_keys_are_never_served_from_the_cache_under_concurrent_reads() {
    let (gate, _probe, users, _dir) = gate();
    for round in 0..24 {
        let owner = users.add(&format!("user{round}"), false);
        let key = gate
            .create_api_key(&owner, NewApiKey::new("k"))
            .await
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (gate, secret, stop) = (gate.clone(), key.secret.clone(), stop.clone());
            readers.spawn(async move {
                let mut reads = 0;
                while !stop.load(Ordering::SeqCst) && reads < 10_000 {
                    let _ = gate.authenticate(secret.expose()).await;
                    reads += 1;
                    tokio::task::yield_now().await;
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        match round % 4 {
            0 => {
                let off = ApiKeyUpdate {
                    active: Some(false),
                    ..Default::default()
                };
                gate.update_api_key(&key.key.id, off).await.unwrap();
            }
            1 => drop(
                gate.rotate_api_key(&key.key.id, Duration::ZERO)
                    .await
                    .unwrap(),
            ),
            2 => drop(gate.delete_api_key(&key.key.id).await.unwrap()),
            _ => gate.revoke_user(&owner).await.unwrap(),
        }
        // From here on, no lookup may succeed, whatever the readers cached.
        for _ in 0..50 {
            assert!(
                matches!(
                    gate.authenticate(key.secret.expose()).await,
                    Err(Error::InvalidToken(_))
                ),
                "round {round}: a changed key was served"
            );
            tokio::task::yield_now().await;
        }
        stop.store(true, Ordering::SeqCst);
        while readers.join_next().await.is_some() {}
        assert!(common::refused(
            gate.authenticate(key.secret.expose()).await
        ));
    }
}
