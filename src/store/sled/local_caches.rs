//! The caches of this process over one sled database: each clone of a
//! [`SledStore`](super::SledStore) hands out the same in-process feed, so a
//! revocation through any of them reaches every [`CachingStore`] built over any
//! clone, as PostgreSQL's NOTIFY reaches other replicas.
//!
//! A revoking write marks itself in flight in every cache before it reaches the
//! database and settles them after its commit, inside the blocking task that
//! runs it: that task runs to its end whether or not its caller is still
//! waiting, so no dropped future can split the write from the settling.

use std::sync::{Arc, Mutex};

use crate::{
    secret::SecretDigest,
    store::{InvalidationFeed, InvalidationSink},
};

#[derive(Default)]
pub(super) struct LocalCaches {
    sinks: Mutex<Vec<InvalidationSink>>,
}

impl LocalCaches {
    /// The feed a cache over this database subscribes to.
    pub(super) fn feed(self: &Arc<Self>) -> Box<dyn InvalidationFeed> {
        Box::new(LocalFeed(Arc::clone(self)))
    }

    /// Runs the revoking write `op`: every cache asks the store while it is in
    /// flight, then forgets what `touched` reads from its result (everything,
    /// if it failed: it may have half-happened).
    pub(super) fn revoking<T, E>(
        &self,
        op: impl FnOnce() -> Result<T, E>,
        touched: impl FnOnce(&T) -> Vec<SecretDigest>,
    ) -> Result<T, E> {
        let in_flight = InFlight::begin(self.live_sinks());
        let outcome = op();
        let touched = outcome.as_ref().ok().map(touched);
        // A cache that subscribed meanwhile hears of the write too.
        for sink in self.live_sinks() {
            match &touched {
                Some(digests) => sink.revoked(digests),
                None => sink.forget_everything(),
            }
        }
        in_flight.settled();
        outcome
    }

    /// The sinks of caches still alive; the others are dropped.
    fn live_sinks(&self) -> Vec<InvalidationSink> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.retain(|sink| !sink.is_closed());
        sinks.clone()
    }
}

struct LocalFeed(Arc<LocalCaches>);

impl InvalidationFeed for LocalFeed {
    fn start(self: Box<Self>, sink: InvalidationSink) {
        let mut sinks = self.0.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.push(sink.clone());
        // In-process and synchronous: it sees every revocation from now on.
        sink.connected();
    }

    fn needs_runtime(&self) -> bool {
        false
    }
}

/// The caches a revoking write marked in flight; it clears the marks once it
/// has settled them. If the write panics instead, the marks are cleared after
/// every cache forgets everything: the write ran on this thread, so nothing of
/// it can land later.
struct InFlight {
    sinks: Vec<InvalidationSink>,
    settled: bool,
}

impl InFlight {
    fn begin(sinks: Vec<InvalidationSink>) -> Self {
        for sink in &sinks {
            sink.begin_write();
        }
        Self {
            sinks,
            settled: false,
        }
    }

    fn settled(mut self) {
        self.settled = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        for sink in &self.sinks {
            if !self.settled {
                sink.forget_everything();
            }
            sink.end_write();
        }
    }
}
