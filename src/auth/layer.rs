//! [`AuthLayer`]: wraps services in [`AuthService`].

use tower::Layer;

use super::{AuthService, AuthState};

/// Authenticates every request and attaches an
/// [`Authentication`](super::Authentication) to its extensions. Never rejects.
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
