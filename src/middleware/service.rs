//! [`AuthService`]: the middleware itself.

use std::task::{Context, Poll};

use http::Request;
use tower::Service;
use tracing::{field::Empty, level_filters::LevelFilter, Instrument, Level};

use super::{extensions::attach, future::ResponseFuture, AuthLayer, AuthState};

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
        // One span per request, around the handler too, so the app's own events
        // carry who asked. Its fields never hold a secret, a digest or a header.
        // Made, entered and filled only when a subscriber wants it: a disabled
        // span still costs a dispatcher look-up on every poll and record, and
        // making or dropping one at all costs callsite and `log` checks (tracing's
        // `log` feature), so none is made while no subscriber takes `INFO`.
        if LevelFilter::current() >= Level::INFO {
            let span = tracing::info_span!(
                "scopegate",
                credential = Empty,
                outcome = Empty,
                reason = Empty,
                user_id = Empty,
                token_id = Empty,
                api_key_id = Empty,
            );
            if !span.is_disabled() {
                let (mut inner, state) = self.take_ready();
                let (mut head, body) = request.into_parts();
                let future = async move {
                    let credential = state.find_credential(&head.method, &head.headers, &head.uri);
                    let authentication = state.authenticate(credential, true).await;
                    attach(&mut head.extensions, authentication);
                    inner.call(Request::from_parts(head, body)).await
                };
                return ResponseFuture::pending(future.instrument(span));
            }
        }
        // The credential is borrowed from the request, never copied.
        match self
            .state
            .authenticate_now(request.method(), request.headers(), request.uri())
        {
            // Settled without an await: the inner service's own future, no box.
            Ok(authentication) => {
                attach(request.extensions_mut(), authentication);
                ResponseFuture::settled(self.inner.call(request))
            }
            Err(resume) => {
                let (mut inner, state) = self.take_ready();
                // The future borrows the head across the lookup; the body is only
                // moved, so it need not be `Sync`.
                let (mut head, body) = request.into_parts();
                ResponseFuture::pending(async move {
                    let credential = state.find_credential(&head.method, &head.headers, &head.uri);
                    let authentication = state.authenticate_resumed(credential, resume).await;
                    attach(&mut head.extensions, authentication);
                    inner.call(Request::from_parts(head, body)).await
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
