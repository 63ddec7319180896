//! [`SledStore`]: the embedded default backend.

mod config;
mod encoding;
mod group_commit;
mod layout;
mod local_caches;
mod records;
mod recovery;
mod revocations;
mod tree;
mod upgrade;

use std::{fmt, path::Path, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use self::config::{SledConfig, DEFAULT_SLED_CACHE_BYTES};
use self::{local_caches::LocalCaches, recovery::Lifeline, tree::Inner};
use super::{
    api_key_tag, touched_by_key_change, touched_token, user_tag, InvalidationFeed, KeyDisposal,
    Page, Purged, StoreError, StoreErrorKind, StoreHealth, TokenStore,
};
use crate::{
    api_key::{ApiKey, KeyChange},
    ids::{ApiKeyId, TokenId, UserId},
    scope::Scope,
    secret::SecretDigest,
    token::Token,
};

/// Tokens and API keys in an embedded sled database, for one process.
///
/// All records live in one tree, so a record and its indexes change in one atomic
/// batch. sled calls run on tokio's blocking pool, off the async worker threads.
///
/// # Durability
/// Every write is on stable storage before it returns: after sled's flush the
/// store `fdatasync`s sled's log (`F_FULLFSYNC` on macOS), which sled 0.34 alone
/// does not do on Linux. Writes arriving together share one sync (group commit), and
/// the sync runs outside the write lock, so concurrency makes durable writes cheap.
///
/// # Failures
/// After any I/O failure (a full disk, say) sled's memory may hold a write its disk
/// does not. The store then drops that memory and refuses every call with
/// [`StoreErrorKind::Unavailable`] until it has reopened the database from disk and
/// a probe write has reached stable storage; it retries on its own, at most every
/// 200 ms, when called. Each change of [`StoreHealth`] is logged once: an `error`
/// when it starts failing, an `info` when it recovers.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), scopegate::store::StoreError> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = scopegate::store::SledStore::open(dir.path())?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SledStore {
    lifeline: Arc<Lifeline>,
    /// The caches over this database in this process (see `local_caches`).
    caches: Arc<LocalCaches>,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the database in the directory `path`, with the default
    /// [`SledConfig`]. sled locks the directory: a second process (or a second
    /// `open` in this one) fails.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SledConfig::default())
    }

    /// [`SledStore::open`] with `config`.
    pub fn open_with(path: impl AsRef<Path>, config: SledConfig) -> Result<Self, StoreError> {
        Ok(Self {
            lifeline: Arc::new(Lifeline::open(path.as_ref(), config)?),
            caches: Arc::default(),
        })
    }

    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let lifeline = Arc::clone(&self.lifeline);
        tokio::task::spawn_blocking(move || lifeline.call(op))
            .await
            .map_err(backend)?
    }

    /// A lookup of the request path: on the calling task while the database is
    /// open (see [`SledConfig::with_reads_on_blocking_threads`]), else as `run`.
    /// [`SledStore::run`] for a write that revokes or changes credentials: every
    /// cache over this database forgets what `touched` reads from its result.
    async fn revoke<T, F>(
        &self,
        op: F,
        touched: impl FnOnce(&T) -> Vec<SecretDigest> + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let caches = Arc::clone(&self.caches);
        self.run(move |db| caches.revoking(|| op(db), touched))
            .await
    }

    async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        if self.lifeline.reads_block() {
            return self.run(op).await;
        }
        match self.lifeline.call_if_open(op) {
            Ok(outcome) => outcome,
            Err(op) => self.run(op).await,
        }
    }
}

pub(super) fn backend(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::new(StoreErrorKind::Backend, err)
}

#[async_trait]
impl TokenStore for SledStore {
    async fn insert_token(&self, token: &Token) -> Result<(), StoreError> {
        let token = token.clone();
        self.run(move |db| db.insert_token(&token)).await
    }

    async fn mint_token(
        &self,
        token: &Token,
        key_digest: &SecretDigest,
        max_tokens: u64,
    ) -> Result<bool, StoreError> {
        let (token, key_digest) = (token.clone(), *key_digest);
        self.run(move |db| db.mint_token(&token, &key_digest, max_tokens))
            .await
    }

    async fn token_by_digest(&self, digest: &SecretDigest) -> Result<Option<Token>, StoreError> {
        let digest = *digest;
        self.read(move |db| db.token(&digest)).await
    }

    async fn api_keys_after(
        &self,
        after: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let after = after.cloned();
        self.run(move |db| db.api_keys_after(after.as_ref(), limit))
            .await
    }

    async fn tokens_after(
        &self,
        after: Option<&SecretDigest>,
        limit: usize,
    ) -> Result<Vec<Token>, StoreError> {
        let after = after.copied();
        self.run(move |db| db.tokens_after(after.as_ref(), limit))
            .await
    }

    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        let id = id.clone();
        self.run(move |db| db.settled_token_by_id(&id)).await
    }

    async fn tokens_of_user(&self, user: &UserId, page: Page) -> Result<Vec<Token>, StoreError> {
        let user = user.clone();
        self.run(move |db| db.tokens_of_user(&user, page)).await
    }

    async fn add_token_scopes(
        &self,
        id: &TokenId,
        scopes: &[Scope],
    ) -> Result<Option<Token>, StoreError> {
        let (id, scopes) = (id.clone(), scopes.to_vec());
        self.revoke(move |db| db.add_token_scopes(&id, &scopes), touched_token)
            .await
    }

    async fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        let id = id.clone();
        self.revoke(move |db| db.delete_token(&id), touched_token)
            .await
    }

    async fn touch_token(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.clone();
        self.run(move |db| db.touch_token(&id, at)).await
    }

    async fn touch_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.clone();
        self.run(move |db| db.touch_api_key(&id, at)).await
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(move |db| db.insert_api_key(&key)).await
    }

    async fn api_key_by_id(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        let id = id.clone();
        self.run(move |db| db.settled_api_key(&id)).await
    }

    async fn api_key_by_digest(&self, digest: &SecretDigest) -> Result<Option<ApiKey>, StoreError> {
        let digest = *digest;
        self.read(move |db| db.api_key_by_digest(&digest)).await
    }

    async fn api_keys_of_user(&self, user: &UserId, page: Page) -> Result<Vec<ApiKey>, StoreError> {
        let user = user.clone();
        self.run(move |db| db.api_keys_of_user(&user, page)).await
    }

    async fn modify_api_key(
        &self,
        id: &ApiKeyId,
        change: &KeyChange,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        let (id, change) = (id.clone(), change.clone());
        let changed = id.clone();
        self.revoke(
            move |db| db.modify_api_key(&id, &change),
            move |modified| touched_by_key_change(modified, &changed),
        )
        .await
    }

    async fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        let id = id.clone();
        let deleted = id.clone();
        self.revoke(
            move |db| db.delete_api_key(&id),
            move |removed| touched_by_key_change(removed, &deleted),
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
        self.revoke(
            move |db| db.revoke_user(&user, keys),
            move |revoked| revoked.iter().copied().chain([tag]).collect(),
        )
        .await
    }

    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError> {
        self.revoke(
            move |db| db.purge_expired(now, limit),
            |purged| {
                let tags = purged.changed_keys.iter().map(api_key_tag);
                purged.tokens.iter().copied().chain(tags).collect()
            },
        )
        .await
    }

    /// The in-process feed every clone shares: caches over clones of one store
    /// see each other's revocations at once.
    fn invalidation_feed(&self) -> Option<Box<dyn InvalidationFeed>> {
        Some(self.caches.feed())
    }

    async fn health(&self) -> StoreHealth {
        let lifeline = Arc::clone(&self.lifeline);
        // A failing store tries to recover when asked, so polling health heals it.
        tokio::task::spawn_blocking(move || lifeline.health())
            .await
            .unwrap_or_else(|err| StoreHealth::Failing {
                since: Utc::now(),
                error: backend(err),
            })
    }
}
