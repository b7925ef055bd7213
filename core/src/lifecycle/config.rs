//! [`WorkerLifecycleConfig`]: the manager's timeouts, limits and scaling policy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::duration_secs;
use crate::error::{Error, Result};

/// Longest duration a [`WorkerLifecycleConfig`] may hold: 100 years (of 365 days), the same
/// bound as a spec's ([`MAX_SPEC_DURATION`](crate::MAX_SPEC_DURATION)). Longer ones (up to
/// `Duration::MAX`) could not be written to the config's JSON and read back, so
/// [`WorkerLifecycleConfig::validate`] refuses them.
pub const MAX_CONFIG_DURATION: Duration = crate::worker::MAX_SPEC_DURATION;

/// Timeouts, limits and the scaling policy of a
/// [`WorkerLifecycleManager`](crate::WorkerLifecycleManager).
///
/// Serialized with every duration as (possibly fractional) seconds; missing fields take their
/// default, unknown fields are refused:
///
/// ```
/// use hodei_workers::WorkerLifecycleConfig;
/// use std::time::Duration;
/// let config: WorkerLifecycleConfig =
///     serde_json::from_str(r#"{"heartbeat_timeout": 1.5, "max_workers": 4}"#).unwrap();
/// assert_eq!(config.heartbeat_timeout, Duration::from_millis(1500));
/// assert_eq!(config.min_ready_workers, 1);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct WorkerLifecycleConfig {
    /// A worker in `Connecting`, `Ready`, `Busy` or `Draining` silent for longer than this is
    /// unhealthy. Default 60 s. Also the longest pause between ticks that is not treated as a
    /// host stall.
    #[serde(with = "duration_secs")]
    pub heartbeat_timeout: Duration,
    /// How often `tick` runs the health check. Default 30 s.
    #[serde(with = "duration_secs")]
    pub health_check_interval: Duration,
    /// A worker still `Creating`/`Connecting` this long after registration is expired.
    /// Default 300 s.
    #[serde(with = "duration_secs")]
    pub startup_timeout: Duration,
    /// Idle `Ready` workers the autoscaler keeps warm. Default 1.
    pub min_ready_workers: usize,
    /// Hard ceiling on workers: every registered worker and every provision in flight counts.
    /// Default 10.
    pub max_workers: usize,
    /// `should_scale_up` is true when more jobs than this are pending (and there is room).
    /// Default 5.
    pub scale_up_threshold: usize,
    /// `should_scale_down` is true when more workers than this are idle `Ready` (and above
    /// `min_ready_workers`). Default 3.
    pub scale_down_threshold: usize,
    /// Minimum time between two automatic scale-ups. Default 10 s.
    #[serde(with = "duration_secs")]
    pub scale_up_cooldown: Duration,
    /// Minimum time after any automatic scaling action before an automatic scale-down (so a
    /// fleet does not flap between bursts). Default 60 s.
    #[serde(with = "duration_secs")]
    pub scale_down_cooldown: Duration,
    /// Most workers `tick` provisions in one call. Default 5.
    pub max_provision_per_tick: usize,
    /// Most actions (state changes and provider calls) one `tick` performs; what is left is
    /// done by the next ticks. Prevents a herd after an outage. Each orphan destroy of the
    /// tick's reconcile (a takeover's, a periodic one) is an action: the orphans over the cap
    /// are destroyed by the next ticks (its listings are not actions). A host's own
    /// [`reconcile`](crate::WorkerLifecycleManager::reconcile) call is not capped. Default 100.
    pub max_actions_per_tick: usize,
    /// Delay before the first retry of a failed destroy; doubles on each failure. Default 1 s.
    #[serde(with = "duration_secs")]
    pub destroy_retry_initial: Duration,
    /// Longest delay between destroy retries. Default 300 s.
    #[serde(with = "duration_secs")]
    pub destroy_retry_max: Duration,
    /// Back-off after the first failed create of a provider; doubles with each consecutive
    /// failure. Default 5 s.
    #[serde(with = "duration_secs")]
    pub provider_backoff_initial: Duration,
    /// Longest provider back-off. Default 300 s.
    #[serde(with = "duration_secs")]
    pub provider_backoff_max: Duration,
    /// The brake: when more than this fraction of the workers under heartbeat watch are silent
    /// at once (for more than half `heartbeat_timeout`), none of them is declared unhealthy —
    /// a partition on the host's side must not kill a healthy fleet. The same rule guards the
    /// ticks' own reconciles: a provider's listing that misses more than this fraction of its
    /// workers old enough to be judged (`Terminating` ones included; and more than
    /// `unhealthy_floor`)
    /// expires none of them as vanished — a listing truncated or empty by mistake must not end
    /// the fleet — and one that shows more instances no record knows than this fraction of
    /// the provider's records (and more than `unhealthy_floor`) destroys none of them as
    /// orphans — another tenant's or region's instances must not be destroyed; either way the
    /// run is incomplete (runs again after a back-off); the host's `reconcile()` is not
    /// braked. In `(0, 1]`; 1 disables the brake. Default 0.55.
    pub max_unhealthy_fraction: f64,
    /// The brake's floor: this many workers may always be silent at once without the brake
    /// holding, whatever the fraction, so that a fleet of one to three can still lose one
    /// (likewise this many vanished instances, and this many orphan instances, per provider in
    /// the ticks' reconciles: a takeover's reconcile of an empty registry destroys this many).
    /// Default 1.
    pub unhealthy_floor: usize,
    /// The brake's bound: once it has held continuously for longer than this, the health check
    /// lets go and declares the silent workers unhealthy after all (their jobs are reported
    /// lost, their instances destroyed) — most of the fleet really died, it is not a partition.
    /// A new hold can start only after the fleet is back under the limit. Must be at least
    /// 1 ms. Default 300 s.
    #[serde(with = "duration_secs")]
    pub max_mass_expiry_hold: Duration,
    /// How often the leader's `tick` runs
    /// [`reconcile`](crate::WorkerLifecycleManager::reconcile) by itself: once this long has
    /// passed since the last complete reconcile (a takeover's, a periodic one, or a call of the
    /// host's). It destroys the orphan instances that appear after the last reconcile — above
    /// all the instance of a create that returned to a replica which had lost its lease, after
    /// the new leader's takeover reconcile — on a host that only ticks (and never calls
    /// `reconcile`), where they would otherwise run for ever. No run of the ticks (periodic,
    /// a takeover's, its runs again) takes a record registered less than `startup_timeout`
    /// before its listing for vanished (a listing may lag behind the provider's creates); a
    /// host's own `reconcile` does. A tick with nothing due pays one timestamp comparison for
    /// it. A tick's reconcile that could not look at every
    /// provider's instances (a listing failed) runs again after a back-off:
    /// `destroy_retry_initial`, doubling with each incomplete run up to this interval
    /// (`destroy_retry_max` when it is zero), and starting over after a complete reconcile.
    /// Zero disables the periodic run (the takeover's reconcile, and its runs again while
    /// incomplete, are not affected). Default 600 s.
    #[serde(with = "duration_secs")]
    pub reconcile_interval: Duration,
}
crate::object_form::object_form!(WorkerLifecycleConfig, "a manager config");

impl Default for WorkerLifecycleConfig {
    fn default() -> Self {
        WorkerLifecycleConfig {
            heartbeat_timeout: Duration::from_secs(60),
            health_check_interval: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(300),
            min_ready_workers: 1,
            max_workers: 10,
            scale_up_threshold: 5,
            scale_down_threshold: 3,
            scale_up_cooldown: Duration::from_secs(10),
            scale_down_cooldown: Duration::from_secs(60),
            max_provision_per_tick: 5,
            max_actions_per_tick: 100,
            destroy_retry_initial: Duration::from_secs(1),
            destroy_retry_max: Duration::from_secs(300),
            provider_backoff_initial: Duration::from_secs(5),
            provider_backoff_max: Duration::from_secs(300),
            max_unhealthy_fraction: 0.55,
            unhealthy_floor: 1,
            max_mass_expiry_hold: Duration::from_secs(300),
            reconcile_interval: Duration::from_secs(600),
        }
    }
}

impl WorkerLifecycleConfig {
    /// Checks the configuration for nonsense.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field: a duration above [`MAX_CONFIG_DURATION`]
    /// (it could not round-trip through JSON), a zero timeout, interval, retry delay or
    /// `max_mass_expiry_hold` (below 1 ms; a zero `reconcile_interval` is valid: it disables
    /// the periodic reconcile), `max_workers == 0`, `min_ready_workers > max_workers`, a zero
    /// `max_provision_per_tick` or `max_actions_per_tick`, a retry or back-off maximum below its
    /// initial delay, a `max_unhealthy_fraction` outside `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        let durations = [
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("health_check_interval", self.health_check_interval),
            ("startup_timeout", self.startup_timeout),
            ("scale_up_cooldown", self.scale_up_cooldown),
            ("scale_down_cooldown", self.scale_down_cooldown),
            ("destroy_retry_initial", self.destroy_retry_initial),
            ("destroy_retry_max", self.destroy_retry_max),
            ("provider_backoff_initial", self.provider_backoff_initial),
            ("provider_backoff_max", self.provider_backoff_max),
            ("max_mass_expiry_hold", self.max_mass_expiry_hold),
            ("reconcile_interval", self.reconcile_interval),
        ];
        for (name, value) in durations {
            if value > MAX_CONFIG_DURATION {
                return Err(Error::invalid(format!(
                    "config.{name} must be at most {} s (100 years), got {value:?}: a longer \
                     duration could not be written to the config's JSON and read back",
                    MAX_CONFIG_DURATION.as_secs()
                )));
            }
        }
        let positive = [
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("health_check_interval", self.health_check_interval),
            ("startup_timeout", self.startup_timeout),
            ("destroy_retry_initial", self.destroy_retry_initial),
            ("provider_backoff_initial", self.provider_backoff_initial),
            ("max_mass_expiry_hold", self.max_mass_expiry_hold),
        ];
        for (name, value) in positive {
            if value < Duration::from_millis(1) {
                return Err(Error::invalid(format!(
                    "config.{name} must be at least 1 ms, got {value:?}"
                )));
            }
        }
        if self.max_workers == 0 {
            return Err(Error::invalid("config.max_workers must be at least 1"));
        }
        if self.min_ready_workers > self.max_workers {
            return Err(Error::invalid(format!(
                "config.min_ready_workers ({}) exceeds config.max_workers ({})",
                self.min_ready_workers, self.max_workers
            )));
        }
        if self.max_provision_per_tick == 0 {
            return Err(Error::invalid(
                "config.max_provision_per_tick must be at least 1",
            ));
        }
        if self.max_actions_per_tick == 0 {
            return Err(Error::invalid(
                "config.max_actions_per_tick must be at least 1",
            ));
        }
        if self.destroy_retry_max < self.destroy_retry_initial {
            return Err(Error::invalid(format!(
                "config.destroy_retry_max ({:?}) is below config.destroy_retry_initial ({:?})",
                self.destroy_retry_max, self.destroy_retry_initial
            )));
        }
        if self.provider_backoff_max < self.provider_backoff_initial {
            return Err(Error::invalid(format!(
                "config.provider_backoff_max ({:?}) is below config.provider_backoff_initial ({:?})",
                self.provider_backoff_max, self.provider_backoff_initial
            )));
        }
        let f = self.max_unhealthy_fraction;
        if !f.is_finite() || f <= 0.0 || f > 1.0 {
            return Err(Error::invalid(format!(
                "config.max_unhealthy_fraction must be in (0, 1], got {f}"
            )));
        }
        Ok(())
    }
}

/// `initial * 2^(attempts - 1)`, capped at `max` (attempts counts failures so far, >= 1).
pub(crate) fn backoff_delay(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(32);
    initial.saturating_mul(1u32 << exp.min(31)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seed_values_and_valid() {
        let c = WorkerLifecycleConfig::default();
        assert_eq!(c.heartbeat_timeout, Duration::from_secs(60));
        assert_eq!(c.health_check_interval, Duration::from_secs(30));
        assert_eq!(c.startup_timeout, Duration::from_secs(300));
        assert_eq!((c.min_ready_workers, c.max_workers), (1, 10));
        assert_eq!((c.scale_up_threshold, c.scale_down_threshold), (5, 3));
        assert_eq!(c.max_unhealthy_fraction, 0.55);
        assert_eq!(c.max_mass_expiry_hold, Duration::from_secs(300));
        assert_eq!(c.reconcile_interval, Duration::from_secs(600));
        c.validate().unwrap();
        // Zero is valid: it disables the periodic reconcile.
        WorkerLifecycleConfig {
            reconcile_interval: Duration::ZERO,
            ..c
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn nonsense_is_invalid_argument() {
        let base = WorkerLifecycleConfig::default();
        let cases: Vec<(&str, WorkerLifecycleConfig)> = vec![
            (
                "heartbeat_timeout",
                WorkerLifecycleConfig {
                    heartbeat_timeout: Duration::ZERO,
                    ..base.clone()
                },
            ),
            (
                "startup_timeout",
                WorkerLifecycleConfig {
                    startup_timeout: Duration::ZERO,
                    ..base.clone()
                },
            ),
            (
                "min_ready_workers",
                WorkerLifecycleConfig {
                    min_ready_workers: 11,
                    ..base.clone()
                },
            ),
            (
                "max_workers",
                WorkerLifecycleConfig {
                    max_workers: 0,
                    min_ready_workers: 0,
                    ..base.clone()
                },
            ),
            (
                "max_unhealthy_fraction",
                WorkerLifecycleConfig {
                    max_unhealthy_fraction: f64::NAN,
                    ..base.clone()
                },
            ),
            (
                "max_unhealthy_fraction",
                WorkerLifecycleConfig {
                    max_unhealthy_fraction: 0.0,
                    ..base.clone()
                },
            ),
            (
                "max_mass_expiry_hold",
                WorkerLifecycleConfig {
                    max_mass_expiry_hold: Duration::ZERO,
                    ..base.clone()
                },
            ),
            (
                "destroy_retry_max",
                WorkerLifecycleConfig {
                    destroy_retry_max: Duration::from_millis(10),
                    ..base.clone()
                },
            ),
            (
                "max_actions_per_tick",
                WorkerLifecycleConfig {
                    max_actions_per_tick: 0,
                    ..base.clone()
                },
            ),
        ];
        for (field, config) in cases {
            match config.validate() {
                Err(Error::InvalidArgument(msg)) => assert!(msg.contains(field), "{msg}"),
                other => panic!("{field}: expected InvalidArgument, got {other:?}"),
            }
        }
    }

    #[test]
    fn json_round_trip_in_seconds() {
        let c = WorkerLifecycleConfig {
            heartbeat_timeout: Duration::from_millis(1500),
            ..WorkerLifecycleConfig::default()
        };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["heartbeat_timeout"], 1.5);
        assert_eq!(json["startup_timeout"], 300);
        assert_eq!(json["max_mass_expiry_hold"], 300);
        assert_eq!(json["reconcile_interval"], 600);
        let back: WorkerLifecycleConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
        assert!(
            serde_json::from_str::<WorkerLifecycleConfig>(r#"{"heartbeat_timout": 1}"#).is_err()
        );
        assert!(
            serde_json::from_str::<WorkerLifecycleConfig>(r#"{"heartbeat_timeout": -1}"#).is_err()
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<u64> = (1..=6).map(|a| backoff_delay(i, m, a).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff_delay(i, m, u32::MAX), m);
    }
}
