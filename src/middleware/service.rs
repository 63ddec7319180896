//! [`AuthService`]: the middleware itself.

use std::task::{Context, Poll};

use http::Request;
use tower::Service;
use tracing::Instrument;

use super::{
    extensions::attach, future::ResponseFuture, pipeline::Pending, span, AuthLayer, AuthState,
};

/// Middleware that authenticates requests; see [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    state: AuthState,
}

impl<S> AuthService<S> {
    /// Wraps `inner`, authenticating with `state`.
    pub fn new(inner: S, state: AuthState) -> Self {
        Self { inner, state }
    }

    /// A layer wrapping services in this middleware.
    pub fn layer(state: AuthState) -> AuthLayer {
        AuthLayer::new(state)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // One span per request, around the handler too, when a subscriber wants
        // it: the request is then boxed, to run inside it.
        if let Some(span) = span::for_request() {
            let (mut inner, state) = self.take_ready();
            let future = async move {
                let now = state
                    .authenticate_now(request.method(), request.headers(), request.uri())
                    .map_err(Pending::into_owned);
                let authentication = match now {
                    Ok(authentication) => authentication,
                    Err(pending) => state.authenticate_pending(pending).await,
                };
                span::record(&tracing::Span::current(), &authentication);
                attach(request.extensions_mut(), authentication);
                inner.call(request).await
            };
            return ResponseFuture::pending(future.instrument(span));
        }
        // The credential is borrowed from the request, never copied unless the
        // lookup must await.
        match self
            .state
            .authenticate_now(request.method(), request.headers(), request.uri())
        {
            // Settled without an await: the inner service's own future, no box.
            Ok(authentication) => {
                attach(request.extensions_mut(), authentication);
                ResponseFuture::settled(self.inner.call(request))
            }
            Err(pending) => {
                let pending = pending.into_owned();
                let (mut inner, state) = self.take_ready();
                ResponseFuture::pending(async move {
                    let authentication = state.authenticate_pending(pending).await;
                    attach(request.extensions_mut(), authentication);
                    inner.call(request).await
                })
            }
        }
    }
}

impl<S: Clone> AuthService<S> {
    /// The inner service to call from a future, and the state. `self.inner` was
    /// driven to readiness by `poll_ready`, and a clone may not be: take the ready
    /// one and leave the clone behind. See
    /// <https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services>
    fn take_ready(&mut self) -> (S, AuthState) {
        let clone = self.inner.clone();
        (
            std::mem::replace(&mut self.inner, clone),
            self.state.clone(),
        )
    }
}
