//! Revocation epochs: a fixed array of counters that lets the cache tell an entry
//! loaded before a revocation from one loaded after, without remembering digests.
//!
//! A revocation clock counts revocations. Each one takes the next tick *after*
//! its store write and records it on its digest's stripe (the latest tick
//! wins). A load reads the clock *before* its store read. So an entry is fresh
//! while every stripe it answers to holds a tick no later than its load's: each
//! of those revocations had reached the store before the load read it. Another
//! digest's revocation in the same stripe only costs one extra store read.
//!
//! A token answers to three stripes: its own digest's, its key's [tag] and its
//! owner's [tag]. So revoking a key or a user makes every cached token of theirs
//! stale in one step, however many there are, and a store can revoke them all
//! with one small write (see [`TokenStore`](crate::TokenStore)).
//!
//! [tag]: super::api_key_tag

use std::sync::atomic::{AtomicU64, Ordering};

use super::tags::{api_key_tag, user_tag};
use crate::{secret::SecretDigest, token::Token};

/// 2^14 stripes (128 KiB): even at 1 000 revocations a second, a given stripe
/// moves about every 16 s, far less often than entries expire from the cache.
const STRIPES: usize = 1 << 14;

/// The clock's tick read before a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Epoch(u64);

/// The stripes a cached record is revoked through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stripes([u16; 3]);

impl Stripes {
    /// A token's: its digest's, its key's tag's and its owner's tag's (the
    /// digest's again where it has no key or no owner).
    pub(super) fn of_token(token: &Token) -> Self {
        let own = stripe(&token.digest);
        let key = token
            .api_key_id
            .as_ref()
            .map_or(own, |k| stripe(&api_key_tag(k)));
        let user = token.user_id.as_ref().map_or(own, |u| stripe(&user_tag(u)));
        Self([own, key, user])
    }

    /// Those of `digests` (up to three; the first repeats where fewer).
    pub(super) fn of(digests: &[SecretDigest]) -> Self {
        let first = digests.first().map_or(0, stripe);
        let at = |i: usize| digests.get(i).map_or(first, stripe);
        Self([first, at(1), at(2)])
    }
}

fn stripe(digest: &SecretDigest) -> u16 {
    // Digests are SHA-256 outputs: their first bytes are uniform.
    let bytes = digest.as_bytes();
    u16::from_le_bytes([bytes[0], bytes[1]]) % STRIPES as u16
}

pub(super) struct RevocationEpochs {
    clock: AtomicU64,
    /// The tick of each stripe's latest revocation.
    stripes: Box<[AtomicU64]>,
    /// The tick of the latest "revoke all".
    all: AtomicU64,
}

impl Default for RevocationEpochs {
    fn default() -> Self {
        Self {
            clock: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            all: AtomicU64::new(0),
        }
    }
}

impl RevocationEpochs {
    /// The tick to remember with a load that starts now.
    pub(super) fn now(&self) -> Epoch {
        Epoch(self.clock.load(Ordering::SeqCst))
    }

    /// Whether a record loaded at `loaded` has seen every revocation through
    /// `stripes` and every "revoke all".
    #[inline]
    pub(super) fn fresh(&self, loaded: Epoch, stripes: Stripes) -> bool {
        let seen = |tick: &AtomicU64| tick.load(Ordering::SeqCst) <= loaded.0;
        let [a, b, c] = stripes.0.map(usize::from);
        seen(&self.all)
            && seen(&self.stripes[a])
            && seen(&self.stripes[b])
            && seen(&self.stripes[c])
    }

    /// `digest` (a secret's digest or a tag) was revoked or changed in the store.
    pub(super) fn revoke(&self, digest: &SecretDigest) {
        let tick = self.clock.fetch_add(1, Ordering::SeqCst) + 1;
        self.stripes[usize::from(stripe(digest))].fetch_max(tick, Ordering::SeqCst);
    }

    /// Anything may have been revoked: every entry is stale.
    pub(super) fn revoke_all(&self) {
        let tick = self.clock.fetch_add(1, Ordering::SeqCst) + 1;
        self.all.fetch_max(tick, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ApiKeyId, TokenId, UserId};

    fn token(digest: [u8; 32], key: &str, user: &str) -> Token {
        let now = chrono::Utc::now();
        let mut token = Token::new(
            TokenId::generate(),
            SecretDigest::from_bytes(digest),
            now,
            now + chrono::TimeDelta::hours(1),
        );
        token.api_key_id = Some(ApiKeyId::from(key));
        token.user_id = Some(UserId::from(user));
        token
    }

    #[test]
    fn a_revocation_after_the_load_makes_its_digest_stale_and_revoke_all_makes_everything_stale() {
        let epochs = RevocationEpochs::default();
        let (a, b) = (
            SecretDigest::from_bytes([1; 32]),
            SecretDigest::from_bytes([2; 32]),
        );
        let loaded = epochs.now();
        epochs.revoke(&a);
        assert!(!epochs.fresh(loaded, Stripes::of(&[a])));
        assert!(epochs.fresh(loaded, Stripes::of(&[b])), "another stripe");
        assert!(
            epochs.fresh(epochs.now(), Stripes::of(&[a])),
            "a later load"
        );
        epochs.revoke_all();
        assert!(!epochs.fresh(loaded, Stripes::of(&[b])));
    }

    #[test]
    fn revoking_a_tokens_key_or_owner_makes_the_token_stale_and_leaves_others_fresh() {
        let epochs = RevocationEpochs::default();
        let token = token([1; 32], "k1", "u1");
        let other = token_of("k2", "u2");
        let loaded = epochs.now();
        epochs.revoke(&api_key_tag(&ApiKeyId::from("k1")));
        assert!(!epochs.fresh(loaded, Stripes::of_token(&token)));
        assert!(epochs.fresh(loaded, Stripes::of_token(&other)));
        let loaded = epochs.now();
        epochs.revoke(&user_tag(&UserId::from("u1")));
        assert!(!epochs.fresh(loaded, Stripes::of_token(&token)));
        assert!(epochs.fresh(loaded, Stripes::of_token(&other)));
    }

    fn token_of(key: &str, user: &str) -> Token {
        token([9; 32], key, user)
    }
}
