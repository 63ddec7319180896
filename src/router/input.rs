//! Reading request input so that every mistake is a clear 400 JSON error.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Query, Request},
    response::Response,
};
use http::{header, request::Parts, HeaderValue, Method};
use serde::{de::DeserializeOwned, Deserialize};

use super::error::ApiError;
use crate::{
    middleware::Authentication,
    router::responses::{input_error, invalid_input},
    store::{Page, MAX_PAGE},
};

/// A JSON object body, sent with `Content-Type: application/json`, which plain
/// HTML forms cannot send (CSRF). An empty body without a `Content-Type` reads as
/// `{}`; with another one (an empty form's), it is refused like any other form.
/// Anything but an object is refused: serde's derived structs would also accept a
/// JSON array, filling fields by position.
pub(super) struct JsonBody<T>(pub(super) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request.headers().get(header::CONTENT_TYPE);
        let is_json = content_type.is_some_and(is_json);
        let typed = content_type.is_some();
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| input_error(rejection.status(), &rejection.body_text()))?;
        let trimmed = bytes.trim_ascii();
        let body: &[u8] = if !is_json && (typed || !trimmed.is_empty()) {
            return Err(invalid_input(
                "Expected a JSON body with `Content-Type: application/json`.",
            ));
        } else if trimmed.is_empty() {
            b"{}"
        } else if !trimmed.starts_with(b"{") {
            return Err(invalid_input("The JSON body must be an object."));
        } else {
            &bytes
        };
        serde_json::from_slice(body)
            .map(JsonBody)
            .map_err(|err| invalid_input(&format!("Invalid JSON body: {err}.")))
    }
}

/// Whether a `Content-Type` value is JSON.
fn is_json(value: &HeaderValue) -> bool {
    value.to_str().is_ok_and(is_json_content_type)
}

fn is_json_content_type(value: &str) -> bool {
    let mime = value.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || (mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Run on every route of the router, before its handler: refuses a token sent
/// in the URL (URLs end up in logs, history and `Referer` headers, and these
/// routes manage credentials), and, on any method but `GET` and `HEAD`, a
/// request carrying the token cookie without `Content-Type: application/json`:
/// a browser attaches cookies to requests other sites make, and only a JSON
/// content type makes it ask the app first (a CORS preflight).
pub(super) struct SafelyCarried;

impl<S: Send + Sync> FromRequestParts<S> for SafelyCarried {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Without the layer, the handlers' own extractors answer 500.
        let Some(auth) = parts.extensions.get::<Authentication>() else {
            return Ok(Self);
        };
        let sources = auth.sources();
        if sources.in_query(&parts.uri) {
            return Err(invalid_input(
                "Tokens in URLs are refused on the key and token routes: URLs are logged. \
                 Send it in the Authorization header.",
            ));
        }
        let may_change_state = !matches!(parts.method, Method::GET | Method::HEAD);
        let json = parts.headers.get(header::CONTENT_TYPE).is_some_and(is_json);
        if may_change_state && !json && sources.in_cookie(&parts.headers) {
            return Err(invalid_input(
                "A request carrying the token cookie must send `Content-Type: \
                 application/json`, even without a body (CSRF protection).",
            ));
        }
        Ok(Self)
    }
}

/// Query parameters; unknown ones are ignored, malformed ones are a 400.
pub(super) struct QueryParams<T>(pub(super) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(params)| QueryParams(params))
            .map_err(|rejection| invalid_input(&rejection.body_text()))
    }
}

/// The `{id}` of the route.
pub(super) struct IdPath(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| IdPath(id))
            .map_err(|rejection| invalid_input(&rejection.body_text()))
    }
}

/// `?limit=50&offset=0` of a listing.
#[derive(Deserialize)]
pub(super) struct PageQuery {
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    offset: usize,
}

fn default_limit() -> usize {
    50
}

impl PageQuery {
    /// The page asked for; a limit outside 1..=1000 is refused, not clamped.
    pub(super) fn page(&self) -> Result<Page, ApiError> {
        if !(1..=MAX_PAGE).contains(&self.limit) {
            let message = format!("limit must be between 1 and {MAX_PAGE}.");
            return Err(invalid_input(&message).into());
        }
        Ok(Page::new(self.limit, self.offset))
    }
}

/// Whether the query string has parameter `name`.
pub(super) fn query_has(query: Option<&str>, name: &str) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|pair| pair.split('=').next() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_suffixes() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(is_json_content_type("application/vnd.api+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/x-www-form-urlencoded"));
        assert!(!is_json_content_type("+json"));
    }

    #[test]
    fn query_has_matches_whole_names_only() {
        assert!(query_has(Some("a=1&key=x"), "key"));
        assert!(query_has(Some("key"), "key"));
        assert!(!query_has(Some("keys=1&monkey=2"), "key"));
        assert!(!query_has(None, "key"));
    }
}
