//! [`Intercepted`]: a store that runs code around every call to another, so a
//! wrapper (a metric, a fault injector, a test's probe) forwards nothing by hand
//! and never forgets an optional ability such as the invalidation feed.

use std::future::Future;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    InvalidationFeed, KeyChange, KeyDisposal, Page, Purged, StoreError, StoreHealth, TokenStore,
};
use crate::{
    api_key::ApiKey,
    ids::{ApiKeyId, TokenId, UserId},
    scope::Scope,
    secret::SecretDigest,
    token::Token,
};

/// Which [`TokenStore`] method a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreCall {
    /// [`TokenStore::insert_token`].
    InsertToken,
    /// [`TokenStore::mint_token`].
    MintToken,
    /// [`TokenStore::token_by_digest`].
    TokenByDigest,
    /// [`TokenStore::token_by_id`].
    TokenById,
    /// [`TokenStore::tokens_of_user`].
    TokensOfUser,
    /// [`TokenStore::add_token_scopes`].
    AddTokenScopes,
    /// [`TokenStore::delete_token`].
    DeleteToken,
    /// [`TokenStore::touch_token`].
    TouchToken,
    /// [`TokenStore::insert_api_key`].
    InsertApiKey,
    /// [`TokenStore::api_key_by_id`].
    ApiKeyById,
    /// [`TokenStore::api_key_by_digest`].
    ApiKeyByDigest,
    /// [`TokenStore::touch_api_key`].
    TouchApiKey,
    /// [`TokenStore::api_keys_of_user`].
    ApiKeysOfUser,
    /// [`TokenStore::modify_api_key`].
    ModifyApiKey,
    /// [`TokenStore::delete_api_key`].
    DeleteApiKey,
    /// [`TokenStore::revoke_user`].
    RevokeUser,
    /// [`TokenStore::purge_expired`].
    PurgeExpired,
    /// [`TokenStore::api_keys_after`].
    ApiKeysAfter,
    /// [`TokenStore::tokens_after`].
    TokensAfter,
}

impl StoreCall {
    /// Whether the call writes to the store.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::InsertToken
                | Self::MintToken
                | Self::AddTokenScopes
                | Self::DeleteToken
                | Self::TouchToken
                | Self::InsertApiKey
                | Self::TouchApiKey
                | Self::ModifyApiKey
                | Self::DeleteApiKey
                | Self::RevokeUser
                | Self::PurgeExpired
        )
    }

    /// Whether the call looks a credential up by its digest: what a request
    /// with a secret the cache does not hold costs.
    pub fn is_digest_lookup(self) -> bool {
        matches!(self, Self::TokenByDigest | Self::ApiKeyByDigest)
    }
}

/// What an [`Intercepted`] store runs around each call it forwards.
pub trait Interceptor: Send + Sync + 'static {
    /// Runs `inner`, the wrapped store's answer to `call`, and returns what the
    /// caller gets: `inner`'s answer, or another (an error instead of calling
    /// it, an error after it, a delay). Outputs are owned, so an interceptor
    /// that must read one may downcast it through [`std::any::Any`].
    fn around<T: Send + 'static>(
        &self,
        call: StoreCall,
        inner: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> impl Future<Output = Result<T, StoreError>> + Send;

    /// The invalidation feed the intercepted store offers, given the wrapped
    /// store's: forwarded unless overridden.
    fn invalidation_feed(
        &self,
        inner: Option<Box<dyn InvalidationFeed>>,
    ) -> Option<Box<dyn InvalidationFeed>> {
        inner
    }
}

/// A [`TokenStore`] that forwards every call to `S` through an [`Interceptor`].
/// [`health`](TokenStore::health) is forwarded as it is.
#[derive(Debug, Clone)]
pub struct Intercepted<S, I> {
    inner: S,
    interceptor: I,
}

impl<S, I> Intercepted<S, I> {
    /// `inner`, with `interceptor` around each of its calls.
    pub fn new(inner: S, interceptor: I) -> Self {
        Self { inner, interceptor }
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The interceptor.
    pub fn interceptor(&self) -> &I {
        &self.interceptor
    }
}

#[async_trait]
impl<S: TokenStore, I: Interceptor> TokenStore for Intercepted<S, I> {
    async fn insert_token(&self, token: &Token) -> Result<(), StoreError> {
        let call = self.inner.insert_token(token);
        self.interceptor.around(StoreCall::InsertToken, call).await
    }

    async fn mint_token(
        &self,
        token: &Token,
        key_digest: &SecretDigest,
        max_tokens: u64,
    ) -> Result<bool, StoreError> {
        let call = self.inner.mint_token(token, key_digest, max_tokens);
        self.interceptor.around(StoreCall::MintToken, call).await
    }

    async fn token_by_digest(&self, digest: &SecretDigest) -> Result<Option<Token>, StoreError> {
        let call = self.inner.token_by_digest(digest);
        self.interceptor
            .around(StoreCall::TokenByDigest, call)
            .await
    }

    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        let call = self.inner.token_by_id(id);
        self.interceptor.around(StoreCall::TokenById, call).await
    }

    async fn tokens_of_user(&self, user: &UserId, page: Page) -> Result<Vec<Token>, StoreError> {
        let call = self.inner.tokens_of_user(user, page);
        self.interceptor.around(StoreCall::TokensOfUser, call).await
    }

    async fn add_token_scopes(
        &self,
        id: &TokenId,
        scopes: &[Scope],
    ) -> Result<Option<Token>, StoreError> {
        let call = self.inner.add_token_scopes(id, scopes);
        self.interceptor
            .around(StoreCall::AddTokenScopes, call)
            .await
    }

    async fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        let call = self.inner.delete_token(id);
        self.interceptor.around(StoreCall::DeleteToken, call).await
    }

    async fn touch_token(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let call = self.inner.touch_token(id, at);
        self.interceptor.around(StoreCall::TouchToken, call).await
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let call = self.inner.insert_api_key(key);
        self.interceptor.around(StoreCall::InsertApiKey, call).await
    }

    async fn api_key_by_id(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        let call = self.inner.api_key_by_id(id);
        self.interceptor.around(StoreCall::ApiKeyById, call).await
    }

    async fn api_key_by_digest(&self, digest: &SecretDigest) -> Result<Option<ApiKey>, StoreError> {
        let call = self.inner.api_key_by_digest(digest);
        self.interceptor
            .around(StoreCall::ApiKeyByDigest, call)
            .await
    }

    async fn touch_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let call = self.inner.touch_api_key(id, at);
        self.interceptor.around(StoreCall::TouchApiKey, call).await
    }

    async fn api_keys_of_user(&self, user: &UserId, page: Page) -> Result<Vec<ApiKey>, StoreError> {
        let call = self.inner.api_keys_of_user(user, page);
        self.interceptor
            .around(StoreCall::ApiKeysOfUser, call)
            .await
    }

    async fn modify_api_key(
        &self,
        id: &ApiKeyId,
        change: &KeyChange,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        let call = self.inner.modify_api_key(id, change);
        self.interceptor.around(StoreCall::ModifyApiKey, call).await
    }

    async fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        let call = self.inner.delete_api_key(id);
        self.interceptor.around(StoreCall::DeleteApiKey, call).await
    }

    async fn revoke_user(
        &self,
        user: &UserId,
        keys: KeyDisposal,
    ) -> Result<Vec<SecretDigest>, StoreError> {
        let call = self.inner.revoke_user(user, keys);
        self.interceptor.around(StoreCall::RevokeUser, call).await
    }

    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError> {
        let call = self.inner.purge_expired(now, limit);
        self.interceptor.around(StoreCall::PurgeExpired, call).await
    }

    async fn api_keys_after(
        &self,
        after: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let call = self.inner.api_keys_after(after, limit);
        self.interceptor.around(StoreCall::ApiKeysAfter, call).await
    }

    async fn tokens_after(
        &self,
        after: Option<&SecretDigest>,
        limit: usize,
    ) -> Result<Vec<Token>, StoreError> {
        let call = self.inner.tokens_after(after, limit);
        self.interceptor.around(StoreCall::TokensAfter, call).await
    }

    fn invalidation_feed(&self) -> Option<Box<dyn InvalidationFeed>> {
        self.interceptor
            .invalidation_feed(self.inner.invalidation_feed())
    }

    async fn health(&self) -> StoreHealth {
        self.inner.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::StoreCall::{self, *};

    const EVERY_CALL: [StoreCall; 19] = [
        InsertToken,
        MintToken,
        TokenByDigest,
        TokenById,
        TokensOfUser,
        AddTokenScopes,
        DeleteToken,
        TouchToken,
        InsertApiKey,
        ApiKeyById,
        ApiKeyByDigest,
        TouchApiKey,
        ApiKeysOfUser,
        ModifyApiKey,
        DeleteApiKey,
        RevokeUser,
        PurgeExpired,
        ApiKeysAfter,
        TokensAfter,
    ];

    #[test]
    fn the_writes_are_the_calls_that_change_the_store_and_nothing_else() {
        let writes: Vec<_> = EVERY_CALL.into_iter().filter(|c| c.is_write()).collect();
        assert_eq!(
            writes,
            [
                InsertToken,
                MintToken,
                AddTokenScopes,
                DeleteToken,
                TouchToken,
                InsertApiKey,
                TouchApiKey,
                ModifyApiKey,
                DeleteApiKey,
                RevokeUser,
                PurgeExpired
            ]
        );
    }

    #[test]
    fn the_digest_lookups_are_the_two_reads_by_a_secrets_digest() {
        let lookups: Vec<_> = EVERY_CALL
            .into_iter()
            .filter(|c| c.is_digest_lookup())
            .collect();
        assert_eq!(lookups, [TokenByDigest, ApiKeyByDigest]);
    }
}
