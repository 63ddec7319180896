//! Persistence: the [`TokenStore`] trait for backends, the sled and PostgreSQL
//! backends, and the moka cache the gate puts in front of them.
//!
//! The trait is shaped for networked backends too (Redis, PostgreSQL): every method
//! is one atomic operation, and each write returns the digests it removed so a
//! cache in front can drop them.

mod caching;
mod copy;
mod error;
mod health;
mod intercept;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sled")]
mod sled;

/// The attribute [`TokenStore`] implementations carry: the trait is used as
/// `dyn TokenStore`, which native `async fn` in traits cannot be yet.
pub use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub(crate) use self::caching::CachingStore;
#[cfg(feature = "sled")]
use self::caching::{touched_by_key_change, touched_token};
#[cfg(feature = "postgres")]
pub use self::postgres::{PgConfig, PgInvalidationFeed, PgStore};
#[cfg(feature = "sled")]
pub use self::sled::{SledConfig, SledStore, DEFAULT_SLED_CACHE_BYTES};
pub use self::{
    caching::{
        api_key_tag, user_tag, CacheConfig, CacheStats, InvalidationFeed, InvalidationSink,
        MAX_CACHE_LIFETIME,
    },
    copy::{copy_records, CopyReport},
    error::{error_chain, StoreError, StoreErrorKind},
    health::StoreHealth,
    intercept::{Intercepted, Interceptor, StoreCall},
};
pub use crate::api_key::{KeyChange, RetiredSecret, TokenFate};
use crate::{
    api_key::ApiKey,
    ids::{ApiKeyId, TokenId, UserId},
    scope::Scope,
    secret::SecretDigest,
    token::Token,
};

/// The most records one listing returns.
pub const MAX_PAGE: usize = 1000;

/// A window into a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// How many records at most (clamped to 1..=[`MAX_PAGE`]).
    pub limit: usize,
    /// How many to skip.
    pub offset: usize,
}

impl Page {
    /// `limit` records after skipping `offset`.
    pub fn new(limit: usize, offset: usize) -> Self {
        Self {
            limit: limit.clamp(1, MAX_PAGE),
            offset,
        }
    }
}

impl Default for Page {
    /// The first 50.
    fn default() -> Self {
        Self::new(50, 0)
    }
}

/// What a key's owner does with their keys when all their credentials are revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDisposal {
    /// Keep the keys, inactive (a disabled user may come back).
    Deactivate,
    /// Delete the keys (a deleted user will not).
    Delete,
}

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// Digests of the tokens removed (expired ones, and those of expired keys).
    pub tokens: Vec<SecretDigest>,
    /// Expired keys removed.
    pub api_keys: usize,
    /// Keys removed, whose rotated-out secret was dropped, or whose passed
    /// expiry cap became a revocation: a cache holding them must forget them.
    pub changed_keys: Vec<ApiKeyId>,
    /// Expiry-index entries handled: purging stops after `limit` of them.
    pub examined: usize,
}

impl Purged {
    /// Adds what another purge removed: one report for several batches.
    pub(crate) fn add(&mut self, batch: Purged) {
        self.tokens.extend(batch.tokens);
        self.api_keys += batch.api_keys;
        self.changed_keys.extend(batch.changed_keys);
        self.examined += batch.examined;
    }
}

/// Durable storage of tokens and API keys.
///
/// Contract for implementors (the conformance suite in `tests/` checks it):
/// - every write is on stable storage before it returns, and a record changes
///   together with its indexes or not at all;
/// - after a failed write the store never serves state its disk does not hold
///   (it answers errors until it has reloaded from disk);
/// - reads return records as stored, expired or not: the gate judges expiry;
/// - a write that removes or shortens tokens returns their digests;
/// - every `.await` is a cancellation point: a write whose future is dropped at any
///   of them has happened entirely or not at all (the gate's cache settles it
///   either way).
///
/// What a backend must do is the required methods: records, atomic revocation.
/// Three abilities are optional, with defaults that say the store lacks them:
/// listing everything for a copy ([`api_keys_after`](TokenStore::api_keys_after),
/// [`tokens_after`](TokenStore::tokens_after)), an invalidation feed for stores
/// shared by several processes ([`invalidation_feed`](TokenStore::invalidation_feed)),
/// and a health report ([`health`](TokenStore::health)). Nothing here is for
/// the cache: the gate owns it ([`ScopeGateBuilder::with_cache`](crate::ScopeGateBuilder::with_cache)).
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Stores a token not minted from a key. A second token with the same id or
    /// digest is a [`StoreErrorKind::Conflict`].
    async fn insert_token(&self, token: &Token) -> Result<(), StoreError>;

    /// Stores a token minted from `token.api_key_id`, atomically with the checks
    /// that make it legitimate: the key exists, is active, has not expired at
    /// `token.created`, and accepts `key_digest`. Stamps the key's `last_use`.
    /// Returns `false`, storing nothing, if a check fails, so a concurrent
    /// deactivation, deletion or rotation can never leave a stray token behind.
    /// Fails with [`StoreErrorKind::TooManyTokens`], storing nothing, if the key
    /// has `max_tokens` live tokens already (revoked ones do not count; expired
    /// ones count until purged).
    async fn mint_token(
        &self,
        token: &Token,
        key_digest: &SecretDigest,
        max_tokens: u64,
    ) -> Result<bool, StoreError>;

    /// The token whose secret has `digest`.
    async fn token_by_digest(&self, digest: &SecretDigest) -> Result<Option<Token>, StoreError>;

    /// The token with `id`.
    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError>;

    /// A user's tokens, oldest first.
    async fn tokens_of_user(&self, user: &UserId, page: Page) -> Result<Vec<Token>, StoreError>;

    /// Adds `scopes` to a token; returns the updated token, or `None` if there is none.
    async fn add_token_scopes(
        &self,
        id: &TokenId,
        scopes: &[Scope],
    ) -> Result<Option<Token>, StoreError>;

    /// Deletes a token; returns it, or `None` if there was none.
    async fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError>;

    /// Records that the token with `id` authenticated a request at `at`: sets its
    /// `last_use`, unless that is already as late. A token that is gone stays gone.
    /// Not a revocation: caches keep their copies.
    async fn touch_token(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Stores a new key. A second key with the same id or digest is a conflict.
    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;

    /// The key with `id`.
    async fn api_key_by_id(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError>;

    /// The key whose current or retired secret has `digest`.
    async fn api_key_by_digest(&self, digest: &SecretDigest) -> Result<Option<ApiKey>, StoreError>;

    /// Records that the key with `id` authenticated a request at `at`, as
    /// [`TokenStore::touch_token`] does for tokens.
    async fn touch_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// A user's keys, oldest first.
    async fn api_keys_of_user(&self, user: &UserId, page: Page) -> Result<Vec<ApiKey>, StoreError>;

    /// Applies `change` to a key and does to the key's tokens what
    /// [`KeyChange::apply`] says (delete them, or cap their expiry), all in one atomic
    /// step. Returns the updated key and the digests of the tokens deleted or
    /// changed, or `None` if there is no such key.
    async fn modify_api_key(
        &self,
        id: &ApiKeyId,
        change: &KeyChange,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError>;

    /// Deletes a key and its tokens atomically; returns the key and the tokens'
    /// digests, or `None` if there was no such key.
    async fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError>;

    /// Deletes all of a user's tokens and deactivates or deletes their keys, atomically.
    /// Returns the removed tokens' digests.
    async fn revoke_user(
        &self,
        user: &UserId,
        keys: KeyDisposal,
    ) -> Result<Vec<SecretDigest>, StoreError>;

    /// Removes what expired at or before `now`: tokens, keys (with their tokens), and
    /// rotated-out secrets past their grace. Handles at most `limit` expiry entries;
    /// the work grows with what expired, not with what is stored.
    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError>;

    /// Optional: up to `limit` keys with ids above `after`, in byte order of their ids: every
    /// key, page by page, to copy a store ([`copy_records`]). The default says the
    /// store cannot list everything.
    async fn api_keys_after(
        &self,
        after: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let _ = (after, limit);
        Err(copy::unsupported())
    }

    /// Optional: up to `limit` tokens with digests above `after`, in byte order of their
    /// digests; see [`TokenStore::api_keys_after`].
    async fn tokens_after(
        &self,
        after: Option<&SecretDigest>,
        limit: usize,
    ) -> Result<Vec<Token>, StoreError> {
        let _ = (after, limit);
        Err(copy::unsupported())
    }

    /// Optional: revocations that other processes sharing this store make, for
    /// the gate's cache to subscribe to. `None` (the default): only this
    /// process writes the store, and the cache sees every revocation itself.
    fn invalidation_feed(&self) -> Option<Box<dyn InvalidationFeed>> {
        None
    }

    /// Optional: whether the store is serving; a failing store may use the call to try to
    /// recover. The default is always healthy.
    async fn health(&self) -> StoreHealth {
        StoreHealth::Healthy
    }
}
