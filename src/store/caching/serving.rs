//! Whether the cache may answer from memory: one word that a lookup reads once.
//!
//! Two things stop the cache from serving what it holds:
//! - its invalidation feed is down, so a revocation made elsewhere may be unseen;
//! - a revoking write of this process is in flight. Between the store's commit
//!   and the cache's settling of it (epochs bumped), a cached copy of what the
//!   write removed would still pass the epoch check; while any such write is in
//!   flight, lookups ask the store instead.
//!
//! Both live in one word (bit 0: feed down; the rest: writes in flight), so the
//! hot path's question costs one load. A lookup asks it *before* checking an
//! entry's epoch. A revocation announces itself here before its store write,
//! bumps the epoch after its commit, and only then clears its mark. So if the
//! word reads clear, any revocation either began later (its commit comes after
//! this read: the lookup is ordered before it) or had ended, and then its bump
//! shows in the epoch read next. Asked the other way round, a lookup delayed
//! between its two reads could see the old epoch, then the word already clear
//! again, and serve a credential whose revocation was acknowledged meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bit 0 set: the feed is down.
const FEED_DOWN: usize = 1;
/// One revoking write in flight.
const IN_FLIGHT: usize = 2;

#[derive(Debug)]
pub(super) struct Serving(AtomicUsize);

impl Serving {
    /// Serving: a cache without a feed.
    pub(super) fn without_feed() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// Whether the cache may answer from memory now.
    pub(super) fn serves_memory(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }

    /// Whether the invalidation feed (if any) is connected.
    pub(super) fn feed_connected(&self) -> bool {
        self.0.load(Ordering::SeqCst) & FEED_DOWN == 0
    }

    pub(super) fn set_feed_connected(&self, connected: bool) {
        match connected {
            true => self.0.fetch_and(!FEED_DOWN, Ordering::SeqCst),
            false => self.0.fetch_or(FEED_DOWN, Ordering::SeqCst),
        };
    }

    /// A revoking write is about to reach the store.
    pub(super) fn begin_write(&self) {
        self.0.fetch_add(IN_FLIGHT, Ordering::SeqCst);
    }

    /// A revoking write has been settled: its epochs are bumped.
    pub(super) fn end_write(&self) {
        self.0.fetch_sub(IN_FLIGHT, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_serves_only_with_the_feed_up_and_no_revoking_write_in_flight() {
        let serving = Serving::without_feed();
        assert!(serving.serves_memory());
        serving.begin_write();
        serving.begin_write();
        assert!(!serving.serves_memory());
        assert!(serving.feed_connected(), "a write is not a feed outage");
        serving.end_write();
        assert!(!serving.serves_memory(), "one write is still in flight");
        serving.set_feed_connected(false);
        serving.end_write();
        assert!(!serving.serves_memory());
        assert!(!serving.feed_connected());
        serving.set_feed_connected(true);
        assert!(serving.serves_memory());
    }
}
