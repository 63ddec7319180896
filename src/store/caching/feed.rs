//! Invalidation feeds: how a [`CachingStore`](super::CachingStore) learns of
//! revocations made by other processes sharing its backend.

use std::sync::{Arc, Weak};

use super::Shared;
use crate::secret::SecretDigest;

/// A source of revocations made elsewhere (another replica writing to the same
/// database), delivered to a cache through an [`InvalidationSink`].
///
/// A feed owns its connection and runs on its own (usually a spawned task). It
/// must report [`InvalidationSink::connected`] only once it is sure to see every
/// revocation committed from then on, and [`InvalidationSink::disconnected`] as
/// soon as it may miss one. Until it reports `connected` the cache serves nothing
/// from memory: every lookup goes to the store.
///
/// A store shared between processes hands its feed out through
/// [`TokenStore::invalidation_feed`](crate::store::TokenStore::invalidation_feed), and
/// the gate's cache subscribes to it on its own.
pub trait InvalidationFeed: Send + 'static {
    /// Starts delivering to `sink`. Called once, from within a Tokio runtime
    /// unless [`needs_runtime`](Self::needs_runtime) says otherwise; the feed
    /// should stop when [`InvalidationSink::is_closed`] turns true.
    fn start(self: Box<Self>, sink: InvalidationSink);

    /// Whether [`start`](Self::start) needs a Tokio runtime (the default: most
    /// feeds spawn a task). Without one, a cache does not start such a feed and
    /// sends every lookup to the store instead.
    fn needs_runtime(&self) -> bool {
        true
    }
}

/// The cache's end of an [`InvalidationFeed`]. Holds the cache weakly: once every
/// clone of the cache is dropped, [`is_closed`](Self::is_closed) turns true.
#[derive(Clone)]
pub struct InvalidationSink {
    shared: Weak<Shared>,
}

impl std::fmt::Debug for InvalidationSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidationSink")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl InvalidationSink {
    pub(super) fn new(shared: &Arc<Shared>) -> Self {
        Self {
            shared: Arc::downgrade(shared),
        }
    }

    /// These tokens were deleted or changed elsewhere: drop them from the cache.
    pub fn revoked(&self, digests: &[SecretDigest]) {
        if let Some(shared) = self.shared.upgrade() {
            shared.forget(digests);
        }
    }

    /// The feed may have missed revocations (its connection dropped): empty the
    /// cache and send every lookup to the store until [`connected`](Self::connected).
    pub fn disconnected(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.serving.set_feed_connected(false);
            shared.forget_all();
        }
    }

    /// The feed will see every revocation committed from now on: the cache may
    /// serve again (it starts empty).
    pub fn connected(&self) {
        if let Some(shared) = self.shared.upgrade() {
            // Entries loaded before this point were loaded in bypass mode, which
            // caches nothing; forget anything else for good measure.
            shared.forget_all();
            shared.serving.set_feed_connected(true);
        }
    }

    /// The feed has delivered every revocation committed before some moment, and
    /// vouches for the cache until `until`: past it, lookups go to the store
    /// until the feed vouches again (nothing is emptied, since nothing was
    /// missed, only late). A feed that measures how far behind it may be (the
    /// PostgreSQL feed, by a round trip on its own connection) calls this after
    /// each measurement, so its lag bounds how long a revocation made elsewhere
    /// can be served from memory, even when its own timers run late. A feed that
    /// never calls it is trusted for as long as it is [connected](Self::connected).
    pub fn vouch_until(&self, until: std::time::Instant) {
        if let Some(shared) = self.shared.upgrade() {
            shared.serving.vouch_until(until);
        }
    }

    /// A revoking write of this process is about to reach the shared store: the
    /// cache asks the store until [`end_write`](Self::end_write).
    #[cfg(feature = "sled")] // sled's in-process feed
    pub(crate) fn begin_write(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.serving.begin_write();
        }
    }

    /// The write [`begin_write`](Self::begin_write) announced is settled.
    #[cfg(feature = "sled")] // sled's in-process feed
    pub(crate) fn end_write(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.serving.end_write();
        }
    }

    /// A revoking write failed and may have half-happened: forget everything.
    #[cfg(feature = "sled")] // sled's in-process feed
    pub(crate) fn forget_everything(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.forget_all();
        }
    }

    /// Whether the cache is gone, so the feed can stop.
    pub fn is_closed(&self) -> bool {
        self.shared.strong_count() == 0
    }
}
