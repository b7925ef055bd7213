//! Time: [`Timestamp`], the [`Clock`] trait, the monotonic [`SystemClock`] and the
//! test-driving [`ManualClock`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Timestamp = u64;

/// A duration in whole milliseconds, saturating (for deadline arithmetic on [`Timestamp`]s).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A source of [`Timestamp`]s. The registry owns one; every deadline is measured on it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time. Must never go backwards.
    fn now(&self) -> Timestamp;
}

/// The production clock: anchored to wall time once, then advanced by [`Instant`].
///
/// A wall-clock jump (NTP step, manual change) therefore never expires a worker early nor keeps
/// one alive; the timestamps stay close to wall time for display.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    anchor_wall: Timestamp,
    anchor: Instant,
}

impl SystemClock {
    /// A clock anchored to the wall time now.
    pub fn new() -> Self {
        let anchor_wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(millis)
            .unwrap_or(0);
        SystemClock {
            anchor_wall,
            anchor: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        self.anchor_wall
            .saturating_add(millis(self.anchor.elapsed()))
    }
}

/// A clock that moves only when told to: tests and simulations.
///
/// ```
/// use hodei_workers::{Clock, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::new(1_000);
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), 3_000);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: AtomicU64::new(start),
        }
    }

    /// Sets the time. A value earlier than the current time is ignored (the clock never goes
    /// backwards); returns the time now in force.
    pub fn set(&self, at: Timestamp) -> Timestamp {
        self.now.fetch_max(at, Ordering::SeqCst).max(at)
    }

    /// Moves the clock forward by `by` (saturating); returns the new time.
    pub fn advance(&self, by: Duration) -> Timestamp {
        let by = millis(by);
        let mut current = self.now.load(Ordering::SeqCst);
        loop {
            let next = current.saturating_add(by);
            match self
                .now
                .compare_exchange(current, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(actual) => current = actual,
            }
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.now.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_near_wall_time_and_never_goes_backwards() {
        let clock = SystemClock::new();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(clock.now().abs_diff(wall) < 5_000);
        let mut last = clock.now();
        for _ in 0..10_000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn manual_clock_moves_only_forward() {
        let clock = ManualClock::new(100);
        assert_eq!(clock.advance(Duration::from_millis(50)), 150);
        assert_eq!(clock.set(120), 150, "setting the past is ignored");
        assert_eq!(clock.set(1_000), 1_000);
        assert_eq!(clock.now(), 1_000);
        clock.set(u64::MAX - 1);
        assert_eq!(clock.advance(Duration::from_secs(10)), u64::MAX);
    }
}

/// Serde form of a [`Duration`] as seconds (a number, fractions allowed): `{"idle_timeout": 300}`.
///
/// Reads back exactly what it wrote for every duration whose decimal form in seconds has at
/// most 15 significant digits (all whole seconds below 2^53 s; every whole millisecond up to
/// 100 years), although JSON numbers are binary floats: the number written is the float
/// nearest to the exact decimal, and the reader recovers that decimal (the shortest one that
/// names the float) instead of the float's binary value.
///
/// Use with `#[serde(with = "duration_secs")]` (crate-internal: the serde form of the core's
/// public types, not an API of its own).
pub(crate) mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration as seconds (an integer when whole).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            // The float nearest to the exact decimal (`as_secs_f64` rounds twice and may miss
            // it by one unit, which would not read back as the same decimal).
            let exact = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
            s.serialize_f64(exact.parse().unwrap_or(d.as_secs_f64()))
        }
    }

    /// Reads seconds, refusing negative, non-finite and absurdly large values (2^64 s and
    /// more).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        from_secs_decimal(secs)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {secs} s")))
    }

    /// The duration named by the shortest decimal form of `secs` (which is what a writer of
    /// that decimal meant), to the nanosecond.
    fn from_secs_decimal(secs: f64) -> Option<Duration> {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        // `Display` of an f64 is its shortest round-trip decimal, never in exponent form.
        let text = format!("{secs}");
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let whole: u64 = whole.parse().ok()?;
        let digits: String = fraction
            .chars()
            .chain("000000000".chars())
            .take(9)
            .collect();
        let nanos: u32 = digits.parse().ok()?;
        Some(Duration::new(whole, nanos))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn round_trip(d: Duration) -> Duration {
            let mut out = Vec::new();
            serialize(&d, &mut serde_json::Serializer::new(&mut out)).unwrap();
            deserialize(&mut serde_json::Deserializer::from_slice(&out)).unwrap()
        }

        #[test]
        fn whole_milliseconds_up_to_a_century_read_back_exactly() {
            let century = 100 * 365 * 86_400;
            for secs in [0, 1, 59, 3_600, 86_400 * 104, 1 << 32, century - 1, century] {
                for millis in [0, 1, 7, 499, 500, 999] {
                    let d = Duration::from_secs(secs) + Duration::from_millis(millis);
                    assert_eq!(round_trip(d), d, "{d:?}");
                }
            }
            for d in [
                Duration::from_nanos(1),
                Duration::from_micros(1_500),
                Duration::from_secs_f64(0.1),
                Duration::from_secs(u64::from(u32::MAX)),
            ] {
                assert_eq!(round_trip(d), d, "{d:?}");
            }
        }

        #[test]
        fn unreadable_values_are_errors() {
            for text in ["-1", "1e20", "1e300"] {
                assert!(
                    deserialize(&mut serde_json::Deserializer::from_str(text)).is_err(),
                    "{text}"
                );
            }
            assert_eq!(from_secs_decimal(1.5), Some(Duration::from_millis(1_500)));
            assert_eq!(from_secs_decimal(f64::NAN), None);
        }
    }
}
