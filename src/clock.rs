//! Where "now" comes from, so expiry can be tested without waiting.

use std::{
    cell::Cell,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// Where a gate reads the time: the system clock, with its per-request fast
/// path, or the app's own [`Clock`].
#[derive(Clone)]
pub(crate) enum TimeSource {
    System,
    App(Arc<dyn Clock>),
}

impl TimeSource {
    /// Now.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        match self {
            Self::System => SystemClock.now(),
            Self::App(clock) => clock.now(),
        }
    }

    /// Now, for a caller that has just read the monotonic clock as `at`: the
    /// system clock derives its time from `at` instead of reading again.
    pub(crate) fn now_at(&self, at: Instant) -> DateTime<Utc> {
        match self {
            Self::System => SystemClock::now_at(at),
            Self::App(clock) => clock.now(),
        }
    }
}

/// Monotonic instants as microseconds after an origin, so that one fits in an
/// atomic integer (a deadline, the start of the latest answered round trip).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MonotonicMicros(Instant);

impl MonotonicMicros {
    /// Counting from now.
    pub(crate) fn from_now() -> Self {
        Self(Instant::now())
    }

    /// `at`, in microseconds after the origin (0 for anything before it).
    pub(crate) fn of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.0);
        since.as_secs() * 1_000_000 + u64::from(since.subsec_micros())
    }
}

/// The system clock: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// `Utc::now()`, with this thread's last date kept: turning a day number into
    /// a date is most of what `Utc::now()` costs, and every request asks.
    fn now(&self) -> DateTime<Utc> {
        system_since_epoch().map_or_else(Utc::now, from_epoch)
    }
}

impl SystemClock {
    /// Now, for a caller that has just read the monotonic clock as `at`: the
    /// system time read at most a second ago on this thread, moved on by the
    /// monotonic time since, so a request reads one clock instead of two. Both
    /// clocks run at the same rate (NTP slews them alike); a step of the system
    /// clock, or a suspend (which the monotonic clock does not count), is seen
    /// within that second.
    fn now_at(at: Instant) -> DateTime<Utc> {
        thread_local! {
            static ANCHOR: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
        }
        let anchored =
            ANCHOR
                .try_with(Cell::get)
                .ok()
                .flatten()
                .and_then(|(read_at, since_epoch)| {
                    let elapsed = at.checked_duration_since(read_at)?;
                    (elapsed < ANCHOR_LIFE).then(|| since_epoch + elapsed)
                });
        if let Some(since_epoch) = anchored {
            return from_epoch(since_epoch);
        }
        let Some(since_epoch) = system_since_epoch() else {
            return Utc::now();
        };
        // Paired with a monotonic reading taken right after it, not with `at`:
        // the thread may have been descheduled since `at` was read.
        let read_at = Instant::now();
        let _ = ANCHOR.try_with(|anchor| anchor.set(Some((read_at, since_epoch))));
        from_epoch(since_epoch)
    }
}

/// The system clock's time since 1970; `None` before 1970, which `Utc::now()`
/// then answers.
fn system_since_epoch() -> Option<Duration> {
    SystemTime::now().duration_since(UNIX_EPOCH).ok()
}

/// How long a thread's reading of the system clock serves [`SystemClock::now_at`].
const ANCHOR_LIFE: Duration = Duration::from_secs(1);

/// The time `since_epoch` after 1970, with this thread's last date kept.
fn from_epoch(since_epoch: Duration) -> DateTime<Utc> {
    thread_local! {
        static TODAY: Cell<Option<(u64, NaiveDate)>> = const { Cell::new(None) };
    }
    let (secs, nanos) = (since_epoch.as_secs(), since_epoch.subsec_nanos());
    let (day, second) = (secs / SECONDS_PER_DAY, (secs % SECONDS_PER_DAY) as u32);
    let date = match TODAY.try_with(Cell::get) {
        Ok(Some((today, date))) if today == day => Some(date),
        _ => {
            let date = i64::try_from(secs - u64::from(second))
                .ok()
                .and_then(|midnight| DateTime::from_timestamp(midnight, 0))
                .map(|midnight| midnight.date_naive());
            if let Some(date) = date {
                let _ = TODAY.try_with(|today| today.set(Some((day, date))));
            }
            date
        }
    };
    date.zip(NaiveTime::from_num_seconds_from_midnight_opt(second, nanos))
        .map(|(date, time)| NaiveDateTime::new(date, time).and_utc())
        .unwrap_or_else(Utc::now)
}

const SECONDS_PER_DAY: u64 = 86_400;

/// A clock that moves only when told to: for tests of expiry.
///
/// ```
/// use scopegate::clock::ManualClock;
/// let clock = ManualClock::new(chrono::Utc::now());
/// let before = clock.now();
/// clock.advance(chrono::TimeDelta::days(2));
/// assert_eq!(clock.now() - before, chrono::TimeDelta::days(2));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// The clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the clock forward (or back, with a negative delta).
    pub fn advance(&self, by: TimeDelta) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        ManualClock::now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_what_chrono_reads() {
        for _ in 0..3 {
            let before = Utc::now();
            let now = SystemClock.now();
            let after = Utc::now();
            assert!(before <= now && now <= after, "{before} {now} {after}");
        }
    }

    #[test]
    fn the_system_clock_at_a_monotonic_reading_moves_with_the_system_time() {
        // The first call reads the system clock; the later ones, within the
        // anchor's life, derive the time from it and the monotonic clock.
        for _ in 0..4 {
            let before = Utc::now();
            let now = SystemClock::now_at(Instant::now());
            let after = Utc::now();
            // A deschedule between the anchor's two readings would shift it.
            let slack = TimeDelta::milliseconds(5);
            assert!(
                before - slack <= now && now <= after + slack,
                "{before} {now} {after}"
            );
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    #[test]
    fn an_apps_clock_ignores_the_monotonic_reading() {
        let start = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000);
        let clock = TimeSource::App(Arc::new(ManualClock::new(start)));
        assert_eq!(clock.now_at(Instant::now()), start);
    }
}
