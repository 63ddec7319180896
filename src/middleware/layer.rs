//! [`AuthLayer`]: wraps services in [`AuthService`].

use tower::Layer;

use super::{AuthService, AuthState};

/// Authenticates every request; wraps services in [`AuthService`].
///
/// For every request the service finds the one credential it carries, resolves it
/// through the [`ScopeGate`](crate::ScopeGate) (and its cache), and inserts an
/// [`Authentication`](crate::Authentication) into the request extensions: no credential, a live
/// [`Principal`](crate::Principal), or a refusal with its reason. It never rejects by
/// itself, so public routes keep working anonymously; the
/// [extractors](crate::RequireScope) decide per route and answer with an
/// [`AuthRejection`](crate::rejection::AuthRejection).
///
/// Credentials are read from, in this order:
/// 1. `Authorization: Bearer <token>` (scheme case-insensitive; other schemes such
///    as `Basic` are left to the app);
/// 2. a custom header ([`AuthStateBuilder::with_token_header`](crate::AuthStateBuilder::with_token_header), off by default);
/// 3. a cookie ([`AuthStateBuilder::with_token_cookie`](crate::AuthStateBuilder::with_token_cookie), off by default);
/// 4. a query parameter ([`AuthStateBuilder::with_token_query`](crate::AuthStateBuilder::with_token_query), off by default,
///    unsafe: URLs leak).
///
/// The same token in several places is fine. Two different credentials, several
/// `Authorization` headers, an empty `Bearer`, whitespace other than the one space
/// after `Bearer`, or a value that is not printable ASCII is a malformed request
/// (`400 invalid_request` on guarded routes).
///
/// The service works in any Tower stack over `http::Request`: it does not touch the
/// body and returns the inner service's response unchanged.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    state: AuthState,
}

impl AuthLayer {
    /// A layer authenticating with `state`.
    pub fn new(state: AuthState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService::new(inner, self.state.clone())
    }
}
