//! A pass-through store that, when armed, parks before and after each call to the
//! real backend until the test releases that point: so a test can drop the
//! caller's future at every await a store call puts in its way.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use scopegate::{
    async_trait,
    secret::SecretDigest,
    store::{InvalidationFeed, KeyChange, KeyDisposal, Purged},
    ApiKey, ApiKeyId, Page, Scope, StoreError, Token, TokenId, TokenStore, UserId,
};
use tokio::sync::watch;

/// The test's handle on the park points.
#[derive(Clone)]
pub struct Parks {
    armed: Arc<AtomicBool>,
    /// Park points reached since arming.
    reached: Arc<AtomicUsize>,
    /// Calls to the real backend under way (armed or not).
    in_call: Arc<AtomicUsize>,
    /// Calls to the real backend so far.
    calls: Arc<AtomicUsize>,
    /// Points with an index below this pass.
    released: watch::Sender<usize>,
}

impl Default for Parks {
    fn default() -> Self {
        Self {
            armed: Arc::default(),
            reached: Arc::default(),
            in_call: Arc::default(),
            calls: Arc::default(),
            released: watch::Sender::new(usize::MAX),
        }
    }
}

/// How a run of an operation under [`Parks::drop_at`] ended.
pub enum Run<T> {
    /// It finished before reaching the point.
    Finished(T),
    /// It was dropped while parked at the point.
    Dropped,
}

impl Parks {
    /// Runs `op`, letting its first `point` park points pass. Once it is parked
    /// at the next, runs `while_parked` (calls no longer park meanwhile), drops
    /// `op`, releases everything and waits until no call is under way in the
    /// real backend.
    pub async fn drop_at<T, C: Future<Output = ()>>(
        &self,
        point: usize,
        op: impl Future<Output = T>,
        while_parked: impl FnOnce() -> C,
    ) -> Run<T> {
        self.reached.store(0, Ordering::SeqCst);
        self.released.send_replace(point);
        self.armed.store(true, Ordering::SeqCst);
        let run = {
            let mut op = std::pin::pin!(op);
            let run = tokio::select! {
                biased;
                out = &mut op => Run::Finished(out),
                () = self.reached_beyond(point) => Run::Dropped,
            };
            self.armed.store(false, Ordering::SeqCst);
            if let Run::Dropped = run {
                while_parked().await;
            }
            run
        };
        self.released.send_replace(usize::MAX);
        self.wait_idle().await;
        run
    }

    /// Runs `op`, letting its first `point` park points pass; once it is parked
    /// at the next, runs `meanwhile` (calls no longer park), then lets `op` go on
    /// to its end: forces `meanwhile` between two steps of `op`.
    pub async fn pause_at<T, C: Future<Output = ()>>(
        &self,
        point: usize,
        op: impl Future<Output = T>,
        meanwhile: impl FnOnce() -> C,
    ) -> T {
        self.reached.store(0, Ordering::SeqCst);
        self.released.send_replace(point);
        self.armed.store(true, Ordering::SeqCst);
        let mut op = std::pin::pin!(op);
        tokio::select! {
            biased;
            _ = &mut op => panic!("the operation finished before park point {point}"),
            () = self.reached_beyond(point) => {}
        }
        self.armed.store(false, Ordering::SeqCst);
        meanwhile().await;
        self.released.send_replace(usize::MAX);
        op.await
    }

    async fn reached_beyond(&self, point: usize) {
        for _ in 0..10_000 {
            if self.reached.load(Ordering::SeqCst) > point {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("park point {point} was never reached, nor did the operation finish");
    }

    /// Calls to the real backend so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until no call is under way in the real backend.
    pub async fn wait_idle(&self) {
        for _ in 0..5_000 {
            if self.in_call.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("a store call stayed under way for 5 s after its release");
    }

    async fn park(&self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        let index = self.reached.fetch_add(1, Ordering::SeqCst);
        let mut released = self.released.subscribe();
        // The sender lives as long as `self`.
        let _ = released.wait_for(|below| index < *below).await;
    }

    /// Parks, calls the backend, parks again; counted as under way throughout.
    async fn around<T>(&self, call: impl Future<Output = T>) -> T {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.in_call.fetch_add(1, Ordering::SeqCst);
        let _done = Decrement(&self.in_call);
        self.park().await;
        let out = call.await;
        self.park().await;
        out
    }
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A real backend whose every call can be parked ([`Parks`]).
pub struct Parking<S> {
    inner: S,
    parks: Parks,
    feed: bool,
}

impl<S> Parking<S> {
    pub fn new(inner: S) -> (Self, Parks) {
        let parks = Parks::default();
        let store = Self {
            inner,
            parks: parks.clone(),
            feed: true,
        };
        (store, parks)
    }

    /// Hides the backend's invalidation feed, as a store without one would have:
    /// a cache in front then settles its own writes alone.
    pub fn without_feed(mut self) -> Self {
        self.feed = false;
        self
    }
}

#[async_trait]
impl<S: TokenStore> TokenStore for Parking<S> {
    async fn insert_token(&self, token: &Token) -> Result<(), StoreError> {
        self.parks.around(self.inner.insert_token(token)).await
    }
    async fn mint_token(
        &self,
        token: &Token,
        key_digest: &SecretDigest,
        most: u64,
    ) -> Result<bool, StoreError> {
        let call = self.inner.mint_token(token, key_digest, most);
        self.parks.around(call).await
    }
    async fn token_by_digest(&self, digest: &SecretDigest) -> Result<Option<Token>, StoreError> {
        self.parks.around(self.inner.token_by_digest(digest)).await
    }
    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.parks.around(self.inner.token_by_id(id)).await
    }
    async fn tokens_of_user(&self, user: &UserId, page: Page) -> Result<Vec<Token>, StoreError> {
        self.parks
            .around(self.inner.tokens_of_user(user, page))
            .await
    }
    async fn add_token_scopes(
        &self,
        id: &TokenId,
        scopes: &[Scope],
    ) -> Result<Option<Token>, StoreError> {
        let call = self.inner.add_token_scopes(id, scopes);
        self.parks.around(call).await
    }
    async fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.parks.around(self.inner.delete_token(id)).await
    }
    async fn touch_token(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.parks.around(self.inner.touch_token(id, at)).await
    }
    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.parks.around(self.inner.insert_api_key(key)).await
    }
    async fn api_key_by_id(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.parks.around(self.inner.api_key_by_id(id)).await
    }
    async fn api_key_by_digest(&self, digest: &SecretDigest) -> Result<Option<ApiKey>, StoreError> {
        self.parks
            .around(self.inner.api_key_by_digest(digest))
            .await
    }
    async fn touch_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.parks.around(self.inner.touch_api_key(id, at)).await
    }
    async fn api_keys_of_user(&self, user: &UserId, page: Page) -> Result<Vec<ApiKey>, StoreError> {
        self.parks
            .around(self.inner.api_keys_of_user(user, page))
            .await
    }
    async fn modify_api_key(
        &self,
        id: &ApiKeyId,
        change: &KeyChange,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        self.parks
            .around(self.inner.modify_api_key(id, change))
            .await
    }
    async fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        self.parks.around(self.inner.delete_api_key(id)).await
    }
    async fn revoke_user(
        &self,
        user: &UserId,
        keys: KeyDisposal,
    ) -> Result<Vec<SecretDigest>, StoreError> {
        self.parks.around(self.inner.revoke_user(user, keys)).await
    }
    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError> {
        self.parks
            .around(self.inner.purge_expired(now, limit))
            .await
    }
    fn invalidation_feed(&self) -> Option<Box<dyn InvalidationFeed>> {
        self.inner.invalidation_feed().filter(|_| self.feed)
    }
}
