//! `/api_key` routes: create, list, update, delete, rotate, and exchange for a token.

use std::time::Duration;

use axum::{
    extract::State,
    response::{IntoResponse, Response},
    Json,
};
use http::{StatusCode, Uri};
use serde::Deserialize;

use super::{
    documents::{message, with_secret, ApiKeyDocument, AuthTokenResponse},
    error::ApiError,
    find_own, forbidden,
    input::{query_has, IdPath, JsonBody, PageQuery, QueryParams},
    key_creator, key_manager, owner_or_admin,
};
use crate::{
    api_key::{ApiKey, ApiKeyUpdate, NewApiKey},
    error::Error,
    extract::CurrentUser,
    gate::TokenRequest,
    ids::{ApiKeyId, UserId},
    middleware::AuthState,
    router::responses::invalid_input,
};

/// `POST /api_key`: a key for the caller; the secret is in this response only.
pub(super) async fn create(
    State(auth): State<AuthState>,
    user: CurrentUser,
    JsonBody(new): JsonBody<NewApiKey>,
) -> Result<Response, ApiError> {
    key_creator(&auth, &user)?;
    let issued = auth.gate().create_api_key(user.id(), new).await?;
    Ok(with_secret(
        StatusCode::CREATED,
        ApiKeyDocument::issued(issued),
    ))
}

#[derive(Deserialize)]
pub(super) struct OwnerQuery {
    user_id: Option<String>,
}

/// `GET /api_key`: the caller's keys, or (admins only) another user's.
pub(super) async fn list(
    State(auth): State<AuthState>,
    user: CurrentUser,
    QueryParams(owner): QueryParams<OwnerQuery>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Vec<ApiKeyDocument>>, ApiError> {
    let page = page.page()?;
    let owner = owner
        .user_id
        .map_or_else(|| user.id().clone(), UserId::from);
    let refusal = "Only administrators may list other users' API keys.";
    owner_or_admin(&auth, &user, Some(&owner), refusal)?;
    let keys = auth.gate().api_keys_of_user(&owner, page).await?;
    Ok(Json(keys.into_iter().map(ApiKeyDocument::from).collect()))
}

/// The key `id`, if the caller may manage keys and owns it or is an admin. A key
/// of someone else is a 404, exactly as an unknown id.
async fn managed_key(
    auth: &AuthState,
    user: &CurrentUser,
    id: &ApiKeyId,
) -> Result<ApiKey, ApiError> {
    key_manager(auth, user)?;
    let key = match user.is_admin() {
        // Admins manage every key, and may list anyone's: nothing to hide.
        true => auth.gate().api_key(id).await?,
        false => {
            let page_of = |page| auth.gate().api_keys_of_user(user.id(), page);
            find_own(page_of, |key: &ApiKey| key.id == *id).await?
        }
    };
    Ok(key.ok_or(Error::NotFound("API key"))?)
}

/// `PUT /api_key/{id}`: partial update (absent = unchanged, `scope: null` = full access).
/// An administrator's deactivation of someone else's key is a lock its owner
/// cannot lift.
pub(super) async fn update(
    State(auth): State<AuthState>,
    user: CurrentUser,
    IdPath(id): IdPath,
    JsonBody(update): JsonBody<ApiKeyUpdate>,
) -> Result<Json<ApiKeyDocument>, ApiError> {
    let id = ApiKeyId::from(id);
    let key = managed_key(&auth, &user, &id).await?;
    let admin = user.is_admin();
    if key.locked && update.active == Some(true) && !admin {
        return Err(forbidden(
            &auth,
            "An administrator deactivated this API key: only an administrator can reactivate it.",
        ));
    }
    // An administrator deactivating someone else's key locks it; one reactivating
    // a key lifts the lock. The store applies the lock in the same atomic write.
    let lock = match update.active {
        Some(false) if key.user_id != *user.id() => Some(true),
        Some(true) if admin => Some(false),
        _ => None,
    };
    let key = auth
        .gate()
        .update_api_key_locking(&id, update, lock)
        .await?;
    Ok(Json(key.into()))
}

/// `DELETE /api_key/{id}`: the key and every token it minted.
pub(super) async fn delete(
    State(auth): State<AuthState>,
    user: CurrentUser,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = ApiKeyId::from(id);
    managed_key(&auth, &user, &id).await?;
    let key = auth.gate().delete_api_key(&id).await?;
    Ok(message(format!("Deleted API key {}.", key.name)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateBody {
    #[serde(default)]
    grace_seconds: u64,
}

/// `POST /api_key/{id}/rotate`: a new secret; the old one works for `grace_seconds`.
/// An administrator rotating someone else's key stops the old secret at once and
/// gets no new one, unless the app hands admins rotated secrets.
pub(super) async fn rotate(
    State(auth): State<AuthState>,
    user: CurrentUser,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<RotateBody>,
) -> Result<Response, ApiError> {
    let id = ApiKeyId::from(id);
    let key = managed_key(&auth, &user, &id).await?;
    let for_owner = key.user_id == *user.id() || auth.gate().rotated_secrets_for_admins();
    if !for_owner && body.grace_seconds > 0 {
        return Err(invalid_input(
            "An administrator's rotation of another user's key stops its old secret at \
             once: grace_seconds must be 0. The owner rotates the key to use it again.",
        )
        .into());
    }
    let grace = Duration::from_secs(body.grace_seconds);
    let issued = auth.gate().rotate_api_key(&id, grace).await?;
    if !for_owner {
        return Ok(Json(ApiKeyDocument::from(issued.key)).into_response());
    }
    Ok(with_secret(StatusCode::OK, ApiKeyDocument::issued(issued)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExchangeBody {
    key: String,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    scope: Option<Vec<String>>,
}

/// `POST /api_key/token`: a key for a new token. Public: the key is the credential.
pub(super) async fn exchange(
    State(auth): State<AuthState>,
    uri: Uri,
    body: Result<JsonBody<ExchangeBody>, Response>,
) -> Result<AuthTokenResponse, ApiError> {
    if query_has(uri.query(), "key") {
        tracing::warn!("refused an API key sent in a URL");
        return Err(invalid_input(
            "Never put an API key in a URL: send it in the JSON body. URLs are logged, so \
             rotate this key.",
        )
        .into());
    }
    let JsonBody(body) = body?;
    let mut request = TokenRequest::new();
    request.duration = body.duration;
    request.scope = body.scope;
    let issued = auth.gate().exchange_api_key(&body.key, request).await?;
    let user = issued
        .token
        .user_id
        .clone()
        .expect("tokens minted from keys belong to the key's owner");
    Ok(AuthTokenResponse::new(user, issued))
}
