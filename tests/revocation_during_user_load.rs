//! A request is accepted only if no revocation of its credential was acknowledged
//! before the acceptance: a revocation that completes while the request's user
//! is still loading (a slow user database, an identity provider) stops it.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{girder_scopes, TestUser};
use scopegate::{
    ApiKeyUpdate, BoxError, CachingStore, Error, InvalidTokenReason, NewApiKey, NewToken,
    ScopeGate, SledStore, TokenStore, UserId, UserLoader,
};
use tokio::sync::Notify;

/// A user loader that, while held, parks every load until released.
#[derive(Clone, Default)]
struct HeldUsers {
    held: Arc<AtomicBool>,
    parked: Arc<Notify>,
    release: Arc<Notify>,
}

impl UserLoader for HeldUsers {
    type User = TestUser;

    async fn load_user(&self, _: &UserId) -> Result<Option<TestUser>, BoxError> {
        if self.held.load(Ordering::SeqCst) {
            let released = self.release.notified();
            self.parked.notify_one();
            released.await;
        }
        Ok(Some(TestUser {
            admin: false,
            active: true,
        }))
    }
}

fn gate(store: impl TokenStore, users: &HeldUsers) -> ScopeGate {
    ScopeGate::builder(store, users.clone())
        .with_registry(girder_scopes())
        .with_direct_api_keys()
        .build()
        .unwrap()
}

/// Authenticates `secret` with the loader held, runs `revoke` once the load is
/// parked, then releases the load: the answer.
async fn authenticate_across(
    gate: &ScopeGate,
    users: &HeldUsers,
    secret: &str,
    revoke: impl std::future::Future<Output = ()>,
) -> Result<scopegate::Principal, Error> {
    users.held.store(true, Ordering::SeqCst);
    let parked = users.parked.notified();
    let request = {
        let (gate, secret) = (gate.clone(), secret.to_owned());
        tokio::spawn(async move { gate.authenticate(&secret).await })
    };
    tokio::time::timeout(Duration::from_secs(5), parked)
        .await
        .expect("the user load parks");
    revoke.await;
    users.held.store(false, Ordering::SeqCst);
    users.release.notify_waiters();
    tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("the request finishes once its user loads")
        .unwrap()
}

async fn a_token_revoked_while_its_user_loads_is_refused(store: impl TokenStore) {
    let users = HeldUsers::default();
    let gate = gate(store, &users);
    let bob = UserId::from("bob");
    let token = gate.create_token(NewToken::for_user(bob)).await.unwrap();
    let secret = token.secret.expose();
    for _ in 0..3 {
        gate.authenticate(secret).await.unwrap();
    }
    let revoke = async {
        gate.revoke_token(&token.token.id).await.unwrap();
    };
    let outcome = authenticate_across(&gate, &users, secret, revoke).await;
    assert!(
        matches!(
            outcome,
            Err(Error::InvalidToken(InvalidTokenReason::Unknown))
        ),
        "accepted after its revocation was acknowledged: {outcome:?}"
    );
    // Untouched, the same path accepts.
    let other = gate
        .create_token(NewToken::for_user(UserId::from("bob")))
        .await
        .unwrap();
    let outcome = authenticate_across(&gate, &users, other.secret.expose(), async {}).await;
    assert!(outcome.is_ok(), "{outcome:?}");
}

async fn a_key_deactivated_while_its_owner_loads_is_refused(store: impl TokenStore) {
    let users = HeldUsers::default();
    let gate = gate(store, &users);
    let bob = UserId::from("bob");
    let key = gate
        .create_api_key(&bob, NewApiKey::new("k"))
        .await
        .unwrap();
    let secret = key.secret.expose();
    for _ in 0..3 {
        gate.authenticate(secret).await.unwrap();
    }
    let revoke = async {
        let off = ApiKeyUpdate {
            active: Some(false),
            ..ApiKeyUpdate::default()
        };
        gate.update_api_key(&key.key.id, off).await.unwrap();
    };
    let outcome = authenticate_across(&gate, &users, secret, revoke).await;
    assert!(
        matches!(
            outcome,
            Err(Error::InvalidToken(InvalidTokenReason::Unknown))
        ),
        "accepted after its deactivation was acknowledged: {outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_its_user_loads_is_refused_by_the_cached_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = CachingStore::new(SledStore::open(dir.path()).unwrap());
    a_token_revoked_while_its_user_loads_is_refused(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_its_user_loads_is_refused_by_the_plain_store() {
    let dir = tempfile::tempdir().unwrap();
    a_token_revoked_while_its_user_loads_is_refused(SledStore::open(dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deactivated_while_its_owner_loads_is_refused_by_the_cached_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = CachingStore::new(SledStore::open(dir.path()).unwrap());
    a_key_deactivated_while_its_owner_loads_is_refused(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deactivated_while_its_owner_loads_is_refused_by_the_plain_store() {
    let dir = tempfile::tempdir().unwrap();
    a_key_deactivated_while_its_owner_loads_is_refused(SledStore::open(dir.path()).unwrap()).await;
}
