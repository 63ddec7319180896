//! [`CurrentUser`]: the user behind a full session.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use super::authentication;
use crate::{ids::UserId, principal::Principal, rejection::AuthRejection, user::LoadedUser};

/// The user of the request.
///
/// Needs a user's full session (`core.user_auth`): nothing else makes one, not a
/// route's [`guard`](crate::extract::guard) layer nor another extractor. Anonymous tokens
/// and scoped tokens get 403 `insufficient_scope`: a handler guarded by a scope
/// gets the user from the guard itself (`RequireScope::user`, through its
/// [`Principal`]).
///
/// As `Option<CurrentUser>`: `None` without a credential or without such a token;
/// a refused credential is still an error.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    principal: Principal,
}

impl CurrentUser {
    /// The user.
    pub fn user(&self) -> &LoadedUser {
        self.principal
            .user()
            .expect("a CurrentUser is only built for principals with a user")
    }

    /// The user's id.
    pub fn id(&self) -> &UserId {
        self.user().id()
    }

    /// Whether the user is an admin.
    pub fn is_admin(&self) -> bool {
        self.user().is_admin()
    }

    /// The app's own user value: `U` is the [`UserLoader::User`](crate::UserLoader::User)
    /// type.
    ///
    /// # Panics
    /// If `U` is another type, with both types in the message (a bug in the app,
    /// not a missing user). [`CurrentUser::try_get`] returns `None` instead.
    pub fn get<U: 'static>(&self) -> &U {
        self.user().get()
    }

    /// The app's own user value, or `None` if `U` is not the loader's user type.
    pub fn try_get<U: 'static>(&self) -> Option<&U> {
        self.user().try_get()
    }

    /// The token the request came with.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The token the request came with.
    pub fn into_principal(self) -> Principal {
        self.principal
    }

    fn accepts(principal: &Principal) -> bool {
        principal.is_full_session()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let auth = authentication(parts)?;
        let principal = auth.require()?;
        if !Self::accepts(principal) {
            return Err(auth.needs_full_session());
        }
        Ok(Self {
            principal: principal.clone(),
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CurrentUser {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let principal = authentication(parts)?.optional()?;
        Ok(principal
            .filter(|principal| Self::accepts(principal))
            .map(|principal| Self {
                principal: principal.clone(),
            }))
    }
}
