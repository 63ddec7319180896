//! [`StoreHealth`]: whether a store is serving, for an app's `/health`.

use chrono::{DateTime, Utc};

use super::StoreError;

/// Whether a [`TokenStore`](super::TokenStore) is serving.
///
/// A store that failed to write refuses every call (503) until the fault is gone,
/// rather than serve what its disk may not hold (see `SledStore`). Answer an app's health check from this, so a
/// load balancer takes a failing instance out of rotation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreHealth {
    /// Serving: the last write reached stable storage.
    Healthy,
    /// Refusing every call since `since`, because of `error`; it retries on its own.
    Failing {
        /// When the store started failing.
        since: DateTime<Utc>,
        /// The failure that stopped it.
        error: StoreError,
    },
}

impl StoreHealth {
    /// Whether the store is serving.
    pub fn is_healthy(&self) -> bool {
        matches!(self, StoreHealth::Healthy)
    }
}
