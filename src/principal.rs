//! [`Principal`]: who a request acts as, and the [`Credential`] that says so.

use std::{fmt, sync::Arc};

use chrono::{DateTime, Utc};

use crate::{
    api_key::ApiKey,
    credential::Credential,
    ids::{ApiKeyId, TokenId, UserId},
    scope::Scope,
    scopes::Scopes,
    token::Token,
    user::LoadedUser,
};

/// A live credential and its loaded user: what authentication yields, and what the
/// HTTP layer attaches to requests. Cheap to clone: one `Arc`, made per request,
/// so the guards' clones touch no count that other requests share.
#[derive(Clone)]
pub struct Principal(Repr);

#[derive(Clone)]
enum Repr {
    /// A user's token, kept in the user's own allocation
    /// ([`LoadedUser::credential`]): one allocation per request, not two.
    UserToken(LoadedUser),
    /// An anonymous token, or an API key and its owner.
    Held(Arc<Held>),
}

#[derive(Debug)]
struct Held {
    credential: Credential,
    /// A key's scopes ([`ApiKey::token_scopes`]); empty for a token, which holds its own.
    key_scopes: Scopes,
    user: Option<LoadedUser>,
    /// An API key sent with the secret its last rotation retired (in its grace
    /// period): it authenticates, and never manages keys.
    retired_secret: bool,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("credential", self.credential())
            .field("scopes", self.scopes())
            .field("user", &self.user())
            .finish()
    }
}

impl Principal {
    /// An anonymous token's principal.
    pub(crate) fn anonymous(token: Arc<Token>) -> Self {
        Self(Repr::Held(Arc::new(Held {
            credential: Credential::Token(token),
            key_scopes: Scopes::new(),
            user: None,
            retired_secret: false,
        })))
    }

    /// The principal of the token `user` was loaded for
    /// ([`UserLoadFor::Token`](crate::user::UserLoadFor::Token)), or `None` if
    /// it was loaded for no token.
    pub(crate) fn of_user_token(user: LoadedUser) -> Option<Self> {
        matches!(user.credential(), Some(Credential::Token(_)))
            .then_some(Self(Repr::UserToken(user)))
    }

    /// A key's principal, holding `scopes`: the key's, less what its owner may
    /// no longer hold. `retired_secret`: the key was sent with the secret its
    /// last rotation retired.
    pub(crate) fn from_api_key(
        key: ApiKey,
        user: LoadedUser,
        scopes: Scopes,
        retired_secret: bool,
    ) -> Self {
        Self(Repr::Held(Arc::new(Held {
            key_scopes: scopes,
            credential: Credential::ApiKey(Arc::new(key)),
            user: Some(user),
            retired_secret,
        })))
    }

    /// Whether this is an API key sent with the secret its last rotation retired,
    /// still accepted during its grace period.
    pub fn is_retired_secret(&self) -> bool {
        match &self.0 {
            Repr::Held(held) => held.retired_secret,
            Repr::UserToken(_) => false,
        }
    }

    /// The credential (its digest included, never its secret).
    pub fn credential(&self) -> &Credential {
        match &self.0 {
            Repr::UserToken(user) => user
                .credential()
                .expect("a user token's principal is only made for a user loaded for a token"),
            Repr::Held(held) => &held.credential,
        }
    }

    /// The token record, or `None` for a request authenticated with an API key.
    pub fn token(&self) -> Option<&Token> {
        match self.credential() {
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
        match self.credential() {
            Credential::ApiKey(key) => Some(key),
            Credential::Token(_) => None,
        }
    }

    /// The key behind the request: the one sent, or the one the token was minted from.
    pub fn api_key_id(&self) -> Option<&ApiKeyId> {
        match self.credential() {
            Credential::Token(token) => token.api_key_id.as_ref(),
            Credential::ApiKey(key) => Some(&key.id),
        }
    }

    /// The scopes the credential grants: a token's, or a key's (`core.user_auth`
    /// for a full-access key).
    pub fn scopes(&self) -> &Scopes {
        match (&self.0, self.credential()) {
            (_, Credential::Token(token)) => &token.scopes,
            (Repr::Held(held), Credential::ApiKey(_)) => &held.key_scopes,
            // A user token's principal holds a token (`of_user_token`).
            (Repr::UserToken(_), Credential::ApiKey(_)) => {
                unreachable!("a user token's principal holds a token")
            }
        }
    }

    /// When the credential expires; `None` for a key that never does.
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        match self.credential() {
            Credential::Token(token) => Some(token.expires),
            Credential::ApiKey(key) => key.expires,
        }
    }

    /// The user, or `None` for an anonymous token.
    pub fn user(&self) -> Option<&LoadedUser> {
        match &self.0 {
            Repr::UserToken(user) => Some(user),
            Repr::Held(held) => held.user.as_ref(),
        }
    }

    /// The user's id, or `None` for an anonymous token.
    pub fn user_id(&self) -> Option<&UserId> {
        self.user().map(LoadedUser::id)
    }

    /// Whether the user is an admin (never for anonymous tokens).
    pub fn is_admin(&self) -> bool {
        self.user().is_some_and(LoadedUser::is_admin)
    }

    /// Whether this is a user's full session (`core.user_auth`): a session token,
    /// a token minted from a full-access key, or a full-access key sent directly.
    pub fn is_full_session(&self) -> bool {
        self.user().is_some() && self.scopes().contains(&Scope::USER_AUTH)
    }

    /// Whether this is a login session: a user's full session whose token the
    /// app issued itself ([`NewToken::for_user`](crate::NewToken::for_user)),
    /// not one an API key minted nor a key sent directly. Only a login session
    /// creates API keys ([`ScopeGate::may_create_keys`](crate::ScopeGate::may_create_keys)).
    pub fn is_login_session(&self) -> bool {
        self.is_full_session() && self.token().is_some_and(|token| token.api_key_id.is_none())
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
