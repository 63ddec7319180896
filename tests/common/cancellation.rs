//! The cancellation harness: every revoking operation, its caller's future
//! dropped at each store call's park points in turn (see [`Parking`]), on a store
//! with and without the cache. After each drop, and after a retry, no credential
//! the real store no longer grants may authenticate, on any thread.
//!
//! `cancellation_tests!(Real)` expands to one test per operation and layering.

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use chrono::{TimeDelta, Utc};
use scopegate::{
    clock::ManualClock, store::TokenStore, ApiKeyUpdate, Error, IssuedApiKey, IssuedToken,
    NewApiKey, NewToken, ScopeGate, Secret, TokenRequest,
};
use tempfile::TempDir;

use super::{
    girder_scopes, key_and_token,
    parking::{parking_with, Feed, Parks, Run},
    Users,
};

/// A real backend the harness parks calls to.
pub trait Real: 'static {
    type Store: TokenStore + Clone;

    /// Opens the store whose data lives at `place`.
    fn open(place: PathBuf) -> impl Future<Output = Self::Store> + Send;
}

/// An operation that revokes (or cuts short) credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    RevokeToken,
    RevokeLogin,
    Deactivate,
    DeleteKey,
    RotateWithoutGrace,
    NarrowScope,
    CapExpiry,
    RevokeUser,
    AddScopes,
    // Writes that revoke nothing: a dropped one may lose its answer, never leave
    // memory disagreeing with the store.
    Exchange,
    CreateKey,
    RotateWithGrace,
}

/// What stands between the gate and the parked backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layering {
    /// Nothing: the gate reads the store.
    Uncached,
    /// A cache subscribed to the backend's invalidation feed.
    Cached,
    /// A cache that never hears of the backend's feed: it settles alone.
    CachedWithoutFeed,
}

/// One fresh store, gate and set of warm credentials.
pub struct Case {
    pub gate: ScopeGate,
    pub parks: Parks,
    clock: ManualClock,
    real: Arc<dyn TokenStore>,
    key: IssuedApiKey,
    minted: IssuedToken,
    login: IssuedToken,
    _dir: TempDir,
}

/// A credential and whether it is a key.
struct Credential<'a> {
    name: &'static str,
    secret: &'a Secret,
    digest: scopegate::secret::SecretDigest,
    key: bool,
}

impl Case {
    /// A store of `R` (behind a cache, as `layering` says), a user with a key, a token
    /// minted from it and a login token, each authenticated from several threads
    /// so every cache layer holds them.
    pub async fn new<R: Real>(layering: Layering) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let real = R::open(dir.path().to_owned()).await;
        let feed = match layering {
            Layering::CachedWithoutFeed => Feed::Hidden,
            Layering::Uncached | Layering::Cached => Feed::Inner,
        };
        let (parking, parks) = parking_with(real.clone(), feed);
        let users = Users::default();
        let clock = ManualClock::new(Utc::now());
        let builder = match layering {
            Layering::Uncached => ScopeGate::builder(parking, users.clone()).without_cache(),
            Layering::Cached => ScopeGate::builder(parking, users.clone()),
            Layering::CachedWithoutFeed => ScopeGate::builder(parking, users.clone()),
        };
        // Without last_use: its background writes would reach the park points.
        let gate = builder
            .with_registry(girder_scopes())
            .with_clock(clock.clone())
            .with_direct_api_keys()
            .without_last_use()
            .build()
            .unwrap();
        if layering != Layering::Uncached {
            super::wait_until_serving(&gate, Duration::from_secs(5)).await;
        }
        let bob = users.add("bob", false);
        let both = NewApiKey::new("k").scope(["core.data.read", "core.data.write"]);
        let (key, minted) = key_and_token(&gate, &bob, both).await;
        let login = gate.create_token(NewToken::for_user(bob)).await.unwrap();
        let case = Self {
            gate,
            parks,
            clock,
            real: Arc::new(real),
            key,
            minted,
            login,
            _dir: dir,
        };
        for credential in case.credentials() {
            for _ in 0..3 {
                let outcome = case.everywhere(credential.secret).await;
                assert!(outcome.iter().all(Result::is_ok), "{}", credential.name);
            }
        }
        case
    }

    fn credentials(&self) -> [Credential<'_>; 3] {
        [
            Credential {
                name: "token minted from the key",
                secret: &self.minted.secret,
                digest: self.minted.token.digest,
                key: false,
            },
            Credential {
                name: "login token",
                secret: &self.login.secret,
                digest: self.login.token.digest,
                key: false,
            },
            Credential {
                name: "key",
                secret: &self.key.secret,
                digest: self.key.key.digest,
                key: true,
            },
        ]
    }

    /// Authenticates `secret` here and on two spawned tasks (other threads of a
    /// multi-threaded runtime).
    /// The scopes each authentication held, sorted by name.
    async fn everywhere(&self, secret: &Secret) -> Vec<Result<Vec<String>, Error>> {
        let held = |principal: scopegate::Principal| {
            let mut names: Vec<String> = principal
                .scopes()
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect();
            names.sort();
            names
        };
        let spawned: Vec<_> = (0..2)
            .map(|_| {
                let (gate, secret) = (self.gate.clone(), secret.clone());
                tokio::spawn(async move { gate.authenticate(secret.expose()).await.map(held) })
            })
            .collect();
        let mut outcomes = vec![self.gate.authenticate(secret.expose()).await.map(held)];
        for task in spawned {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    }

    /// The scopes the real store grants `credential` now; `None` if it grants
    /// nothing.
    async fn store_grants(&self, credential: &Credential<'_>) -> Option<Vec<String>> {
        let now = self.clock.now();
        let names = |scopes: Vec<&scopegate::Scope>| {
            let mut names: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
            names.sort();
            names
        };
        if credential.key {
            let key = self.real.api_key_by_digest(&credential.digest).await;
            let key = key.expect("the real store answers").filter(|k| {
                k.active && !k.is_expired_at(now) && k.accepts(&credential.digest, now)
            })?;
            Some(names(key.token_scopes().iter().collect()))
        } else {
            let token = self.real.token_by_digest(&credential.digest).await;
            let token = token
                .expect("the real store answers")
                .filter(|t| !t.is_expired_at(now))?;
            Some(names(token.scopes.iter().collect()))
        }
    }

    /// Memory agrees with the store, on every thread: a credential the store no
    /// longer grants is refused, one it grants is accepted with the scopes it
    /// grants. Returns the names of those it grants.
    async fn assert_nothing_dropped_is_accepted(&self, when: &str) -> Vec<&'static str> {
        let mut granted = Vec::new();
        for credential in self.credentials() {
            let stored = self.store_grants(&credential).await;
            for outcome in self.everywhere(credential.secret).await {
                match (&stored, outcome) {
                    (None, Err(Error::InvalidToken(_))) => {}
                    (Some(scopes), Ok(held)) => assert_eq!(
                        &held, scopes,
                        "{when}: the {} holds other scopes than the store grants",
                        credential.name
                    ),
                    (None, outcome) => panic!(
                        "{when}: the store dropped the {}, yet it authenticated: {outcome:?}",
                        credential.name
                    ),
                    (Some(_), outcome) => panic!(
                        "{when}: the store grants the {}, yet it was refused: {outcome:?}",
                        credential.name
                    ),
                }
            }
            if stored.is_some() {
                granted.push(credential.name);
            }
        }
        granted
    }

    /// Runs `op` to its end.
    async fn run(&self, op: Op) -> Result<(), Error> {
        let gate = &self.gate;
        let key = &self.key.key.id;
        let update = |edit: fn(&mut ApiKeyUpdate)| {
            let mut update = ApiKeyUpdate::default();
            edit(&mut update);
            update
        };
        match op {
            Op::RevokeToken => gate.revoke_token(&self.minted.token.id).await.map(drop),
            Op::RevokeLogin => gate.revoke_token(&self.login.token.id).await.map(drop),
            Op::Deactivate => {
                let change = update(|u| u.active = Some(false));
                gate.update_api_key(key, change).await.map(drop)
            }
            Op::DeleteKey => gate.delete_api_key(key).await.map(drop),
            Op::RotateWithoutGrace => gate.rotate_api_key(key, Duration::ZERO).await.map(drop),
            Op::NarrowScope => {
                let change = update(|u| u.scope = Some(Some(vec!["core.data.read".into()])));
                gate.update_api_key(key, change).await.map(drop)
            }
            Op::CapExpiry => {
                let change = update(|u| u.expires_in_days = Some(Some(1.0 / 86_400.0)));
                gate.update_api_key(key, change).await.map(drop)
            }
            Op::RevokeUser => gate.revoke_user(&self.owner()).await.map(drop),
            Op::AddScopes => {
                let more = [scopegate::Scope::from_static("core.data.read")];
                gate.add_token_scopes(&self.login.token.id, &more)
                    .await
                    .map(drop)
            }
            Op::Exchange => gate
                .exchange_api_key(self.key.secret.expose(), TokenRequest::default())
                .await
                .map(drop),
            Op::CreateKey => gate
                .create_api_key(&self.owner(), NewApiKey::new("another"))
                .await
                .map(drop),
            Op::RotateWithGrace => gate
                .rotate_api_key(key, Duration::from_secs(3600))
                .await
                .map(drop),
        }
    }

    fn owner(&self) -> scopegate::UserId {
        self.login.token.user_id.clone().unwrap()
    }

    /// What `op` must have stopped once it has run to its end.
    fn stopped_by(op: Op) -> &'static [&'static str] {
        const MINTED: &str = "token minted from the key";
        match op {
            Op::RevokeToken | Op::NarrowScope => &[MINTED],
            Op::RevokeLogin => &["login token"],
            Op::Deactivate | Op::DeleteKey | Op::RotateWithoutGrace | Op::CapExpiry => {
                &[MINTED, "key"]
            }
            Op::RevokeUser => &[MINTED, "login token", "key"],
            Op::AddScopes | Op::Exchange | Op::CreateKey | Op::RotateWithGrace => &[],
        }
    }

    /// A cache whose write was cut off serves from memory again once the write
    /// is settled: a fresh token's second lookup reaches no store.
    async fn assert_the_cache_serves_again(&self, layering: Layering) {
        if layering == Layering::Uncached {
            return;
        }
        let owner = self.login.token.user_id.clone().unwrap();
        let fresh = self
            .gate
            .create_token(NewToken::for_user(owner))
            .await
            .unwrap();
        self.gate.authenticate(fresh.secret.expose()).await.unwrap();
        let calls = self.parks.calls();
        self.gate.authenticate(fresh.secret.expose()).await.unwrap();
        assert_eq!(
            self.parks.calls(),
            calls,
            "the cache stopped serving from memory"
        );
    }

    /// Lets a capped expiry pass, so it shows.
    fn after(&self, op: Op) {
        if op == Op::CapExpiry {
            self.clock.advance(TimeDelta::seconds(2));
        }
    }
}

/// Drops `op`'s caller at each park point in turn, each time on a fresh case:
/// after the drop, and after a retry to the end, nothing the store dropped is
/// accepted, and the retry leaves what `op` stops stopped. Returns the number of
/// points swept.
pub async fn sweep<R: Real>(layering: Layering, op: Op) -> usize {
    for point in 0..64 {
        let case = Case::new::<R>(layering).await;
        let parked = format!("{op:?} parked at point {point}");
        let while_parked = || async {
            case.assert_nothing_dropped_is_accepted(&parked).await;
        };
        let run = case.parks.drop_at(point, case.run(op), while_parked).await;
        case.after(op);
        let when = format!("{op:?} dropped at park point {point}");
        case.assert_nothing_dropped_is_accepted(&when).await;
        if let Run::Finished(outcome) = run {
            outcome.unwrap_or_else(|err| panic!("{op:?} undisturbed: {err:?}"));
            let granted = case.assert_nothing_dropped_is_accepted("after").await;
            let stopped = Case::stopped_by(op);
            assert!(
                granted.iter().all(|name| !stopped.contains(name)),
                "{op:?} ran to its end, yet the store still grants {granted:?}"
            );
            eprintln!("{op:?} ({layering:?}): dropped at each of {point} park points");
            return point;
        }
        // A retry, as a client whose request was cut off sends: whatever it
        // answers (done, not found, unchanged), what `op` stops is stopped.
        let retried = case.run(op).await;
        case.after(op);
        let when = format!("{op:?} retried after a drop at point {point} ({retried:?})");
        let granted = case.assert_nothing_dropped_is_accepted(&when).await;
        let stopped = Case::stopped_by(op);
        assert!(
            granted.iter().all(|name| !stopped.contains(name)),
            "{when}: the store still grants {granted:?}"
        );
        case.assert_the_cache_serves_again(layering).await;
    }
    panic!("{op:?} never finished within 64 park points");
}

/// Expands to the cancellation tests for the real backend `$real`, with and
/// without the cache.
#[macro_export]
macro_rules! cancellation_tests {
    ($real:ty) => {
        $crate::cancellation_tests!(@sweeps $real;
            a_token_revocation_holds_however_its_caller_is_dropped: RevokeToken,
            a_login_revocation_holds_however_its_caller_is_dropped: RevokeLogin,
            a_deactivation_holds_however_its_caller_is_dropped: Deactivate,
            a_key_deletion_holds_however_its_caller_is_dropped: DeleteKey,
            a_rotation_without_grace_holds_however_its_caller_is_dropped: RotateWithoutGrace,
            a_scope_narrowing_holds_however_its_caller_is_dropped: NarrowScope,
            an_expiry_cap_holds_however_its_caller_is_dropped: CapExpiry,
            a_user_revocation_holds_however_its_caller_is_dropped: RevokeUser,
            an_added_scope_holds_however_its_caller_is_dropped: AddScopes,
            an_exchange_leaves_nothing_half_done_however_its_caller_is_dropped: Exchange,
            a_key_creation_leaves_nothing_half_done_however_its_caller_is_dropped: CreateKey,
            a_rotation_with_grace_leaves_nothing_half_done_however_its_caller_is_dropped:
                RotateWithGrace
        );
    };
    (@sweeps $real:ty; $($name:ident: $op:ident),*) => {
        mod cancellation {
            $crate::cancellation_tests!(@layering $real, uncached, Uncached; $($name: $op),*);
            $crate::cancellation_tests!(@layering $real, cached, Cached; $($name: $op),*);
            $crate::cancellation_tests!(
                @layering $real, cached_without_feed, CachedWithoutFeed; $($name: $op),*
            );
        }
    };
    (@layering $real:ty, $module:ident, $layering:ident; $($name:ident: $op:ident),*) => {
        mod $module {
            use $crate::common::cancellation::{sweep, Layering, Op};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    assert!(sweep::<$real>(Layering::$layering, Op::$op).await > 0);
                }
            )*
        }
    };
}

/// The sled store, as the harness's real backend.
pub struct SledReal;

impl Real for SledReal {
    type Store = scopegate::store::SledStore;

    async fn open(place: PathBuf) -> Self::Store {
        scopegate::store::SledStore::open(place).unwrap()
    }
}
