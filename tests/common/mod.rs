//! Shared test fixtures and the store conformance suite (`conformance_tests!`).
#![allow(dead_code, unreachable_pub)]

pub mod app;
pub mod cancellation;
pub mod captured;
pub mod instrumented;
pub mod link;
pub mod parking;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod pg_server;
pub mod process;
pub mod suite;
pub mod suite_keys;
pub mod suite_revocations;

use std::{
    collections::HashMap,
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex},
};

use chrono::Utc;
use scopegate::{
    clock::ManualClock,
    store::{CacheConfig, SledStore, TokenStore},
    AuthUser, BoxError, IssuedApiKey, NewApiKey, ScopeGate, ScopeGateBuilder, ScopeRegistry,
    UserId, UserLoader,
};
use tempfile::TempDir;

/// The app's user, as a test app would define it.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub admin: bool,
    pub active: bool,
}

impl AuthUser for TestUser {
    fn is_admin(&self) -> bool {
        self.admin
    }

    fn is_active(&self) -> bool {
        self.active
    }
}

/// The app's user table, shared with the test so it can disable or delete users.
#[derive(Clone, Default)]
pub struct Users {
    table: Arc<Mutex<HashMap<UserId, TestUser>>>,
    failing: Arc<Mutex<bool>>,
}

impl Users {
    pub fn add(&self, id: &str, admin: bool) -> UserId {
        let id = UserId::from(id);
        let user = TestUser {
            admin,
            active: true,
        };
        self.table.lock().unwrap().insert(id.clone(), user);
        id
    }

    pub fn set_active(&self, id: &UserId, active: bool) {
        self.table.lock().unwrap().get_mut(id).unwrap().active = active;
    }

    pub fn remove(&self, id: &UserId) {
        self.table.lock().unwrap().remove(id);
    }

    /// Makes the loader fail, like an app whose user database is down.
    pub fn set_failing(&self, failing: bool) {
        *self.failing.lock().unwrap() = failing;
    }
}

impl UserLoader for Users {
    type User = TestUser;

    async fn load_user(&self, id: &UserId) -> Result<Option<TestUser>, BoxError> {
        self.lookup(id)
    }

    /// The table is in memory: the gate never needs to await it.
    fn load_user_now(&self, id: &UserId) -> Option<Result<Option<TestUser>, BoxError>> {
        Some(self.lookup(id))
    }
}

impl Users {
    fn lookup(&self, id: &UserId) -> Result<Option<TestUser>, BoxError> {
        if *self.failing.lock().unwrap() {
            return Err("user database unreachable".into());
        }
        Ok(self.table.lock().unwrap().get(id).cloned())
    }
}

/// Whether `err` is a store failure the caller sees as unavailable (503),
/// never access and never a refusal of the credential.
pub fn is_unavailable(err: &scopegate::Error) -> bool {
    matches!(err, scopegate::Error::Store(err) if err.kind() == scopegate::store::StoreErrorKind::Unavailable)
}

/// Asserts that `result` failed as [unavailable](is_unavailable).
pub fn assert_unavailable<T: std::fmt::Debug>(result: &Result<T, scopegate::Error>) {
    match result {
        Err(err) if is_unavailable(err) => {}
        other => panic!("expected an unavailable store, got {other:?}"),
    }
}

/// A test that cannot run here: fails under CI (which must run it), and otherwise
/// says so on the terminal. Straight to the process's stderr: the harness hides
/// what a passing test prints with `eprintln!`, so a local run would skip in
/// silence.
pub fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why}; CI must run it");
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {why} ***\n");
}

/// Whether an authentication was refused as an invalid token (401), not failed
/// for another reason: a store outage must not pass for a revocation.
pub fn refused(outcome: Result<scopegate::Principal, scopegate::Error>) -> bool {
    matches!(outcome, Err(scopegate::Error::InvalidToken(_)))
}

/// A key of `owner` made from `new`, and a token exchanged from it.
pub async fn key_and_token(
    gate: &ScopeGate,
    owner: &UserId,
    new: NewApiKey,
) -> (IssuedApiKey, scopegate::IssuedToken) {
    let key = gate.create_api_key(owner, new).await.unwrap();
    let token = gate
        .exchange_api_key(key.secret.expose(), scopegate::TokenRequest::default())
        .await
        .unwrap();
    (key, token)
}

/// Girder's scope catalogue, as the quickstart registers it.
pub fn girder_scopes() -> ScopeRegistry {
    let mut r = ScopeRegistry::new();
    r.register("core.user_info.read", "Read your user information", "")
        .unwrap();
    r.register("core.data.read", "Read data", "").unwrap();
    r.register("core.data.write", "Write data", "").unwrap();
    r.register("core.data.own", "Data ownership", "").unwrap();
    r.register_admin("core.setting.read", "Read settings", "")
        .unwrap();
    r.register_admin("core.plugins.read", "See installed plugins", "")
        .unwrap();
    r
}

/// A gate over a cache (`config`) over an instrumented sled store: its probe counts
/// the store reads the cache let through. `configure` adds gate settings.
pub fn cached_sled_gate(
    config: CacheConfig,
    configure: impl FnOnce(ScopeGateBuilder) -> ScopeGateBuilder,
) -> (ScopeGate, instrumented::Probe, Users, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (sled, probe) = instrumented::instrumented(SledStore::open(dir.path()).unwrap());
    let users = Users::default();
    let builder = ScopeGate::builder(sled, users.clone())
        .with_cache(config)
        .with_registry(girder_scopes());
    let gate = configure(builder).build().unwrap();
    (gate, probe, users, dir)
}

/// Waits until `gate`'s cache serves from memory (a shared store's invalidation
/// feed has connected), so tests exercise the cache; panics after `within`.
pub async fn wait_until_serving(gate: &ScopeGate, within: std::time::Duration) {
    let started = std::time::Instant::now();
    while !gate.is_serving_from_cache() {
        assert!(
            started.elapsed() < within,
            "the invalidation feed did not connect within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A store backend the conformance suite runs on. A fixture's data lives at a
/// place named by a temporary directory: the directory itself for sled, a schema
/// derived from its name for PostgreSQL.
pub trait Backend: 'static {
    type Store: TokenStore;

    /// Whether the gate puts its cache in front of the store.
    const CACHED: bool;

    /// Opens (or reopens) the store whose data lives at `place`.
    fn open(place: PathBuf) -> impl Future<Output = Self::Store> + Send;

    /// Every byte the backend holds for `place`, to search for plaintext secrets.
    fn stored_bytes(place: PathBuf) -> impl Future<Output = Vec<u8>> + Send {
        async move { suite::read_all(&place) }
    }
}

/// Opens the sled store at `place` again, waiting (bounded) while the store
/// just dropped there still holds its lock: sled releases it from its own
/// background threads, a moment after the last handle is dropped.
pub async fn reopen_sled(place: &Path) -> SledStore {
    for _ in 0..100 {
        match SledStore::open(place) {
            Ok(store) => return store,
            Err(err) if scopegate::store::error_chain(&err).contains("could not acquire lock") => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(err) => panic!("{err:?}"),
        }
    }
    panic!(
        "sled's lock on {} was not released within 2 s",
        place.display()
    );
}

/// The sled store.
pub struct SledBackend;

impl Backend for SledBackend {
    type Store = SledStore;
    const CACHED: bool = false;

    async fn open(place: PathBuf) -> SledStore {
        reopen_sled(&place).await
    }
}

/// The sled store behind the cache.
pub struct CachedSledBackend;

impl Backend for CachedSledBackend {
    type Store = SledStore;
    const CACHED: bool = true;

    async fn open(place: PathBuf) -> Self::Store {
        reopen_sled(&place).await
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A key update that only moves the key's expiry: `days` from now, or never.
pub fn expires_in_days(days: Option<f64>) -> scopegate::ApiKeyUpdate {
    scopegate::ApiKeyUpdate {
        expires_in_days: Some(days),
        ..scopegate::ApiKeyUpdate::default()
    }
}

/// A gate over a real store in a temporary place, with a manual clock and a count
/// of the digest lookups that reach the store. The conformance fixture
/// ([`Fixture::of`]) lets API keys authenticate directly; [`Fixture::new`]'s
/// gate does not unless asked ([`Fixture::with_direct_api_keys`]).
pub struct Fixture<S: TokenStore> {
    pub gate: ScopeGate,
    direct_api_keys: bool,
    pub users: Users,
    pub clock: ManualClock,
    pub probe: instrumented::Probe,
    cached: bool,
    open: Arc<dyn Fn(PathBuf) -> BoxFuture<S> + Send + Sync>,
    bytes: fn(PathBuf) -> BoxFuture<Vec<u8>>,
    dir: TempDir,
}

impl<S: TokenStore> Fixture<S> {
    /// A fixture over the store `open` opens in a temporary directory, with no
    /// cache in front.
    pub fn new(open: fn(&Path) -> S) -> Self {
        Self::with_options(open, (false, false), |gate| gate)
    }

    /// [`Fixture::new`] with the gate's cache in front of the store.
    pub fn cached(open: fn(&Path) -> S) -> Self {
        Self::with_options(open, (true, false), |gate| gate)
    }

    /// [`Fixture::cached`] with API keys accepted as credentials.
    pub fn cached_with_direct_api_keys(open: fn(&Path) -> S) -> Self {
        Self::with_options(open, (true, true), |gate| gate)
    }

    /// [`Fixture::cached`], API keys accepted as credentials, and the gate further
    /// configured by `configure` (lost by [`Fixture::reopen`]).
    pub fn cached_configured(
        open: fn(&Path) -> S,
        configure: impl FnOnce(ScopeGateBuilder) -> ScopeGateBuilder,
    ) -> Self {
        Self::with_options(open, (true, true), configure)
    }

    fn with_options(
        open: fn(&Path) -> S,
        (cached, direct_api_keys): (bool, bool),
        configure: impl FnOnce(ScopeGateBuilder) -> ScopeGateBuilder,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let open = Arc::new(move |place: PathBuf| {
            let store = open(&place);
            Box::pin(async move { store }) as BoxFuture<S>
        });
        let bytes =
            |place: PathBuf| Box::pin(async move { suite::read_all(&place) }) as BoxFuture<_>;
        Self::assemble(
            store,
            open,
            bytes,
            dir,
            (Users::default(), ManualClock::new(Utc::now())),
            (cached, direct_api_keys),
            configure,
        )
    }

    /// A fixture over a fresh store of backend `B`.
    pub async fn of<B: Backend<Store = S>>() -> Self {
        Self::of_configured::<B>(|gate| gate).await
    }

    /// [`Fixture::of`], the gate further configured by `configure` (lost by
    /// [`Fixture::reopen`]).
    pub async fn of_configured<B: Backend<Store = S>>(
        configure: impl FnOnce(ScopeGateBuilder) -> ScopeGateBuilder,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = B::open(dir.path().to_owned()).await;
        let open = Arc::new(|place: PathBuf| Box::pin(B::open(place)) as BoxFuture<S>);
        let bytes = |place: PathBuf| Box::pin(B::stored_bytes(place)) as BoxFuture<_>;
        Self::assemble(
            store,
            open,
            bytes,
            dir,
            (Users::default(), ManualClock::new(Utc::now())),
            (B::CACHED, true),
            configure,
        )
        .serving()
        .await
    }

    /// The fixture, once its gate's cache serves from memory: a shared store's
    /// feed has connected (bounded wait).
    async fn serving(self) -> Self {
        if self.cached {
            wait_until_serving(&self.gate, std::time::Duration::from_secs(2)).await;
        }
        self
    }

    fn assemble(
        store: S,
        open: Arc<dyn Fn(PathBuf) -> BoxFuture<S> + Send + Sync>,
        bytes: fn(PathBuf) -> BoxFuture<Vec<u8>>,
        dir: TempDir,
        (users, clock): (Users, ManualClock),
        (cached, direct_api_keys): (bool, bool),
        configure: impl FnOnce(ScopeGateBuilder) -> ScopeGateBuilder,
    ) -> Self {
        let (store, probe) = instrumented::instrumented(store);
        let mut gate = ScopeGate::builder(store, users.clone())
            .with_registry(girder_scopes())
            .with_clock(clock.clone());
        if !cached {
            gate = gate.without_cache();
        }
        if direct_api_keys {
            gate = gate.with_direct_api_keys();
        }
        let gate = configure(gate).build().unwrap();
        Self {
            gate,
            direct_api_keys,
            users,
            clock,
            probe,
            cached,
            open,
            bytes,
            dir,
        }
    }

    /// Closes the store and opens it again from what it stored.
    pub async fn reopen(self) -> Self {
        let Self {
            gate,
            users,
            clock,
            open,
            bytes,
            dir,
            direct_api_keys,
            cached,
            ..
        } = self;
        drop(gate);
        let store = open(dir.path().to_owned()).await;
        Self::assemble(
            store,
            open,
            bytes,
            dir,
            (users, clock),
            (cached, direct_api_keys),
            |gate| gate,
        )
        .serving()
        .await
    }

    /// Every byte the store holds.
    pub async fn stored_bytes(&self) -> Vec<u8> {
        (self.bytes)(self.dir.path().to_owned()).await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn user(&self, id: &str) -> UserId {
        self.users.add(id, false)
    }

    pub fn admin(&self, id: &str) -> UserId {
        self.users.add(id, true)
    }

    pub async fn key(&self, owner: &UserId, new: NewApiKey) -> IssuedApiKey {
        self.gate.create_api_key(owner, new).await.unwrap()
    }
}
