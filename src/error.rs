//! Errors of the gate's operations and of its configuration.

use std::borrow::Cow;

use crate::{scope::InvalidScopes, store::StoreError, user::BoxError};

/// Why a gate operation failed.
///
/// Each variant maps to one RFC 6750 / RFC 6749 error code; the HTTP layer turns
/// them into responses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input: a name, scope list or duration that cannot be accepted
    /// (`invalid_request`). The message is meant for the caller.
    #[error("{0}")]
    InvalidRequest(Cow<'static, str>),
    /// The API key presented for an exchange is not a live key of an active user
    /// (`invalid_grant`).
    #[error("Invalid API key.")]
    InvalidGrant,
    /// The token presented is not a live token (`invalid_token`). The reason is for
    /// logs; callers all see the same message.
    #[error("Invalid token.")]
    InvalidToken(InvalidTokenReason),
    /// No record with that id.
    #[error("{0} not found.")]
    NotFound(&'static str),
    /// The API key has as many live tokens as allowed
    /// ([`ScopeGateBuilder::with_max_tokens_per_key`](crate::ScopeGateBuilder::with_max_tokens_per_key)):
    /// no token was minted (`too_many_requests`, 429). Revoking tokens, or their
    /// expiry and purge, makes room.
    #[error(
        "This API key has as many live tokens as allowed: revoke some, or wait for them to expire."
    )]
    TooManyTokens,
    /// The store failed: the operation did not happen (`temporarily_unavailable`).
    #[error("the token store is unavailable")]
    Store(#[from] StoreError),
    /// The app's user loader failed: nothing was granted (`temporarily_unavailable`).
    #[error("the user loader failed")]
    UserLoader(#[source] BoxError),
}

impl Error {
    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidRequest(message.into())
    }
}

impl From<InvalidScopes> for Error {
    fn from(err: InvalidScopes) -> Self {
        Error::InvalidRequest(err.to_string().into())
    }
}

/// Why a credential was refused. Shown in logs, never to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidTokenReason {
    /// Not a token of this gate's format, or a bad checksum; the store was not asked.
    Malformed,
    /// An API key of this gate's format, sent where a token belongs, with direct
    /// key authentication off; the store was not asked.
    ApiKey,
    /// An API key sent directly that is deactivated.
    InactiveKey,
    /// No such token or key: never issued, revoked, deleted, purged, or a key's
    /// rotated-out secret past its grace.
    Unknown,
    /// Past its expiry.
    Expired,
    /// Its user is unknown or inactive.
    UserUnavailable,
}
