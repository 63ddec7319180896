//! The guards' refusals: one type per failure, and [`AuthRejection`], the
//! composite the extractors return.

use std::{fmt, sync::Arc};

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

use super::{Challenge, ErrorCode, Rendered};
use crate::scope::{join_scopes, Scope};

/// The one message of every `invalid_token`, whatever the reason.
pub(super) const INVALID_TOKEN_MESSAGE: &str = "Invalid or expired token.";
const API_KEY_AS_TOKEN_MESSAGE: &str = "This is an API key, not a token: exchange it for a \
     short-lived token with POST /api_key/token ({\"key\": \"…\"}) and send that token \
     (this server does not accept API keys directly).";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::Challenge;

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
