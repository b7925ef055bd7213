//! `hw_manager_config`: the manager's timeouts, limits and policy as a plain C struct.

use engine::WorkerLifecycleConfig;

use crate::boundary::{arg_out, ffi_boundary, hw_status};
use crate::types::{millis, ms};

/// The manager's configuration. Fill it with `hw_manager_config_default` first, then change
/// the fields you care about, so that your code keeps its meaning when a version adds a field
/// (a new field changes the struct's size: rebuild against the new header). Durations are in
/// milliseconds. `hw_manager_new` validates it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hw_manager_config {
    /// A worker silent longer than this is unhealthy (default 60000). Also the longest gap
    /// between ticks that is not treated as a host stall.
    pub heartbeat_timeout_ms: u64,
    /// The health check runs at most this often inside `hw_manager_tick` (default 30000).
    pub health_check_interval_ms: u64,
    /// A worker still `CREATING`/`CONNECTING` this long after registration is expired
    /// (default 300000).
    pub startup_timeout_ms: u64,
    /// Idle `READY` workers the autoscaler keeps warm (default 1).
    pub min_ready_workers: usize,
    /// Ceiling: registered workers (every state) plus provisions in flight (default 10).
    pub max_workers: usize,
    /// `hw_manager_should_scale_up` threshold of pending jobs (default 5).
    pub scale_up_threshold: usize,
    /// `hw_manager_should_scale_down` threshold of ready workers (default 3).
    pub scale_down_threshold: usize,
    /// Minimum time between automatic scale-ups (default 10000).
    pub scale_up_cooldown_ms: u64,
    /// Minimum time after any automatic scaling action before a scale-down (default 60000).
    pub scale_down_cooldown_ms: u64,
    /// Most provisions (and scale-down retirements) per tick (default 5).
    pub max_provision_per_tick: usize,
    /// Most actions (state changes and provider calls) per tick (default 100). Each orphan
    /// destroy of the tick's own reconcile (a takeover's, a periodic one) is one: those over
    /// the cap are destroyed by the next ticks. `hw_manager_reconcile` is not capped.
    pub max_actions_per_tick: usize,
    /// First retry delay of a failed destroy; doubles up to the max (default 1000).
    pub destroy_retry_initial_ms: u64,
    /// Longest retry delay of a failed destroy (default 300000).
    pub destroy_retry_max_ms: u64,
    /// First back-off of a provider whose creates fail; doubles up to the max (default 5000).
    pub provider_backoff_initial_ms: u64,
    /// Longest back-off of a failing provider (default 300000).
    pub provider_backoff_max_ms: u64,
    /// The brake: when more than this fraction of the workers under heartbeat watch
    /// (`CONNECTING`, `READY`, `BUSY`, `DRAINING`) are silent at once for more than half
    /// `heartbeat_timeout_ms`, none of them is declared unhealthy for its heartbeat (a
    /// partition on the host's side must not kill a healthy fleet; startup expiries are never
    /// held). The same rule guards the ticks' own reconciles: a provider's listing that misses
    /// more than this fraction of its workers (`TERMINATING` ones included; and more than
    /// `unhealthy_floor`) expires
    /// none of them as vanished, and one that shows more instances no record knows than this
    /// fraction of the provider's records (and more than `unhealthy_floor`) destroys none of
    /// them as orphans (`hw_manager_reconcile` is not braked). In (0, 1]; 1 disables the
    /// brake; default 0.55.
    pub max_unhealthy_fraction: f64,
    /// The brake's floor: this many workers may always be silent at once without the brake
    /// holding, whatever the fraction, so that a fleet of one to three can still lose one
    /// (likewise this many vanished instances, and this many orphan instances, per provider in
    /// the ticks' reconciles; default 1).
    pub unhealthy_floor: usize,
    /// The brake's bound: once it has held continuously for longer than this, the health check
    /// lets go and declares the silent workers unhealthy after all — most of the fleet really
    /// died (`hw_report_summary.brake_gave_up`). A new hold starts only after a check finds the
    /// fleet back under the limit. Default 300000; 0 is refused with `HW_ERR_INVALID_ARGUMENT`.
    pub max_mass_expiry_hold_ms: u64,
    /// How often the leader's `hw_manager_tick` runs `hw_manager_reconcile` by itself: once
    /// this long has passed since the last complete reconcile (a takeover's, a periodic one,
    /// or a call of the host's), so that orphan instances that appear after it (the create of
    /// a replica that lost its lease, returning after the new leader's takeover reconcile)
    /// are destroyed on a host that only ticks. Reported in the tick's decisions. A tick's
    /// reconcile that could not list every provider runs again after a back-off:
    /// `destroy_retry_initial_ms` doubling up to this interval (`destroy_retry_max_ms` when it
    /// is 0), starting over after a complete reconcile. Default 600000; 0 disables it.
    pub reconcile_interval_ms: u64,
}

impl hw_manager_config {
    pub(super) fn from_core(c: &WorkerLifecycleConfig) -> Self {
        hw_manager_config {
            heartbeat_timeout_ms: millis(c.heartbeat_timeout),
            health_check_interval_ms: millis(c.health_check_interval),
            startup_timeout_ms: millis(c.startup_timeout),
            min_ready_workers: c.min_ready_workers,
            max_workers: c.max_workers,
            scale_up_threshold: c.scale_up_threshold,
            scale_down_threshold: c.scale_down_threshold,
            scale_up_cooldown_ms: millis(c.scale_up_cooldown),
            scale_down_cooldown_ms: millis(c.scale_down_cooldown),
            max_provision_per_tick: c.max_provision_per_tick,
            max_actions_per_tick: c.max_actions_per_tick,
            destroy_retry_initial_ms: millis(c.destroy_retry_initial),
            destroy_retry_max_ms: millis(c.destroy_retry_max),
            provider_backoff_initial_ms: millis(c.provider_backoff_initial),
            provider_backoff_max_ms: millis(c.provider_backoff_max),
            max_unhealthy_fraction: c.max_unhealthy_fraction,
            unhealthy_floor: c.unhealthy_floor,
            max_mass_expiry_hold_ms: millis(c.max_mass_expiry_hold),
            reconcile_interval_ms: millis(c.reconcile_interval),
        }
    }

    pub(crate) fn to_core(self) -> WorkerLifecycleConfig {
        WorkerLifecycleConfig {
            heartbeat_timeout: ms(self.heartbeat_timeout_ms),
            health_check_interval: ms(self.health_check_interval_ms),
            startup_timeout: ms(self.startup_timeout_ms),
            min_ready_workers: self.min_ready_workers,
            max_workers: self.max_workers,
            scale_up_threshold: self.scale_up_threshold,
            scale_down_threshold: self.scale_down_threshold,
            scale_up_cooldown: ms(self.scale_up_cooldown_ms),
            scale_down_cooldown: ms(self.scale_down_cooldown_ms),
            max_provision_per_tick: self.max_provision_per_tick,
            max_actions_per_tick: self.max_actions_per_tick,
            destroy_retry_initial: ms(self.destroy_retry_initial_ms),
            destroy_retry_max: ms(self.destroy_retry_max_ms),
            provider_backoff_initial: ms(self.provider_backoff_initial_ms),
            provider_backoff_max: ms(self.provider_backoff_max_ms),
            max_unhealthy_fraction: self.max_unhealthy_fraction,
            unhealthy_floor: self.unhealthy_floor,
            max_mass_expiry_hold: ms(self.max_mass_expiry_hold_ms),
            reconcile_interval: ms(self.reconcile_interval_ms),
        }
    }
}

/// Fills `out` with the default configuration.
#[no_mangle]
pub extern "C" fn hw_manager_config_default(out: *mut hw_manager_config) -> hw_status {
    ffi_boundary!(hw_manager_config_default, {
        let out = arg_out!(out);
        out.write(hw_manager_config::from_core(
            &WorkerLifecycleConfig::default(),
        ));
        Ok(())
    })
}
