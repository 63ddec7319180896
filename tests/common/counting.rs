//! A pass-through store that counts the digest lookups reaching the store it wraps.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use chrono::{DateTime, Utc};
use scopegate::{
    async_trait,
    store::{KeyDisposal, Purged},
    ApiKey, ApiKeyId, Digest, KeyChange, Page, Scope, StoreError, Token, TokenId, TokenStore,
    UserId,
};

#[derive(Clone, Default)]
pub struct Counts(Arc<AtomicUsize>);

impl Counts {
    /// Digest lookups (tokens and keys) so far.
    pub fn digest_reads(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct Counting<S> {
    inner: S,
    counts: Counts,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            counts: Counts::default(),
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts.clone()
    }
}

#[async_trait]
impl<S: TokenStore> TokenStore for Counting<S> {
    async fn insert_token(&self, token: &Token) -> Result<(), StoreError> {
        self.inner.insert_token(token).await
    }
    async fn mint_token(&self, token: &Token, key_digest: &Digest) -> Result<bool, StoreError> {
        self.inner.mint_token(token, key_digest).await
    }
    async fn token_by_digest(&self, digest: &Digest) -> Result<Option<Token>, StoreError> {
        self.counts.0.fetch_add(1, Ordering::SeqCst);
        self.inner.token_by_digest(digest).await
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
        self.inner.add_token_scopes(id, scopes).await
    }
    async fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.inner.delete_token(id).await
    }
    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.inner.insert_api_key(key).await
    }
    async fn api_key_by_id(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.inner.api_key_by_id(id).await
    }
    async fn api_key_by_digest(&self, digest: &Digest) -> Result<Option<ApiKey>, StoreError> {
        self.counts.0.fetch_add(1, Ordering::SeqCst);
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
        self.inner.modify_api_key(id, change).await
    }
    async fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<Digest>)>, StoreError> {
        self.inner.delete_api_key(id).await
    }
    async fn revoke_user(
        &self,
        user: &UserId,
        keys: KeyDisposal,
    ) -> Result<Vec<Digest>, StoreError> {
        self.inner.revoke_user(user, keys).await
    }
    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError> {
        self.inner.purge_expired(now, limit).await
    }
}
