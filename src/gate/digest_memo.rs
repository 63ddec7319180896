//! A memo of verified secrets' digests, so a token seen before skips SHA-256.
//!
//! A secret's digest never changes (it is a function of the secret and the
//! pepper), so the memo needs no invalidation: revocation is still judged by the
//! store and its cache, under the digest. What the memo holds is a keyed hash of
//! each secret (SipHash-1-3, 128 bits, a key drawn from the OS CSPRNG at start),
//! never the secret: 64 bits find the entry, the other 64 are compared in constant
//! time. Only tokens are remembered, and only after their format and checksum
//! passed, so the hash covers the body alone: a token's head is the gate's, and
//! its check follows from the rest.
//!
//! Why 1-3 rounds are enough: to be taken for another token, a secret must hash
//! as that token's secret does, under a key the attacker never learns, to a
//! value the server never reveals (no hash leaves this table). Nothing an
//! attacker sees depends on the hash but whether a request authenticated, so
//! the cryptanalysis that more rounds guard against (recovering the key from
//! outputs) has nothing to work on, and a blind match is a 2^-128 guess. It is
//! also what the standard library trusts its hash maps' keys to.
//!
//! Only secrets that authenticated are remembered, so made-up tokens cannot fill
//! it.
//!
//! The memo is a fixed table of 64-byte slots in buckets of two, allocated once.
//! A lookup reads one bucket and writes nothing, so two cores serving the same
//! token never pass a cache line back and forth; each slot carries a sequence
//! number (odd while it is being written) so a reader never takes half of one
//! entry and half of another. A secret whose bucket is full displaces an older
//! one, which then costs one SHA-256 when it is next seen.

use std::sync::atomic::{
    fence, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

use rand::RngCore;
use siphasher::sip128::SipHasher13;
use subtle::ConstantTimeEq;

use crate::secret::SecretDigest;

/// Slots per bucket: a secret may sit in either.
const WAYS: usize = 2;

pub(super) struct DigestMemo {
    hasher: SipHasher13,
    /// A power-of-two number of slots, in buckets of `WAYS` adjacent ones.
    slots: Box<[Slot]>,
}

impl DigestMemo {
    /// A memo of room for `capacity` secrets (rounded up to a power of two),
    /// 64 bytes each, allocated now.
    pub(super) fn new(capacity: usize) -> Self {
        let len = capacity.next_power_of_two().max(WAYS);
        let mut rng = rand::rng();
        Self {
            hasher: SipHasher13::new_with_keys(rng.next_u64(), rng.next_u64()),
            slots: (0..len).map(|_| Slot::default()).collect(),
        }
    }

    /// The digest of the token whose body is `body`, if it authenticated before.
    pub(super) fn digest(&self, body: &[u8]) -> Option<SecretDigest> {
        let hash = self.hasher.hash(body);
        self.bucket(hash.h1)
            .iter()
            .find_map(|slot| slot.read(hash.h1, hash.h2))
    }

    /// Remembers the digest of a token that just authenticated, by its body.
    pub(super) fn remember(&self, body: &[u8], digest: SecretDigest) {
        let hash = self.hasher.hash(body);
        let bucket = self.bucket(hash.h1);
        // An empty slot if there is one; else the check's low bit picks which
        // entry makes way, so no pattern of use can pin one in place.
        let slot = bucket
            .iter()
            .find(|slot| slot.is_empty())
            .unwrap_or(&bucket[hash.h2 as usize % WAYS]);
        slot.write(hash.h1, hash.h2, &digest);
    }

    fn bucket(&self, locator: u64) -> &[Slot] {
        // `slots.len()` is a power of two, so masking is `%`.
        let start = (locator as usize & (self.slots.len() - 1)) & !(WAYS - 1);
        &self.slots[start..start + WAYS]
    }
}

/// One remembered secret: where it was filed (64 bits of its keyed hash), the
/// check (the other 64) and its digest. Atomics throughout: a slot is read while
/// another thread may overwrite it, and `sequence` tells the reader if it did.
#[derive(Default)]
#[repr(align(64))]
struct Slot {
    /// Even when the slot is stable, odd while a write is under way; 0 if never written.
    sequence: AtomicU64,
    locator: AtomicU64,
    check: AtomicU64,
    digest: [AtomicU64; 4],
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.sequence.load(Relaxed) == 0
    }

    /// The digest filed under `locator` if the slot holds it with this `check`,
    /// and was not rewritten while being read.
    fn read(&self, locator: u64, check: u64) -> Option<SecretDigest> {
        let before = self.sequence.load(Acquire);
        // A never-written slot (0) holds no secret's digest, whatever a hash
        // of all zeros would say; an odd one is being written.
        if before == 0 || before % 2 == 1 || self.locator.load(Relaxed) != locator {
            return None;
        }
        let stored_check = self.check.load(Relaxed);
        let words = self.digest.each_ref().map(|word| word.load(Relaxed));
        // Orders the loads above before the second read of `sequence`: if any of
        // them saw a newer write, so does that read (a seqlock's reader side).
        fence(Acquire);
        if self.sequence.load(Relaxed) != before {
            return None;
        }
        if !bool::from(stored_check.ct_eq(&check)) {
            return None;
        }
        Some(SecretDigest::from_words(words))
    }

    /// Overwrites the slot, unless another thread is writing it: a memo can wait
    /// for the next request.
    fn write(&self, locator: u64, check: u64, digest: &SecretDigest) {
        let before = self.sequence.load(Relaxed);
        if before % 2 == 1
            || self
                .sequence
                .compare_exchange(before, before + 1, Acquire, Relaxed)
                .is_err()
        {
            return;
        }
        // The odd sequence is visible before any of the stores below.
        fence(Release);
        self.locator.store(locator, Relaxed);
        self.check.store(check, Relaxed);
        for (slot_word, word) in self.digest.iter().zip(digest.words()) {
            slot_word.store(word, Relaxed);
        }
        self.sequence.store(before + 2, Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn digest_of(n: u8) -> SecretDigest {
        SecretDigest::from_bytes([n; 32])
    }

    #[test]
    fn a_never_written_slot_answers_nothing_even_for_an_all_zero_hash() {
        // A body hashing to locator 0 and check 0 would match a fresh slot's zeros.
        assert_eq!(Slot::default().read(0, 0), None);
    }

    #[test]
    fn only_the_remembered_secret_finds_its_digest() {
        let memo = DigestMemo::new(100);
        let digest = SecretDigest::from_bytes(std::array::from_fn(|i| i as u8));
        assert_eq!(memo.digest(b"sg_tok_a"), None);
        memo.remember(b"sg_tok_a", digest);
        assert_eq!(memo.digest(b"sg_tok_a"), Some(digest));
        assert_eq!(memo.digest(b"sg_tok_b"), None);
    }

    #[test]
    fn a_full_memo_forgets_some_secrets_and_never_confuses_them() {
        // Four slots, forty secrets: most are displaced; none finds another's digest.
        let memo = DigestMemo::new(4);
        for n in 0..40u8 {
            memo.remember(format!("sg_tok_{n}").as_bytes(), digest_of(n));
        }
        let mut found = 0;
        for n in 0..40u8 {
            if let Some(digest) = memo.digest(format!("sg_tok_{n}").as_bytes()) {
                assert_eq!(digest, digest_of(n));
                found += 1;
            }
        }
        assert!(
            (1..=4).contains(&found),
            "{found} secrets remembered in 4 slots"
        );
        assert_eq!(
            memo.digest(b"sg_tok_39"),
            Some(digest_of(39)),
            "the newest is kept"
        );
    }

    #[test]
    fn readers_racing_writers_never_see_a_torn_entry() {
        // Two slots, rewritten without pause by two threads with different secrets;
        // a reader must get either nothing or the right digest, never a mix.
        let memo = Arc::new(DigestMemo::new(2));
        let writers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|n| {
                let memo = Arc::clone(&memo);
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        memo.remember(format!("sg_tok_{n}").as_bytes(), digest_of(n));
                    }
                })
            })
            .collect();
        let read = |n: u8| {
            let found = memo.digest(format!("sg_tok_{n}").as_bytes());
            assert!(found.is_none() || found == Some(digest_of(n)), "torn entry");
            found.is_some()
        };
        for i in 0..40_000 {
            read(1 + (i % 2) as u8);
        }
        for writer in writers {
            writer.join().unwrap();
        }
        assert!(read(1) || read(2), "neither secret is remembered");
    }
}
