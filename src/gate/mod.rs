//! [`ScopeGate`]: the lifecycle of tokens and API keys over a [`TokenStore`].

mod api_keys;
mod digest_memo;
mod last_use;
pub(crate) mod limits;
pub(crate) mod resolve;
mod tokens;

use std::{fmt, sync::Arc};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

pub use self::{api_keys::TokenRequest, tokens::NewToken};
use self::{
    digest_memo::DigestMemo,
    last_use::{LastUse, DEFAULT_LAST_USE_INTERVAL},
    limits::{MAX_LIFETIME, MIN_LIFETIME},
};
use crate::{
    clock::{Clock, TimeSource},
    config_error::ConfigError,
    credential::Credential,
    error::Error,
    ids::UserId,
    principal::Principal,
    scope::ScopeRegistry,
    secret::SecretCodec,
    store::{CacheConfig, CacheStats, CachingStore, StoreHealth, TokenStore},
    user::{DynUserLoader, LoadedUser, UserLoad, UserLoadFor, UserLoader},
};

/// Secrets whose digests are remembered (see [`DigestMemo`]): 64 bytes each, 4 MiB
/// allocated with the gate.
const MEMO_CAPACITY: usize = 65_536;

const DEFAULT_TOKEN_LIFETIME_DAYS: f64 = 1.0;

/// Issues, checks and revokes tokens and API keys.
///
/// Cheap to clone (one `Arc`); share one per app.
///
/// ```
/// use scopegate::{store::SledStore, AuthUser, BoxError, NewApiKey, ScopeGate,
///     ScopeRegistry, TokenRequest, UserId, UserLoader};
///
/// struct User { admin: bool }
/// impl AuthUser for User { fn is_admin(&self) -> bool { self.admin } }
///
/// struct Users;
/// impl UserLoader for Users {
///     type User = User;
///     async fn load_user(&self, id: &UserId) -> Result<Option<User>, BoxError> {
///         Ok((id.as_str() == "bob").then_some(User { admin: false }))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let mut scopes = ScopeRegistry::new();
/// scopes.register("core.data.read", "Read data", "Read your data.")?;
/// let gate = ScopeGate::builder(SledStore::open(dir.path())?, Users)
///     .with_registry(scopes)
///     .build()?;
///
/// let bob = UserId::from("bob");
/// let key = gate.create_api_key(&bob, NewApiKey::new("reports").scope(["core.data.read"])).await?;
/// let token = gate.exchange_api_key(key.secret.expose(), TokenRequest::default()).await?;
/// let principal = gate.authenticate(token.secret.expose()).await?;
/// assert_eq!(principal.user_id(), Some(&bob));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ScopeGate {
    shared: Arc<Shared>,
}

struct Shared {
    /// The cache when there is one, else the backend: every write and read.
    store: Arc<dyn TokenStore>,
    /// The same cache, for the request path's reads that need no await.
    cache: Option<CachingStore>,
    users: Arc<dyn DynUserLoader>,
    registry: Arc<ScopeRegistry>,
    codec: SecretCodec,
    clock: TimeSource,
    token_lifetime_days: f64,
    direct_api_keys: bool,
    keys_manage_keys: bool,
    #[cfg(feature = "router")] // the router's rotation route reads it
    rotated_secrets_for_admins: bool,
    max_tokens_per_key: u64,
    /// Wakes the gate's sweepers: a revocation left records to purge.
    purge_wanted: Arc<tokio::sync::Notify>,
    last_use: Option<LastUse>,
    memo: DigestMemo,
}

impl fmt::Debug for ScopeGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeGate")
            .field("codec", &self.shared.codec)
            .field("token_lifetime_days", &self.shared.token_lifetime_days)
            .field("direct_api_keys", &self.shared.direct_api_keys)
            .finish_non_exhaustive()
    }
}

impl ScopeGate {
    /// Tokens last one day unless configured: a token is a short-lived
    /// credential, and API keys mint new ones on demand.
    pub const DEFAULT_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(86_400);

    /// How many live tokens one API key may have unless configured
    /// ([`ScopeGateBuilder::with_max_tokens_per_key`]).
    pub const DEFAULT_MAX_TOKENS_PER_KEY: u64 = 100_000;

    /// How often a credential's `last_use` is written unless configured
    /// ([`ScopeGateBuilder::with_last_use_interval`]).
    pub const DEFAULT_LAST_USE_INTERVAL: std::time::Duration = DEFAULT_LAST_USE_INTERVAL;

    /// The shortest lifetime of any token or key: one second.
    pub const MIN_LIFETIME: std::time::Duration = MIN_LIFETIME;

    /// The longest lifetime of any token or key: 3650 days.
    pub const MAX_LIFETIME: std::time::Duration = MAX_LIFETIME;

    /// Starts configuring a gate over `store`, loading users with `users`. The
    /// gate caches lookups in front of the store unless built
    /// [`without_cache`](ScopeGateBuilder::without_cache).
    pub fn builder(store: impl TokenStore, users: impl UserLoader) -> ScopeGateBuilder {
        ScopeGateBuilder {
            store: Arc::new(store),
            users: Arc::new(users),
            cache: Some(CacheConfig::default()),
            registry: ScopeRegistry::new(),
            prefix: None,
            pepper: None,
            token_lifetime_days: DEFAULT_TOKEN_LIFETIME_DAYS,
            clock: TimeSource::System,
            direct_api_keys: false,
            keys_manage_keys: false,
            rotated_secrets_for_admins: false,
            max_tokens_per_key: ScopeGate::DEFAULT_MAX_TOKENS_PER_KEY,
            last_use_interval: Some(DEFAULT_LAST_USE_INTERVAL),
        }
    }

    /// Whether `principal` may change, deactivate, reactivate, rotate and delete
    /// API keys, and revoke tokens other than its own: the key routes ask this
    /// (and the owner-or-admin rule after it); an app's own routes should too.
    ///
    /// - A login session ([`Principal::is_login_session`]) may.
    /// - A token minted from an API key may not: a credential derived from a key
    ///   could otherwise take over the key it came from, and its owner's other
    ///   keys and sessions.
    /// - A full-access key sent directly may only if the gate was built
    ///   [`with_keys_managing_keys`](ScopeGateBuilder::with_keys_managing_keys),
    ///   and never with the secret its last rotation retired.
    pub fn may_manage_keys(&self, principal: &Principal) -> bool {
        match principal.credential() {
            Credential::Token(_) => principal.is_login_session(),
            Credential::ApiKey(_) => {
                self.shared.keys_manage_keys
                    && principal.is_full_session()
                    && !principal.is_retired_secret()
            }
        }
    }

    /// Tells the gate's sweepers that a revocation left records to purge.
    pub(crate) fn purge_soon(&self) {
        // A permit, kept if the sweeper is mid-pass: it passes once more after.
        self.shared.purge_wanted.notify_one();
    }

    /// What the gate's sweepers wait on besides their period.
    pub(crate) fn purge_wanted(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.shared.purge_wanted)
    }

    /// Whether an administrator rotating another user's key receives the new
    /// secret ([`ScopeGateBuilder::with_rotated_secrets_for_admins`]).
    #[cfg(feature = "router")] // used by the router
    pub(crate) fn rotated_secrets_for_admins(&self) -> bool {
        self.shared.rotated_secrets_for_admins
    }

    /// Whether `principal` may create API keys: a login session only. A key that
    /// created keys would let a leak outlive the leaked key's deletion.
    pub fn may_create_keys(&self, principal: &Principal) -> bool {
        principal.is_login_session()
    }

    /// The scopes this gate knows.
    pub fn registry(&self) -> &ScopeRegistry {
        &self.shared.registry
    }

    // Used by the HTTP parts only.
    #[cfg(feature = "axum")]
    pub(crate) fn shared_registry(&self) -> Arc<ScopeRegistry> {
        self.shared.registry.clone()
    }

    /// The store behind the gate, through its cache if it has one: a write
    /// made here drops what it revoked from the cache, as the gate's own do.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.shared.store
    }

    /// Whether token lookups are answered from memory: `false` without a cache,
    /// and while the store's invalidation feed is disconnected or behind by more
    /// than it vouches for (lookups then go to the store).
    pub fn is_serving_from_cache(&self) -> bool {
        self.shared
            .cache
            .as_ref()
            .is_some_and(CachingStore::is_serving_from_cache)
    }

    /// How full the cache is, after running its pending maintenance; `None`
    /// without a cache.
    pub async fn cache_stats(&self) -> Option<CacheStats> {
        match &self.shared.cache {
            Some(cache) => Some(cache.stats().await),
            None => None,
        }
    }

    /// Whether the store is serving. A failing store refuses every call (503) until
    /// it has recovered by itself; answer an app's `/health` from this. Asking gives
    /// a failing store a chance to recover.
    pub async fn health(&self) -> StoreHealth {
        self.shared.store.health().await
    }

    /// What kind of credential `secret` looks like, for the request's span.
    #[cfg(feature = "axum")] // used by the HTTP parts
    pub(crate) fn credential_kind(&self, secret: &[u8]) -> &'static str {
        use crate::secret::SecretKind;
        match self.shared.codec.claimed_kind_of(secret) {
            Some(SecretKind::ApiKey) => "api_key",
            Some(SecretKind::Token) => "token",
            None => "unrecognized",
        }
    }

    /// The default token lifetime.
    pub fn token_lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.shared.token_lifetime_days * 86_400.0)
    }

    /// Now, to the microsecond: every instant the gate stores has the precision of
    /// SQL timestamps, so a record reads back exactly as it was written.
    fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now().trunc_subsecs(6)
    }

    /// The active user `id`; `None` for unknown and inactive users alike.
    pub async fn load_active_user(&self, id: &UserId) -> Result<Option<LoadedUser>, Error> {
        self.load_active_user_telling(id).await.0
    }

    /// [`ScopeGate::load_active_user`], and whether the load awaited (the loader
    /// could not answer from memory): a credential read before it must then be
    /// judged again.
    pub(crate) async fn load_active_user_telling(
        &self,
        id: &UserId,
    ) -> (Result<Option<LoadedUser>, Error>, bool) {
        let (user, awaited) = match self
            .shared
            .users
            .load_active_now(UserLoadFor::User(id.clone()))
        {
            Ok(user) => (user, false),
            Err(wanted) => (self.user_load(wanted).await, true),
        };
        (user.map_err(Error::UserLoader), awaited)
    }

    /// The loader's erased load of the user `wanted`, not yet polled.
    pub(crate) fn user_load(&self, wanted: UserLoadFor) -> UserLoad {
        Arc::clone(&self.shared.users).load_active(wanted)
    }
}

/// Configures a [`ScopeGate`]; invalid settings fail at [`ScopeGateBuilder::build`].
#[must_use]
pub struct ScopeGateBuilder {
    store: Arc<dyn TokenStore>,
    users: Arc<dyn DynUserLoader>,
    cache: Option<CacheConfig>,
    registry: ScopeRegistry,
    prefix: Option<String>,
    pepper: Option<Vec<u8>>,
    token_lifetime_days: f64,
    clock: TimeSource,
    direct_api_keys: bool,
    keys_manage_keys: bool,
    rotated_secrets_for_admins: bool,
    max_tokens_per_key: u64,
    last_use_interval: Option<std::time::Duration>,
}

impl fmt::Debug for ScopeGateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pepper is a secret, and the clock says nothing useful.
        f.debug_struct("ScopeGateBuilder")
            .field("cache", &self.cache)
            .field("prefix", &self.prefix)
            .field("token_lifetime_days", &self.token_lifetime_days)
            .field("direct_api_keys", &self.direct_api_keys)
            .field("keys_manage_keys", &self.keys_manage_keys)
            .field(
                "rotated_secrets_for_admins",
                &self.rotated_secrets_for_admins,
            )
            .field("max_tokens_per_key", &self.max_tokens_per_key)
            .field("last_use_interval", &self.last_use_interval)
            .finish_non_exhaustive()
    }
}

impl ScopeGateBuilder {
    /// The scopes the app offers (default: only the built-ins).
    pub fn with_registry(mut self, registry: ScopeRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// The prefix of every secret (default `sg`): 1–16 lower-case ASCII letters or digits.
    pub fn with_token_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// A server-side pepper for digests (HMAC-SHA-256), at least 16 bytes.
    ///
    /// # Warning
    /// Changing or losing the pepper invalidates every stored key and token.
    pub fn with_pepper(mut self, pepper: impl Into<Vec<u8>>) -> Self {
        self.pepper = Some(pepper.into());
        self
    }

    /// Lifetime of tokens when nothing shorter is asked for, and the cap of
    /// exchanges from keys without a `token_duration`: from
    /// [`ScopeGate::MIN_LIFETIME`] to [`ScopeGate::MAX_LIFETIME`]
    /// (default [`ScopeGate::DEFAULT_TOKEN_LIFETIME`]).
    pub fn with_default_token_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.token_lifetime_days = limits::as_days(lifetime);
        self
    }

    /// Lets an API key authenticate requests as it is, as GitHub tokens and Stripe
    /// keys do: `Authorization: Bearer <key>` acts as the key's owner with the key's
    /// scopes (a full-access key: a full session), while the key is active,
    /// unexpired, and, after a rotation, within its old secret's grace. Off by
    /// default: a key is then refused with a message saying to exchange it at
    /// `POST /api_key/token`.
    ///
    /// A short-lived token limits what a leaked request log or proxy can replay;
    /// a key sent on every request is as exposed as its least careful client.
    /// Keys are cached and revoked exactly like tokens: deactivating, rotating
    /// (without grace) or deleting a key stops it at once, on every replica.
    pub fn with_direct_api_keys(mut self) -> Self {
        self.direct_api_keys = true;
        self
    }

    /// Lets a full-access API key sent directly change, rotate, deactivate and
    /// delete API keys and revoke tokens, as a login session can (off by default;
    /// see [`ScopeGate::may_manage_keys`]), for automation that rotates its own
    /// key. Even then a key never creates keys, and a key sent with the secret
    /// its last rotation retired manages nothing: whoever holds only the old
    /// secret cannot take the key over during its grace period. Tokens minted
    /// from a key never manage keys.
    pub fn with_keys_managing_keys(mut self) -> Self {
        self.keys_manage_keys = true;
        self
    }

    /// Lets an administrator who rotates another user's key through the router
    /// receive its new secret, and give the old one a grace period (off by
    /// default). Off, such a rotation answers without the secret and stops the
    /// old one at once: an administrator can kill a leaked secret, but cannot
    /// quietly hold a working copy of someone else's key while the owner's old
    /// secret keeps working. The owner then rotates the key to use it again.
    pub fn with_rotated_secrets_for_admins(mut self) -> Self {
        self.rotated_secrets_for_admins = true;
        self
    }

    /// The most live tokens one API key may have (default
    /// [`ScopeGate::DEFAULT_MAX_TOKENS_PER_KEY`]): an exchange past it is refused with
    /// [`Error::TooManyTokens`] (429 through the router) until tokens are
    /// revoked, or expire and are purged (the [`Sweeper`](crate::Sweeper)).
    /// It bounds what the holder of one key can make the store keep, and so
    /// what revoking that key leaves to purge.
    pub fn with_max_tokens_per_key(mut self, tokens: u64) -> Self {
        self.max_tokens_per_key = tokens;
        self
    }

    /// How often a credential's `last_use` is written: at most once per
    /// `interval` per credential and process, in the background, never once per
    /// request (default [`ScopeGate::DEFAULT_LAST_USE_INTERVAL`]; at least one second, at
    /// most [`MAX_CACHE_LIFETIME`](crate::store::MAX_CACHE_LIFETIME)).
    /// Listings show it, so it may lag by up to `interval`.
    pub fn with_last_use_interval(mut self, interval: std::time::Duration) -> Self {
        self.last_use_interval = Some(interval);
        self
    }

    /// Never writes `last_use` on authentication (exchanging a key still stamps
    /// the key's).
    pub fn without_last_use(mut self) -> Self {
        self.last_use_interval = None;
        self
    }

    /// Where "now" comes from (default: the system clock). For tests of expiry.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = TimeSource::App(Arc::new(clock));
        self
    }

    /// Sizes and lifetimes of the cache in front of the store (default
    /// [`CacheConfig::default`]).
    pub fn with_cache(mut self, config: CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Reads every token from the store itself, with no cache in front.
    /// Revocation is immediate either way; this only costs speed.
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// Checks the settings and builds the gate.
    ///
    /// A store shared with other processes (one with an
    /// [`invalidation_feed`](TokenStore::invalidation_feed)) has its cache
    /// subscribe to it: build within a Tokio runtime then.
    pub fn build(self) -> Result<ScopeGate, ConfigError> {
        let mut codec = match &self.prefix {
            Some(prefix) => SecretCodec::new(prefix)?,
            None => SecretCodec::default(),
        };
        if let Some(pepper) = self.pepper {
            codec = codec.with_pepper(pepper)?;
        }
        if limits::days(self.token_lifetime_days).is_none() {
            return Err(ConfigError::InvalidLifetime);
        }
        if self
            .last_use_interval
            .is_some_and(|interval| interval > crate::store::MAX_CACHE_LIFETIME)
        {
            return Err(ConfigError::InvalidCacheLifetime);
        }
        let cache = self
            .cache
            .map(|config| CachingStore::with_config(self.store.clone(), config))
            .transpose()?;
        let store: Arc<dyn TokenStore> = match &cache {
            Some(cache) => Arc::new(cache.clone()),
            None => self.store,
        };
        Ok(ScopeGate {
            shared: Arc::new(Shared {
                store,
                cache,
                users: self.users,
                registry: Arc::new(self.registry),
                codec,
                clock: self.clock,
                token_lifetime_days: self.token_lifetime_days,
                direct_api_keys: self.direct_api_keys,
                keys_manage_keys: self.keys_manage_keys,
                #[cfg(feature = "router")]
                rotated_secrets_for_admins: self.rotated_secrets_for_admins,
                max_tokens_per_key: self.max_tokens_per_key,
                purge_wanted: Arc::default(),
                last_use: self.last_use_interval.map(LastUse::new),
                memo: DigestMemo::new(MEMO_CAPACITY),
            }),
        })
    }
}

/// `days` as a time span, to the millisecond.
fn span(days: f64) -> TimeDelta {
    TimeDelta::milliseconds((days * 86_400_000.0).round() as i64)
}
