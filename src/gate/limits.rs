//! Validation of user-supplied names and durations, with the messages callers see.

use std::time::Duration;

pub(crate) use crate::api_key::as_days;
use crate::error::Error;

/// The longest any duration may be: ten years, in days. Beyond it, dates overflow
/// long before anyone needs them.
pub(super) const MAX_DAYS: f64 = 3650.0;
/// The shortest any duration may be, in days: one second. Shorter ones would round
/// to a token that has expired before anyone can use it.
pub(crate) const MIN_DAYS: f64 = 1.0 / 86_400.0;
/// The shortest lifetime of any token or key: one second.
pub(crate) const MIN_LIFETIME: Duration = Duration::from_secs(1);
/// The longest: 3650 days.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(3650 * 86_400);

const MAX_NAME_CHARS: usize = 255;

/// `value` if it is a finite number of days from [`MIN_DAYS`] to [`MAX_DAYS`],
/// judged on the millisecond span tokens get (so one second sent as a decimal
/// fraction of a day, which JSON cannot carry exactly, still counts).
pub(crate) fn days(value: f64) -> Option<f64> {
    let millis = (value * 86_400_000.0).round();
    let range = (MIN_DAYS * 86_400_000.0).round()..=MAX_DAYS * 86_400_000.0;
    (value.is_finite() && range.contains(&millis)).then_some(value)
}

/// Checks a duration field; the message names the field.
pub(super) fn duration_field(field: &str, value: f64) -> Result<f64, Error> {
    days(value).ok_or_else(|| {
        Error::invalid(format!(
            "{field} must be a number of days from one second ({MIN_DAYS:.7}) to {MAX_DAYS}."
        ))
    })
}

/// A key name: trimmed, 1–255 characters, no control characters.
pub(super) fn key_name(name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid("name must not be empty."));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid("name must be at most 255 characters."));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("name must not contain control characters."));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_must_be_positive_finite_and_bounded() {
        for bad in [0.0, 1e-9, -1.0, f64::NAN, f64::INFINITY, MAX_DAYS + 1.0] {
            assert!(days(bad).is_none(), "{bad}");
        }
        assert_eq!(days(MIN_DAYS), Some(MIN_DAYS));
        assert_eq!(days(0.5), Some(0.5));
        assert_eq!(days(MAX_DAYS), Some(MAX_DAYS));
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(key_name("  ci  ").unwrap(), "ci");
        assert!(key_name("   ").is_err());
        assert!(key_name("a\u{0}b").is_err());
        assert!(key_name(&"x".repeat(256)).is_err());
        assert!(key_name(&"é".repeat(255)).is_ok());
    }
}
