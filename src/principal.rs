//! [`Principal`]: who a request acts as, and the [`Credential`] that says so.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::{user::LoadedUser, ApiKey, ApiKeyId, Scope, Scopes, Token, TokenId, UserId};

/// What authenticated a request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credential {
    /// A token: issued by the app, minted from a key, or anonymous.
    Token(Arc<Token>),
    /// An API key sent as it is, with direct key authentication on
    /// ([`ScopeGateBuilder::with_direct_api_keys`](crate::ScopeGateBuilder::with_direct_api_keys)).
    ApiKey(Arc<ApiKey>),
}

/// A live credential and its loaded user: what authentication yields, and what the
/// HTTP layer attaches to requests. Cheap to clone: the records are shared.
#[derive(Debug, Clone)]
pub struct Principal {
    credential: Credential,
    /// A key's scopes ([`ApiKey::token_scopes`]); `None` for a token, which holds
    /// its own, so cloning a token's principal (each guard does) copies no scopes.
    key_scopes: Option<Arc<Scopes>>,
    user: Option<LoadedUser>,
}

impl Principal {
    pub(crate) fn new(token: Arc<Token>, user: Option<LoadedUser>) -> Self {
        Self {
            credential: Credential::Token(token),
            key_scopes: None,
            user,
        }
    }

    pub(crate) fn from_api_key(key: ApiKey, user: LoadedUser) -> Self {
        Self {
            key_scopes: Some(Arc::new(key.token_scopes().into())),
            credential: Credential::ApiKey(Arc::new(key)),
            user: Some(user),
        }
    }

    /// The credential (its digest included, never its secret).
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The token record, or `None` for a request authenticated with an API key.
    pub fn token(&self) -> Option<&Token> {
        match &self.credential {
            Credential::Token(token) => Some(token),
            Credential::ApiKey(_) => None,
        }
    }

    /// The token's public id, or `None` for an API key.
    pub fn token_id(&self) -> Option<&TokenId> {
        self.token().map(|token| &token.id)
    }

    /// The API key the request was sent with, or `None` for a token.
    pub fn api_key(&self) -> Option<&ApiKey> {
        match &self.credential {
            Credential::ApiKey(key) => Some(key),
            Credential::Token(_) => None,
        }
    }

    /// The key behind the request: the one sent, or the one the token was minted from.
    pub fn api_key_id(&self) -> Option<&ApiKeyId> {
        match &self.credential {
            Credential::Token(token) => token.api_key_id.as_ref(),
            Credential::ApiKey(key) => Some(&key.id),
        }
    }

    /// The scopes the credential grants: a token's, or a key's (`core.user_auth`
    /// for a full-access key).
    pub fn scopes(&self) -> &Scopes {
        match &self.credential {
            Credential::Token(token) => &token.scopes,
            Credential::ApiKey(_) => match &self.key_scopes {
                Some(scopes) => scopes,
                None => no_scopes(),
            },
        }
    }

    /// When the credential expires; `None` for a key that never does.
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        match &self.credential {
            Credential::Token(token) => Some(token.expires),
            Credential::ApiKey(key) => key.expires,
        }
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

    /// Whether this is a user's full session (`core.user_auth`): a session token,
    /// or a full-access key.
    pub fn is_full_session(&self) -> bool {
        self.user.is_some() && self.scopes().contains(&Scope::USER_AUTH)
    }

    /// Strict check: the credential carries all of `required` itself.
    pub fn has_scope<'a>(&self, required: impl IntoIterator<Item = &'a Scope>) -> bool {
        let scopes = self.scopes();
        required.into_iter().all(|s| scopes.contains(s))
    }

    /// Guard check: a full session, or all of `required`.
    pub fn allows<'a>(&self, required: impl IntoIterator<Item = &'a Scope>) -> bool {
        self.is_full_session() || self.has_scope(required)
    }
}

/// The empty set: what `scopes()` gives a key's principal without scopes of its
/// own, which `from_api_key` never builds.
fn no_scopes() -> &'static Scopes {
    static NONE: std::sync::OnceLock<Scopes> = std::sync::OnceLock::new();
    NONE.get_or_init(Scopes::new)
}
