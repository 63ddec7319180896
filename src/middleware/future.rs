//! [`ResponseFuture`]: the future of [`AuthService`](super::AuthService).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;

/// The lookup and the inner call, for a request the layer could not settle at once.
type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project! {
    /// Response future of [`AuthService`](super::AuthService).
    ///
    /// A request whose credential was settled when the service was called (a
    /// token the cache holds, with a user the loader had at hand; a missing or
    /// malformed credential) is the inner service's own future, unboxed. One that
    /// awaits a store read or a slow user load is boxed.
    pub struct ResponseFuture<F: Future> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F: Future> {
        Settled { #[pin] inner: F },
        Pending { future: Boxed<F::Output> },
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(crate) fn settled(inner: F) -> Self {
        Self {
            kind: Kind::Settled { inner },
        }
    }

    pub(crate) fn pending(future: impl Future<Output = F::Output> + Send + 'static) -> Self {
        Self {
            kind: Kind::Pending {
                future: Box::pin(future),
            },
        }
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Settled { inner } => inner.poll(cx),
            KindProj::Pending { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Settled { .. } => "settled",
            Kind::Pending { .. } => "pending",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}
