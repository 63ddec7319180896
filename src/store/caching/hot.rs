//! The hot-token table: a fixed array of recently served tokens, read without a
//! lock, an allocation or an await, in front of moka.
//!
//! moka answers a hit by logging the read for its eviction policy (a channel
//! send, a timer-wheel update, periodic maintenance) and through an async call
//! that the store trait boxes. A request for a token served a moment ago needs
//! none of that: one slot, found by the digest's bits, holds the token, the
//! revocation epoch it was loaded under and the end of its cache lifetime.
//! moka stays the cache of record (capacity, lifetimes, coalesced loads); a slot
//! is filled only from what moka answered, and a lookup that finds nothing
//! usable goes to moka as before.
//!
//! A slot never outlives what it was copied from: it keeps the load's epoch, so
//! a revocation makes it stale at once, and the instant moka's entry would have
//! expired.
//!
//! A token a thread serves again is handed out as the thread's own copy
//! ([`own_copy`]), not as a clone of the slot's `Arc`: that `Arc`'s count is
//! shared by every core serving the token, and a write per request moved its
//! cache line between them (measured by `benches/cores.rs` with
//! `CORES_TOKENS=per_thread` against one shared token).

use std::{
    cell::RefCell,
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;

use super::{epochs::RevocationEpochs, Cached};
use crate::{secret::SecretDigest, token::Token};

/// The most slots a table has (at 8 bytes each, 128 KiB): enough for the tokens
/// of the requests in flight, which are what repeat within moments.
const MAX_SLOTS: usize = 1 << 14;

struct Hot {
    digest: SecretDigest,
    cached: Cached,
    /// When moka's entry for this load expires: the slot is not used past it.
    until: Instant,
}

pub(super) struct HotTokens {
    slots: Box<[ArcSwapOption<Hot>]>,
}

impl HotTokens {
    /// A table for a cache of `capacity` tokens: none for a cache that keeps none.
    pub(super) fn for_capacity(capacity: u64) -> Self {
        let slots = match usize::try_from(capacity) {
            Ok(0) => 0,
            // Past the largest power of two, `next_power_of_two` would wrap to 0.
            Ok(n) => n
                .checked_next_power_of_two()
                .map_or(MAX_SLOTS, |n| n.min(MAX_SLOTS)),
            Err(_) => MAX_SLOTS,
        };
        Self {
            slots: (0..slots).map(|_| ArcSwapOption::empty()).collect(),
        }
    }

    fn slot(&self, digest: &SecretDigest) -> Option<&ArcSwapOption<Hot>> {
        // Digests are SHA-256 outputs, so any of their bits are uniform; the
        // revocation epochs use the first two bytes, this the last eight.
        let word = digest.words()[3];
        let len = self.slots.len();
        // `len` is a power of two (or zero: no table).
        (len > 0).then(|| &self.slots[(word as usize) & (len - 1)])
    }

    /// The token under `digest`, if its slot holds it, no revocation came after
    /// its load, and moka would still hold it at `now` (the monotonic time, read
    /// by the caller).
    pub(super) fn get(
        &self,
        digest: &SecretDigest,
        epochs: &RevocationEpochs,
        now: Instant,
    ) -> Option<Arc<Token>> {
        let guard = self.slot(digest)?.load();
        let hot = guard.as_ref()?;
        // Constant-time, as every digest comparison (`SecretDigest::eq`).
        let usable = hot.digest == *digest
            && epochs.fresh(hot.cached.loaded_at, hot.cached.stripes)
            && now < hot.until;
        usable.then(|| own_copy(hot, digest))
    }

    /// Keeps `cached`, just answered by moka, for at most `lifetime` (what is left
    /// of the token's life, at most the TTL) after its load: moka's entry, made
    /// at the load, lives no longer.
    pub(super) fn put(&self, digest: &SecretDigest, cached: &Cached, lifetime: Duration) {
        let Some(slot) = self.slot(digest) else {
            return;
        };
        let Some(until) = cached.fetched.checked_add(lifetime) else {
            return;
        };
        slot.store(Some(Arc::new(Hot {
            digest: *digest,
            cached: cached.clone(),
            until,
        })));
    }

    /// Empties the slot of `digest`, whatever token it holds.
    pub(super) fn forget(&self, digest: &SecretDigest) {
        if let Some(slot) = self.slot(digest) {
            slot.store(None);
        }
    }

    /// Empties every slot.
    pub(super) fn clear(&self) {
        for slot in self.slots.iter() {
            slot.store(None);
        }
    }
}

/// Entries of a thread's table of own copies.
const OWN_COPIES: usize = 64;

/// What a thread keeps of one slot value (`Hot`) it served.
enum Own {
    /// Served once, from the slot's own `Arc`: the value's address, only to
    /// tell a second hit. Not held, so the address may be reused by another
    /// value; that only makes the next hit copy a little early.
    Seen(*const Hot),
    /// Served again: the thread's copy of its token. Holding `hot` keeps the
    /// value's allocation alive, so no other value can take its address: the
    /// copy is used only while its slot still holds that very value, which
    /// `get` has just checked is usable.
    Copied { hot: Arc<Hot>, token: Arc<Token> },
}

thread_local! {
    static OWN: RefCell<[Option<Own>; OWN_COPIES]> =
        const { RefCell::new([const { None }; OWN_COPIES]) };
}

/// The token of `hot` (the value of `digest`'s slot). From a thread's second
/// hit on the value on, the thread's own copy: shared only by that thread's
/// requests, its count stays in its core's cache. A first hit, or a token that
/// a thread serves only now and then (one of many clients), gets the slot's own
/// `Arc`, as copying it would cost more than it saves.
fn own_copy(hot: &Arc<Hot>, digest: &SecretDigest) -> Arc<Token> {
    // Another word of the digest than the slot's index, which is the same for
    // every token this slot holds.
    let index = (digest.words()[2] as usize) % OWN_COPIES;
    let address = Arc::as_ptr(hot);
    OWN.try_with(|own| {
        let mut own = own.try_borrow_mut().ok()?;
        let entry = &mut own[index];
        match entry {
            Some(Own::Copied { hot: kept, token }) if Arc::ptr_eq(kept, hot) => {
                Some(Arc::clone(token))
            }
            Some(Own::Seen(seen)) if *seen == address => {
                let token = Arc::new(Token::clone(&hot.cached.token));
                *entry = Some(Own::Copied {
                    hot: Arc::clone(hot),
                    token: Arc::clone(&token),
                });
                Some(token)
            }
            _ => {
                *entry = Some(Own::Seen(address));
                None
            }
        }
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| Arc::clone(&hot.cached.token))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::ids::TokenId;

    fn cached(digest: SecretDigest, epochs: &RevocationEpochs) -> Cached {
        let now = Utc::now();
        let token = Token::new(
            TokenId::generate(),
            digest,
            now,
            now + chrono::Duration::hours(1),
        );
        Cached::new(token, epochs.now())
    }

    #[test]
    fn a_revocation_after_the_load_makes_the_slot_answer_nothing() {
        let epochs = RevocationEpochs::default();
        let hot = HotTokens::for_capacity(16);
        let digest = SecretDigest::from_bytes([7; 32]);
        hot.put(&digest, &cached(digest, &epochs), Duration::from_secs(60));
        assert!(hot.get(&digest, &epochs, Instant::now()).is_some());
        epochs.revoke(&digest);
        assert!(hot.get(&digest, &epochs, Instant::now()).is_none());
    }

    #[test]
    fn a_slot_is_not_used_past_the_lifetime_moka_gave_its_entry() {
        let epochs = RevocationEpochs::default();
        let hot = HotTokens::for_capacity(16);
        let digest = SecretDigest::from_bytes([7; 32]);
        let entry = cached(digest, &epochs);
        hot.put(&digest, &entry, Duration::from_secs(60));
        let at = |secs| entry.fetched + Duration::from_secs(secs);
        assert!(hot.get(&digest, &epochs, at(59)).is_some());
        assert!(hot.get(&digest, &epochs, at(60)).is_none());
        hot.put(&digest, &entry, Duration::ZERO);
        assert!(hot.get(&digest, &epochs, entry.fetched).is_none());
    }

    #[test]
    fn a_digest_sharing_a_slot_never_gets_another_digests_token() {
        let epochs = RevocationEpochs::default();
        let hot = HotTokens::for_capacity(1);
        let (a, b) = (
            SecretDigest::from_bytes([1; 32]),
            SecretDigest::from_bytes([2; 32]),
        );
        hot.put(&a, &cached(a, &epochs), Duration::from_secs(60));
        assert!(hot.get(&b, &epochs, Instant::now()).is_none());
        hot.put(&b, &cached(b, &epochs), Duration::from_secs(60));
        assert_eq!(hot.get(&b, &epochs, Instant::now()).unwrap().digest, b);
        assert!(
            hot.get(&a, &epochs, Instant::now()).is_none(),
            "b displaced a"
        );
    }

    #[test]
    fn each_thread_gets_its_own_copy_of_a_slots_token() {
        let epochs = RevocationEpochs::default();
        let hot = HotTokens::for_capacity(16);
        let digest = SecretDigest::from_bytes([7; 32]);
        let entry = cached(digest, &epochs);
        hot.put(&digest, &entry, Duration::from_secs(60));
        let get = || hot.get(&digest, &epochs, Instant::now()).unwrap();
        let first = get();
        assert!(
            Arc::ptr_eq(&first, &entry.token),
            "a first hit: the slot's own"
        );
        let (second, third) = (get(), get());
        assert!(Arc::ptr_eq(&second, &third), "one copy per thread");
        assert!(!Arc::ptr_eq(&second, &entry.token), "not the slot's own");
        assert_eq!(*second, *entry.token);
        let elsewhere = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    get();
                    get()
                })
                .join()
                .unwrap()
        });
        assert!(!Arc::ptr_eq(&second, &elsewhere), "another thread's copy");
        assert_eq!(*elsewhere, *entry.token);
    }

    #[test]
    fn a_slot_given_a_new_load_hands_out_the_new_token_not_an_old_copy() {
        let epochs = RevocationEpochs::default();
        let hot = HotTokens::for_capacity(16);
        let digest = SecretDigest::from_bytes([7; 32]);
        let before = cached(digest, &epochs);
        hot.put(&digest, &before, Duration::from_secs(60));
        for _ in 0..3 {
            let token = hot.get(&digest, &epochs, Instant::now()).unwrap();
            assert_eq!(token.id, before.token.id);
        }
        let after = cached(digest, &epochs);
        hot.put(&digest, &after, Duration::from_secs(60));
        for _ in 0..3 {
            let token = hot.get(&digest, &epochs, Instant::now()).unwrap();
            assert_eq!(token.id, after.token.id);
        }
    }

    #[test]
    fn a_capacity_beyond_the_largest_table_gets_the_largest_table() {
        for capacity in [u64::MAX, (1 << 63) + 1, 1 << 40] {
            assert_eq!(HotTokens::for_capacity(capacity).slots.len(), MAX_SLOTS);
        }
    }

    #[test]
    fn a_cache_that_keeps_nothing_has_no_slots() {
        let epochs = RevocationEpochs::default();
        let hot = HotTokens::for_capacity(0);
        let digest = SecretDigest::from_bytes([7; 32]);
        hot.put(&digest, &cached(digest, &epochs), Duration::from_secs(60));
        assert!(hot.get(&digest, &epochs, Instant::now()).is_none());
    }

    #[test]
    fn forget_and_clear_empty_slots() {
        let epochs = RevocationEpochs::default();
        let hot = HotTokens::for_capacity(16);
        let digest = SecretDigest::from_bytes([7; 32]);
        hot.put(&digest, &cached(digest, &epochs), Duration::from_secs(60));
        hot.forget(&digest);
        assert!(hot.get(&digest, &epochs, Instant::now()).is_none());
        hot.put(&digest, &cached(digest, &epochs), Duration::from_secs(60));
        hot.clear();
        assert!(hot.get(&digest, &epochs, Instant::now()).is_none());
    }
}
