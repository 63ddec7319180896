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
use crate::principal::Principal;
use crate::{
    middleware::Authentication,
    rejection::{AuthRejection, MissingAuthLayer},
    scope_set::ScopeSet,
};

/// Guards every route of a router with `G`, as a route layer: the route's
/// requirement, declared on the route. The guard only refuses; it widens
/// nothing: [`CurrentUser`] in those routes still needs a full session, and a
/// handler gets the user of a scoped token from the guard's own extractor.
///
/// `G` is one of the guards that refuse some live credential: [`RequireScope`],
/// [`RequireAnyScope`], [`RequireAdmin`], [`RequireScopeStrict`] with at least
/// one scope, and [`CurrentUser`]. Anything else, which would let every
/// credential through, does not compile:
///
/// ```
/// use axum::{routing::get, Router};
/// use scopegate::{extract::guard, RequireAdmin};
///
/// let admin: Router = Router::new()
///     .route("/admin/users", get(|| async { "…" }))
///     .route_layer(guard::<RequireAdmin>());
/// ```
///
/// ```compile_fail
/// # use scopegate::{extract::guard, RequireScope};
/// // `Option<_>` lets a request without a credential through.
/// let _ = guard::<Option<RequireScope>>();
/// ```
///
/// ```compile_fail
/// # use scopegate::{extract::guard, Authentication};
/// let _ = guard::<Authentication>();
/// ```
///
/// # Panics
/// For [`RequireScopeStrict`] over no scope (`()`), which lets every live
/// credential through, anonymous ones included: when the router is built, as
/// axum's own routing mistakes do.
pub fn guard<G: RouteGuard>() -> FromExtractorLayer<Guarded<G>, ()> {
    assert!(
        G::refuses_live_credentials(),
        "scopegate::extract::guard::<{}>() would let every live credential through: \
         name the scopes it requires",
        std::any::type_name::<G>()
    );
    from_extractor::<Guarded<G>>()
}

/// The extractors [`guard`] takes: those that refuse some live credential.
/// Sealed: implemented for scopegate's guards only.
pub trait RouteGuard: sealed::Sealed {
    /// Whether this guard refuses some live credential (not so for
    /// `RequireScopeStrict<()>`).
    #[doc(hidden)]
    fn refuses_live_credentials() -> bool {
        true
    }
}

mod sealed {
    pub trait Sealed {}
}

impl sealed::Sealed for CurrentUser {}
impl RouteGuard for CurrentUser {}

macro_rules! route_guards {
    ($($guard:ident),*) => {$(
        impl<S: ScopeSet> sealed::Sealed for $guard<S> {}
        impl<S: ScopeSet> RouteGuard for $guard<S> {}
    )*};
}
route_guards!(RequireScope, RequireAnyScope, RequireAdmin);

impl<S: ScopeSet> sealed::Sealed for RequireScopeStrict<S> {}
impl<S: ScopeSet> RouteGuard for RequireScopeStrict<S> {
    fn refuses_live_credentials() -> bool {
        S::with_scopes(|scopes| !scopes.is_empty())
    }
}

/// The extractor behind [`guard`]: runs `G`, and nothing else, so it does not
/// matter where it stands among a handler's extractors.
#[derive(Debug)]
pub struct Guarded<G>(PhantomData<fn() -> G>);

impl<G, S> FromRequestParts<S> for Guarded<G>
where
    G: RouteGuard + FromRequestParts<S>,
    S: Send + Sync,
{
    type Rejection = G::Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        G::from_request_parts(parts, state).await?;
        Ok(Self(PhantomData))
    }
}

/// The layer's verdict, or a 500 if the layer is missing (the hint logged, not
/// sent).
fn authentication(parts: &Parts) -> Result<&Authentication, AuthRejection> {
    parts.extensions.get::<Authentication>().ok_or_else(|| {
        tracing::error!(path = %parts.uri.path(), "{}", MissingAuthLayer::HINT);
        MissingAuthLayer.into()
    })
}
