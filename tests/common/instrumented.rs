//! A pass-through store around a real backend that counts the digest lookups reaching
//! it and can be told to fail, like a backend whose disk or network is gone, or whose
//! writes reach the disk and then report failure (a half-applied write).

use std::{
    any::Any,
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
};

use scopegate::store::{Intercepted, Interceptor, Purged, StoreCall, StoreError, StoreErrorKind};

#[derive(Clone, Default)]
pub struct Probe {
    reads: Arc<AtomicUsize>,
    purged: Arc<AtomicUsize>,
    touches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    failing_after_writes: Arc<AtomicBool>,
    panicking_after_writes: Arc<AtomicBool>,
}

impl Probe {
    /// Digest lookups (tokens and keys) so far.
    pub fn digest_reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Tokens purges have removed so far.
    pub fn purged_tokens(&self) -> usize {
        self.purged.load(Ordering::SeqCst)
    }

    /// `last_use` writes (tokens and keys) that have returned so far.
    pub fn touches(&self) -> usize {
        self.touches.load(Ordering::SeqCst)
    }

    /// From now on, every call fails (or succeeds again).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// From now on, every write is applied by the real store, then panics (a
    /// store bug): its caller never learns what happened.
    pub fn set_panicking_after_writes(&self, panicking: bool) {
        self.panicking_after_writes
            .store(panicking, Ordering::SeqCst);
    }

    /// From now on, every write is applied by the real store, then reported as failed.
    pub fn set_failing_after_writes(&self, failing: bool) {
        self.failing_after_writes.store(failing, Ordering::SeqCst);
    }
}

/// A real backend whose calls the probe counts and can fail.
pub type Instrumented<S> = Intercepted<S, Probe>;

/// `inner` with a probe around every call.
pub fn instrumented<S>(inner: S) -> (Instrumented<S>, Probe) {
    let probe = Probe::default();
    (Intercepted::new(inner, probe.clone()), probe)
}

impl Probe {
    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::from_kind(StoreErrorKind::Backend))
        } else {
            Ok(())
        }
    }

    /// The answer of a write the real store has applied.
    fn written<T>(&self, outcome: Result<T, StoreError>) -> Result<T, StoreError> {
        if self.panicking_after_writes.load(Ordering::SeqCst) {
            panic!("the store panicked after its write");
        }
        if self.failing_after_writes.load(Ordering::SeqCst) {
            Err(StoreError::from_kind(StoreErrorKind::Backend))
        } else {
            outcome
        }
    }
}

impl Interceptor for Probe {
    async fn around<T: Send + 'static>(
        &self,
        call: StoreCall,
        inner: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        if call.is_digest_lookup() {
            self.reads.fetch_add(1, Ordering::SeqCst);
        }
        self.check()?;
        let outcome = inner.await;
        if !call.is_write() {
            return outcome;
        }
        match call {
            // Counted once the write returned, so a listing after it sees it.
            StoreCall::TouchToken | StoreCall::TouchApiKey => {
                self.touches.fetch_add(1, Ordering::SeqCst);
            }
            StoreCall::PurgeExpired => {
                let purged = (&outcome as &dyn Any).downcast_ref::<Result<Purged, StoreError>>();
                if let Some(Ok(purged)) = purged {
                    self.purged.fetch_add(purged.tokens.len(), Ordering::SeqCst);
                }
            }
            _ => {}
        }
        self.written(outcome)
    }
}
