//! Which recorded times a clinical answer may be built from. A time before 1900 or far in the
//! future is a corrupt record, not history, and would give absurd ages and intervals; a time a
//! little after the server's clock is an EHR whose clock runs fast, and its observations are
//! still the patient's latest, so they are read as taken now instead of being dropped as "after
//! the prediction time" (which once turned a high-risk patient's card into a plain Low).

/// How far a source's clock may run ahead of the server's (5 minutes, in microseconds).
pub const CLOCK_SKEW_MICROS: i64 = 5 * 60 * 1_000_000;
/// 1900-01-01T00:00:00Z in microseconds: no record Carecast reads is older.
pub const EARLIEST_MICROS: i64 = -2_208_988_800 * 1_000_000;

/// Why a recorded time was refused (never the time itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("before 1900-01-01: not a real record time")]
    TooEarly,
    #[error("{seconds} s after the server's clock, more than the {} s allowed for clock skew: check the sending system's clock", CLOCK_SKEW_MICROS / 1_000_000)]
    AheadOfClock { seconds: i64 },
}

/// Checks a recorded time against the server's clock `now` (both in microseconds since the Unix
/// epoch): refused before 1900 or more than [`CLOCK_SKEW_MICROS`] after `now`.
pub fn check(time: i64, now: i64) -> Result<(), TimeError> {
    if time < EARLIEST_MICROS {
        return Err(TimeError::TooEarly);
    }
    let ahead = time.saturating_sub(now);
    if ahead > CLOCK_SKEW_MICROS {
        return Err(TimeError::AheadOfClock { seconds: ahead / 1_000_000 });
    }
    Ok(())
}

/// A recorded time as of `now`: checked, and read as `now` when it lies within the allowed skew
/// after it. The flag says whether it was moved.
pub fn as_of(time: i64, now: i64) -> Result<(i64, bool), TimeError> {
    check(time, now)?;
    Ok(if time > now { (now, true) } else { (time, false) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn the_window_is_1900_to_the_skew_after_now() {
        let micros = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap().timestamp_micros();
        assert_eq!(EARLIEST_MICROS, micros(1900, 1, 1));
        let now = micros(2026, 12, 3);
        assert_eq!(check(EARLIEST_MICROS - 1, now), Err(TimeError::TooEarly));
        assert_eq!(check(i64::MIN + 1, now), Err(TimeError::TooEarly));
        assert_eq!(as_of(EARLIEST_MICROS, now), Ok((EARLIEST_MICROS, false)));
        assert_eq!(as_of(now + 30_000_000, now), Ok((now, true)));
        assert_eq!(as_of(now + CLOCK_SKEW_MICROS, now), Ok((now, true)));
        assert_eq!(check(now + CLOCK_SKEW_MICROS + 1_000_000, now), Err(TimeError::AheadOfClock { seconds: 301 }));
        assert_eq!(check(micros(3000, 1, 1), now).map_err(|e| matches!(e, TimeError::AheadOfClock { .. })), Err(true));
        assert_eq!(check(i64::MAX, now).map_err(|e| matches!(e, TimeError::AheadOfClock { .. })), Err(true));
    }
}
