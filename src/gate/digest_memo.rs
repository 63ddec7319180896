//! A memo of verified secrets' digests, so a token seen before skips SHA-256.
//!
//! A secret's digest never changes (it is a function of the secret and the
//! pepper), so the memo needs no invalidation: revocation is still judged by the
//! store and its cache, under the digest. What the memo holds is a keyed hash of
//! each secret (SipHash-2-4, 128 bits, a key drawn from the OS CSPRNG at start),
//! never the secret: 64 bits find the entry, the other 64 are compared in constant
//! time. Only secrets that authenticated are remembered, so made-up tokens cannot
//! fill it.

use rand::RngCore;
use siphasher::sip128::SipHasher24;
use subtle::ConstantTimeEq;

use crate::{fast_hash::UniformKeys, secret::SecretDigest};

#[derive(Clone, Copy)]
struct Memo {
    check: u64,
    digest: SecretDigest,
}

pub(super) struct DigestMemo {
    hasher: SipHasher24,
    /// Keyed by SipHash outputs, already uniform: no second SipHash per lookup.
    entries: moka::sync::Cache<u64, Memo, UniformKeys>,
}

impl DigestMemo {
    pub(super) fn new(capacity: u64) -> Self {
        let mut rng = rand::rng();
        Self {
            hasher: SipHasher24::new_with_keys(rng.next_u64(), rng.next_u64()),
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .build_with_hasher(UniformKeys::new()),
        }
    }

    /// The digest of `secret`, if it authenticated before.
    pub(super) fn digest(&self, secret: &str) -> Option<SecretDigest> {
        let hash = self.hasher.hash(secret.as_bytes());
        let memo = self.entries.get(&hash.h1)?;
        bool::from(memo.check.ct_eq(&hash.h2)).then_some(memo.digest)
    }

    /// Remembers the digest of a secret that just authenticated.
    pub(super) fn remember(&self, secret: &str, digest: SecretDigest) {
        let hash = self.hasher.hash(secret.as_bytes());
        let memo = Memo {
            check: hash.h2,
            digest,
        };
        self.entries.insert(hash.h1, memo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_remembered_secret_finds_its_digest() {
        let memo = DigestMemo::new(100);
        let digest = SecretDigest::from_bytes([7; 32]);
        assert_eq!(memo.digest("sg_tok_a"), None);
        memo.remember("sg_tok_a", digest);
        assert_eq!(memo.digest("sg_tok_a"), Some(digest));
        assert_eq!(memo.digest("sg_tok_b"), None);
    }
}
