//! A request is accepted only if no revocation of its credential was acknowledged
//! before the acceptance: a revocation that completes while the request's user
//! is still loading (a slow user database, an identity provider) stops it.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{girder_scopes, TestUser};
use scopegate::{
    store::{SledStore, TokenStore},
    ApiKeyUpdate, BoxError, Error, InvalidTokenReason, NewApiKey, NewToken, Scope, ScopeGate,
    UserId, UserLoader,
};
use tokio::sync::Notify;

/// A user loader that, while held, parks every load until released.
#[derive(Clone, Default)]
struct HeldUsers {
    held: Arc<AtomicBool>,
    parked: Arc<Notify>,
    release: Arc<Notify>,
    loads: Arc<AtomicUsize>,
}

impl UserLoader for HeldUsers {
    type User = TestUser;

    async fn load_user(&self, _: &UserId) -> Result<Option<TestUser>, BoxError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.held.load(Ordering::SeqCst) {
            let released = self.release.notified();
            // Not `notify_one`: with nobody waiting it would store a permit, and
            // the next test step would take this load's parking for its own.
            self.parked.notify_waiters();
            released.await;
        }
        Ok(Some(TestUser {
            admin: false,
            active: true,
        }))
    }
}

fn gate(store: impl TokenStore, users: &HeldUsers, cached: bool) -> ScopeGate {
    let builder = ScopeGate::builder(store, users.clone());
    let builder = if cached {
        builder
    } else {
        builder.without_cache()
    };
    builder
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

/// Authenticates `secret` with every user load held: once the first is parked,
/// runs `meanwhile`, then releases each load as it parks until the request
/// ends. The answer, and how many user loads it took.
async fn authenticate_held(
    gate: &ScopeGate,
    users: &HeldUsers,
    secret: &str,
    meanwhile: impl std::future::Future<Output = ()>,
) -> (Result<scopegate::Principal, Error>, usize) {
    users.held.store(true, Ordering::SeqCst);
    let before = users.loads.load(Ordering::SeqCst);
    let parked = users.parked.notified();
    let request = {
        let (gate, secret) = (gate.clone(), secret.to_owned());
        tokio::spawn(async move { gate.authenticate(&secret).await })
    };
    tokio::time::timeout(Duration::from_secs(5), parked)
        .await
        .expect("the user load parks");
    meanwhile.await;
    for _ in 0..5_000 {
        users.release.notify_waiters();
        if request.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    users.held.store(false, Ordering::SeqCst);
    let outcome = request.await.unwrap();
    (outcome, users.loads.load(Ordering::SeqCst) - before)
}

const DATA_READ: Scope = Scope::from_static("core.data.read");
const DATA_WRITE: Scope = Scope::from_static("core.data.write");

/// A token untouched while its user loads is accepted on that one load; one
/// whose scopes grew, or whose expiry was capped, meanwhile is judged again and
/// accepted as it is now.
async fn a_token_changed_while_its_user_loads_is_judged_again(
    store: impl TokenStore,
    cached: bool,
) {
    let users = HeldUsers::default();
    let gate = gate(store, &users, cached);
    let bob = UserId::from("bob");

    let untouched = gate
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    let (outcome, loads) =
        authenticate_held(&gate, &users, untouched.secret.expose(), async {}).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(loads, 1, "an untouched token is accepted on its first load");

    let reader = NewToken::for_user(bob.clone()).scopes([DATA_READ]);
    let grown = gate.create_token(reader).await.unwrap();
    let grow = async {
        gate.add_token_scopes(&grown.token.id, &[DATA_WRITE])
            .await
            .unwrap();
    };
    let (outcome, loads) = authenticate_held(&gate, &users, grown.secret.expose(), grow).await;
    let principal = outcome.unwrap();
    assert!(
        principal.has_scope(&[DATA_READ, DATA_WRITE]),
        "{principal:?}"
    );
    assert_eq!(loads, 2, "judged again once");

    let (key, minted) = common::key_and_token(&gate, &bob, NewApiKey::new("k")).await;
    let cap = async {
        let cap = ApiKeyUpdate {
            expires_in_days: Some(Some(0.5)),
            ..ApiKeyUpdate::default()
        };
        gate.update_api_key(&key.key.id, cap).await.unwrap();
    };
    let (outcome, loads) = authenticate_held(&gate, &users, minted.secret.expose(), cap).await;
    let principal = outcome.unwrap();
    let capped = gate.api_key(&key.key.id).await.unwrap().unwrap().expires;
    assert!(capped.is_some_and(|end| end < minted.token.expires));
    assert_eq!(
        principal.expires(),
        capped,
        "accepted with its capped expiry"
    );
    assert_eq!(loads, 2, "judged again once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_changed_while_its_user_loads_is_judged_again_by_the_cached_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    a_token_changed_while_its_user_loads_is_judged_again(store, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_changed_while_its_user_loads_is_judged_again_by_the_plain_store() {
    let dir = tempfile::tempdir().unwrap();
    a_token_changed_while_its_user_loads_is_judged_again(
        SledStore::open(dir.path()).unwrap(),
        false,
    )
    .await;
}

async fn a_token_revoked_while_its_user_loads_is_refused(store: impl TokenStore, cached: bool) {
    let users = HeldUsers::default();
    let gate = gate(store, &users, cached);
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

async fn a_key_deactivated_while_its_owner_loads_is_refused(store: impl TokenStore, cached: bool) {
    let users = HeldUsers::default();
    let gate = gate(store, &users, cached);
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
    let store = SledStore::open(dir.path()).unwrap();
    a_token_revoked_while_its_user_loads_is_refused(store, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_its_user_loads_is_refused_by_the_plain_store() {
    let dir = tempfile::tempdir().unwrap();
    a_token_revoked_while_its_user_loads_is_refused(SledStore::open(dir.path()).unwrap(), false)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deactivated_while_its_owner_loads_is_refused_by_the_cached_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    a_key_deactivated_while_its_owner_loads_is_refused(store, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deactivated_while_its_owner_loads_is_refused_by_the_plain_store() {
    let dir = tempfile::tempdir().unwrap();
    a_key_deactivated_while_its_owner_loads_is_refused(SledStore::open(dir.path()).unwrap(), false)
        .await;
}

/// A user loader that answers without an await, but takes its time doing so:
/// a blocking call inside its first poll, which the gate cannot tell from one
/// that answered from memory.
#[derive(Clone)]
struct BlockingUsers {
    held: Arc<AtomicBool>,
    entered: Arc<std::sync::Mutex<std::sync::mpsc::Sender<()>>>,
    release: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>,
}

impl UserLoader for BlockingUsers {
    type User = TestUser;

    async fn load_user(&self, _: &UserId) -> Result<Option<TestUser>, BoxError> {
        if self.held.load(Ordering::SeqCst) {
            let _ = self.entered.lock().unwrap().send(());
            // Blocks the poll itself: no await between the token's read and here.
            let _ = self
                .release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(5));
        }
        Ok(Some(TestUser {
            admin: false,
            active: true,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_a_loader_blocks_in_its_first_poll_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (entered, loading) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel();
    let users = BlockingUsers {
        held: Arc::default(),
        entered: Arc::new(std::sync::Mutex::new(entered)),
        release: Arc::new(std::sync::Mutex::new(released)),
    };
    let gate = ScopeGate::builder(SledStore::open(dir.path()).unwrap(), users.clone())
        .without_cache()
        .with_registry(girder_scopes())
        .build()
        .unwrap();
    let token = gate
        .create_token(NewToken::for_user(UserId::from("bob")))
        .await
        .unwrap();
    users.held.store(true, Ordering::SeqCst);
    let request = {
        let (gate, secret) = (gate.clone(), token.secret.expose().to_owned());
        tokio::spawn(async move { gate.authenticate(&secret).await })
    };
    tokio::task::spawn_blocking(move || loading.recv_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the user load starts");
    gate.revoke_token(&token.token.id).await.unwrap();
    release.send(()).unwrap();
    let outcome = request.await.unwrap();
    assert!(
        matches!(
            outcome,
            Err(Error::InvalidToken(InvalidTokenReason::Unknown))
        ),
        "accepted after its revocation was acknowledged: {outcome:?}"
    );
}
