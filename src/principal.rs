//! [`Principal`]: who a request acts as.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::{user::LoadedUser, ApiKeyId, Scope, Token, TokenId, UserId};

/// A live token and its loaded user: what authentication yields, and what the
/// HTTP layer attaches to requests.
#[derive(Debug, Clone)]
pub struct Principal {
    token: Token,
    user: Option<LoadedUser>,
}

impl Principal {
    pub(crate) fn new(token: Token, user: Option<LoadedUser>) -> Self {
        Self { token, user }
    }

    /// The token record (its digest included, never its secret).
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The token's public id.
    pub fn token_id(&self) -> &TokenId {
        &self.token.id
    }

    /// The token's scopes.
    pub fn scopes(&self) -> &BTreeSet<Scope> {
        &self.token.scopes
    }

    /// When the token expires.
    pub fn expires(&self) -> DateTime<Utc> {
        self.token.expires
    }

    /// The key the token was minted from, if any.
    pub fn api_key_id(&self) -> Option<&ApiKeyId> {
        self.token.api_key_id.as_ref()
    }

    /// The user, or `None` for an anonymous token.
    pub fn user(&self) -> Option<&LoadedUser> {
        self.user.as_ref()
    }

    /// The user's id, or `None` for an anonymous token.
    pub fn user_id(&self) -> Option<&UserId> {
        self.user.as_ref().map(LoadedUser::id)
    }

    /// Whether the user is an admin (never for anonymous tokens).
    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(LoadedUser::is_admin)
    }

    /// Whether this is a user's full session (`core.user_auth`).
    pub fn is_full_session(&self) -> bool {
        self.token.is_full_session()
    }

    /// Strict check: the token carries all of `required` itself.
    pub fn has_scope<'a>(&self, required: impl IntoIterator<Item = &'a Scope>) -> bool {
        self.token.has_scope(required)
    }

    /// Guard check: a full session, or all of `required`.
    pub fn allows<'a>(&self, required: impl IntoIterator<Item = &'a Scope>) -> bool {
        self.token.allows(required)
    }
}
