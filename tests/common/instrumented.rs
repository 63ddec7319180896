//! A pass-through store around a real backend that counts the digest lookups reaching
//! it and can be told to fail, like a backend whose disk or network is gone, or whose
//! writes reach the disk and then report failure (a half-applied write).

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};

use chrono::{DateTime, Utc};
use scopegate::{
    async_trait,
    secret::SecretDigest,
    store::{KeyChange, KeyDisposal, Purged},
    ApiKey, ApiKeyId, Page, Scope, StoreError, StoreErrorKind, Token, TokenId, TokenStore, UserId,
};

#[derive(Clone, Default)]
pub struct Probe {
    reads: Arc<AtomicUsize>,
    purged: Arc<AtomicUsize>,
    touches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    failing_after_writes: Arc<AtomicBool>,
    panicking_after_writes: Arc<AtomicBool>,
}

impl Probe {
    /// Digest lookups (tokens and keys) so far.
    pub fn digest_reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Tokens purges have removed so far.
    pub fn purged_tokens(&self) -> usize {
        self.purged.load(Ordering::SeqCst)
    }

    /// `last_use` writes (tokens and keys) that have returned so far.
    pub fn touches(&self) -> usize {
        self.touches.load(Ordering::SeqCst)
    }

    /// From now on, every call fails (or succeeds again).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// From now on, every write is applied by the real store, then panics (a
    /// store bug): its caller never learns what happened.
    pub fn set_panicking_after_writes(&self, panicking: bool) {
        self.panicking_after_writes
            .store(panicking, Ordering::SeqCst);
    }

    /// From now on, every write is applied by the real store, then reported as failed.
    pub fn set_failing_after_writes(&self, failing: bool) {
        self.failing_after_writes.store(failing, Ordering::SeqCst);
    }
}

pub struct Instrumented<S> {
    inner: S,
    probe: Probe,
}

impl<S> Instrumented<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            probe: Probe::default(),
        }
    }

    pub fn probe(&self) -> Probe {
        self.probe.clone()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.probe.failing.load(Ordering::SeqCst) {
            Err(StoreError::from_kind(StoreErrorKind::Backend))
        } else {
            Ok(())
        }
    }

    /// The answer of a write the real store has applied.
    fn written<T>(&self, outcome: Result<T, StoreError>) -> Result<T, StoreError> {
        if self.probe.panicking_after_writes.load(Ordering::SeqCst) {
            panic!("the store panicked after its write");
        }
        if self.probe.failing_after_writes.load(Ordering::SeqCst) {
            Err(StoreError::from_kind(StoreErrorKind::Backend))
        } else {
            outcome
        }
    }
}

#[async_trait]
impl<S: TokenStore> TokenStore for Instrumented<S> {
    async fn insert_token(&self, token: &Token) -> Result<(), StoreError> {
        self.check()?;
        let outcome = self.inner.insert_token(token).await;
        self.written(outcome)
    }
    async fn mint_token(
        &self,
        token: &Token,
        key_digest: &SecretDigest,
        most: u64,
    ) -> Result<bool, StoreError> {
        self.check()?;
        let outcome = self.inner.mint_token(token, key_digest, most).await;
        self.written(outcome)
    }
    async fn token_by_digest(&self, digest: &SecretDigest) -> Result<Option<Token>, StoreError> {
        self.probe.reads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.token_by_digest(digest).await
    }
    async fn api_keys_after(
        &self,
        after: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<ApiKey>, StoreError> {
        self.check()?;
        self.inner.api_keys_after(after, limit).await
    }
    async fn tokens_after(
        &self,
        after: Option<&SecretDigest>,
        limit: usize,
    ) -> Result<Vec<Token>, StoreError> {
        self.check()?;
        self.inner.tokens_after(after, limit).await
    }
    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.check()?;
        self.inner.token_by_id(id).await
    }
    async fn tokens_of_user(&self, user: &UserId, page: Page) -> Result<Vec<Token>, StoreError> {
        self.check()?;
        self.inner.tokens_of_user(user, page).await
    }
    async fn add_token_scopes(
        &self,
        id: &TokenId,
        scopes: &[Scope],
    ) -> Result<Option<Token>, StoreError> {
        self.check()?;
        let outcome = self.inner.add_token_scopes(id, scopes).await;
        self.written(outcome)
    }
    async fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.check()?;
        let outcome = self.inner.delete_token(id).await;
        self.written(outcome)
    }
    async fn touch_token(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.check()?;
        let outcome = self.inner.touch_token(id, at).await;
        // Counted once the write returned, so a listing after it sees it.
        self.probe.touches.fetch_add(1, Ordering::SeqCst);
        self.written(outcome)
    }
    async fn touch_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.check()?;
        let outcome = self.inner.touch_api_key(id, at).await;
        // Counted once the write returned, so a listing after it sees it.
        self.probe.touches.fetch_add(1, Ordering::SeqCst);
        self.written(outcome)
    }
    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.check()?;
        let outcome = self.inner.insert_api_key(key).await;
        self.written(outcome)
    }
    async fn api_key_by_id(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.check()?;
        self.inner.api_key_by_id(id).await
    }
    async fn api_key_by_digest(&self, digest: &SecretDigest) -> Result<Option<ApiKey>, StoreError> {
        self.probe.reads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.api_key_by_digest(digest).await
    }
    async fn api_keys_of_user(&self, user: &UserId, page: Page) -> Result<Vec<ApiKey>, StoreError> {
        self.check()?;
        self.inner.api_keys_of_user(user, page).await
    }
    async fn modify_api_key(
        &self,
        id: &ApiKeyId,
        change: &KeyChange,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        self.check()?;
        let outcome = self.inner.modify_api_key(id, change).await;
        self.written(outcome)
    }
    async fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        self.check()?;
        let outcome = self.inner.delete_api_key(id).await;
        self.written(outcome)
    }
    async fn revoke_user(
        &self,
        user: &UserId,
        keys: KeyDisposal,
    ) -> Result<Vec<SecretDigest>, StoreError> {
        self.check()?;
        let outcome = self.inner.revoke_user(user, keys).await;
        self.written(outcome)
    }
    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError> {
        self.check()?;
        let outcome = self.inner.purge_expired(now, limit).await;
        if let Ok(purged) = &outcome {
            self.probe
                .purged
                .fetch_add(purged.tokens.len(), Ordering::SeqCst);
        }
        self.written(outcome)
    }
}
