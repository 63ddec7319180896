//! [`Lifeline`]: the open database, dropped on the first I/O failure and reopened
//! from disk before anything is served again.
//!
//! sled applies a batch in memory before it writes it; when the write or the sync
//! fails, its memory holds what the disk may not (a revocation, say), and sled
//! refuses further writes until restarted. Serving from that memory could answer
//! "not found" for a credential the disk still holds. So the first failure retires
//! the instance, and calls fail with [`StoreErrorKind::Unavailable`] until a fresh
//! instance, read from disk, has made a probe write durable.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::{Duration, Instant},
};

use chrono::Utc;

use super::{tree::Inner, upgrade, SledConfig};
use crate::store::{error_chain, StoreError, StoreErrorKind, StoreHealth};

/// The shortest time between two attempts to reopen a failed database.
const RETRY_EVERY: Duration = Duration::from_millis(200);

pub(super) struct Lifeline {
    path: PathBuf,
    config: SledConfig,
    /// The open database; `None` while failed.
    current: RwLock<Option<Arc<Inner>>>,
    health: Mutex<Health>,
    /// Held by the one caller reopening the database.
    reopening: Mutex<()>,
}

struct Health {
    status: StoreHealth,
    last_attempt: Option<Instant>,
}

impl Lifeline {
    pub(super) fn open(path: &Path, config: SledConfig) -> Result<Self, StoreError> {
        let inner = upgrade::open(path, &config)?;
        Ok(Self {
            path: path.to_owned(),
            config,
            current: RwLock::new(Some(Arc::new(inner))),
            health: Mutex::new(Health {
                status: StoreHealth::Healthy,
                last_attempt: None,
            }),
            reopening: Mutex::new(()),
        })
    }

    fn health_state(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open_instance(&self) -> Option<Arc<Inner>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs `op` on the open database; a backend failure retires it.
    pub(super) fn call<T>(
        &self,
        op: impl FnOnce(&Inner) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let inner = match self.open_instance() {
            Some(inner) => inner,
            None => self.reopen()?,
        };
        self.run_on(&inner, op)
    }

    /// Runs `op` if the database is open; hands `op` back if it must be reopened
    /// first (a reopen is slow: it belongs on a blocking thread).
    pub(super) fn call_if_open<T, F>(&self, op: F) -> Result<Result<T, StoreError>, F>
    where
        F: FnOnce(&Inner) -> Result<T, StoreError>,
    {
        match self.open_instance() {
            Some(inner) => Ok(self.run_on(&inner, op)),
            None => Err(op),
        }
    }

    pub(super) fn reads_block(&self) -> bool {
        self.config.reads_on_blocking_threads()
    }

    fn run_on<T>(
        &self,
        inner: &Arc<Inner>,
        op: impl FnOnce(&Inner) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let outcome = op(inner);
        if let Err(err) = &outcome {
            if err.kind() == StoreErrorKind::Backend {
                self.retire(inner, err);
            }
        }
        outcome
    }

    /// The store's health, after one attempt to recover if it is failing.
    pub(super) fn health(&self) -> StoreHealth {
        if self.open_instance().is_none() {
            let _ = self.reopen();
        }
        self.health_state().status.clone()
    }

    /// Stops serving from `inner`: it is dropped once the calls still using it end,
    /// which closes the database and releases its lock for the reopen.
    fn retire(&self, inner: &Arc<Inner>, err: &StoreError) {
        {
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, inner)) {
                *current = None;
            }
        }
        let mut health = self.health_state();
        if health.status.is_healthy() {
            tracing::error!(
                error = %error_chain(err),
                path = %self.path.display(),
                "token store failing: refusing every call until the database reopens from disk and a write reaches it"
            );
            health.status = StoreHealth::Failing {
                since: Utc::now(),
                error: err.clone(),
            };
        }
    }

    /// Reopens the database from disk and probes it, at most once per
    /// [`RETRY_EVERY`]; other callers meanwhile get `Unavailable` at once.
    fn reopen(&self) -> Result<Arc<Inner>, StoreError> {
        let unavailable = |health: &Health| match &health.status {
            StoreHealth::Failing { error, .. } => {
                StoreError::new(StoreErrorKind::Unavailable, error.clone())
            }
            StoreHealth::Healthy => StoreError::from_kind(StoreErrorKind::Unavailable),
        };
        let Ok(_reopening) = self.reopening.try_lock() else {
            return Err(unavailable(&self.health_state()));
        };
        if let Some(inner) = self.open_instance() {
            return Ok(inner);
        }
        {
            let mut health = self.health_state();
            if health
                .last_attempt
                .is_some_and(|at| at.elapsed() < RETRY_EVERY)
            {
                return Err(unavailable(&health));
            }
            health.last_attempt = Some(Instant::now());
        }
        // On failure the fresh instance is dropped here, releasing the lock again.
        let reopened = upgrade::open(&self.path, &self.config).and_then(|inner| {
            inner.probe(Utc::now())?;
            Ok(inner)
        });
        let mut health = self.health_state();
        match reopened {
            Ok(inner) => {
                let inner = Arc::new(inner);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(inner.clone());
                if let StoreHealth::Failing { since, .. } = &health.status {
                    let failed_for = (Utc::now() - *since).num_milliseconds();
                    tracing::info!(
                        failed_for_ms = failed_for,
                        path = %self.path.display(),
                        "token store recovered: reopened from disk and writing again"
                    );
                }
                health.status = StoreHealth::Healthy;
                Ok(inner)
            }
            Err(err) => {
                tracing::debug!(error = %error_chain(&err), "token store still failing");
                Err(unavailable(&health))
            }
        }
    }
}
