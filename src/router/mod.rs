//! [`router`]: the API-key and token routes, JSON in and out.

mod api_keys;
mod documents;
mod error;
mod input;
mod openapi;
mod responses;
mod tokens;

use std::{future::Future, sync::Arc};

use axum::{
    extract::FromRef,
    middleware::from_extractor,
    routing::{delete, get, post, put},
    Router,
};

pub use self::{documents::AuthTokenResponse, openapi::openapi};
use self::{error::ApiError, input::SafelyCarried};
use crate::{
    error::Error,
    extract::CurrentUser,
    ids::UserId,
    middleware::AuthState,
    rejection::InsufficientScope,
    store::{Page, MAX_PAGE},
};

/// The API-key lifecycle and token routes (`/api_key` and `/token`), generic
/// over the app's state so it can be merged or nested:
///
/// | route | who | does |
/// |---|---|---|
/// | `POST /api_key` | login session | create `{name, scope?, token_duration?, active?, expires_in_days?}` → 201 with the secret `key`, shown once |
/// | `GET /api_key?user_id&limit&offset` | full session; others' keys: admins | list keys, never secrets |
/// | `PUT /api_key/{id}` | manager: owner or admin | partial update; absent = unchanged, `scope: null` = full access; an admin deactivating another's key locks it (only an admin reactivates it) |
/// | `DELETE /api_key/{id}` | manager: owner or admin | delete, revoking its tokens |
/// | `POST /api_key/{id}/rotate` | manager: owner or admin | new secret; `{grace_seconds?}` keeps the old one working (an admin rotating another's key: no secret back, no grace) |
/// | `POST /api_key/token` | public | `{key, duration?, scope?}` → `{user: {id}, auth_token: {token, id, expires, scope}}` |
/// | `GET /token/current` | public | the caller's token, or `null` |
/// | `GET /token/session` | public | the caller's token; without one, a new anonymous `{token, id, expires, scope}` if the app turned [`AnonymousSessions`](crate::AnonymousSessions) on (401 otherwise, 429 past their bound) |
/// | `DELETE /token/session` | any token | revoke the caller's token |
/// | `GET /token?limit&offset` | full session | the caller's tokens |
/// | `DELETE /token/{id}` | full session: itself; manager: its own tokens, admins anyone's | revoke a token |
/// | `GET /token/scopes` | public | `{custom, admin_custom}` scopes with id, name, description |
///
/// A *login session* is a full session the app issued ([`Principal::is_login_session`](crate::Principal::is_login_session)),
/// not a token an API key minted; a *manager* is a login session, or a full-access
/// key sent directly if the app allows it ([`ScopeGate::may_manage_keys`](crate::ScopeGate::may_manage_keys)).
/// Someone else's key or token answers 404, exactly as an unknown id.
///
/// Tokens in a query parameter are refused on every route here (URLs are logged).
/// A request carrying a token cookie needs `Content-Type: application/json` on
/// every route but `GET`, body or not, so a cross-site form cannot forge one.
///
/// The routes need [`AuthLayer`](crate::AuthLayer) around them. JSON bodies must be
/// objects sent with `Content-Type: application/json` (an empty body without a
/// `Content-Type` reads as `{}`),
/// and unknown fields are refused. Responses carrying a secret are sent with
/// `Cache-Control: no-store` and `Pragma: no-cache`.
///
/// ```
/// use axum::{extract::FromRef, Router};
/// use scopegate::AuthState;
///
/// #[derive(Clone)]
/// struct AppState { auth: AuthState /* , the app's own state … */ }
///
/// impl FromRef<AppState> for AuthState {
///     fn from_ref(state: &AppState) -> AuthState { state.auth.clone() }
/// }
///
/// fn app(state: AppState) -> Router {
///     Router::new()
///         .merge(scopegate::router())
///         .layer(state.auth.layer())
///         .with_state(state)
/// }
/// ```
pub fn router<S>() -> Router<S>
where
    AuthState: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    api_key_router()
        .merge(token_router())
        .merge(session_router())
}

/// Only the `/api_key` routes of [`router`]: create, list, update, delete, rotate,
/// and the exchange for a token. Mount the parts an app wants, under any prefix:
///
/// ```
/// use axum::Router;
/// use scopegate::AuthState;
///
/// fn app(auth: AuthState) -> Router {
///     Router::new()
///         .nest("/api/v1", scopegate::router::api_key_router().merge(scopegate::router::token_router()))
///         .layer(auth.layer())
///         .with_state(auth)
/// }
/// ```
pub fn api_key_router<S>() -> Router<S>
where
    AuthState: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api_key", post(api_keys::create).get(api_keys::list))
        .route("/api_key/token", post(api_keys::exchange))
        .route(
            "/api_key/{id}",
            put(api_keys::update).delete(api_keys::delete),
        )
        .route("/api_key/{id}/rotate", post(api_keys::rotate))
        .route_layer(from_extractor::<SafelyCarried>())
}

/// Only the token-management routes of [`router`]: `GET /token`, `GET
/// /token/current`, `DELETE /token/{id}` and `GET /token/scopes`.
pub fn token_router<S>() -> Router<S>
where
    AuthState: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/token", get(tokens::list))
        .route("/token/current", get(tokens::current))
        .route("/token/scopes", get(tokens::scopes))
        .route("/token/{id}", delete(tokens::revoke))
        .route_layer(from_extractor::<SafelyCarried>())
}

/// Only `GET /token/session` (the caller's token, or a new anonymous session if
/// the app turned them on) and `DELETE /token/session` (log out) of [`router`].
pub fn session_router<S>() -> Router<S>
where
    AuthState: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/token/session",
            get(tokens::session).delete(tokens::end_session),
        )
        .route_layer(from_extractor::<SafelyCarried>())
}

/// Refuses, with 403 `insufficient_scope`, a credential that may not change API
/// keys or revoke others' tokens ([`ScopeGate::may_manage_keys`](crate::ScopeGate::may_manage_keys)),
/// whatever the key or token: the refusal says nothing about any record.
fn key_manager(auth: &AuthState, user: &CurrentUser) -> Result<(), ApiError> {
    if auth.gate().may_manage_keys(user.principal()) {
        return Ok(());
    }
    Err(forbidden(auth, "Managing API keys and other sessions needs a login session, not a credential derived from an API key."))
}

/// Refuses, with 403 `insufficient_scope`, a credential that may not create API
/// keys ([`ScopeGate::may_create_keys`](crate::ScopeGate::may_create_keys)).
fn key_creator(auth: &AuthState, user: &CurrentUser) -> Result<(), ApiError> {
    if auth.gate().may_create_keys(user.principal()) {
        return Ok(());
    }
    Err(forbidden(
        auth,
        "Creating API keys needs a login session, not a credential derived from an API key.",
    ))
}

/// A 403 `insufficient_scope` with `message`: the credential is live, and may
/// not do this.
fn forbidden(auth: &AuthState, message: &str) -> ApiError {
    let rejection = InsufficientScope::new(Arc::from(auth.realm()), &[], message.to_owned());
    ApiError::Auth(rejection.into())
}

/// The first of the caller's own records that `is_it` picks, read page by page
/// from `page_of` (a page shorter than [`MAX_PAGE`] is the last). A non-admin's
/// key or token id is looked for this way, never by id alone: the work done, and
/// so the time taken, depends only on the caller's own records, whether or not
/// someone else's has that id (reading an existing record by id takes
/// measurably longer than missing one).
async fn find_own<T, F>(
    mut page_of: impl FnMut(Page) -> F,
    is_it: impl Fn(&T) -> bool,
) -> Result<Option<T>, Error>
where
    F: Future<Output = Result<Vec<T>, Error>>,
{
    let mut offset = 0;
    loop {
        let page = page_of(Page::new(MAX_PAGE, offset)).await?;
        let last = page.len() < MAX_PAGE;
        if let Some(found) = page.into_iter().find(|record| is_it(record)) {
            return Ok(Some(found));
        }
        if last {
            return Ok(None);
        }
        offset += MAX_PAGE;
    }
}

/// Lets `user` list the records of `owner` if they are theirs or `user` is an
/// admin; anyone else gets a 403 with `message`.
fn owner_or_admin(
    auth: &AuthState,
    user: &CurrentUser,
    owner: Option<&UserId>,
    message: &str,
) -> Result<(), ApiError> {
    if owner == Some(user.id()) || user.is_admin() {
        return Ok(());
    }
    let rejection = InsufficientScope::new(Arc::from(auth.realm()), &[], message.to_owned());
    Err(ApiError::Auth(rejection.into()))
}
