//! The circuit breaker: while the database is known not to answer, calls are
//! refused at once instead of each waiting out its time limit.
//!
//! "Known not to answer" comes from the invalidation feed, the one thing that
//! talks to the database all the time: a round trip on its connection left
//! unanswered, in silence, for its lag limit, or a reconnection that cannot
//! reach the server, with nothing else answered since the attempt started. A
//! call that fails proves nothing on its own: a lock wait, a busy pool, a
//! connection an administrator ended, all look alike from one call. Tripping
//! also fails the calls in flight, which wait on the same silence. Open, the
//! breaker refuses every call, and after each back-off the next refused call
//! starts a probe of its own on a fresh connection (the half-open state), so no
//! request is held as a trial; an answer to the probe, to the feed, or to any
//! call, closes it. A store without its feed (no cache in front) never trips it.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use crate::{
    clock::MonotonicMicros,
    store::{StoreError, StoreErrorKind},
};

/// The first wait before a probe; doubled after each failed one.
const FIRST_BACK_OFF: Duration = Duration::from_millis(100);
/// The longest wait between probes.
const LONGEST_BACK_OFF: Duration = Duration::from_secs(1);

/// Refused at once: the database has not answered for this long.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL has not answered for {0:?}: refusing calls until it does")]
pub(super) struct CircuitOpen(pub(super) Duration);

#[derive(Debug)]
enum State {
    Closed,
    /// Refusing; a probe is due at `retry_at`.
    Open {
        since: Instant,
        retry_at: Instant,
        back_off: Duration,
    },
    /// Refusing while a probe is out.
    Probing {
        since: Instant,
        back_off: Duration,
    },
}

/// Why a call may not go to the database.
pub(super) struct Refused {
    pub(super) error: StoreError,
    /// The caller should start a probe, and report its outcome to
    /// [`Breaker::answered`] or [`Breaker::probe_failed`].
    pub(super) probe_due: bool,
}

#[derive(Debug)]
pub(super) struct Breaker {
    /// Whether the state is other than `Closed`: the one load a call pays while
    /// the database answers.
    open: AtomicBool,
    state: Mutex<State>,
    /// When the latest round trip that got an answer started.
    answered: AtomicU64,
    micros: MonotonicMicros,
    tripped: Notify,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            open: AtomicBool::new(false),
            state: Mutex::new(State::Closed),
            answered: AtomicU64::new(0),
            micros: MonotonicMicros::from_now(),
            tripped: Notify::new(),
        }
    }
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call starting at `now` may go to the database.
    pub(super) fn admit(&self, now: Instant) -> Result<(), Refused> {
        if !self.open.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut state = self.state();
        let (since, probe_due) = match *state {
            State::Closed => return Ok(()),
            State::Open {
                since,
                retry_at,
                back_off,
            } if now >= retry_at => {
                *state = State::Probing { since, back_off };
                (since, true)
            }
            State::Open { since, .. } | State::Probing { since, .. } => (since, false),
        };
        Err(Refused {
            error: StoreError::new(
                StoreErrorKind::Unavailable,
                CircuitOpen(now.saturating_duration_since(since)),
            ),
            probe_due,
        })
    }

    /// The probe [`admit`](Self::admit) asked for got no answer: the next one
    /// waits twice as long.
    pub(super) fn probe_failed(&self) {
        let mut state = self.state();
        if let State::Probing { since, back_off } = *state {
            let back_off = (back_off * 2).min(LONGEST_BACK_OFF);
            *state = State::Open {
                since,
                retry_at: Instant::now() + back_off,
                back_off,
            };
        }
    }

    /// Resolves when the breaker trips. Enable it before [`admit`](Self::admit),
    /// so a trip in between is not missed.
    pub(super) fn tripped(&self) -> tokio::sync::futures::Notified<'_> {
        self.tripped.notified()
    }

    /// A round trip that started at `started` got an answer: the database
    /// answers, so the breaker closes.
    pub(super) fn answered(&self, started: Instant) {
        self.answered
            .fetch_max(self.micros.of(started), Ordering::SeqCst);
        if self.open.load(Ordering::SeqCst) {
            let mut state = self.state();
            if let State::Open { since, .. } | State::Probing { since, .. } = *state {
                tracing::info!(
                    after = ?since.elapsed(),
                    "PostgreSQL answers again: calls go through"
                );
            }
            *state = State::Closed;
            self.open.store(false, Ordering::SeqCst);
        }
    }

    /// A round trip of the feed that started at `started` got no answer (it
    /// timed out in silence, or could not connect). Trips the breaker if nothing
    /// was answered since it started.
    pub(super) fn unanswered(&self, started: Instant) {
        let now = Instant::now();
        let mut state = self.state();
        if self.answered.load(Ordering::SeqCst) > self.micros.of(started) {
            return; // something got an answer meanwhile: this call's own trouble
        }
        if let State::Closed = *state {
            tracing::error!(
                silent_for = ?now.saturating_duration_since(started),
                "PostgreSQL does not answer: refusing calls at once until it does"
            );
            *state = State::Open {
                since: started,
                retry_at: now + FIRST_BACK_OFF,
                back_off: FIRST_BACK_OFF,
            };
            self.open.store(true, Ordering::SeqCst);
            drop(state);
            self.tripped.notify_waiters();
        }
    }

    /// Records a call's outcome: anything but `Unavailable` is an answer.
    pub(super) fn record<T>(&self, started: Instant, outcome: &Result<T, StoreError>) {
        match outcome {
            Err(err) if err.kind() == StoreErrorKind::Unavailable => {}
            _ => self.answered(started),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(breaker: &Breaker, at: Instant) -> bool {
        breaker.admit(at).is_err()
    }

    #[test]
    fn a_failure_trips_only_when_nothing_answered_since_it_started() {
        let breaker = Breaker::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(10);
        breaker.answered(t1);
        breaker.unanswered(t0);
        assert!(!refused(&breaker, t1), "a call after it got an answer");
        breaker.unanswered(t1 + Duration::from_millis(1));
        assert!(refused(&breaker, t1 + Duration::from_millis(2)));
    }

    fn probe_due(breaker: &Breaker, at: Instant) -> bool {
        breaker
            .admit(at)
            .err()
            .is_some_and(|refused| refused.probe_due)
    }

    #[test]
    fn an_open_breaker_asks_for_one_probe_per_back_off_and_closes_on_an_answer() {
        let breaker = Breaker::default();
        let t0 = Instant::now();
        breaker.unanswered(t0);
        assert!(refused(&breaker, t0 + FIRST_BACK_OFF / 2));
        assert!(!probe_due(&breaker, t0 + FIRST_BACK_OFF / 2));
        let later = Instant::now() + FIRST_BACK_OFF;
        assert!(probe_due(&breaker, later));
        assert!(!probe_due(&breaker, later), "one probe at a time");
        assert!(refused(&breaker, later), "calls wait for the probe");
        breaker.probe_failed();
        assert!(
            !probe_due(&breaker, Instant::now() + FIRST_BACK_OFF),
            "the back-off doubled"
        );
        let retry = Instant::now() + FIRST_BACK_OFF * 2;
        assert!(probe_due(&breaker, retry));
        breaker.answered(retry);
        assert!(breaker.admit(retry).is_ok());
    }
}
