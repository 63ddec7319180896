//! Shared test fixtures and the store conformance suite (`conformance_tests!`).
#![allow(dead_code, unreachable_pub)]

pub mod app;
pub mod instrumented;
pub mod suite;

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
};

use chrono::Utc;
use scopegate::{
    async_trait, AuthUser, BoxError, IssuedApiKey, ManualClock, NewApiKey, ScopeGate,
    ScopeRegistry, TokenStore, UserId, UserLoader,
};
use tempfile::TempDir;

pub use self::instrumented::Instrumented;

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

#[async_trait]
impl UserLoader for Users {
    type User = TestUser;

    async fn load_user(&self, id: &UserId) -> Result<Option<TestUser>, BoxError> {
        if *self.failing.lock().unwrap() {
            return Err("user database unreachable".into());
        }
        Ok(self.table.lock().unwrap().get(id).cloned())
    }
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

/// A gate over a real store in a temporary directory, with a manual clock and
/// a count of the digest lookups that reach the store.
pub struct Fixture<S: TokenStore> {
    pub gate: ScopeGate,
    pub users: Users,
    pub clock: ManualClock,
    pub probe: instrumented::Probe,
    open: fn(&Path) -> S,
    dir: TempDir,
}

impl<S: TokenStore> Fixture<S> {
    pub fn new(open: fn(&Path) -> S) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::default();
        let clock = ManualClock::new(Utc::now());
        Self::assemble(open, dir, users, clock)
    }

    fn assemble(open: fn(&Path) -> S, dir: TempDir, users: Users, clock: ManualClock) -> Self {
        let store = Instrumented::new(open(dir.path()));
        let probe = store.probe();
        let gate = ScopeGate::builder(store, users.clone())
            .with_registry(girder_scopes())
            .with_clock(clock.clone())
            .build()
            .unwrap();
        Self {
            gate,
            users,
            clock,
            probe,
            open,
            dir,
        }
    }

    /// Closes the database and opens it again from disk.
    pub fn reopen(self) -> Self {
        let Self {
            gate,
            users,
            clock,
            open,
            dir,
            ..
        } = self;
        drop(gate);
        Self::assemble(open, dir, users, clock)
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
