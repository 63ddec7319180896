//! Revocation epochs: a fixed array of counters that lets the cache tell an entry
//! loaded before a revocation from one loaded after, without remembering digests.
//!
//! A revocation bumps its digest's stripe *after* the store write, and a load reads
//! the stripe *before* its store read. So an entry whose recorded epoch still
//! matches was read after every revocation of its stripe: it is fresh. Another
//! digest's revocation in the same stripe only costs one extra store read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::secret::SecretDigest;

/// 2^14 stripes (128 KiB): even at 1 000 revocations a second, a given stripe
/// moves about every 16 s, far less often than entries expire from the cache.
const STRIPES: usize = 1 << 14;

/// What an entry remembers: the stripe's count and the count of "revoke all".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Epoch {
    all: u64,
    stripe: u64,
}

pub(super) struct RevocationEpochs {
    stripes: Box<[AtomicU64]>,
    all: AtomicU64,
}

impl Default for RevocationEpochs {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            all: AtomicU64::new(0),
        }
    }
}

impl RevocationEpochs {
    fn stripe(&self, digest: &SecretDigest) -> &AtomicU64 {
        // Digests are SHA-256 outputs: their first bytes are uniform.
        let bytes = digest.as_bytes();
        let index = usize::from(u16::from_le_bytes([bytes[0], bytes[1]])) % STRIPES;
        &self.stripes[index]
    }

    pub(super) fn of(&self, digest: &SecretDigest) -> Epoch {
        Epoch {
            all: self.all.load(Ordering::SeqCst),
            stripe: self.stripe(digest).load(Ordering::SeqCst),
        }
    }

    /// `digest` was revoked (or changed) in the store.
    pub(super) fn revoke(&self, digest: &SecretDigest) {
        self.stripe(digest).fetch_add(1, Ordering::SeqCst);
    }

    /// Anything may have been revoked: every entry is stale.
    pub(super) fn revoke_all(&self) {
        self.all.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_changes_its_digests_epoch_and_revoke_all_changes_every_epoch() {
        let epochs = RevocationEpochs::default();
        let (a, b) = (
            SecretDigest::from_bytes([1; 32]),
            SecretDigest::from_bytes([2; 32]),
        );
        let (a0, b0) = (epochs.of(&a), epochs.of(&b));
        epochs.revoke(&a);
        assert_ne!(epochs.of(&a), a0);
        assert_eq!(epochs.of(&b), b0, "another stripe is untouched");
        epochs.revoke_all();
        assert_ne!(epochs.of(&b), b0);
    }
}
