//! Group commit: writers whose batches are applied together share one sync.
//!
//! A writer applies its batch in memory under the write lock and takes a ticket
//! (its position in apply order). It then waits, outside the lock, until a sync has
//! covered its ticket. The first waiter with no sync running becomes the leader: it
//! syncs everything applied so far, for itself and everyone queued behind it. sled
//! writes its log in apply order, so one sync makes a whole prefix durable.

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::store::StoreError;

/// Tickets and the durable watermark of one open database.
#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    synced: Condvar,
}

#[derive(Default)]
struct State {
    /// Ticket of the last batch applied in memory.
    applied: u64,
    /// Every ticket up to this one is on stable storage.
    durable: u64,
    /// A leader is syncing.
    syncing: bool,
    /// A sync failed: what was applied after `durable` may never reach the disk,
    /// so this database must not be used again.
    failed: Option<StoreError>,
    /// Syncs run so far.
    syncs: u64,
}

impl GroupCommit {
    fn state(&self) -> MutexGuard<'_, State> {
        // Counters only: a panic elsewhere leaves them consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a batch just applied; call under the write lock, so tickets follow
    /// apply order.
    pub(super) fn applied(&self) -> u64 {
        let mut state = self.state();
        state.applied += 1;
        state.applied
    }

    /// The ticket of everything applied so far: a write that changed nothing still
    /// waits for it, since its answer ("not found", "refused") may rest on a write
    /// that is not yet durable.
    pub(super) fn latest(&self) -> u64 {
        self.state().applied
    }

    /// Syncs run so far (for tests of the grouping).
    #[cfg(test)]
    pub(super) fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// Returns once `ticket` is on stable storage, running `sync` as the leader if
    /// no sync is under way. A failed sync fails every waiter it was meant to cover,
    /// and every later one.
    pub(super) fn wait_durable(
        &self,
        ticket: u64,
        sync: impl Fn() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        loop {
            if let Some(err) = &state.failed {
                return Err(err.clone());
            }
            if state.durable >= ticket {
                return Ok(());
            }
            if !state.syncing {
                state.syncing = true;
                let target = state.applied;
                drop(state);
                let outcome = sync();
                state = self.state();
                state.syncing = false;
                state.syncs += 1;
                match outcome {
                    Ok(()) => state.durable = state.durable.max(target),
                    Err(err) => state.failed = Some(err),
                }
                self.synced.notify_all();
                continue;
            }
            state = self.synced.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicU64, Ordering},
            Arc, Barrier,
        },
        time::Duration,
    };

    use super::*;
    use crate::store::StoreErrorKind;

    #[test]
    fn a_writer_returns_only_after_a_sync_that_started_after_its_apply() {
        let commits = Arc::new(GroupCommit::default());
        // What the last finished sync covered: the applied ticket when it started.
        let covered = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (commits, covered) = (commits.clone(), covered.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let ticket = commits.applied();
                        let sync = || {
                            let target = commits.latest();
                            std::thread::sleep(Duration::from_micros(200));
                            covered.fetch_max(target, Ordering::SeqCst);
                            Ok(())
                        };
                        commits.wait_durable(ticket, sync).unwrap();
                        assert!(covered.load(Ordering::SeqCst) >= ticket);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(commits.latest(), 16 * 20);
    }

    #[test]
    fn concurrent_writers_share_syncs() {
        let commits = Arc::new(GroupCommit::default());
        let start = Arc::new(Barrier::new(32));
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (commits, start) = (commits.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let ticket = commits.applied();
                    let slow_sync = || {
                        std::thread::sleep(Duration::from_millis(20));
                        Ok(())
                    };
                    commits.wait_durable(ticket, slow_sync).unwrap();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(
            commits.syncs() < 32,
            "32 writers arriving together ran {} syncs",
            commits.syncs()
        );
    }

    #[test]
    fn a_failed_sync_fails_its_group_and_everything_after() {
        let commits = GroupCommit::default();
        let first = commits.applied();
        let failing = || Err(StoreError::from_kind(StoreErrorKind::Backend));
        assert!(commits.wait_durable(first, failing).is_err());
        let second = commits.applied();
        let fine = || Ok(());
        assert!(
            commits.wait_durable(second, fine).is_err(),
            "a database whose sync failed must not be trusted again"
        );
    }

    #[test]
    fn a_write_that_applied_nothing_waits_for_earlier_writes() {
        let commits = GroupCommit::default();
        commits.applied();
        let failing = || Err(StoreError::from_kind(StoreErrorKind::Backend));
        assert!(commits.wait_durable(commits.latest(), failing).is_err());
    }
}
