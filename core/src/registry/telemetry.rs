//! What a registry can tell about itself beyond [`WorkerRegistryStats`](super::WorkerRegistryStats),
//! for metrics: answered from what the backend already maintains, or not at all (the
//! [`WorkerRegistry`](super::WorkerRegistry) methods that return these default to "not
//! maintained", and the metrics built on them are then left out).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::Timestamp;

/// Jobs handed out and taken back since the registry was made (not carried by snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobTotals {
    /// Successful `assign_to_job` and `claim` calls.
    pub assigned: u64,
    /// Successful `release_from_job` calls. Jobs that left with their worker (unregistered or
    /// terminated while holding one) are reported lost instead, and are not counted here.
    pub released: u64,
}

/// How long the monitored workers (`Connecting`, `Ready`, `Busy`, `Draining`) have been silent,
/// as the backend's heartbeat index knows it.
///
/// The in-memory registry reads a bounded sample of its workers' heartbeat words (at most
/// 512 a shard, 32,768 in all, whatever the fleet's size; never a scan of the fleet), of
/// workers only, never of free slots (clarified 2026-12-07: a stride over the slots met few
/// or none of the workers of a fleet that shrank to a few scattered over columns that kept
/// their length, and then gave no quantile at all), spread over each shard's whole slab: the
/// first worker at or after each of 512 points a constant stride apart (clarified
/// 2026-12-07, again: not evenly by rank among the workers, which cost a count of every
/// bitmap word; a worker just after a run of free slots is likelier read):
/// - **Exact** while every shard holds at most 512 workers, whatever their slots: always for
///   a fleet of at most 512 workers, and in practice (ids spread evenly over the 64 shards)
///   for fleets up to about 25,000, grown or shrunk. Then `sampled == total()`.
/// - Above, an **estimate**: 512 workers of each shard are read, and the monitored ones among
///   them (`Creating` and terminal workers are read but have no age) are scaled to the exact
///   number of monitored workers (from the registry's maintained state counts, so
///   [`total`](Self::total) stays exact) with largest-remainder rounding.
///   With `n` workers sampled (about 32,000 at
///   large fleets) the fraction of the fleet below a reported `q`-quantile is off by about
///   `sqrt(q(1-q)/n)` (one standard deviation): 0.28 % at the median, 0.17 % at p90, 0.06 %
///   at p99; in ages that is usually the same 1 s bucket or the next. The maximum (`q = 1`)
///   is the oldest *sampled* worker, so it can miss a handful of silent workers (they still
///   count in the other quantiles' ranks and in the health check, which reads every slot).
///
/// Each worker counted is placed in the bucket of its last heartbeat (or of the grace floor,
/// when that is later), so a heartbeat shows at once and the age is exact to the bucket,
/// measured from the bucket's start (the worker was heard at most that long ago). A backend
/// whose index lags behind heartbeats gives an **upper bound** of the true silence instead.
/// Silent workers (a partition the brake holds, agents that died) show their real, growing
/// age.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeartbeatAges {
    /// `(age_ms, workers)`: `workers` were last heard at most `age_ms` ago (and more than the
    /// previous entry's age), ascending by age. Resolution: the index's bucket width (1 s in
    /// memory).
    pub buckets: Vec<(u64, u64)>,
    /// Workers whose heartbeat was actually read: equal to [`total`](Self::total) when the
    /// histogram is exact, fewer when it is a sample's estimate.
    pub sampled: u64,
}

/// At most this many workers' heartbeat words are read for one [`HeartbeatAges`] by the
/// in-memory registry (an equal share a shard): the cost of a scrape, whatever the fleet's
/// size, with one word of each shard's free-slot bitmap a 64 slots.
pub(super) const HEARTBEAT_AGE_SAMPLE: usize = 32_768;

/// Width of a bucket of [`HeartbeatAges`] in memory (1 s), in milliseconds.
pub(super) const HEARTBEAT_AGE_BUCKET_MS: u64 = 1_000;

/// Ages below this many buckets are counted in an array, older ones in a map.
const DENSE_AGES: usize = 4096;

/// Heartbeat-age counts gathered from the heartbeat columns' samples: a worker whose key
/// (`max(heartbeat, grace floor)`) lies in the bucket starting at `b` (ms) is counted at age
/// `now - b`.
#[derive(Debug)]
pub(super) struct AgeCounts {
    now: Timestamp,
    now_bucket: u64,
    /// By age in buckets, for the recent ones (nearly every worker of a live fleet).
    dense: Vec<u64>,
    /// By bucket, for the older ones.
    sparse: BTreeMap<u64, u64>,
    /// Keys added.
    added: u64,
}

impl AgeCounts {
    pub fn new(now: Timestamp) -> AgeCounts {
        AgeCounts {
            now,
            now_bucket: now / HEARTBEAT_AGE_BUCKET_MS,
            dense: vec![0; DENSE_AGES],
            sparse: BTreeMap::new(),
            added: 0,
        }
    }

    pub fn add(&mut self, key: Timestamp) {
        self.added += 1;
        let bucket = key / HEARTBEAT_AGE_BUCKET_MS;
        // A heartbeat stored after `now` was read counts as age 0.
        let age = self.now_bucket.saturating_sub(bucket) as usize;
        match self.dense.get_mut(age) {
            Some(n) => *n += 1,
            None => *self.sparse.entry(bucket).or_default() += 1,
        }
    }

    /// The ages counted: as they are (`scale_to: None`, the sample was the whole population),
    /// or scaled to `scale_to` workers. Scaling multiplies every bucket by `scale_to / added`
    /// and rounds by largest remainder, so the buckets sum to exactly `scale_to`; a bucket
    /// rounded to nothing is left out.
    pub fn into_ages(self, scale_to: Option<u64>) -> HeartbeatAges {
        let (now, now_bucket, added) = (self.now, self.now_bucket, self.added);
        let mut buckets: Vec<(u64, u64)> = self
            .dense
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(age, n)| {
                let start = (now_bucket - age as u64) * HEARTBEAT_AGE_BUCKET_MS;
                (now - start, *n)
            })
            .collect();
        buckets.extend(
            self.sparse
                .into_iter()
                .rev()
                .map(|(bucket, n)| (now.saturating_sub(bucket * HEARTBEAT_AGE_BUCKET_MS), n)),
        );
        if let Some(target) = scale_to.filter(|&t| t != added && added > 0) {
            // Largest remainder, in integers: bucket n gets floor(n * target / added), and the
            // units left go to the largest remainders (ties: the older bucket).
            let (target, total) = (u128::from(target), u128::from(added));
            let mut scaled: Vec<(u128, u128)> = buckets
                .iter()
                .map(|(_, n)| {
                    let x = u128::from(*n) * target;
                    (x / total, x % total)
                })
                .collect();
            let left = target - scaled.iter().map(|(q, _)| q).sum::<u128>();
            let mut order: Vec<usize> = (0..scaled.len()).collect();
            order.sort_by(|&a, &b| scaled[b].1.cmp(&scaled[a].1).then(b.cmp(&a)));
            for &i in order.iter().take(left as usize) {
                scaled[i].0 += 1;
            }
            for (bucket, (q, _)) in buckets.iter_mut().zip(&scaled) {
                bucket.1 = *q as u64;
            }
            buckets.retain(|(_, n)| *n > 0);
        }
        HeartbeatAges {
            buckets,
            sampled: added,
        }
    }
}

impl HeartbeatAges {
    /// Workers counted.
    pub fn total(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    /// The nearest-rank `q`-quantile (`q` in `[0, 1]`) of the ages, in milliseconds; `None`
    /// when no worker is monitored.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (age, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(*age);
            }
        }
        self.buckets.last().map(|(age, _)| *age)
    }
}

/// One subscriber of the event stream and the events it lost because its queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SubscriberDrops {
    /// The subscription's id ([`Subscription::id`](crate::Subscription::id)), unique per
    /// registry.
    pub subscriber: u64,
    /// Events dropped for it so far.
    pub dropped: u64,
    /// Events waiting in its queue now.
    pub queued: usize,
    /// Its queue's capacity.
    pub capacity: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let ages = HeartbeatAges {
            buckets: vec![(1000, 50), (5000, 45), (90_000, 5)],
            sampled: 100,
        };
        assert_eq!(ages.total(), 100);
        assert_eq!(ages.quantile_ms(0.5), Some(1000));
        assert_eq!(ages.quantile_ms(0.9), Some(5000));
        assert_eq!(ages.quantile_ms(0.95), Some(5000));
        assert_eq!(ages.quantile_ms(0.99), Some(90_000));
        assert_eq!(ages.quantile_ms(1.0), Some(90_000));
        assert_eq!(HeartbeatAges::default().quantile_ms(0.5), None);
    }

    #[test]
    fn ages_are_measured_from_the_bucket_start_recent_and_old_alike() {
        // 5000 s after the epoch plus 400 ms: recent ages in the array, older ones in the map;
        // a heartbeat stored after `now` was read counts in the current bucket.
        let now = 5_000_400;
        let mut ages = AgeCounts::new(now);
        for key in [5_000_000, 5_000_399, 4_999_000, 200_000, 200_999, now + 5] {
            ages.add(key);
        }
        let ages = ages.into_ages(None);
        assert_eq!(ages.buckets, vec![(400, 3), (1_400, 1), (4_800_400, 2)]);
        assert_eq!(ages.sampled, 6);
    }

    #[test]
    fn a_sample_is_scaled_to_the_exact_total_by_largest_remainder() {
        let now = 100_000;
        let counts = |keys: &[(Timestamp, usize)]| {
            let mut ages = AgeCounts::new(now);
            for &(key, n) in keys {
                (0..n).for_each(|_| ages.add(key));
            }
            ages
        };
        // 3 sampled at ages 0, 1 s, 2 s (1 each), scaled to 10: 3.33 each, the unit left goes
        // to the older bucket on the tie.
        let ages = counts(&[(100_000, 1), (99_000, 1), (98_000, 1)]).into_ages(Some(10));
        assert_eq!(ages.buckets, vec![(0, 3), (1_000, 3), (2_000, 4)]);
        assert_eq!((ages.total(), ages.sampled), (10, 3));
        // 7 and 3 of 10 sampled, scaled to 1000 (a 1 % sample): 700 and 300.
        let ages = counts(&[(100_000, 7), (40_000, 3)]).into_ages(Some(1000));
        assert_eq!(ages.buckets, vec![(0, 700), (60_000, 300)]);
        // Scaled down (workers left between the sample and the count): a bucket may round
        // to nothing and is left out.
        let ages = counts(&[(100_000, 9), (40_000, 1)]).into_ages(Some(2));
        assert_eq!(ages.buckets, vec![(0, 2)]);
        assert_eq!(counts(&[(100_000, 5)]).into_ages(Some(0)).total(), 0);
        // Nothing to scale: as counted.
        let ages = counts(&[(100_000, 5)]).into_ages(Some(5));
        assert_eq!(ages.buckets, vec![(0, 5)]);
        assert_eq!(
            AgeCounts::new(now).into_ages(Some(0)),
            HeartbeatAges::default()
        );
    }
}
