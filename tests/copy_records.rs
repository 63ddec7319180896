//! `copy_records` moves every credential between stores (sled to PostgreSQL and
//! back) so that each keeps working exactly as before, without re-issuing any.

mod common;

use std::time::Duration;

use common::{girder_scopes, Users};
use scopegate::{
    store::{copy_records, Page, SledStore, TokenStore},
    ApiKeyUpdate, NewApiKey, NewToken, ScopeGate, TokenRequest, UserId,
};

/// What the source held, to check on the destination.
struct Issued {
    tokens: Vec<String>,
    revoked: String,
    key: String,
    old_key: String,
    inactive_key: scopegate::ApiKeyId,
    bob: UserId,
}

fn gate(store: impl TokenStore, users: &Users) -> ScopeGate {
    ScopeGate::builder(store, users.clone())
        .without_cache()
        .with_registry(girder_scopes())
        .build()
        .unwrap()
}

async fn populate(gate: &ScopeGate, bob: UserId) -> Issued {
    let scoped = NewApiKey::new("scoped").scope(["core.data.read"]);
    let key = gate.create_api_key(&bob, scoped).await.unwrap();
    let minted = gate
        .exchange_api_key(key.secret.expose(), TokenRequest::default())
        .await
        .unwrap();
    let rotated = gate
        .create_api_key(&bob, NewApiKey::new("rotated"))
        .await
        .unwrap();
    let new = gate
        .rotate_api_key(&rotated.key.id, Duration::from_secs(3600))
        .await
        .unwrap();
    let inactive = gate
        .create_api_key(&bob, NewApiKey::new("off"))
        .await
        .unwrap();
    let off = ApiKeyUpdate {
        active: Some(false),
        ..Default::default()
    };
    gate.update_api_key(&inactive.key.id, off).await.unwrap();
    let session = gate
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    let revoked = gate
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    gate.revoke_token(&revoked.token.id).await.unwrap();
    Issued {
        tokens: vec![
            minted.secret.expose().into(),
            session.secret.expose().into(),
        ],
        revoked: revoked.secret.expose().into(),
        key: new.secret.expose().into(),
        old_key: rotated.secret.expose().into(),
        inactive_key: inactive.key.id,
        bob,
    }
}

/// Every credential behaves on `to` as it did on `from`.
async fn assert_same_behaviour(from: &ScopeGate, to: &ScopeGate, issued: &Issued) {
    for secret in &issued.tokens {
        let (a, b) = (
            from.authenticate(secret).await.unwrap(),
            to.authenticate(secret).await.unwrap(),
        );
        assert_eq!(a.token(), b.token(), "token copied as stored");
    }
    assert!(common::refused(to.authenticate(&issued.revoked).await));
    for key in [&issued.key, &issued.old_key] {
        to.exchange_api_key(key, TokenRequest::default())
            .await
            .unwrap();
    }
    assert!(
        !to.api_key(&issued.inactive_key)
            .await
            .unwrap()
            .unwrap()
            .active
    );
    let page = Page::new(100, 0);
    let keys = |g: &ScopeGate| {
        let (g, bob) = (g.clone(), issued.bob.clone());
        async move { g.api_keys_of_user(&bob, page).await.unwrap() }
    };
    let (before, after) = (keys(from).await, keys(to).await);
    assert_eq!(before.len(), 3);
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.digest, b.digest);
        assert_eq!(
            a.retired.as_ref().map(|r| r.valid_until),
            b.retired.as_ref().map(|r| r.valid_until)
        );
        assert_eq!(a.expires, b.expires);
    }
}

#[tokio::test]
async fn a_copied_sled_store_accepts_every_credential_and_a_second_copy_skips_what_is_there() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let users = Users::default();
    let bob = users.add("bob", false);
    let (source, target) = (
        SledStore::open(a.path()).unwrap(),
        SledStore::open(b.path()).unwrap(),
    );
    let from = gate(source.clone(), &users);
    let issued = populate(&from, bob).await;
    let report = copy_records(&source, &target).await.unwrap();
    assert_eq!((report.api_keys, report.tokens), (3, 2));
    let to = gate(target.clone(), &users);
    assert_same_behaviour(&from, &to, &issued).await;
    let again = copy_records(&source, &target).await.unwrap();
    assert_eq!((again.api_keys, again.tokens), (0, 0));
    // The exchanges on `to` stamped last_use and minted tokens: those now differ.
    assert!(!again.differing.is_empty());
    assert!(again.already_present > 0);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_move_from_sled_to_postgres_and_back_without_reissuing() {
    let users = Users::default();
    let bob = users.add("bob", false);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sled = SledStore::open(a.path()).unwrap();
    let from = gate(sled.clone(), &users);
    let issued = populate(&from, bob).await;
    let pg = common::pg::open(&common::pg::schema_of(a.path())).await;
    let report = copy_records(&sled, &pg).await.unwrap();
    assert_eq!((report.api_keys, report.tokens), (3, 2));
    let on_pg = gate(pg.clone(), &users);
    assert_same_behaviour(&from, &on_pg, &issued).await;

    let back = SledStore::open(b.path()).unwrap();
    let report = copy_records(&pg, &back).await.unwrap();
    assert_eq!(report.api_keys, 3);
    let on_sled = gate(back, &users);
    assert_same_behaviour(&on_pg, &on_sled, &issued).await;
}
