//! Tick and health-check durations: a lock-free histogram that samples fast calls.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Upper bounds of the duration buckets, nanoseconds: 10 µs to ~42 s in steps of 4 (a tick
/// of a small fleet to one stalled on a slow provider call), then +Inf.
const BUCKETS_NS: [u64; 12] = {
    let mut b = [10_000u64; 12];
    let mut i = 1;
    while i < 12 {
        b[i] = b[i - 1] * 4;
        i += 1;
    }
    b
};

/// Calls that landed in the first bucket (under 10 µs) this many times in a row are then timed
/// one in [`SAMPLE_EVERY`]; see [`DurationHistogram`].
const FAST_STREAK: u32 = 8;
/// One fast call in this many is timed once the streak holds.
const SAMPLE_EVERY: u32 = 8;

/// A lock-free duration histogram: one atomic add for the bucket and one for the sum, so that
/// observing costs a few nanoseconds on the tick (prometheus-client's `Histogram` takes a
/// lock and works in f64).
///
/// Reading the clock costs more than that (two reads a call, 20–70 ns each on a loaded VM: 9 %
/// of a 1.5 µs in-memory tick of 10k workers with its health check). So calls that keep landing
/// in the first bucket (under 10 µs: [`FAST_STREAK`] in a row) are timed one in
/// [`SAMPLE_EVERY`]; the others are counted in the first bucket without reading the clock, with
/// the last timed fast duration added to the sum, and — when the call took an action (see
/// [`Timer::Untimed`]) — timed from that action on. Every call is counted (`_count` is exact),
/// the buckets are exact unless an untimed call that took no action was slower than 10 µs (the
/// next timed one that is slower returns to timing every call), and `_sum` is exact up to the
/// untimed fast calls' estimate (under 10 µs each).
#[derive(Debug, Default)]
pub(super) struct DurationHistogram {
    /// Non-cumulative counts, the last one +Inf.
    counts: [AtomicU64; BUCKETS_NS.len() + 1],
    sum_ns: AtomicU64,
    /// Timed calls in a row in the first bucket (a heuristic: races between threads are
    /// harmless).
    fast_streak: AtomicU32,
    /// Calls since the last timed one, while the streak holds.
    skipped: AtomicU32,
    /// The last timed duration in the first bucket, ns: what an untimed fast call adds to the sum.
    last_fast_ns: AtomicU64,
}

impl DurationHistogram {
    /// Whether the next call should read the clock.
    pub(super) fn wants_clock(&self) -> bool {
        if self.fast_streak.load(Ordering::Relaxed) < FAST_STREAK {
            return true;
        }
        let n = self.skipped.load(Ordering::Relaxed) + 1;
        let timed = n >= SAMPLE_EVERY;
        self.skipped
            .store(if timed { 0 } else { n }, Ordering::Relaxed);
        timed
    }

    pub(super) fn observe(&self, elapsed: std::time::Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKETS_NS.partition_point(|upper| *upper < ns);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        if i == 0 {
            self.last_fast_ns.store(ns, Ordering::Relaxed);
            let streak = self.fast_streak.load(Ordering::Relaxed);
            self.fast_streak
                .store(streak.saturating_add(1), Ordering::Relaxed);
        } else {
            self.fast_streak.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a call that was not timed: from its first action when it took one (plus the last
    /// fast duration for what came before it), else in the first bucket.
    pub(super) fn observe_untimed(&self, first_action: Option<Instant>) {
        let before = self.last_fast_ns.load(Ordering::Relaxed);
        match first_action {
            Some(at) => self.observe(at.elapsed() + std::time::Duration::from_nanos(before)),
            None => {
                self.counts[0].fetch_add(1, Ordering::Relaxed);
                self.sum_ns.fetch_add(before, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn encode(
        &self,
        mut m: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> fmt::Result {
        let buckets: Vec<(f64, u64)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let upper = BUCKETS_NS
                    .get(i)
                    .map_or(f64::INFINITY, |ns| *ns as f64 / 1e9);
                (upper, c.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }
}

/// A started measurement.
#[derive(Debug)]
pub(crate) enum Timer {
    /// Timing is off.
    Off,
    /// Timed from this moment.
    Clock(Instant),
    /// Not timed (a fast call sampled out; see [`DurationHistogram`]): the caller notes the
    /// moment of its first action, if it takes one ([`Timer::wants_first_action`]), and the
    /// call is timed from there.
    Untimed,
}

impl Timer {
    /// Whether the caller should note when its first action starts (one clock read, only in a
    /// call that acts).
    pub(crate) fn wants_first_action(&self) -> bool {
        matches!(self, Timer::Untimed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn counts(h: &DurationHistogram) -> Vec<u64> {
        h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    #[test]
    fn fast_calls_are_timed_one_in_eight_and_all_counted() {
        let h = DurationHistogram::default();
        // Until the streak holds, every call reads the clock.
        for _ in 0..FAST_STREAK {
            assert!(h.wants_clock());
            h.observe(Duration::from_micros(2));
        }
        // Then one in eight; the others count in the first bucket with the last fast time.
        let timed: Vec<bool> = (0..16).map(|_| h.wants_clock()).collect();
        assert_eq!(timed.iter().filter(|t| **t).count(), 2);
        assert!(timed[7] && timed[15]);
        for _ in 0..14 {
            h.observe_untimed(None);
        }
        h.observe(Duration::from_micros(3));
        h.observe(Duration::from_micros(3));
        assert_eq!(counts(&h)[0], 8 + 16);
        assert_eq!(
            h.sum_ns.load(Ordering::Relaxed),
            8 * 2_000 + 14 * 2_000 + 2 * 3_000
        );
        // An untimed call that acted is timed from its action: a slow one lands in its own
        // bucket, and a slow timed call returns to timing every call.
        let acted = Instant::now() - Duration::from_micros(50);
        h.observe_untimed(Some(acted));
        assert_eq!(counts(&h)[1] + counts(&h)[2], 1);
        assert!((0..FAST_STREAK).all(|_| h.wants_clock()));
        assert_eq!(counts(&h).iter().sum::<u64>(), 8 + 16 + 1);
    }
}
