//! Error responses (RFC 6750): what guards and the router answer when they refuse.
//!
//! Each failure is one type with a fixed status and body, like axum's rejections;
//! [`AuthRejection`] is the composite the extractors return. Every response has a
//! JSON body `{"error": "<code>", "message": "<text>"}`, auth failures carry a
//! `WWW-Authenticate: Bearer …` header, and the [`ErrorCode`] (plus, for guards, the
//! [`AuthRejection`] itself) is put into the response extensions so outer layers can
//! tell a 401 from a 403 from a 503 without parsing bodies.
//!
//! - here: the codes, the challenge, and how a body is rendered;
//! - `guards.rs`: the guards' refusals and [`AuthRejection`];
//! - `gate_errors.rs`: a [`ScopeGate`](crate::ScopeGate) error as a response.

mod gate_errors;
mod guards;

use std::fmt;

use axum::{
    body::{Body, Bytes},
    response::Response,
};
use http::{header, HeaderValue, StatusCode};

pub(crate) use self::gate_errors::log_refusal;
pub use self::guards::{
    AuthRejection, InsufficientScope, InvalidRequest, InvalidToken, MissingAuthLayer,
    MissingCredentials, TemporarilyUnavailable, UnregisteredScopes,
};

/// The `error` code of an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No credentials on a route that needs them (401).
    Unauthorized,
    /// A malformed request or invalid input (400).
    InvalidRequest,
    /// A token string that is not a live token (401).
    InvalidToken,
    /// A live token without the scope or admin right a route needs (403).
    InsufficientScope,
    /// An API key that cannot be exchanged (400).
    InvalidGrant,
    /// No such record (404).
    NotFound,
    /// The token store or user loader failed; nothing was granted (503).
    TemporarilyUnavailable,
    /// A bounded resource (anonymous sessions) is used up for now (429).
    TooManyRequests,
    /// The server is misconfigured, e.g. `AuthLayer` is missing (500).
    ServerError,
}

impl ErrorCode {
    /// The code as it appears in bodies and `WWW-Authenticate` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::ServerError => "server_error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `WWW-Authenticate` challenge of an auth failure.
pub(crate) struct Challenge<'a> {
    realm: Option<&'a str>,
    error: Option<ErrorCode>,
    scope: Option<&'a str>,
}

impl Challenge<'_> {
    fn header_value(&self) -> Option<HeaderValue> {
        // Realms and scope ids are checked to be quotable when configured.
        let mut params = Vec::new();
        if let Some(realm) = self.realm {
            params.push(format!("realm=\"{realm}\""));
        }
        if let Some(error) = self.error {
            params.push(format!("error=\"{error}\""));
        }
        if let Some(scope) = self.scope {
            params.push(format!("scope=\"{scope}\""));
        }
        let value = match params.is_empty() {
            true => "Bearer".to_owned(),
            false => format!("Bearer {}", params.join(", ")),
        };
        HeaderValue::from_str(&value).ok()
    }
}

/// A refusal's JSON body and challenge, rendered.
///
/// The refusals every made-up token gets (`invalid_token`, no credentials) are
/// rendered once per [`AuthState`](crate::AuthState) and shared, so a flood of
/// bogus tokens costs no JSON encoding or formatting per request.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    body: Bytes,
    challenge: Option<HeaderValue>,
}

impl Rendered {
    pub(crate) fn new(code: ErrorCode, message: &str, challenge: Option<Challenge<'_>>) -> Self {
        // A struct, not `json!`: no map of owned keys to build and free.
        #[derive(serde::Serialize)]
        struct ErrorBody<'a> {
            error: &'a str,
            message: &'a str,
        }
        let body = ErrorBody {
            error: code.as_str(),
            message,
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        Self {
            // Shared from the start, so each clone is a reference count.
            body: Bytes::from(body).slice(..),
            challenge: challenge.and_then(|c| c.header_value()),
        }
    }

    /// The response: this body and challenge, the status, and the typed code in
    /// the extensions.
    pub(crate) fn response(&self, status: StatusCode, code: ErrorCode) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(challenge) = &self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, challenge.clone());
        }
        response.extensions_mut().insert(code);
        response
    }
}

/// Renders the JSON body, the challenge and the typed code.
pub(crate) fn error_response(
    status: StatusCode,
    code: ErrorCode,
    message: &str,
    challenge: Option<Challenge<'_>>,
) -> Response {
    Rendered::new(code, message, challenge).response(status, code)
}
