//! Extractors that guard routes: each handler names what it needs.
//!
//! | extractor | passes |
//! |---|---|
//! | [`Principal`] / `Option<Principal>` | any live token / also no credential (`None`) |
//! | [`CurrentUser`] / `Option<CurrentUser>` | a user's full session, or a user token the route's [`guard`] layer let through |
//! | [`RequireScope<S>`] | a full session, or a token with all scopes of `S` |
//! | [`RequireAnyScope<S>`] | a full session, or a token with one of the scopes of `S` |
//! | [`RequireScopeStrict<S>`] | a token with all scopes of `S` itself (`core.user_auth` does not count) |
//! | [`RequireAdmin<S>`] | an admin in a full session, or an admin's token with all scopes of `S` |
//! | `Option<Guard>` (any of the four above) | no credential (`None`); otherwise as the guard |
//! | [`Authentication`] | always: what the layer found |
//!
//! They refuse with an [`AuthRejection`]: 401 without a credential, 400/401/503 for a
//! refused one, 403 `insufficient_scope` when the token lacks what the route needs,
//! and 500 if [`AuthLayer`](crate::AuthLayer) is not installed. To guard a whole
//! router at once, use [`guard`].

mod current_user;
mod guards;
mod principal;

use std::marker::PhantomData;

use axum::{
    extract::FromRequestParts,
    middleware::{from_extractor, FromExtractorLayer},
};
use http::request::Parts;

pub use self::{
    current_user::CurrentUser,
    guards::{RequireAdmin, RequireAnyScope, RequireScope, RequireScopeStrict},
};
#[cfg(doc)]
use crate::Principal;
use crate::{
    rejection::{AuthRejection, MissingAuthLayer},
    Authentication,
};

/// Guards every route of a router with extractor `E`, as a route layer: the
/// route's requirement, declared on the route. A user token it lets through is
/// then accepted by [`CurrentUser`] in those routes' handlers, whatever its scopes.
///
/// ```
/// use axum::{routing::get, Router};
/// use scopegate::{guard, RequireAdmin};
///
/// let admin: Router = Router::new()
///     .route("/admin/users", get(|| async { "…" }))
///     .route_layer(guard::<RequireAdmin>());
/// ```
pub fn guard<E>() -> FromExtractorLayer<Guarded<E>, ()> {
    from_extractor::<Guarded<E>>()
}

/// The extractor behind [`guard`]: runs `E`, and records that the route's guard
/// let the request through.
#[derive(Debug)]
pub struct Guarded<E>(PhantomData<fn() -> E>);

impl<E, S> FromRequestParts<S> for Guarded<E>
where
    E: FromRequestParts<S>,
    S: Send + Sync,
{
    type Rejection = E::Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        E::from_request_parts(parts, state).await?;
        parts.extensions.insert(RouteGuardPassed);
        Ok(Self(PhantomData))
    }
}

/// Marks a request the route's [`guard`] layer let through, for [`CurrentUser`]. Only
/// the layer sets it: it runs before every extractor, so no handler's extractor
/// order can change what [`CurrentUser`] sees.
#[derive(Debug, Clone, Copy)]
struct RouteGuardPassed;

/// The layer's verdict, or a 500 if the layer is missing.
fn authentication(parts: &Parts) -> Result<&Authentication, AuthRejection> {
    parts
        .extensions
        .get::<Authentication>()
        .ok_or_else(|| MissingAuthLayer.into())
}
