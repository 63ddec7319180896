//! Where "now" comes from, so expiry can be tested without waiting.

use std::{
    cell::Cell,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// `Utc::now()`, with this thread's last date kept: turning a day number into
    /// a date is most of what `Utc::now()` costs, and every request asks.
    fn now(&self) -> DateTime<Utc> {
        thread_local! {
            static TODAY: Cell<Option<(u64, NaiveDate)>> = const { Cell::new(None) };
        }
        let Ok(since_epoch) = SystemTime::now().duration_since(UNIX_EPOCH) else {
            return Utc::now(); // before 1970
        };
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
}

const SECONDS_PER_DAY: u64 = 86_400;

/// A clock that moves only when told to: for tests of expiry.
///
/// ```
/// use scopegate::ManualClock;
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
}
