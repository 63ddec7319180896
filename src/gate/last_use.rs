//! Throttled `last_use`: a credential's use is written at most once per interval,
//! never once per request.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use crate::{
    fast_hash::UniformKeys,
    ids::{ApiKeyId, TokenId},
    secret::SecretDigest,
    store::TokenStore,
};

/// How often a credential's `last_use` is written unless configured.
pub(crate) const DEFAULT_LAST_USE_INTERVAL: Duration = Duration::from_secs(60);

/// A shorter interval is taken as this: a write per request is what throttling avoids.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Credentials whose last write this process remembers; past that, the oldest are
/// forgotten and may be written once more than needed.
const REMEMBERED: u64 = 100_000;

type Write = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), crate::store::StoreError>> + Send>,
>;

/// The credential a request used.
pub(super) enum Used<'a> {
    Token(&'a TokenId),
    ApiKey(&'a ApiKeyId),
}

/// Slots of the fast filter: 2^14 × 8 bytes.
const SLOTS: usize = 1 << 14;

/// When each credential's use was last written by this process.
pub(super) struct LastUse {
    interval: TimeDelta,
    /// The authority: one entry per credential written within the interval.
    /// Keyed by digests of credentials that authenticated: server-made, uniform.
    written: moka::sync::Cache<SecretDigest, DateTime<Utc>, UniformKeys>,
    /// A lock-free filter in front of `written`: per slot, a fingerprint of the
    /// last digest written through it and the second it was written. A match
    /// within the interval skips the cache lookup; anything else (another digest
    /// in the slot, say) asks `written`, so collisions cost time, never writes.
    recent: Box<[AtomicU64]>,
}

/// The slot of `digest` and its fingerprint (digests are uniform: any bytes do).
fn slot_of(digest: &SecretDigest) -> (usize, u64) {
    let b = digest.as_bytes();
    let slot = usize::from(u16::from_le_bytes([b[0], b[1]])) % SLOTS;
    (
        slot,
        u64::from(u32::from_le_bytes([b[2], b[3], b[4], b[5]])),
    )
}

/// Seconds, as the filter keeps them (wrapping: only differences matter).
fn seconds(at: DateTime<Utc>) -> u32 {
    at.timestamp() as u32
}

impl LastUse {
    pub(super) fn new(interval: Duration) -> Self {
        let interval = interval.max(MIN_INTERVAL);
        Self {
            interval: TimeDelta::from_std(interval).unwrap_or(TimeDelta::MAX),
            written: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(interval)
                .build_with_hasher(UniformKeys::new()),
            recent: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether the filter says `digest` was written within the interval.
    fn recently_written(&self, digest: &SecretDigest, now: DateTime<Utc>) -> bool {
        let (slot, fingerprint) = slot_of(digest);
        let packed = self.recent[slot].load(Ordering::Relaxed);
        let age = seconds(now).wrapping_sub(packed as u32);
        packed >> 32 == fingerprint && i64::from(age) < self.interval.num_seconds()
    }

    fn remember(&self, digest: &SecretDigest, at: DateTime<Utc>) {
        let (slot, fingerprint) = slot_of(digest);
        let packed = fingerprint << 32 | u64::from(seconds(at));
        self.recent[slot].store(packed, Ordering::Relaxed);
    }

    /// Writes `last_use = now` for a credential unless its record (`recorded`, as
    /// the caller read it, maybe from a cache) or this process wrote it less than
    /// an interval ago. The write runs in the background: a request never waits
    /// for it, and a failed one is only logged (it grants nothing).
    pub(super) fn note(
        &self,
        store: &Arc<dyn TokenStore>,
        used: Used<'_>,
        digest: &SecretDigest,
        recorded: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        if recorded.is_some_and(|last| now - last < self.interval) {
            return;
        }
        // The common case, a write made less than an interval ago, costs a few
        // instructions and no lock.
        if self.recently_written(digest, now) {
            return;
        }
        // One caller per digest wins the right to write; concurrent ones wait for
        // its answer and see a fresh time.
        let entry = self
            .written
            .entry(*digest)
            .or_insert_with_if(|| now, |last| now - *last >= self.interval);
        self.remember(digest, *entry.value());
        if !entry.is_fresh() {
            return;
        }
        // Stored times have microseconds, as every other time the gate writes.
        let now = now.trunc_subsecs(6);
        let store = Arc::clone(store);
        let task = match used {
            Used::Token(id) => {
                let id = id.clone();
                Box::pin(async move { store.touch_token(&id, now).await }) as Write
            }
            Used::ApiKey(id) => {
                let id = id.clone();
                Box::pin(async move { store.touch_api_key(&id, now).await })
            }
        };
        let task = async move {
            if let Err(err) = task.await {
                let error = crate::store::error_chain(&err);
                tracing::warn!(%error, "could not record a credential's last use");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(task)),
            // No Tokio runtime to run it on: the use goes unrecorded, the request
            // is unaffected.
            Err(_) => tracing::debug!("no Tokio runtime: last_use not recorded"),
        }
    }
}
