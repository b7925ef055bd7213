//! What a registry can tell about itself beyond [`WorkerRegistryStats`](super::WorkerRegistryStats),
//! for metrics: answered from what the backend already maintains, or not at all (the
//! [`WorkerRegistry`](super::WorkerRegistry) methods that return these default to "not
//! maintained", and the metrics built on them are then left out).

use serde::Serialize;

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
/// as the heartbeat deadline index knows it.
///
/// Each worker is counted under the heartbeat its deadline entry was filed under, which a
/// later heartbeat does not move (a heartbeat is one atomic store, off the index). So the age
/// is an **upper bound** of the worker's true silence, and exact for the workers the last
/// health check found past their deadline; a healthy worker shows at most about
/// `heartbeat_timeout + health_check_interval`. Silent workers (a partition the brake holds,
/// agents that died) show their real, growing age.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeartbeatAges {
    /// `(age_ms, workers)`: `workers` were last heard at most `age_ms` ago (and more than the
    /// previous entry's age), ascending by age. Resolution: the index's bucket width (1 s in
    /// memory).
    pub buckets: Vec<(u64, u64)>,
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
        };
        assert_eq!(ages.total(), 100);
        assert_eq!(ages.quantile_ms(0.5), Some(1000));
        assert_eq!(ages.quantile_ms(0.9), Some(5000));
        assert_eq!(ages.quantile_ms(0.95), Some(5000));
        assert_eq!(ages.quantile_ms(0.99), Some(90_000));
        assert_eq!(ages.quantile_ms(1.0), Some(90_000));
        assert_eq!(HeartbeatAges::default().quantile_ms(0.5), None);
    }
}
