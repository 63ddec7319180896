//! [`AnonymousSessions`]: anonymous tokens from `GET /token/session`, off unless
//! turned on, short-lived, and bounded in number.

use std::time::Duration;

use crate::{config_error::ConfigError, gate::limits};

/// Anonymous sessions: `GET /token/session` without a token creates an anonymous
/// token (scope `core.anonymous_session`). The router refuses them (401) unless
/// the app turns them on with
/// [`AuthStateBuilder::with_anonymous_sessions`](crate::AuthStateBuilder::with_anonymous_sessions).
///
/// Nobody authenticates to get one, so they are bounded: at most `max_live` are
/// created per `lifetime` on each process (a sliding window), and past that the
/// route answers 429 with `Retry-After`. Live anonymous tokens therefore number at
/// most `max_live` per process; on disk, expired ones add up to
/// `max_live × sweep interval / lifetime` more until the sweeper purges them. With
/// the defaults (one hour, 10 000) that is about 12 MB of sled data and 160 KB of
/// memory for the window at worst.
///
/// ```
/// use std::time::Duration;
/// use scopegate::AnonymousSessions;
/// let sessions = AnonymousSessions::default()
///     .with_lifetime(Duration::from_secs(15 * 60))
///     .with_max_live(1_000);
/// # let _ = sessions;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnonymousSessions {
    lifetime: Duration,
    max_live: usize,
}

impl Default for AnonymousSessions {
    /// One hour each; at most 10 000 created per hour.
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(3600),
            max_live: 10_000,
        }
    }
}

impl AnonymousSessions {
    /// How long an anonymous token lives: from one second to 3650 days.
    #[must_use]
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// How many may be created per lifetime on this process (at least 1).
    #[must_use]
    pub fn with_max_live(mut self, max_live: usize) -> Self {
        self.max_live = max_live;
        self
    }

    /// The lifetime of each anonymous token.
    #[cfg(feature = "router")]
    pub(crate) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    pub(crate) fn validate(self) -> Result<Self, ConfigError> {
        match limits::days(limits::as_days(self.lifetime)) {
            Some(_) if self.max_live > 0 => Ok(self),
            _ => Err(ConfigError::InvalidAnonymousSessions),
        }
    }
}

/// The sliding window: when each anonymous token created here expires. Only
/// the router's `GET /token/session` makes them; without it the limiter is
/// configuration alone.
#[derive(Debug)]
pub(crate) struct AnonymousLimiter {
    config: AnonymousSessions,
    #[cfg(feature = "router")]
    window: std::sync::Mutex<Window>,
}

#[cfg(feature = "router")]
#[derive(Debug, Default)]
struct Window {
    expiries: std::collections::VecDeque<std::time::Instant>,
    /// Refusing since the window filled: logged once, not per refused call, so a
    /// flood does not turn into a flood of log lines.
    full: bool,
}

impl AnonymousLimiter {
    pub(crate) fn new(config: AnonymousSessions) -> Self {
        Self {
            config,
            #[cfg(feature = "router")]
            window: std::sync::Mutex::default(),
        }
    }

    pub(crate) fn config(&self) -> AnonymousSessions {
        self.config
    }

    /// Takes a slot for a new anonymous token, or says how long until one frees.
    #[cfg(feature = "router")]
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        let now = std::time::Instant::now();
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        // Every expiry is `now + lifetime` at the time, so they are in order.
        while window.expiries.front().is_some_and(|&at| at <= now) {
            window.expiries.pop_front();
        }
        if window.expiries.len() >= self.config.max_live {
            let frees_at = window.expiries.front().copied().unwrap_or(now);
            if !window.full {
                window.full = true;
                tracing::warn!(
                    max_live = self.config.max_live,
                    "anonymous sessions used up: refusing new ones with 429 until slots expire"
                );
            }
            return Err(frees_at - now);
        }
        if window.full {
            window.full = false;
            tracing::info!("anonymous sessions available again");
        }
        window.expiries.push_back(now + self.config.lifetime);
        Ok(())
    }
}

#[cfg(all(test, feature = "router"))]
mod tests {
    use super::*;

    #[test]
    fn the_window_admits_max_live_then_refuses_until_a_slot_expires() {
        let config = AnonymousSessions::default()
            .with_lifetime(Duration::from_millis(200))
            .with_max_live(3);
        let limiter = AnonymousLimiter::new(config);
        for _ in 0..3 {
            limiter.admit().unwrap();
        }
        let wait = limiter.admit().unwrap_err();
        assert!(wait <= Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(250));
        limiter.admit().unwrap();
    }

    #[test]
    fn lifetimes_below_one_second_or_an_empty_window_are_refused() {
        let short = AnonymousSessions::default().with_lifetime(Duration::from_millis(10));
        assert!(short.validate().is_err());
        assert!(AnonymousSessions::default()
            .with_max_live(0)
            .validate()
            .is_err());
        assert!(AnonymousSessions::default().validate().is_ok());
    }
}
