//! Throttled `last_use`: a credential's use is written at most once per interval,
//! never once per request.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};

use crate::{secret::SecretDigest, store::TokenStore, ApiKeyId, TokenId};

/// How often a credential's `last_use` is written unless configured.
pub const DEFAULT_LAST_USE_INTERVAL: Duration = Duration::from_secs(60);

/// A shorter interval is taken as this: a write per request is what throttling avoids.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Credentials whose last write this process remembers; past that, the oldest are
/// forgotten and may be written once more than needed.
const REMEMBERED: u64 = 100_000;

type Write =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), crate::StoreError>> + Send>>;

/// The credential a request used.
pub(super) enum Used<'a> {
    Token(&'a TokenId),
    ApiKey(&'a ApiKeyId),
}

/// When each credential's use was last written by this process.
pub(super) struct LastUse {
    interval: TimeDelta,
    written: moka::sync::Cache<SecretDigest, DateTime<Utc>>,
}

impl LastUse {
    pub(super) fn new(interval: Duration) -> Self {
        let interval = interval.max(MIN_INTERVAL);
        Self {
            interval: TimeDelta::from_std(interval).unwrap_or(TimeDelta::MAX),
            written: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(interval)
                .build(),
        }
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
        // One caller per digest wins the right to write; concurrent ones wait for
        // its answer and see a fresh time.
        let due = self
            .written
            .entry(*digest)
            .or_insert_with_if(|| now, |last| now - *last >= self.interval)
            .is_fresh();
        if !due {
            return;
        }
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
