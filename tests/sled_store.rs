//! The conformance suite on the sled store, plus sled-specific guarantees.

mod common;

conformance_tests!(crate::common::SledBackend);

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use common::{girder_scopes, Users};
use scopegate::{
    store::{Page, SledStore},
    ApiKeyUpdate, Error, NewApiKey, ScopeGate, TokenRequest,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_minted_concurrently_with_deactivation_survives_it() {
    let dir = tempfile::tempdir().unwrap();
    let users = Users::default();
    let bob = users.add("bob", false);
    let gate = ScopeGate::builder(SledStore::open(dir.path()).unwrap(), users)
        .without_cache()
        .with_registry(girder_scopes())
        .build()
        .unwrap();
    for round in 0..5 {
        let key = gate
            .create_api_key(&bob, NewApiKey::new(format!("k{round}")))
            .await
            .unwrap();
        let secret = Arc::new(key.secret.clone());
        let started = Arc::new(AtomicUsize::new(0));
        let mut minters = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let (gate, secret, started) = (gate.clone(), secret.clone(), started.clone());
            minters.spawn(async move {
                let mut minted = Vec::new();
                // Until refused: every minter straddles the deactivation.
                for _ in 0..10_000 {
                    match gate
                        .exchange_api_key(secret.expose(), TokenRequest::default())
                        .await
                    {
                        Ok(token) => {
                            if minted.is_empty() {
                                started.fetch_add(1, Ordering::SeqCst);
                            }
                            minted.push(token);
                        }
                        Err(Error::InvalidGrant) => return minted,
                        Err(other) => panic!("{other:?}"),
                    }
                }
                panic!("a minter was never refused");
            });
        }
        for _ in 0..5_000 {
            if started.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(started.load(Ordering::SeqCst), 2, "both minters minted");
        let off = ApiKeyUpdate {
            active: Some(false),
            ..Default::default()
        };
        gate.update_api_key(&key.key.id, off).await.unwrap();
        let mut minted = Vec::new();
        while let Some(batch) = minters.join_next().await {
            minted.extend(batch.unwrap());
        }
        for token in &minted {
            assert!(
                common::refused(gate.authenticate(token.secret.expose()).await),
                "round {round}"
            );
        }
    }
    assert!(gate
        .tokens_of_user(&bob, Page::default())
        .await
        .unwrap()
        .is_empty());
}

/// The sled key of a token's record (`t` + digest: see `store/sled/layout.rs`).
fn record_key(token: &scopegate::Token) -> Vec<u8> {
    let mut key = vec![b't'];
    key.extend_from_slice(token.digest.as_bytes());
    key
}

/// Retries `open` while the database in `dir` is still locked: sled releases
/// its lock from its own background threads, a moment after the last handle
/// is dropped. Bounded: 2 s.
fn when_unlocked<T, E: std::fmt::Debug>(open: impl Fn() -> Result<T, E>) -> T {
    for _ in 0..100 {
        match open() {
            Ok(opened) => return opened,
            Err(err) if format!("{err:?}").contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(err) => panic!("{err:?}"),
        }
    }
    panic!("sled's lock was not released within 2 s");
}

/// Rewrites the stored record of `token` as the JSON of the versions before the
/// binary record format.
fn store_as_json(dir: &std::path::Path, token: &scopegate::Token) {
    let db = when_unlocked(|| sled::open(dir));
    let tree = db.open_tree("scopegate").unwrap();
    let old = tree
        .get(record_key(token))
        .unwrap()
        .expect("the token's record");
    assert_eq!(old[0], 0x02, "new records are binary, version 2");
    tree.insert(record_key(token), serde_json::to_vec(token).unwrap())
        .unwrap();
    db.flush().unwrap();
}

#[tokio::test]
async fn tokens_stored_as_json_by_an_older_version_still_authenticate_after_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let users = Users::default();
    let bob = users.add("bob", false);
    let open = |users: Users| {
        // No background `last_use` write racing the comparisons below.
        let store = when_unlocked(|| SledStore::open(dir.path()));
        ScopeGate::builder(store, users)
            .without_cache()
            .with_registry(girder_scopes())
            .without_last_use()
            .build()
            .unwrap()
    };
    let gate = open(users.clone());
    let issued = gate
        .create_token(scopegate::NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    drop(gate);
    store_as_json(dir.path(), &issued.token);

    let gate = open(users);
    let principal = gate.authenticate(issued.secret.expose()).await.unwrap();
    assert_eq!(principal.user_id(), Some(&bob));
    assert_eq!(
        gate.token(&issued.token.id).await.unwrap().as_ref(),
        Some(&issued.token)
    );
    let listed = gate.tokens_of_user(&bob, Page::default()).await.unwrap();
    assert_eq!(listed, vec![issued.token.clone()]);
    // A change rewrites the record in the current form, and it reads back.
    let read = scopegate::Scope::new("core.data.read").unwrap();
    let changed = gate
        .add_token_scopes(&issued.token.id, std::slice::from_ref(&read))
        .await
        .unwrap();
    assert!(changed.scopes.contains(&read));
    assert_eq!(gate.token(&issued.token.id).await.unwrap(), Some(changed));
    drop(gate);
    let db = when_unlocked(|| sled::open(dir.path()));
    let tree = db.open_tree("scopegate").unwrap();
    let record = tree.get(record_key(&issued.token)).unwrap().unwrap();
    assert_eq!(record[0], 0x02, "rewritten in the binary form");
}
