//! How the cache settles a revoking write: it forgets what the write revoked and
//! nothing else, and a write abandoned midway (a store that panics) leaves the
//! cache asking the store for every lookup, failing closed, and says so.

mod common;

use common::{captured::Captured, instrumented::instrumented, parking::parking, refused, Users};
use scopegate::{store::SledStore, NewToken, ScopeGate};

/// A revocation through the cache, and through sled's in-process feed, makes
/// only its own token stale: another cached token is still served from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_forgets_only_what_it_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (parking, parks) = parking(SledStore::open(dir.path()).unwrap());
    let users = Users::default();
    let bob = users.add("bob", false);
    let gate = ScopeGate::builder(parking, users)
        .without_last_use()
        .build()
        .unwrap();
    let revoked = gate
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    let kept = gate.create_token(NewToken::for_user(bob)).await.unwrap();
    for token in [&revoked, &kept] {
        for _ in 0..2 {
            gate.authenticate(token.secret.expose()).await.unwrap();
        }
    }
    gate.revoke_token(&revoked.token.id).await.unwrap();
    assert!(refused(gate.authenticate(revoked.secret.expose()).await));
    let calls = parks.calls();
    gate.authenticate(kept.secret.expose()).await.unwrap();
    assert_eq!(parks.calls(), calls, "the other token was forgotten too");
}

/// The store applies the revocation, then panics: nothing will settle the
/// cache, so the cache stops serving from memory for good, and logs why.
#[tokio::test(flavor = "current_thread")]
async fn a_revoking_write_abandoned_midway_leaves_the_cache_asking_the_store() {
    // The runtime has one thread: the spawned revocation logs through this too.
    let (log, _guard) = Captured::start();

    let dir = tempfile::tempdir().unwrap();
    // The probe can make the store panic after applying a write.
    let (store, probe) = instrumented(SledStore::open(dir.path()).unwrap());
    let users = Users::default();
    let bob = users.add("bob", false);
    let gate = ScopeGate::builder(store, users)
        .without_last_use()
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(
            gate.create_token(NewToken::for_user(bob.clone()))
                .await
                .unwrap(),
        );
    }
    for token in &tokens {
        gate.authenticate(token.secret.expose()).await.unwrap();
    }
    // A revocation that settles logs nothing about being abandoned.
    gate.revoke_token(&tokens[2].token.id).await.unwrap();
    assert!(!log.text().contains("abandoned"), "{}", log.text());

    probe.set_panicking_after_writes(true);
    let revoking = {
        let (gate, id) = (gate.clone(), tokens[0].token.id.clone());
        tokio::spawn(async move { gate.revoke_token(&id).await })
    };
    assert!(revoking.await.unwrap_err().is_panic());
    probe.set_panicking_after_writes(false);
    assert!(log.text().contains("abandoned"), "{}", log.text());

    assert!(refused(gate.authenticate(tokens[0].secret.expose()).await));
    let reads = probe.digest_reads();
    gate.authenticate(tokens[1].secret.expose()).await.unwrap();
    gate.authenticate(tokens[1].secret.expose()).await.unwrap();
    assert_eq!(
        probe.digest_reads(),
        reads + 2,
        "served from memory after an abandoned write"
    );
}
