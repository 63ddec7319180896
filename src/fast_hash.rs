//! A cheap keyed hasher for maps whose keys are uniform and secret-free: SHA-256
//! digests (the token and key caches, the `last_use` throttle), and for the
//! scope registry, whose keys the app fixes.
//!
//! The default `RandomState` (SipHash-1-3) costs several times this hash per
//! 32-byte key, on every cache lookup of every request. These keys need no such
//! care, so what a table needs is only a spread of their bits, salted per
//! process. Each 64-bit word is folded in with one 128-bit multiply by a random
//! odd key.
//!
//! What callers can put in such a map: the caches keep entries only for digests
//! of secrets the server made, but moka's map of loads in flight also holds,
//! for the length of a store read, the digest of whatever secret a request
//! presented. A caller chooses the secret, not its digest: fixing `k` bits of a
//! digest costs about 2^k SHA-256 runs, and even fixed bits say nothing about
//! where the per-map key sends them. So no caller can aim entries at one bucket.
//!
//! Use it only for keys that are digests or fixed by the app; a map a caller
//! fills with keys of its own choosing (the cache of unknown digests, whose
//! entries outlive a read) keeps SipHash.

use std::hash::{BuildHasher, Hasher};

use rand::RngCore;

/// Builds [`FoldHasher`]s with keys drawn once per map from the OS CSPRNG.
#[derive(Clone, Copy)]
pub(crate) struct UniformKeys {
    seed: u64,
    multiplier: u64,
}

impl UniformKeys {
    pub(crate) fn new() -> Self {
        let mut rng = rand::rng();
        Self {
            seed: rng.next_u64(),
            multiplier: rng.next_u64() | 1,
        }
    }
}

impl BuildHasher for UniformKeys {
    type Hasher = FoldHasher;

    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            state: self.seed,
            multiplier: self.multiplier,
        }
    }
}

/// Folds 64-bit words into its state, one multiply each.
pub(crate) struct FoldHasher {
    state: u64,
    multiplier: u64,
}

impl FoldHasher {
    fn fold(&mut self, word: u64) {
        let product = u128::from(self.state ^ word) * u128::from(self.multiplier);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.fold(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.fold(u64::from_le_bytes(word) ^ (rest.len() as u64) << 59);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.fold(word);
    }

    fn write_usize(&mut self, word: usize) {
        self.fold(word as u64);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_one_bit_moves_the_hash() {
        let keys = UniformKeys::new();
        let a = keys.hash_one([7u8; 32]);
        assert_eq!(a, keys.hash_one([7u8; 32]));
        let mut flipped = [7u8; 32];
        flipped[31] ^= 1;
        assert_ne!(a, keys.hash_one(flipped));
        assert_ne!(keys.hash_one(1u64), keys.hash_one(2u64));
    }

    #[test]
    fn maps_built_apart_hash_apart() {
        // Per-map keys: one map's bucket layout says nothing about another's.
        let (a, b) = (UniformKeys::new(), UniformKeys::new());
        assert_ne!(a.hash_one(42u64), b.hash_one(42u64));
    }
}
