//! The gate's cache: moka in front of any [`TokenStore`], with a lock-free hot
//! table for the tokens requests present most.

mod epochs;
mod feed;
mod hot;
mod serving;
mod tags;
mod writes;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use moka::Expiry;

pub(crate) use self::tags::{touched_by_key_change, touched_token};
use self::{
    epochs::{Epoch, RevocationEpochs, Stripes},
    hot::HotTokens,
    serving::Serving,
    writes::Effect,
};
pub use self::{
    feed::{InvalidationFeed, InvalidationSink},
    tags::{api_key_tag, user_tag},
};
use super::{KeyDisposal, Page, Purged, StoreError, StoreHealth, TokenStore};
use crate::{
    api_key::{ApiKey, KeyChange},
    config_error::ConfigError,
    fast_hash::UniformKeys,
    ids::{ApiKeyId, TokenId, UserId},
    scope::Scope,
    secret::SecretDigest,
    token::Token,
};

/// The longest a cache keeps anything (100 years): TTLs and intervals above it
/// are refused when a gate is built ([`ConfigError::InvalidCacheLifetime`]). moka refuses
/// lifetimes of a thousand years or more.
pub const MAX_CACHE_LIFETIME: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Sizes and lifetimes of the cache of tokens and API keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    max_capacity: u64,
    max_unknown: u64,
    ttl: Duration,
    negative_ttl: Duration,
}

impl Default for CacheConfig {
    /// 100 000 tokens and as many API keys, each for at most 5 minutes; 10 000
    /// unknown digests, each for 5 seconds.
    fn default() -> Self {
        Self {
            max_capacity: 100_000,
            max_unknown: 10_000,
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(5),
        }
    }
}

impl CacheConfig {
    /// How many live tokens to keep, and how many API keys.
    #[must_use]
    pub fn with_max_capacity(mut self, entries: u64) -> Self {
        self.max_capacity = entries;
        self
    }

    /// How many unknown digests to remember. They have a cache of their own, so a
    /// flood of made-up tokens never pushes live tokens out.
    #[must_use]
    pub fn with_max_unknown(mut self, entries: u64) -> Self {
        self.max_unknown = entries;
        self
    }

    /// The longest a token or key stays cached (never past its own expiry), at
    /// most [`MAX_CACHE_LIFETIME`]. Bounds how long another process's revocation
    /// can go unseen when the backend is shared.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long "no such token" is remembered, to spare the store repeated
    /// misses; at most [`MAX_CACHE_LIFETIME`].
    #[must_use]
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }
}

/// How full the cache is: moka's entry counts, which lag behind by the
/// maintenance moka has not run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Live tokens cached.
    pub tokens: u64,
    /// API keys cached (looked up by a secret, for direct authentication or an
    /// exchange).
    pub api_keys: u64,
    /// Unknown digests remembered.
    pub unknown: u64,
}

/// A cached token, with the revocation epoch read before it was loaded, the
/// stripes its revocations go through (its own, its key's and its owner's) and
/// when it was read.
#[derive(Clone)]
struct Cached {
    token: Arc<Token>,
    loaded_at: Epoch,
    stripes: Stripes,
    fetched: Instant,
}

impl Cached {
    fn new(token: Token, loaded_at: Epoch) -> Self {
        Self {
            stripes: Stripes::of_token(&token),
            token: Arc::new(token),
            loaded_at,
            fetched: Instant::now(),
        }
    }
}

/// A cached key, with the epochs of its [tags] read before the load it
/// came from. A key changes by id or by owner, never by the digest it was found
/// under, so its tags are what a revocation bumps.
#[derive(Clone)]
struct CachedKey {
    key: Arc<ApiKey>,
    tags: Stripes,
    loaded_at: Epoch,
}

/// When a cached record stops being worth keeping: its own expiry, if any.
trait Expiring {
    fn expires(&self) -> Option<DateTime<Utc>>;
}

impl Expiring for Cached {
    fn expires(&self) -> Option<DateTime<Utc>> {
        Some(self.token.expires)
    }
}

impl Expiring for CachedKey {
    fn expires(&self) -> Option<DateTime<Utc>> {
        self.key.expires
    }
}

/// Per-entry lifetime: a record until its own expiry, at most the TTL.
struct Lifetime(Duration);

impl Lifetime {
    fn of(&self, cached: &impl Expiring) -> Duration {
        cached.expires().map_or(self.0, |expires| {
            (expires - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.0)
        })
    }
}

impl<V: Expiring> Expiry<SecretDigest, V> for Lifetime {
    fn expire_after_create(
        &self,
        _: &SecretDigest,
        cached: &V,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.of(cached))
    }

    fn expire_after_update(
        &self,
        _: &SecretDigest,
        cached: &V,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.of(cached))
    }
}

/// Why a load put nothing in the cache.
#[derive(Debug)]
enum Miss {
    Unknown,
    Store(StoreError),
}

/// How often a lookup retries a load that raced a revocation before it asks the
/// store directly.
const RACED_LOADS: usize = 3;

/// Caches token and API-key lookups by digest in front of any store; every other
/// call passes through, and every write drops what it changed from the cache.
///
/// - Concurrent misses for one digest share one store read (moka's `try_get_with`).
/// - Tokens moka just answered for are also kept in a small fixed table that a
///   request reads without a lock, an allocation or an await
///   ([`CachingStore::hot_token`]); it obeys the same revocations and lifetimes.
/// - Unknown digests are remembered briefly in a cache of their own, with its own
///   capacity, so made-up tokens cannot evict live ones.
/// - A store error is never cached: the next request asks the store again.
/// - Revocation is immediate on this process. A lookup that raced a revocation
///   could put the old record back into the cache, so each entry carries the
///   revocation epoch read before its load, and an entry older than its digest's
///   latest revocation is thrown away. Epochs are a fixed array of counters, so
///   memory does not grow with the revocation rate.
/// - A revoking write that fails (it may have half-happened) empties the cache.
/// - A key is cached under the digest it was found by, and a token under its
///   own; both are also made stale by their key's and owner's
///   [tags](api_key_tag). Any change to a key, or the revocation of a user's
///   credentials, bumps them: a store revokes every token of a key or a user
///   with one small write, and the cache follows in one step.
/// - Revocations by other processes reach the cache through an
///   [`InvalidationFeed`] the store offers ([`TokenStore::invalidation_feed`]);
///   while the feed is disconnected, lookups bypass the cache. Without a feed,
///   only this process writes the store.
///
/// The gate makes one unless built [`without_cache`](crate::ScopeGateBuilder::without_cache).
pub(crate) struct CachingStore {
    /// Shared with a write that runs on after its caller was dropped (see `writes`).
    inner: Arc<dyn TokenStore>,
    shared: Arc<Shared>,
}

impl Clone for CachingStore {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            shared: Arc::clone(&self.shared),
        }
    }
}

/// What the cache shares with its invalidation feed.
struct Shared {
    /// Keyed by SHA-256 digests, so a cheap keyed hash spreads them, even the
    /// presented ones moka holds while their load is in flight (see `fast_hash`).
    tokens: moka::future::Cache<SecretDigest, Cached, UniformKeys>,
    keys: moka::future::Cache<SecretDigest, CachedKey, UniformKeys>,
    unknown: moka::sync::Cache<SecretDigest, ()>,
    /// Copies of tokens moka answered for, for the next request to read at once.
    hot: HotTokens,
    /// How long moka keeps an entry: the hot table keeps its copy no longer.
    lifetime: Lifetime,
    epochs: RevocationEpochs,
    serving: Serving,
}

impl Shared {
    /// Makes cached copies of `digests` (tokens, or keys' [tags](api_key_tag))
    /// stale at once; moka drops them lazily.
    fn forget(&self, digests: &[SecretDigest]) {
        for digest in digests {
            self.epochs.revoke(digest);
            self.hot.forget(digest);
        }
    }

    /// The cached token, unless a revocation of its digest came after its load
    /// or one is in flight; a fresh one is also put in the hot table.
    fn fresh(&self, digest: &SecretDigest, cached: Cached) -> Option<Arc<Token>> {
        // Asked before the epoch: see `serving` for why the order matters.
        if !self.serving.serves_memory() || !self.epochs.fresh(cached.loaded_at, cached.stripes) {
            return None;
        }
        self.hot.put(digest, &cached, self.lifetime.of(&cached));
        Some(cached.token)
    }

    /// The token in the hot table, when the cache may serve from memory.
    fn hot_token(&self, digest: &SecretDigest, now: Instant) -> Option<Arc<Token>> {
        // Asked before the epoch (in `get`): see `serving` for why the order matters.
        match self.serving.serves_memory_at(now) {
            true => self.hot.get(digest, &self.epochs, now),
            false => None,
        }
    }

    /// Makes every cached token and key stale.
    fn forget_all(&self) {
        self.epochs.revoke_all();
        self.hot.clear();
        self.tokens.invalidate_all();
        self.keys.invalidate_all();
    }
}

impl std::fmt::Debug for CachingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingStore")
            .field("cached_tokens", &self.shared.tokens.entry_count())
            .field("cached_api_keys", &self.shared.keys.entry_count())
            .field("unknown_digests", &self.shared.unknown.entry_count())
            .finish_non_exhaustive()
    }
}

impl CachingStore {
    /// Caches `inner` with `config`; a lifetime above [`MAX_CACHE_LIFETIME`] is
    /// refused. If `inner` is shared with other processes (it has an
    /// [`invalidation feed`](TokenStore::invalidation_feed)), the cache
    /// subscribes to it: call this within a Tokio runtime then.
    pub(crate) fn with_config(
        inner: Arc<dyn TokenStore>,
        config: CacheConfig,
    ) -> Result<Self, ConfigError> {
        if config.ttl.max(config.negative_ttl) > MAX_CACHE_LIFETIME {
            return Err(ConfigError::InvalidCacheLifetime);
        }
        let tokens = moka::future::Cache::builder()
            .max_capacity(config.max_capacity)
            .expire_after(Lifetime(config.ttl))
            .build_with_hasher(UniformKeys::new());
        let keys = moka::future::Cache::builder()
            .max_capacity(config.max_capacity)
            .expire_after(Lifetime(config.ttl))
            .build_with_hasher(UniformKeys::new());
        // Unknown digests come from whatever callers send: SipHash, as std keys it.
        let unknown = moka::sync::Cache::builder()
            .max_capacity(config.max_unknown)
            .time_to_live(config.negative_ttl)
            .build();
        let feed = inner.invalidation_feed();
        let cache = Self {
            inner,
            shared: Arc::new(Shared {
                tokens,
                keys,
                unknown,
                hot: HotTokens::for_capacity(config.max_capacity),
                lifetime: Lifetime(config.ttl),
                epochs: RevocationEpochs::default(),
                serving: Serving::without_feed(),
            }),
        };
        Ok(match feed {
            Some(feed) => cache.subscribe(feed),
            None => cache,
        })
    }

    /// Subscribes the cache to revocations made by other processes sharing the
    /// backend. Until the feed reports itself connected, and whenever it loses its
    /// connection, lookups bypass the cache (and the cache is emptied), so a
    /// revocation it may have missed is never served from memory.
    fn subscribe(self, feed: Box<dyn InvalidationFeed>) -> Self {
        self.shared.serving.set_feed_connected(false);
        self.shared.forget_all();
        if !feed.needs_runtime() || tokio::runtime::Handle::try_current().is_ok() {
            feed.start(InvalidationSink::new(&self.shared));
        } else {
            // Without its feed the cache could serve what another process revoked:
            // it stays bypassed instead.
            tracing::error!(
                "gate built outside a Tokio runtime: its cache's invalidation feed \
                 cannot start, so every token lookup goes to the store"
            );
        }
        self
    }

    /// Whether lookups are served from memory: `false` while an invalidation feed
    /// is disconnected, or behind by more than it vouches for.
    pub(crate) fn is_serving_from_cache(&self) -> bool {
        self.shared.serving.feed_vouches_at(Instant::now())
    }

    /// How full the cache is, after running moka's pending maintenance.
    pub(crate) async fn stats(&self) -> CacheStats {
        self.shared.tokens.run_pending_tasks().await;
        self.shared.keys.run_pending_tasks().await;
        self.shared.unknown.run_pending_tasks();
        CacheStats {
            tokens: self.shared.tokens.entry_count(),
            api_keys: self.shared.keys.entry_count(),
            unknown: self.shared.unknown.entry_count(),
        }
    }

    /// The token whose secret has `digest`, shared: the cache hands out its own
    /// copy instead of cloning the record on every request.
    pub(crate) async fn shared_token(
        &self,
        digest: &SecretDigest,
    ) -> Result<Option<Arc<Token>>, StoreError> {
        // The hot table was asked already (`hot_token`, which callers try
        // first). Next a fresh moka entry answers before anything else is asked
        // (a digest in the cache is not in the cache of unknown ones).
        if let Some(token) = self
            .shared
            .tokens
            .get(digest)
            .await
            .and_then(|c| self.shared.fresh(digest, c))
        {
            return Ok(Some(token));
        }
        // Boxed apart, so the hit path's own future stays small: a large
        // allocation and copy per request cost more than this one per miss.
        Box::pin(self.look_up(
            digest,
            || self.cached_lookup(digest),
            || async { Ok(self.inner.token_by_digest(digest).await?.map(Arc::new)) },
        ))
        .await
    }

    /// The token whose secret has `digest`, if the hot table holds it: read
    /// without a lock, an allocation or an await. `None` means "ask
    /// [`shared_token`](Self::shared_token)", never "no such token". `now` is the
    /// monotonic time the caller has just read.
    pub(crate) fn hot_token(&self, digest: &SecretDigest, now: Instant) -> Option<Arc<Token>> {
        self.shared.hot_token(digest, now)
    }

    /// One lookup through the cache; `None` if the entry raced a revocation.
    async fn cached_lookup(
        &self,
        digest: &SecretDigest,
    ) -> Option<Result<Option<Arc<Token>>, StoreError>> {
        let shared = &self.shared;
        let before = shared.epochs.now();
        let load = async {
            match self.inner.token_by_digest(digest).await {
                Ok(Some(token)) => Ok(Cached::new(token, before)),
                Ok(None) => Err(Miss::Unknown),
                Err(err) => Err(Miss::Store(err)),
            }
        };
        match shared.tokens.try_get_with(*digest, load).await {
            Ok(cached) => match shared.fresh(digest, cached) {
                Some(token) => Some(Ok(Some(token))),
                None => {
                    shared.tokens.invalidate(digest).await;
                    None
                }
            },
            Err(miss) => self.missed(digest, &miss),
        }
    }

    /// A lookup by digest, tokens and keys alike: a digest known to be unknown
    /// answers `None`; while the feed is down the store answers; otherwise the
    /// cache does, through `cached`, retried while its loads race revocations.
    async fn look_up<T, C, D>(
        &self,
        digest: &SecretDigest,
        cached: impl Fn() -> C,
        direct: impl FnOnce() -> D,
    ) -> Result<Option<T>, StoreError>
    where
        C: std::future::Future<Output = Option<Result<Option<T>, StoreError>>>,
        D: std::future::Future<Output = Result<Option<T>, StoreError>>,
    {
        if self.shared.unknown.contains_key(digest) {
            return Ok(None);
        }
        for _ in 0..RACED_LOADS {
            if !self.shared.serving.serves_memory() {
                // The feed may have missed a revocation, or one of ours is
                // between its commit and its settling: only the store knows.
                return direct().await;
            }
            if let Some(found) = cached().await {
                return found;
            }
        }
        // Revocations keep racing this digest's loads: ask the store itself.
        direct().await
    }

    /// What a load that cached nothing answers; `None`: try again.
    fn missed<T>(
        &self,
        digest: &SecretDigest,
        miss: &Miss,
    ) -> Option<Result<Option<T>, StoreError>> {
        match miss {
            Miss::Unknown => {
                self.shared.unknown.insert(*digest, ());
                Some(Ok(None))
            }
            Miss::Store(err) => Some(Err(err.clone())),
        }
    }

    /// One key lookup through the cache; `None` if the entry raced a change.
    async fn cached_key_lookup(
        &self,
        digest: &SecretDigest,
    ) -> Option<Result<Option<ApiKey>, StoreError>> {
        let shared = &self.shared;
        let load = async {
            // The epoch is read before the store is: a change to the key or its
            // owner that the read missed ticks its tag's stripe after it.
            let loaded_at = shared.epochs.now();
            match self.inner.api_key_by_digest(digest).await {
                Ok(Some(key)) => Ok(CachedKey {
                    tags: Stripes::of(&[api_key_tag(&key.id), user_tag(&key.user_id)]),
                    key: Arc::new(key),
                    loaded_at,
                }),
                Ok(None) => Err(Miss::Unknown),
                Err(err) => Err(Miss::Store(err)),
            }
        };
        match shared.keys.try_get_with(*digest, load).await {
            // The serving state is asked before the epochs: see `serving`.
            Ok(cached)
                if shared.serving.serves_memory()
                    && shared.epochs.fresh(cached.loaded_at, cached.tags) =>
            {
                Some(Ok(Some(ApiKey::clone(&cached.key))))
            }
            Ok(_) => {
                shared.keys.invalidate(digest).await;
                None
            }
            Err(miss) => self.missed(digest, &miss),
        }
    }
}

#[async_trait]
impl TokenStore for CachingStore {
    async fn insert_token(&self, token: &Token) -> Result<(), StoreError> {
        let token = token.clone();
        let digest = token.digest;
        self.write(
            move |inner| Box::pin(async move { inner.insert_token(&token).await }),
            Effect::Adds(digest),
        )
        .await
    }

    async fn mint_token(
        &self,
        token: &Token,
        key_digest: &SecretDigest,
        max_tokens: u64,
    ) -> Result<bool, StoreError> {
        let (token, key_digest) = (token.clone(), *key_digest);
        let digest = token.digest;
        self.write(
            move |inner| {
                Box::pin(async move { inner.mint_token(&token, &key_digest, max_tokens).await })
            },
            Effect::Adds(digest),
        )
        .await
    }

    async fn token_by_digest(&self, digest: &SecretDigest) -> Result<Option<Token>, StoreError> {
        let shared = self.shared_token(digest).await?;
        Ok(shared.map(|token| Token::clone(&token)))
    }

    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.inner.token_by_id(id).await
    }

    async fn api_keys_after(
        &self,
        after: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.api_keys_after(after, limit).await
    }

    async fn tokens_after(
        &self,
        after: Option<&SecretDigest>,
        limit: usize,
    ) -> Result<Vec<Token>, StoreError> {
        self.inner.tokens_after(after, limit).await
    }

    async fn tokens_of_user(&self, user: &UserId, page: Page) -> Result<Vec<Token>, StoreError> {
        self.inner.tokens_of_user(user, page).await
    }

    async fn add_token_scopes(
        &self,
        id: &TokenId,
        scopes: &[Scope],
    ) -> Result<Option<Token>, StoreError> {
        let (id, scopes) = (id.clone(), scopes.to_vec());
        self.write(
            move |inner| Box::pin(async move { inner.add_token_scopes(&id, &scopes).await }),
            Effect::revokes(touched_token),
        )
        .await
    }

    async fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        let id = id.clone();
        self.write(
            move |inner| Box::pin(async move { inner.delete_token(&id).await }),
            Effect::revokes(touched_token),
        )
        .await
    }

    async fn touch_token(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        // Not a revocation: the cache keeps its copies (see the trait).
        self.inner.touch_token(id, at).await
    }

    async fn touch_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.touch_api_key(id, at).await
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let key = key.clone();
        let digest = key.digest;
        self.write(
            move |inner| Box::pin(async move { inner.insert_api_key(&key).await }),
            Effect::Adds(digest),
        )
        .await
    }

    async fn api_key_by_id(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.inner.api_key_by_id(id).await
    }

    async fn api_key_by_digest(&self, digest: &SecretDigest) -> Result<Option<ApiKey>, StoreError> {
        self.look_up(
            digest,
            || self.cached_key_lookup(digest),
            || self.inner.api_key_by_digest(digest),
        )
        .await
    }

    async fn api_keys_of_user(&self, user: &UserId, page: Page) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.api_keys_of_user(user, page).await
    }

    async fn modify_api_key(
        &self,
        id: &ApiKeyId,
        change: &KeyChange,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        if let KeyChange::Rotate { digest, .. } = change {
            // The new secret must not stay "unknown" once the rotation lands.
            self.shared.unknown.invalidate(digest);
        }
        let (id, change) = (id.clone(), change.clone());
        let changed = id.clone();
        self.write(
            move |inner| Box::pin(async move { inner.modify_api_key(&id, &change).await }),
            Effect::revokes(move |modified| touched_by_key_change(modified, &changed)),
        )
        .await
    }

    async fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        let (id, deleted) = (id.clone(), id.clone());
        self.write(
            move |inner| Box::pin(async move { inner.delete_api_key(&id).await }),
            Effect::revokes(move |removed| touched_by_key_change(removed, &deleted)),
        )
        .await
    }

    async fn revoke_user(
        &self,
        user: &UserId,
        keys: KeyDisposal,
    ) -> Result<Vec<SecretDigest>, StoreError> {
        let user = user.clone();
        let tag = user_tag(&user);
        self.write(
            move |inner| Box::pin(async move { inner.revoke_user(&user, keys).await }),
            Effect::revokes(move |revoked: &Vec<SecretDigest>| {
                revoked.iter().copied().chain([tag]).collect()
            }),
        )
        .await
    }

    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError> {
        // Tokens of an expired key may not have expired themselves: forget them for good.
        self.write(
            move |inner| Box::pin(async move { inner.purge_expired(now, limit).await }),
            Effect::revokes(|purged: &Purged| {
                let tags = purged.changed_keys.iter().map(api_key_tag);
                purged.tokens.iter().copied().chain(tags).collect()
            }),
        )
        .await
    }

    async fn health(&self) -> StoreHealth {
        self.inner.health().await
    }
}
