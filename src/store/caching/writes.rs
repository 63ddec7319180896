//! Every write through the cache: the store write and the cache's settling of it
//! as one unit that dropping the caller's future cannot split.
//!
//! **Every `.await` is a cancellation point.** A client that hangs up, a timeout
//! layer or a `select!` drops the request's future at whichever await it was
//! parked on. A store write whose caller is dropped may still commit (sled's runs
//! on the blocking pool; a PostgreSQL `COMMIT` may already be on the wire), and
//! if the settling after it never ran, the cache would go on serving a credential
//! the store dropped. So the write and its settling form one future that runs to
//! its end: in the caller's task while the caller waits, and, if the caller is
//! dropped first, in a task the runtime is handed at the drop
//! ([`RunsToItsEnd`]). Dropping the caller drops only the wait.
//!
//! A revoking write also marks itself in flight ([`Serving::begin_write`]) before
//! it reaches the store and clears the mark only after its epochs are bumped:
//! meanwhile lookups ask the store, so no lookup on any thread accepts the
//! credential once the store has dropped it, even in the instant between the
//! commit and the settling.
//!
//! Add a write to [`CachingStore`] only through [`CachingStore::write`].
//!
//! [`Serving::begin_write`]: super::serving::Serving::begin_write

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use super::{CachingStore, Shared};
use crate::{
    secret::SecretDigest,
    store::{StoreError, TokenStore},
};

/// A store write, owning its arguments, ready to run in the unit's task.
pub(super) type StoreWrite<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// Reads from a revoking write's result what it touched.
pub(super) type Touched<T> = Box<dyn FnOnce(&T) -> Vec<SecretDigest> + Send>;

/// What a write does to the cache.
pub(super) enum Effect<T> {
    /// Adds a credential under `digest`: no lookup may keep calling it unknown.
    Adds(SecretDigest),
    /// Removes or changes what credentials grant: the digests (and
    /// [tags](super::api_key_tag)) it touched, read from its result. Lookups ask
    /// the store while it is in flight; if it fails, the cache forgets everything
    /// (the write may have half-happened).
    Revokes(Touched<T>),
}

impl<T> Effect<T> {
    /// A revoking write that touched what `touched` reads from its result.
    pub(super) fn revokes(touched: impl FnOnce(&T) -> Vec<SecretDigest> + Send + 'static) -> Self {
        Self::Revokes(Box::new(touched))
    }
}

impl CachingStore {
    /// Runs `write` on the store and settles its `effect` on the cache, as one
    /// unit that runs to its end however the caller ends.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(Arc<dyn TokenStore>) -> StoreWrite<T>,
        effect: Effect<T>,
    ) -> Result<T, StoreError> {
        let unit = settled(
            Arc::clone(&self.shared),
            write(Arc::clone(&self.inner)),
            effect,
        );
        RunsToItsEnd(Some(Box::pin(unit))).await
    }
}

/// A future that, dropped before its end, is handed to the runtime to finish:
/// the caller may stop waiting, the work does not stop. While the caller waits,
/// it runs in the caller's task (no task of its own to allocate).
struct RunsToItsEnd<T: Send + 'static>(Option<StoreWrite<T>>);

impl<T: Send + 'static> Future for RunsToItsEnd<T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(unit) = self.0.as_mut() else {
            return Poll::Pending; // polled after its end: never
        };
        let outcome = ready!(unit.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(outcome)
    }
}

impl<T: Send + 'static> Drop for RunsToItsEnd<T> {
    fn drop(&mut self) {
        if let Some(unit) = self.0.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(unit)),
                // Nothing can finish it: dropping it drops its in-flight mark,
                // which stops the cache serving from memory (see `InFlight`).
                Err(_) => drop(unit),
            }
        }
    }
}

/// The unit: marks a revoking write in flight, writes, settles, clears the mark.
async fn settled<T>(
    shared: Arc<Shared>,
    write: StoreWrite<T>,
    effect: Effect<T>,
) -> Result<T, StoreError> {
    let in_flight = match &effect {
        Effect::Adds(digest) => {
            shared.unknown.invalidate(digest);
            None
        }
        Effect::Revokes(_) => Some(InFlight::begin(&shared)),
    };
    let outcome = write.await;
    let forgotten = match (effect, &outcome) {
        (Effect::Adds(digest), _) => {
            // A lookup may have called it unknown while it was being written.
            shared.unknown.invalidate(&digest);
            vec![digest]
        }
        (Effect::Revokes(touched), Ok(value)) => {
            let touched = touched(value);
            shared.forget(&touched);
            touched
        }
        (Effect::Revokes(_), Err(_)) => {
            shared.forget_all();
            Vec::new()
        }
    };
    if let Some(in_flight) = in_flight {
        in_flight.settled();
    }
    // The epochs already make these entries stale: dropping them only frees memory.
    for digest in &forgotten {
        shared.tokens.invalidate(digest).await;
    }
    outcome
}

/// A revoking write in flight: lookups bypass the cache until it is settled.
struct InFlight<'a> {
    shared: &'a Shared,
    settled: bool,
}

impl<'a> InFlight<'a> {
    fn begin(shared: &'a Shared) -> Self {
        shared.serving.begin_write();
        Self {
            shared,
            settled: false,
        }
    }

    fn settled(mut self) {
        self.settled = true;
        self.shared.serving.end_write();
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.settled {
            // The unit itself was dropped (its runtime shutting down) or the write
            // panicked: the write may still land and nothing would settle it. The
            // cache stops serving from memory for good (the mark stays), failing
            // closed.
            tracing::error!(
                "a revoking write was abandoned before the cache settled it: \
                 every lookup now goes to the store"
            );
            self.shared.forget_all();
        }
    }
}
