//! Whether the database answers, logged once per change.

use std::sync::Mutex;

use chrono::Utc;

use crate::store::{error_chain, StoreError, StoreErrorKind, StoreHealth};

/// The state of the last call: failing since when, and why.
#[derive(Default)]
pub(super) struct Health(Mutex<Option<(chrono::DateTime<Utc>, StoreError)>>);

impl Health {
    /// Records the outcome of a call. Only failures that say the database cannot
    /// serve count: a conflict or a corrupt row is the call's own problem.
    pub(super) fn record<T>(&self, outcome: &Result<T, StoreError>) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Err(err)
                if matches!(
                    err.kind(),
                    StoreErrorKind::Unavailable | StoreErrorKind::Backend
                ) =>
            {
                if state.is_none() {
                    tracing::error!(
                        error = %error_chain(err),
                        "token store failing: refusing calls until the database answers"
                    );
                    *state = Some((Utc::now(), err.clone()));
                }
            }
            Err(_) => {}
            Ok(_) => {
                if let Some((since, _)) = state.take() {
                    let failed_for_ms = (Utc::now() - since).num_milliseconds();
                    tracing::info!(
                        failed_for_ms,
                        "token store recovered: the database answers again"
                    );
                }
            }
        }
    }

    pub(super) fn current(&self) -> StoreHealth {
        match &*self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            None => StoreHealth::Healthy,
            Some((since, error)) => StoreHealth::Failing {
                since: *since,
                error: error.clone(),
            },
        }
    }
}
