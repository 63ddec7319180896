//! A [`ScopeGate`](crate::ScopeGate) error as a response, for handlers that
//! call the gate directly.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::{
    error_response, guards::INVALID_TOKEN_MESSAGE, Challenge, ErrorCode, TemporarilyUnavailable,
};
use crate::{
    error::Error,
    store::{error_chain, StoreErrorKind},
};

/// Gate errors as HTTP responses, for handlers that call [`ScopeGate`](crate::ScopeGate)
/// directly: bad input 400 `invalid_request`, a bad key 400 `invalid_grant`, a bad
/// token 401 `invalid_token`, a missing record 404, a key with as many tokens as
/// allowed 429 `too_many_requests`, a store or loader failure 503 (logged, never
/// shown).
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Error::InvalidRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            Error::InvalidGrant => (StatusCode::BAD_REQUEST, ErrorCode::InvalidGrant),
            Error::InvalidToken(_) => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Error::TooManyTokens => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests),
            Error::Store(_) | Error::UserLoader(_) => {
                log_refusal(&self, "request refused: 503");
                return TemporarilyUnavailable.into_response();
            }
        };
        let challenge = (code == ErrorCode::InvalidToken).then_some(Challenge {
            realm: None,
            error: Some(code),
            scope: None,
        });
        let message = match code {
            ErrorCode::InvalidToken => INVALID_TOKEN_MESSAGE.to_owned(),
            _ => self.to_string(),
        };
        error_response(status, code, &message, challenge)
    }
}

/// Logs a failure that refused a request with 503. A store that stopped serving
/// logged that once already, so its refusals are only `debug`.
pub(crate) fn log_refusal(err: &Error, what: &str) {
    let chain = error_chain(err);
    match err {
        Error::Store(store) if store.kind() == StoreErrorKind::Unavailable => {
            tracing::debug!(error = %chain, "{what}")
        }
        _ => tracing::warn!(error = %chain, "{what}"),
    }
}
