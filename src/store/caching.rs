//! [`CachingStore`]: a moka cache of token lookups in front of any [`TokenStore`].

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use moka::Expiry;

use super::{KeyDisposal, Page, Purged, StoreError, TokenStore};
use crate::{secret::Digest, ApiKey, ApiKeyId, KeyChange, Scope, Token, TokenId, UserId};

/// Sizes and lifetimes of the token cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    max_capacity: u64,
    ttl: Duration,
    negative_ttl: Duration,
}

impl Default for CacheConfig {
    /// 100 000 tokens, each for at most 5 minutes; unknown digests for 5 seconds.
    fn default() -> Self {
        Self {
            max_capacity: 100_000,
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(5),
        }
    }
}

impl CacheConfig {
    /// How many token lookups to keep.
    #[must_use]
    pub fn with_max_capacity(mut self, entries: u64) -> Self {
        self.max_capacity = entries;
        self
    }

    /// The longest a token stays cached (never past its own expiry). Bounds how long
    /// another process's revocation can go unseen when the backend is shared.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long "no such token" is remembered, to spare the store repeated misses.
    #[must_use]
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }
}

/// Per-entry lifetime: a token until its own expiry (at most the TTL); a miss for
/// the negative TTL.
struct TokenLifetime(CacheConfig);

impl TokenLifetime {
    fn of(&self, value: &Option<Arc<Token>>) -> Duration {
        match value {
            None => self.0.negative_ttl,
            Some(token) => (token.expires - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.0.ttl),
        }
    }
}

impl Expiry<Digest, Option<Arc<Token>>> for TokenLifetime {
    fn expire_after_create(
        &self,
        _: &Digest,
        value: &Option<Arc<Token>>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.of(value))
    }

    fn expire_after_update(
        &self,
        _: &Digest,
        value: &Option<Arc<Token>>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.of(value))
    }
}

/// Caches token lookups by digest in front of any store; every other call passes
/// through, and every write drops what it changed from the cache.
///
/// - Concurrent misses for one digest share one store read (moka's `try_get_with`).
/// - A store error is never cached: the next request asks the store again.
/// - Revocation is immediate on this process. A lookup that raced a revocation could
///   put the old record back into the cache, so revoked digests are also remembered
///   (for twice the TTL) and checked after every lookup.
///
/// ```
/// # fn main() -> Result<(), scopegate::StoreError> {
/// use scopegate::{CacheConfig, CachingStore, SledStore};
/// let dir = tempfile::tempdir().unwrap();
/// let store = CachingStore::with_config(
///     SledStore::open(dir.path())?,
///     CacheConfig::default().with_ttl(std::time::Duration::from_secs(60)),
/// );
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct CachingStore<S> {
    inner: S,
    tokens: moka::future::Cache<Digest, Option<Arc<Token>>>,
    revoked: moka::sync::Cache<Digest, ()>,
}

impl<S> std::fmt::Debug for CachingStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingStore")
            .field("cached_tokens", &self.tokens.entry_count())
            .finish_non_exhaustive()
    }
}

impl<S: TokenStore> CachingStore<S> {
    /// Caches `inner` with the default [`CacheConfig`].
    pub fn new(inner: S) -> Self {
        Self::with_config(inner, CacheConfig::default())
    }

    /// Caches `inner` with `config`.
    pub fn with_config(inner: S, config: CacheConfig) -> Self {
        let tokens = moka::future::Cache::builder()
            .max_capacity(config.max_capacity)
            .expire_after(TokenLifetime(config))
            .build();
        // Unbounded by count on purpose: evicting a marker early would let a stale
        // entry through. Entries are 32-byte digests and leave after 2 × TTL + 1 s.
        let revoked = moka::sync::Cache::builder()
            .time_to_live(config.ttl * 2 + Duration::from_secs(1))
            .build();
        Self {
            inner,
            tokens,
            revoked,
        }
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the store.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Forgets tokens that no longer exist, for good.
    async fn forget(&self, digests: &[Digest]) {
        for digest in digests {
            self.revoked.insert(*digest, ());
            self.tokens.invalidate(digest).await;
        }
    }
}

#[async_trait]
impl<S: TokenStore> TokenStore for CachingStore<S> {
    async fn insert_token(&self, token: &Token) -> Result<(), StoreError> {
        self.inner.insert_token(token).await?;
        self.tokens.invalidate(&token.digest).await;
        Ok(())
    }

    async fn mint_token(&self, token: &Token, key_digest: &Digest) -> Result<bool, StoreError> {
        let minted = self.inner.mint_token(token, key_digest).await?;
        self.tokens.invalidate(&token.digest).await;
        Ok(minted)
    }

    async fn token_by_digest(&self, digest: &Digest) -> Result<Option<Token>, StoreError> {
        if self.revoked.contains_key(digest) {
            return Ok(None);
        }
        let load = async {
            let token = self.inner.token_by_digest(digest).await?;
            Ok::<_, StoreError>(token.map(Arc::new))
        };
        let cached = self
            .tokens
            .try_get_with(*digest, load)
            .await
            .map_err(|shared| StoreError::clone(&shared))?;
        // Checked again after the lookup: see the type's docs.
        if self.revoked.contains_key(digest) {
            return Ok(None);
        }
        Ok(cached.map(|token| Token::clone(&token)))
    }

    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.inner.token_by_id(id).await
    }

    async fn tokens_of_user(&self, user: &UserId, page: Page) -> Result<Vec<Token>, StoreError> {
        self.inner.tokens_of_user(user, page).await
    }

    async fn add_token_scopes(
        &self,
        id: &TokenId,
        scopes: &[Scope],
    ) -> Result<Option<Token>, StoreError> {
        let token = self.inner.add_token_scopes(id, scopes).await?;
        if let Some(token) = &token {
            self.tokens.invalidate(&token.digest).await;
        }
        Ok(token)
    }

    async fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        let token = self.inner.delete_token(id).await?;
        if let Some(token) = &token {
            self.forget(&[token.digest]).await;
        }
        Ok(token)
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.inner.insert_api_key(key).await
    }

    async fn api_key_by_id(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.inner.api_key_by_id(id).await
    }

    async fn api_key_by_digest(&self, digest: &Digest) -> Result<Option<ApiKey>, StoreError> {
        self.inner.api_key_by_digest(digest).await
    }

    async fn api_keys_of_user(&self, user: &UserId, page: Page) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.api_keys_of_user(user, page).await
    }

    async fn modify_api_key(
        &self,
        id: &ApiKeyId,
        change: &KeyChange,
    ) -> Result<Option<(ApiKey, Vec<Digest>)>, StoreError> {
        let modified = self.inner.modify_api_key(id, change).await?;
        if let Some((_, digests)) = &modified {
            self.forget(digests).await;
        }
        Ok(modified)
    }

    async fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<Digest>)>, StoreError> {
        let deleted = self.inner.delete_api_key(id).await?;
        if let Some((_, digests)) = &deleted {
            self.forget(digests).await;
        }
        Ok(deleted)
    }

    async fn revoke_user(
        &self,
        user: &UserId,
        keys: KeyDisposal,
    ) -> Result<Vec<Digest>, StoreError> {
        let digests = self.inner.revoke_user(user, keys).await?;
        self.forget(&digests).await;
        Ok(digests)
    }

    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError> {
        let purged = self.inner.purge_expired(now, limit).await?;
        // Tokens of an expired key may not have expired themselves: forget them for good.
        self.forget(&purged.tokens).await;
        Ok(purged)
    }
}
