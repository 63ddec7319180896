//! The JSON documents the router answers with. Digests never leave the server;
//! secrets appear only in the responses that create them.

use std::collections::BTreeSet;

use axum::{
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, Utc};
use http::{header, HeaderValue, StatusCode};
use serde::{Serialize, Serializer};

use crate::{
    api_key::{ApiKey, IssuedApiKey},
    ids::{ApiKeyId, TokenId, UserId},
    scope::{Scope, ScopeInfo},
    scopes::Scopes,
    secret::Secret,
    token::{IssuedToken, Token},
};

/// Writes a secret into a document. The documents hold it as a [`Secret`], so
/// their `Debug` (an app logging a response) prints `[redacted]`.
fn expose<S: Serializer>(secret: &Secret, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose())
}

fn expose_some<S: Serializer>(secret: &Option<Secret>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => expose(secret, serializer),
        None => serializer.serialize_none(),
    }
}

/// An API key, as owners and admins see it.
#[derive(Debug, Serialize)]
pub(super) struct ApiKeyDocument {
    id: ApiKeyId,
    user_id: UserId,
    name: String,
    /// `null`: full access.
    scope: Option<BTreeSet<Scope>>,
    token_duration: Option<f64>,
    active: bool,
    /// Deactivated by an administrator: only an administrator reactivates it.
    locked: bool,
    created: DateTime<Utc>,
    last_use: Option<DateTime<Utc>>,
    expires: Option<DateTime<Utc>>,
    /// Non-secret display form of the secret.
    start: String,
    /// Until when the secret replaced by the last rotation still works.
    previous_secret_valid_until: Option<DateTime<Utc>>,
    /// The secret: only when the key is created or rotated.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_some"
    )]
    key: Option<Secret>,
}

impl From<ApiKey> for ApiKeyDocument {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id,
            user_id: key.user_id,
            name: key.name,
            scope: key.scope,
            token_duration: key.token_duration,
            active: key.active,
            locked: key.locked,
            created: key.created,
            last_use: key.last_use,
            expires: key.expires,
            start: key.start,
            previous_secret_valid_until: key.retired.map(|r| r.valid_until),
            key: None,
        }
    }
}

impl ApiKeyDocument {
    /// The key with its secret, shown this once.
    pub(super) fn issued(issued: IssuedApiKey) -> Self {
        Self {
            key: Some(issued.secret),
            ..issued.key.into()
        }
    }
}

/// A token, as its owner sees it: no secret.
#[derive(Debug, Serialize)]
pub(super) struct TokenDocument {
    id: TokenId,
    user_id: Option<UserId>,
    scope: Scopes,
    created: DateTime<Utc>,
    expires: DateTime<Utc>,
    api_key_id: Option<ApiKeyId>,
    /// When it last authenticated a request (written at most once per interval).
    last_use: Option<DateTime<Utc>>,
}

impl From<Token> for TokenDocument {
    fn from(token: Token) -> Self {
        Self {
            id: token.id,
            user_id: token.user_id,
            scope: token.scopes,
            created: token.created,
            expires: token.expires,
            api_key_id: token.api_key_id,
            last_use: token.last_use,
        }
    }
}

/// A new token with its secret, shown this once.
#[derive(Debug, Serialize)]
pub(super) struct IssuedTokenDocument {
    #[serde(serialize_with = "expose")]
    token: Secret,
    id: TokenId,
    expires: DateTime<Utc>,
    scope: Scopes,
}

impl From<IssuedToken> for IssuedTokenDocument {
    fn from(issued: IssuedToken) -> Self {
        Self {
            token: issued.secret,
            id: issued.token.id,
            expires: issued.token.expires,
            scope: issued.token.scopes,
        }
    }
}

/// The answer to a key exchange, and to an app's own login route:
/// `{"user": {"id"}, "auth_token": {"token", "id", "expires", "scope"}}`, sent with
/// `Cache-Control: no-store`.
///
/// ```
/// use scopegate::{router::AuthTokenResponse, AuthState, NewToken, UserId};
///
/// // After checking the user's password in the app's own login handler:
/// async fn login(state: AuthState, user: UserId) -> Result<AuthTokenResponse, scopegate::Error> {
///     let token = state.gate().create_token(NewToken::for_user(user.clone())).await?;
///     Ok(AuthTokenResponse::new(user, token))
/// }
/// ```
#[derive(Debug, Serialize)]
pub struct AuthTokenResponse {
    user: UserRef,
    auth_token: IssuedTokenDocument,
}

#[derive(Debug, Serialize)]
struct UserRef {
    id: UserId,
}

impl AuthTokenResponse {
    /// The response for a token just issued to `user`.
    pub fn new(user: UserId, token: IssuedToken) -> Self {
        Self {
            user: UserRef { id: user },
            auth_token: token.into(),
        }
    }
}

impl IntoResponse for AuthTokenResponse {
    fn into_response(self) -> Response {
        with_secret(StatusCode::OK, self)
    }
}

/// A scope, as `GET /token/scopes` lists it.
#[derive(Debug, Serialize)]
pub(super) struct ScopeDocument<'a> {
    id: &'a Scope,
    name: &'a str,
    description: &'a str,
}

impl<'a> From<&'a ScopeInfo> for ScopeDocument<'a> {
    fn from(info: &'a ScopeInfo) -> Self {
        Self {
            id: &info.id,
            name: &info.name,
            description: &info.description,
        }
    }
}

/// A response carrying a secret: never stored by caches (RFC 6749 §5.1, with
/// `Pragma` for HTTP/1.0 caches).
pub(super) fn with_secret(status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `{"message": …}` for deletions and revocations.
pub(super) fn message(text: String) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "message": text }))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::secret::{SecretCodec, SecretKind};

    fn issued_token() -> IssuedToken {
        let (secret, digest) = SecretCodec::default().generate(SecretKind::Token);
        let now = Utc::now();
        let token = Token::new(TokenId::from("t"), digest, now, now + TimeDelta::days(1));
        IssuedToken { secret, token }
    }

    #[test]
    fn documents_with_a_secret_redact_it_in_debug_and_carry_it_in_json() {
        let issued = issued_token();
        let secret = issued.secret.expose().to_owned();
        let response = AuthTokenResponse::new(UserId::from("bob"), issued);
        assert!(!format!("{response:?}").contains(&secret), "{response:?}");
        assert!(serde_json::to_string(&response).unwrap().contains(&secret));
    }

    #[test]
    fn a_new_keys_document_redacts_its_secret_in_debug_and_carries_it_in_json() {
        let codec = SecretCodec::default();
        let (secret, digest) = codec.generate(SecretKind::ApiKey);
        let key = ApiKey {
            id: ApiKeyId::from("k"),
            user_id: UserId::from("bob"),
            name: "k".into(),
            scope: None,
            token_duration: None,
            active: true,
            locked: false,
            created: Utc::now(),
            last_use: None,
            expires: None,
            digest,
            start: codec.start(SecretKind::ApiKey, &secret),
            retired: None,
        };
        let exposed = secret.expose().to_owned();
        let document = ApiKeyDocument::issued(IssuedApiKey { secret, key });
        assert!(!format!("{document:?}").contains(&exposed), "{document:?}");
        assert!(serde_json::to_string(&document).unwrap().contains(&exposed));
    }
}
