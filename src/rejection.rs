//! Error responses (RFC 6750): what guards and the router answer when they refuse.
//!
//! Each failure is one type with a fixed status and body, like axum's rejections;
//! [`AuthRejection`] is the composite the extractors return. Every response has a
//! JSON body `{"error": "<code>", "message": "<text>"}`, auth failures carry a
//! `WWW-Authenticate: Bearer …` header, and the [`ErrorCode`] (plus, for guards, the
//! [`AuthRejection`] itself) is put into the response extensions so outer layers can
//! tell a 401 from a 403 from a 503 without parsing bodies.

use std::{fmt, sync::Arc};

use axum::{
    body::{Body, Bytes},
    response::{IntoResponse, Response},
};
use http::{header, HeaderValue, StatusCode};

use crate::{
    scope::join_scopes,
    store::{error_chain, StoreErrorKind},
    Error, Scope,
};

/// The one message of every `invalid_token`, whatever the reason.
const INVALID_TOKEN_MESSAGE: &str = "Invalid or expired token.";
const API_KEY_AS_TOKEN_MESSAGE: &str = "This is an API key, not a token: exchange it for a \
     short-lived token with POST /api_key/token ({\"key\": \"…\"}) and send that token \
     (this server does not accept API keys directly).";

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
struct Challenge<'a> {
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
    fn new(code: ErrorCode, message: &str, challenge: Option<Challenge<'_>>) -> Self {
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
    fn response(&self, status: StatusCode, code: ErrorCode) -> Response {
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
fn error_response(
    status: StatusCode,
    code: ErrorCode,
    message: &str,
    challenge: Option<Challenge<'_>>,
) -> Response {
    Rendered::new(code, message, challenge).response(status, code)
}

/// A 429 `too_many_requests` with `Retry-After` in whole seconds (at least 1).
#[cfg(feature = "router")] // used by the router
pub(crate) fn too_many_requests(message: &str, retry_after: std::time::Duration) -> Response {
    let mut response = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooManyRequests,
        message,
        None,
    );
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// A 400 `invalid_request` for bad input outside authentication (no challenge).
#[cfg(feature = "router")] // used by the router
pub(crate) fn invalid_input(message: &str) -> Response {
    input_error(StatusCode::BAD_REQUEST, message)
}

/// An `invalid_request` with another 4xx status, such as 413 for a body too large.
#[cfg(feature = "router")] // used by the router
pub(crate) fn input_error(status: StatusCode, message: &str) -> Response {
    error_response(status, ErrorCode::InvalidRequest, message, None)
}

/// No credentials on a route that needs them: 401 with a bare `Bearer` challenge.
/// The message names where this app reads credentials from.
#[derive(Debug, Clone)]
pub struct MissingCredentials {
    realm: Arc<str>,
    message: Arc<str>,
    rendered: Option<Rendered>,
}

impl MissingCredentials {
    /// Rendered once: the state keeps it and hands out clones.
    pub(crate) fn prerendered(realm: Arc<str>, message: Arc<str>) -> Self {
        let mut missing = Self {
            realm,
            message,
            rendered: None,
        };
        missing.rendered = Some(AuthRejection::from(missing.clone()).render());
        missing
    }

    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    /// The `error` code of the response.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Unauthorized
    }

    /// The message of the response.
    pub fn body_text(&self) -> String {
        self.message.to_string()
    }
}

/// A token string that is not a live token (bad format or checksum, unknown,
/// expired, revoked, or its user is gone): 401 `invalid_token`. The message is the
/// same for all, so callers learn nothing about which; only an API key sent where a
/// token belongs is named as such (the caller holds it, and its format says so).
#[derive(Debug, Clone)]
pub struct InvalidToken {
    realm: Arc<str>,
    message: &'static str,
    rendered: Option<Rendered>,
}

impl InvalidToken {
    pub(crate) fn new(realm: Arc<str>) -> Self {
        Self::prerendered(realm, INVALID_TOKEN_MESSAGE)
    }

    /// An API key sent as a bearer token.
    pub(crate) fn api_key(realm: Arc<str>) -> Self {
        Self::prerendered(realm, API_KEY_AS_TOKEN_MESSAGE)
    }

    /// Rendered once: the state keeps it and hands out clones.
    fn prerendered(realm: Arc<str>, message: &'static str) -> Self {
        let mut invalid = Self {
            realm,
            message,
            rendered: None,
        };
        invalid.rendered = Some(AuthRejection::from(invalid.clone()).render());
        invalid
    }

    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    /// The `error` code of the response.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidToken
    }

    /// The message of the response.
    pub fn body_text(&self) -> String {
        self.message.to_owned()
    }
}

/// A malformed credential: an empty `Bearer`, a value that is not printable ASCII,
/// several `Authorization` headers or different credentials in one request: 400
/// `invalid_request`.
#[derive(Debug, Clone)]
pub struct InvalidRequest {
    realm: Arc<str>,
    message: &'static str,
}

impl InvalidRequest {
    pub(crate) fn new(realm: Arc<str>, message: &'static str) -> Self {
        Self { realm, message }
    }

    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    /// The `error` code of the response.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidRequest
    }

    /// The message of the response.
    pub fn body_text(&self) -> String {
        self.message.to_owned()
    }
}

/// A live token without what the route needs (scopes, a full session, an admin):
/// 403 `insufficient_scope`, with the required scopes in the challenge.
#[derive(Debug, Clone)]
pub struct InsufficientScope {
    realm: Arc<str>,
    required: Option<String>,
    message: String,
}

impl InsufficientScope {
    /// `required` is listed in the challenge's `scope` attribute.
    pub(crate) fn new(realm: Arc<str>, required: &[Scope], message: String) -> Self {
        let required = (!required.is_empty()).then(|| join_scopes(required));
        Self {
            realm,
            required,
            message,
        }
    }

    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    /// The `error` code of the response.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InsufficientScope
    }

    /// The scopes the route required, space-separated, if it was about scopes.
    pub fn required(&self) -> Option<&str> {
        self.required.as_deref()
    }

    /// The message of the response.
    pub fn body_text(&self) -> String {
        self.message.clone()
    }
}

/// The token store or the user loader failed, so nothing could be checked: 503
/// `temporarily_unavailable`, with `Retry-After: 1`. Access is never granted on a
/// failure.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TemporarilyUnavailable;

impl TemporarilyUnavailable {
    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    /// The `error` code of the response.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::TemporarilyUnavailable
    }

    /// The message of the response.
    pub fn body_text(&self) -> String {
        "Authentication is temporarily unavailable; try again later.".to_owned()
    }
}

/// A guard ran on a request that `AuthLayer` never saw: a server bug, 500.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MissingAuthLayer;

impl MissingAuthLayer {
    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    /// The `error` code of the response.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::ServerError
    }

    /// The message of the response: plain, since the client can do nothing about
    /// it. The developer's hint goes to the log ([`MissingAuthLayer::HINT`]).
    pub fn body_text(&self) -> String {
        "Internal server error.".to_owned()
    }

    /// What the server logs, at `error`, when a guard finds no verdict.
    pub const HINT: &'static str = "a scopegate guard ran on a request the layer never saw: \
         install the layer around this route (`.layer(auth.layer())`, where `auth` is \
         the app's `AuthState`), or around the whole router";
}

/// A guard requires scopes the app never registered: a bug in the app, refused with
/// 500 `server_error` (never a pass) and logged with the scopes' names.
#[derive(Debug, Clone)]
pub struct UnregisteredScopes {
    scopes: String,
}

impl UnregisteredScopes {
    pub(crate) fn new(scopes: String) -> Self {
        Self { scopes }
    }

    /// The unregistered scopes, space-separated.
    pub fn scopes(&self) -> &str {
        &self.scopes
    }

    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    /// The `error` code of the response.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::ServerError
    }

    /// The message of the response: the scopes are in the server's log, not here.
    pub fn body_text(&self) -> String {
        "This route's guard is misconfigured; the server's log names the problem.".to_owned()
    }
}

/// Why a scopegate extractor refused a request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuthRejection {
    /// See [`MissingCredentials`].
    MissingCredentials(MissingCredentials),
    /// See [`InvalidRequest`].
    InvalidRequest(InvalidRequest),
    /// See [`InvalidToken`].
    InvalidToken(InvalidToken),
    /// See [`InsufficientScope`].
    InsufficientScope(InsufficientScope),
    /// See [`TemporarilyUnavailable`].
    TemporarilyUnavailable(TemporarilyUnavailable),
    /// See [`MissingAuthLayer`].
    MissingAuthLayer(MissingAuthLayer),
    /// See [`UnregisteredScopes`].
    UnregisteredScopes(UnregisteredScopes),
}

impl AuthRejection {
    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthRejection::MissingCredentials(r) => r.status(),
            AuthRejection::InvalidRequest(r) => r.status(),
            AuthRejection::InvalidToken(r) => r.status(),
            AuthRejection::InsufficientScope(r) => r.status(),
            AuthRejection::TemporarilyUnavailable(r) => r.status(),
            AuthRejection::MissingAuthLayer(r) => r.status(),
            AuthRejection::UnregisteredScopes(r) => r.status(),
        }
    }

    /// The `error` code of the response.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthRejection::MissingCredentials(r) => r.code(),
            AuthRejection::InvalidRequest(r) => r.code(),
            AuthRejection::InvalidToken(r) => r.code(),
            AuthRejection::InsufficientScope(r) => r.code(),
            AuthRejection::TemporarilyUnavailable(r) => r.code(),
            AuthRejection::MissingAuthLayer(r) => r.code(),
            AuthRejection::UnregisteredScopes(r) => r.code(),
        }
    }

    /// The message of the response.
    pub fn body_text(&self) -> String {
        match self {
            AuthRejection::MissingCredentials(r) => r.body_text(),
            AuthRejection::InvalidRequest(r) => r.body_text(),
            AuthRejection::InvalidToken(r) => r.body_text(),
            AuthRejection::InsufficientScope(r) => r.body_text(),
            AuthRejection::TemporarilyUnavailable(r) => r.body_text(),
            AuthRejection::MissingAuthLayer(r) => r.body_text(),
            AuthRejection::UnregisteredScopes(r) => r.body_text(),
        }
    }

    /// `Bearer realm=…[, error=…][, scope=…]`; no `error` without credentials (RFC 6750
    /// §3), and no challenge at all for failures that are not about the credential.
    fn challenge(&self) -> Option<Challenge<'_>> {
        let (realm, scope) = match self {
            AuthRejection::MissingCredentials(r) => (&r.realm, None),
            AuthRejection::InvalidRequest(r) => (&r.realm, None),
            AuthRejection::InvalidToken(r) => (&r.realm, None),
            AuthRejection::InsufficientScope(r) => (&r.realm, r.required.as_deref()),
            AuthRejection::TemporarilyUnavailable(_)
            | AuthRejection::MissingAuthLayer(_)
            | AuthRejection::UnregisteredScopes(_) => return None,
        };
        let code = self.code();
        Some(Challenge {
            realm: Some(realm),
            error: (code != ErrorCode::Unauthorized).then_some(code),
            scope,
        })
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.body_text())
    }
}

impl std::error::Error for AuthRejection {}

impl AuthRejection {
    /// The body and challenge, rendered now unless they were beforehand.
    fn render(&self) -> Rendered {
        let rendered = match self {
            AuthRejection::MissingCredentials(r) => r.rendered.as_ref(),
            AuthRejection::InvalidToken(r) => r.rendered.as_ref(),
            _ => None,
        };
        match rendered {
            Some(rendered) => rendered.clone(),
            None => Rendered::new(self.code(), &self.body_text(), self.challenge()),
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        if let AuthRejection::MissingAuthLayer(_) = self {
            tracing::error!("{}", self.body_text());
        }
        let mut response = self.render().response(self.status(), self.code());
        if self.code() == ErrorCode::TemporarilyUnavailable {
            // A failing store retries recovery every 200 ms; a second is a fair wait.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(self);
        response
    }
}

macro_rules! into_composite {
    ($($name:ident),*) => {$(
        impl From<$name> for AuthRejection {
            fn from(rejection: $name) -> Self {
                AuthRejection::$name(rejection)
            }
        }

        impl IntoResponse for $name {
            fn into_response(self) -> Response {
                AuthRejection::from(self).into_response()
            }
        }
    )*};
}

into_composite!(
    MissingCredentials,
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
    TemporarilyUnavailable,
    MissingAuthLayer,
    UnregisteredScopes
);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_lists_realm_error_and_scope_in_order() {
        let challenge = Challenge {
            realm: Some("api"),
            error: Some(ErrorCode::InsufficientScope),
            scope: Some("core.data.read core.data.write"),
        };
        assert_eq!(
            challenge.header_value().unwrap(),
            "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"core.data.read core.data.write\""
        );
    }

    #[test]
    fn rejection_response_carries_its_code_and_itself_in_extensions() {
        let response = AuthRejection::from(InvalidToken::new("api".into())).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.extensions().get::<ErrorCode>(),
            Some(&ErrorCode::InvalidToken)
        );
        assert!(response.extensions().get::<AuthRejection>().is_some());
    }
}
