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
//! hot path's question costs one load. A feed that measures its own lag (the
//! PostgreSQL feed's round trips) also vouches for memory only until a deadline:
//! past it, lookups ask the store until the feed vouches again, whether or not
//! its timer noticed. Feeds that never set one leave it at "forever".
//!
//! A lookup asks the word *before* checking an entry's epoch. A revocation
//! announces itself here before its store write, bumps the epoch after its
//! commit, and only then clears its mark. So if the
//! word reads clear, any revocation either began later (its commit comes after
//! this read: the lookup is ordered before it) or had ended, and then its bump
//! shows in the epoch read next. Asked the other way round, a lookup delayed
//! between its two reads could see the old epoch, then the word already clear
//! again, and serve a credential whose revocation was acknowledged meanwhile.

use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Instant,
};

use crate::clock::MonotonicMicros;

/// Bit 0 set: the feed is down.
const FEED_DOWN: usize = 1;
/// One revoking write in flight.
const IN_FLIGHT: usize = 2;

/// No deadline: the feed vouches for memory for as long as it is connected.
const FOREVER: u64 = u64::MAX;

#[derive(Debug)]
pub(super) struct Serving {
    word: AtomicUsize,
    /// Until when the feed vouches for memory, or `FOREVER`.
    vouched_until: AtomicU64,
    micros: MonotonicMicros,
}

impl Serving {
    /// Serving: a cache without a feed.
    pub(super) fn without_feed() -> Self {
        Self {
            word: AtomicUsize::new(0),
            vouched_until: AtomicU64::new(FOREVER),
            micros: MonotonicMicros::from_now(),
        }
    }

    /// Whether the cache may answer from memory at `now` (the monotonic time,
    /// read by the caller).
    pub(super) fn serves_memory_at(&self, now: Instant) -> bool {
        self.serves_memory_by(|| now)
    }

    /// Whether the cache may answer from memory now; reads the clock only when
    /// the feed set a deadline.
    pub(super) fn serves_memory(&self) -> bool {
        self.serves_memory_by(Instant::now)
    }

    fn serves_memory_by(&self, now: impl FnOnce() -> Instant) -> bool {
        // The word first, then the deadline, then (in the caller) the epochs: a
        // feed moves its deadline only after delivering what it vouches for.
        self.word.load(Ordering::SeqCst) == 0 && self.vouched_at(now)
    }

    /// Whether the feed's deadline (if it set one) is still ahead.
    fn vouched_at(&self, now: impl FnOnce() -> Instant) -> bool {
        match self.vouched_until.load(Ordering::SeqCst) {
            FOREVER => true,
            until => self.micros.of(now()) < until,
        }
    }

    /// Whether the invalidation feed (if any) is connected.
    pub(super) fn feed_connected(&self) -> bool {
        self.word.load(Ordering::SeqCst) & FEED_DOWN == 0
    }

    /// Whether the invalidation feed (if any) is connected and within its deadline.
    pub(super) fn feed_vouches_at(&self, now: Instant) -> bool {
        self.feed_connected() && self.vouched_at(|| now)
    }

    pub(super) fn set_feed_connected(&self, connected: bool) {
        match connected {
            true => self.word.fetch_and(!FEED_DOWN, Ordering::SeqCst),
            false => self.word.fetch_or(FEED_DOWN, Ordering::SeqCst),
        };
    }

    /// The feed vouches for memory until `until`. Replaces "forever", then only
    /// ever moves forward: a late call for an older round trip changes nothing.
    pub(super) fn vouch_until(&self, until: Instant) {
        let until = self.micros.of(until).min(FOREVER - 1);
        let _ = self
            .vouched_until
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
                Some(match current {
                    FOREVER => until,
                    current => current.max(until),
                })
            });
    }

    /// A revoking write is about to reach the store.
    pub(super) fn begin_write(&self) {
        self.word.fetch_add(IN_FLIGHT, Ordering::SeqCst);
    }

    /// A revoking write has been settled: its epochs are bumped.
    pub(super) fn end_write(&self) {
        self.word.fetch_sub(IN_FLIGHT, Ordering::SeqCst);
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

    #[test]
    fn memory_serves_only_until_the_feeds_latest_deadline() {
        let serving = Serving::without_feed();
        let now = Instant::now();
        let later = now + std::time::Duration::from_millis(200);
        assert!(
            serving.serves_memory_at(later),
            "no deadline without a feed"
        );
        serving.vouch_until(now + std::time::Duration::from_millis(100));
        assert!(serving.serves_memory_at(now));
        assert!(!serving.serves_memory_at(later), "past the deadline");
        serving.vouch_until(now + std::time::Duration::from_millis(50));
        assert!(
            serving.serves_memory_at(now + std::time::Duration::from_millis(99)),
            "an older round trip does not pull the deadline back"
        );
        serving.vouch_until(later + std::time::Duration::from_millis(1));
        assert!(serving.serves_memory_at(later));
        serving.begin_write();
        assert!(
            !serving.serves_memory_at(now),
            "a write in flight still counts"
        );
    }
}
