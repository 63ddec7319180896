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
/// [`TokenStore::invalidation_feed`](crate::TokenStore::invalidation_feed), and
/// [`CachingStore`](super::CachingStore) subscribes to it on its own.
pub trait InvalidationFeed: Send + 'static {
    /// Starts delivering to `sink`. Called once, from within a Tokio runtime; the
    /// feed should stop when [`InvalidationSink::is_closed`] turns true.
    fn start(self: Box<Self>, sink: InvalidationSink);
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

    /// Whether the cache is gone, so the feed can stop.
    pub fn is_closed(&self) -> bool {
        self.shared.strong_count() == 0
    }
}
