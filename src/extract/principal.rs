//! [`Principal`] and [`Authentication`] as extractors.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use super::authentication;
use crate::{middleware::Authentication, principal::Principal, rejection::AuthRejection};

/// The caller's live token: 401 without a credential, the refusal for a bad one.
/// As `Option<Principal>`: `None` without a credential, still an error for a bad one.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        authentication(parts)?.require().cloned()
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(authentication(parts)?.optional()?.cloned())
    }
}

/// What the layer found, whatever it was; only a missing layer is an error.
impl<S: Send + Sync> FromRequestParts<S> for Authentication {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        authentication(parts).cloned()
    }
}
