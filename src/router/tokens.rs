//! `/token` routes: the caller's session and tokens, and the scope catalogue.

use axum::{
    extract::State,
    response::{IntoResponse, Response},
    Json,
};
use http::StatusCode;

use super::{
    documents::{message, with_secret, IssuedTokenDocument, ScopeDocument, TokenDocument},
    error::ApiError,
    find_own,
    input::{IdPath, PageQuery, QueryParams},
    key_manager,
};
use crate::{
    error::Error, extract::CurrentUser, gate::NewToken, ids::TokenId, middleware::AuthState,
    principal::Principal, router::responses::too_many_requests, token::Token,
};

/// `GET /token/current`: the caller's token, or `null` without one.
pub(super) async fn current(
    principal: Option<Principal>,
) -> Result<Json<Option<TokenDocument>>, ApiError> {
    let token = principal.as_ref().map(token_of).transpose()?;
    Ok(Json(token.map(|t| t.clone().into())))
}

/// The token a request was sent with; a request sent with an API key (direct key
/// authentication) has none, and the `/token` routes about "this token" say so.
fn token_of(principal: &Principal) -> Result<&Token, Error> {
    principal.token().ok_or_else(|| {
        Error::invalid(
            "This request is authenticated with an API key, not a token: manage the key \
             under /api_key instead.",
        )
    })
}

/// `GET /token/session`: the caller's token, or a new anonymous one (with its
/// secret) if anonymous sessions are on and within their bound.
pub(super) async fn session(
    State(auth): State<AuthState>,
    principal: Option<Principal>,
) -> Result<Response, ApiError> {
    if let Some(principal) = principal {
        let token = token_of(&principal)?.clone();
        return Ok(Json(TokenDocument::from(token)).into_response());
    }
    let Some(anonymous) = auth.anonymous_sessions() else {
        return Err(auth.missing_credentials().into());
    };
    if let Err(retry_after) = anonymous.admit() {
        let message = "Too many anonymous sessions; try again later or log in.";
        return Err(too_many_requests(message, retry_after).into());
    }
    let lifetime = anonymous.config().lifetime();
    let issued = auth
        .gate()
        .create_token(NewToken::anonymous().lifetime(lifetime))
        .await?;
    Ok(with_secret(
        StatusCode::OK,
        IssuedTokenDocument::from(issued),
    ))
}

/// `DELETE /token/session`: revokes the caller's token; a second call is a 401.
pub(super) async fn end_session(
    State(auth): State<AuthState>,
    principal: Principal,
) -> Result<impl IntoResponse, ApiError> {
    auth.gate().revoke_token(&token_of(&principal)?.id).await?;
    Ok(message("Session deleted.".to_owned()))
}

/// `GET /token`: the caller's live tokens.
pub(super) async fn list(
    State(auth): State<AuthState>,
    user: CurrentUser,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Vec<TokenDocument>>, ApiError> {
    let page = page.page()?;
    let tokens = auth.gate().tokens_of_user(user.id(), page).await?;
    Ok(Json(tokens.into_iter().map(TokenDocument::from).collect()))
}

/// `DELETE /token/{id}`: revokes one of the caller's tokens (an admin: anyone's).
/// Any full session may revoke itself; another token needs a credential that may
/// manage keys. Someone else's token is a 404, exactly as an unknown id.
pub(super) async fn revoke(
    State(auth): State<AuthState>,
    user: CurrentUser,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = TokenId::from(id);
    let itself = user.principal().token_id() == Some(&id);
    if !itself {
        key_manager(&auth, &user)?;
        let found = match user.is_admin() {
            // Admins revoke anyone's tokens, and may list anyone's: nothing to hide.
            true => auth.gate().token(&id).await?.is_some(),
            false => {
                let (store, owner) = (auth.gate().store(), user.id());
                let page_of = |page| async move { Ok(store.tokens_of_user(owner, page).await?) };
                find_own(page_of, |token: &Token| token.id == id)
                    .await?
                    .is_some()
            }
        };
        if !found {
            return Err(Error::NotFound("Token").into());
        }
    }
    auth.gate().revoke_token(&id).await?;
    Ok(message("Token revoked.".to_owned()))
}

/// `GET /token/scopes`: the scopes users may put on keys, and the admin-only ones.
pub(super) async fn scopes(State(auth): State<AuthState>) -> Json<serde_json::Value> {
    let registry = auth.gate().registry();
    let custom: Vec<ScopeDocument<'_>> = registry.custom().map(Into::into).collect();
    let admin_custom: Vec<ScopeDocument<'_>> = registry.admin_custom().map(Into::into).collect();
    Json(serde_json::json!({ "custom": custom, "admin_custom": admin_custom }))
}
