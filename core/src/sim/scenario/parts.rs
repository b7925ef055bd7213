//! The parts of a [`Scenario`](super::Scenario): distributions, windows, the provider,
//! agent, workload, host and fault models, variants, pools and job classes.

use serde::{Deserialize, Serialize};

use crate::error::{quote_input, Error, Result};
use crate::lifecycle::{
    Requirement, WorkerLifecycleConfig, DEFAULT_POOL_SCALE_DOWN_COOLDOWN,
    DEFAULT_POOL_SCALE_UP_COOLDOWN,
};
use crate::worker::{ResourceRequirements, WorkerSpec};

use super::{non_negative, probability};
use crate::sim::rng::SimRng;

/// A distribution of durations in seconds. JSON: `{"dist": "log_normal", "median": 20,
/// "sigma": 0.4}`. Every draw is clamped to `>= 0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    remote = "Self",
    tag = "dist",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Dist {
    /// Always `secs`.
    Fixed {
        /// The value, seconds.
        secs: f64,
    },
    /// Uniform in `[min, max)`.
    Uniform {
        /// Lower bound, seconds.
        min: f64,
        /// Upper bound, seconds.
        max: f64,
    },
    /// Exponential with this mean.
    Exponential {
        /// Mean, seconds.
        mean: f64,
    },
    /// Normal-ish (Irwin–Hall, bounded to ±6 sd), clamped at 0.
    Normal {
        /// Mean, seconds.
        mean: f64,
        /// Standard deviation, seconds.
        sd: f64,
    },
    /// Log-normal: median and the standard deviation of the log (long right tail).
    LogNormal {
        /// Median, seconds.
        median: f64,
        /// Shape.
        sigma: f64,
    },
}
crate::object_form::object_form!(Dist, "a distribution");

impl Dist {
    /// One draw, in seconds (never negative).
    pub fn sample(&self, rng: &mut SimRng) -> f64 {
        let x = match *self {
            Dist::Fixed { secs } => secs,
            Dist::Uniform { min, max } => rng.range(min, max),
            Dist::Exponential { mean } => rng.exponential(mean),
            Dist::Normal { mean, sd } => rng.normal(mean, sd),
            Dist::LogNormal { median, sigma } => rng.log_normal(median, sigma),
        };
        if x.is_finite() {
            x.max(0.0)
        } else {
            0.0
        }
    }

    /// One draw in whole milliseconds.
    pub fn sample_ms(&self, rng: &mut SimRng) -> u64 {
        secs_to_ms(self.sample(rng))
    }

    pub(super) fn validate(&self, what: &str) -> Result<()> {
        let params: Vec<f64> = match *self {
            Dist::Fixed { secs } => vec![secs],
            Dist::Uniform { min, max } => {
                if max < min {
                    return Err(Error::invalid(format!(
                        "{what}: uniform max {max} < min {min}"
                    )));
                }
                vec![min, max]
            }
            Dist::Exponential { mean } => vec![mean],
            Dist::Normal { mean, sd } => vec![mean, sd],
            Dist::LogNormal { median, sigma } => vec![median, sigma],
        };
        if params.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return Err(Error::invalid(format!(
                "{what}: distribution parameters must be finite and >= 0, got {self:?}"
            )));
        }
        Ok(())
    }
}

/// Seconds (f64) to whole milliseconds, saturating; negative and NaN give 0.
pub(crate) fn secs_to_ms(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        (secs * 1000.0).round().min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// A time window of the run, in seconds since its start: `[start_secs, end_secs)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Window {
    /// Start, seconds since the run began.
    pub start_secs: f64,
    /// End (exclusive), seconds since the run began.
    pub end_secs: f64,
}
crate::object_form::object_form!(Window, "a window");

impl Window {
    /// Whether `t_ms` (milliseconds since the run began) falls in the window.
    pub fn contains_ms(&self, t_ms: u64) -> bool {
        t_ms >= secs_to_ms(self.start_secs) && t_ms < secs_to_ms(self.end_secs)
    }

    pub(super) fn validate(&self, what: &str) -> Result<()> {
        if !(self.start_secs.is_finite() && self.end_secs.is_finite())
            || self.start_secs < 0.0
            || self.end_secs < self.start_secs
        {
            return Err(Error::invalid(format!(
                "{what}: window must have 0 <= start_secs <= end_secs, got {self:?}"
            )));
        }
        Ok(())
    }
}

/// A network partition on the agents' side: `fraction` of the agents (a fixed, seeded choice
/// per instance) cannot reach the host during the window — heartbeats, state reports and job
/// results are lost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Partition {
    /// Start, seconds since the run began.
    pub start_secs: f64,
    /// End (exclusive), seconds since the run began.
    pub end_secs: f64,
    /// Share of the agents cut off, in `[0, 1]`.
    pub fraction: f64,
}
crate::object_form::object_form!(Partition, "a partition");

impl Partition {
    /// The partition's time window.
    pub fn window(&self) -> Window {
        Window {
            start_secs: self.start_secs,
            end_secs: self.end_secs,
        }
    }
}

/// The simulated provider (a cloud API): how instances boot and how it fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct ProviderModel {
    /// Time from `create_worker` until the instance's agent starts connecting.
    pub boot: Dist,
    /// Probability that a boot is slow (drawn from `slow_boot` instead).
    pub slow_boot_probability: f64,
    /// Boot time of a slow boot (may exceed `startup_timeout`).
    pub slow_boot: Dist,
    /// Probability that a `create_worker` call fails.
    pub create_failure_probability: f64,
    /// Probability that a `destroy_worker` call fails (the instance stays).
    pub destroy_failure_probability: f64,
    /// Probability that a provider call panics (caught by the manager).
    pub panic_probability: f64,
    /// Hazard rate of an instance disappearing on its own (spot reclaim, node loss), per
    /// instance-hour.
    pub vanish_per_hour: f64,
    /// Whether the provider answers `list_workers` (for `reconcile`).
    pub supports_list: bool,
}
crate::object_form::object_form!(ProviderModel, "a provider model");

impl Default for ProviderModel {
    fn default() -> Self {
        ProviderModel {
            boot: Dist::LogNormal {
                median: 20.0,
                sigma: 0.4,
            },
            slow_boot_probability: 0.0,
            slow_boot: Dist::Fixed { secs: 400.0 },
            create_failure_probability: 0.0,
            destroy_failure_probability: 0.0,
            panic_probability: 0.0,
            vanish_per_hour: 0.0,
            supports_list: true,
        }
    }
}

impl ProviderModel {
    pub(super) fn validate(&self, what: &str) -> Result<()> {
        self.boot.validate(&format!("{what}.boot"))?;
        self.slow_boot.validate(&format!("{what}.slow_boot"))?;
        probability(
            &format!("{what}.slow_boot_probability"),
            self.slow_boot_probability,
        )?;
        probability(
            &format!("{what}.create_failure_probability"),
            self.create_failure_probability,
        )?;
        probability(
            &format!("{what}.destroy_failure_probability"),
            self.destroy_failure_probability,
        )?;
        probability(&format!("{what}.panic_probability"), self.panic_probability)?;
        non_negative(&format!("{what}.vanish_per_hour"), self.vanish_per_hour)
    }
}

/// The simulated agents (the worker processes): how they report in and how they fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct AgentModel {
    /// Time from `Connecting` to `Ready`.
    pub connect: Dist,
    /// Mean time between heartbeats, seconds.
    pub heartbeat_interval_secs: f64,
    /// Each interval is moved by up to ± this many seconds (uniform).
    pub heartbeat_jitter_secs: f64,
    /// Probability that one heartbeat is lost on the way.
    pub heartbeat_loss_probability: f64,
    /// Hazard rate of the agent crashing (the instance stays up, silent), per agent-hour.
    pub crash_per_hour: f64,
}
crate::object_form::object_form!(AgentModel, "an agent model");

impl Default for AgentModel {
    fn default() -> Self {
        AgentModel {
            connect: Dist::Uniform { min: 1.0, max: 3.0 },
            heartbeat_interval_secs: 10.0,
            heartbeat_jitter_secs: 2.0,
            heartbeat_loss_probability: 0.0,
            crash_per_hour: 0.0,
        }
    }
}

/// A period of the run with its own arrival rate (e.g. the CI morning rush).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Burst {
    /// Start, seconds since the run began.
    pub start_secs: f64,
    /// End (exclusive), seconds since the run began.
    pub end_secs: f64,
    /// Arrival rate during the burst, jobs per minute (replaces the base rate).
    pub rate_per_minute: f64,
}
crate::object_form::object_form!(Burst, "a burst");

/// Where the jobs come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    remote = "Self",
    tag = "kind",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Workload {
    /// A Poisson arrival process (rate per minute, piecewise constant with `bursts`), each job
    /// with a duration drawn from `duration`.
    Poisson {
        /// Base arrival rate, jobs per minute.
        rate_per_minute: f64,
        /// Job run time.
        duration: Dist,
        /// Periods with another rate.
        #[serde(default)]
        bursts: Vec<Burst>,
    },
    /// A fixed trace: `[arrival_secs, duration_secs]` pairs.
    Trace {
        /// The jobs, `[arrival_secs, duration_secs]`.
        jobs: Vec<[f64; 2]>,
    },
    /// A trace file: one job per line, `arrival_secs,duration_secs` (blank lines and lines
    /// starting with `#` are skipped). A relative path is resolved by the caller (the CLI
    /// resolves it against the scenario file's directory).
    TraceFile {
        /// Path of the CSV file.
        path: String,
    },
}
crate::object_form::object_form!(Workload, "a workload");

impl Default for Workload {
    fn default() -> Self {
        Workload::Poisson {
            rate_per_minute: 6.0,
            duration: Dist::LogNormal {
                median: 60.0,
                sigma: 0.6,
            },
            bursts: Vec::new(),
        }
    }
}

/// Parses the trace file format of [`Workload::TraceFile`].
///
/// # Errors
/// [`Error::InvalidArgument`] naming the line that is not two non-negative numbers.
pub fn parse_trace(text: &str) -> Result<Vec<[f64; 2]>> {
    let mut jobs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split(',').map(str::trim);
        let parsed = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(d), None) => a.parse::<f64>().ok().zip(d.parse::<f64>().ok()),
            _ => None,
        };
        match parsed {
            Some((a, d)) if a.is_finite() && d.is_finite() && a >= 0.0 && d >= 0.0 => {
                jobs.push([a, d])
            }
            _ => {
                return Err(Error::invalid(format!(
                    "trace line {}: expected `arrival_secs,duration_secs` (two numbers >= 0), \
                     got {}",
                    n + 1,
                    quote_input(line)
                )))
            }
        }
    }
    Ok(jobs)
}

/// How the host (the job system embedding the library) drives things.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct HostModel {
    /// Seconds between host passes (claim, tick).
    pub tick_interval_secs: f64,
    /// Seconds between `reconcile` calls; 0 never reconciles.
    pub reconcile_interval_secs: f64,
    /// Two automatic scaling actions in opposite directions closer than this count as a flap.
    pub flap_window_secs: f64,
}
crate::object_form::object_form!(HostModel, "a host model");

impl Default for HostModel {
    fn default() -> Self {
        HostModel {
            tick_interval_secs: 1.0,
            reconcile_interval_secs: 0.0,
            flap_window_secs: 300.0,
        }
    }
}

/// Faults injected on a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct Faults {
    /// The provider's API is down: every call fails.
    pub provider_outages: Vec<Window>,
    /// The host process is suspended: no tick, no claim, and nothing reaches the registry
    /// (heartbeats and job results of the agents are lost).
    pub host_stalls: Vec<Window>,
    /// Part of the agents cannot reach the host (mass heartbeat loss).
    pub partitions: Vec<Partition>,
    /// The clock stands still (then jumps forward to the true time at the window's end).
    pub clock_stalls: Vec<Window>,
    /// Capacity of a subscriber that never reads its events (0: no such subscriber). Its
    /// queue must stay bounded while the registry keeps working.
    pub lazy_subscriber_capacity: usize,
}
crate::object_form::object_form!(Faults, "faults");

impl Default for Faults {
    fn default() -> Self {
        Faults {
            provider_outages: Vec::new(),
            host_stalls: Vec::new(),
            partitions: Vec::new(),
            clock_stalls: Vec::new(),
            lazy_subscriber_capacity: 64,
        }
    }
}

/// A second configuration to compare, run on the same workload, faults and seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Variant {
    /// Its name in the report.
    pub label: String,
    /// The manager configuration.
    #[serde(default)]
    pub lifecycle: WorkerLifecycleConfig,
    /// The worker spec (idle timeout, lifetime, job limit); the scenario's when absent.
    #[serde(default)]
    pub worker: Option<WorkerSpec>,
    /// The pools (another pool policy: priorities, bounds, fallback pools); the scenario's
    /// when absent.
    #[serde(default)]
    pub pools: Option<Vec<SimPool>>,
}
crate::object_form::object_form!(Variant, "a variant");

/// A wave of interruption notices (spot reclaims) in a pool: at `at_secs`, `fraction` of the
/// pool's live instances (a seeded choice) get a notice with `notice_secs` of warning, and
/// their instances disappear when it runs out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct InterruptionWave {
    /// When the notices arrive, seconds since the run began.
    pub at_secs: f64,
    /// Share of the pool's live instances interrupted, in `[0, 1]`.
    pub fraction: f64,
    /// Warning before the instance goes, seconds.
    pub notice_secs: f64,
}
crate::object_form::object_form!(InterruptionWave, "an interruption wave");

/// One pool of a multi-pool scenario: its manager-side [`Pool`](crate::Pool) settings, its
/// workers (labels, capabilities, resources, architecture; idle timeout and lifetime are the
/// scenario worker's, which the checker judges by), its own cloud (provider model, times
/// without capacity, interruption waves).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct SimPool {
    /// The pool's name (its provider is `sim-NAME`).
    pub name: String,
    /// Higher first.
    pub priority: i32,
    /// Idle workers kept warm.
    pub min_ready: usize,
    /// The pool's own cap (the lifecycle's `max_workers` caps all pools together).
    pub max_workers: usize,
    /// The pool's scale-up cooldown, seconds.
    pub scale_up_cooldown_secs: f64,
    /// The pool's scale-down cooldown, seconds.
    pub scale_down_cooldown_secs: f64,
    /// Labels of its workers.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Capabilities of its workers.
    pub capabilities: std::collections::BTreeSet<String>,
    /// Resources of its workers.
    pub resources: ResourceRequirements,
    /// Its cloud; the scenario's `provider` when absent.
    pub provider: Option<ProviderModel>,
    /// Windows in which every create fails with "no capacity" (a spot market running dry).
    pub no_capacity: Vec<Window>,
    /// Interruption waves.
    pub interruptions: Vec<InterruptionWave>,
}
crate::object_form::object_form!(SimPool, "a pool");

impl Default for SimPool {
    fn default() -> Self {
        SimPool {
            name: "pool".into(),
            priority: 0,
            min_ready: 0,
            max_workers: 1_000_000,
            scale_up_cooldown_secs: DEFAULT_POOL_SCALE_UP_COOLDOWN.as_secs_f64(),
            scale_down_cooldown_secs: DEFAULT_POOL_SCALE_DOWN_COOLDOWN.as_secs_f64(),
            labels: Default::default(),
            capabilities: Default::default(),
            resources: ResourceRequirements::default(),
            provider: None,
            no_capacity: Vec::new(),
            interruptions: Vec::new(),
        }
    }
}

impl SimPool {
    pub(super) fn validate(&self, what: &str) -> Result<()> {
        // The inner message, so that the error says "invalid argument" once.
        crate::lifecycle::validate_pool_name(&self.name).map_err(|e| match e {
            Error::InvalidArgument(m) => Error::invalid(format!("{what}: {m}")),
            other => other,
        })?;
        non_negative(
            &format!("{what}.scale_up_cooldown_secs"),
            self.scale_up_cooldown_secs,
        )?;
        non_negative(
            &format!("{what}.scale_down_cooldown_secs"),
            self.scale_down_cooldown_secs,
        )?;
        if self.scale_up_cooldown_secs > 86_400.0 || self.scale_down_cooldown_secs > 86_400.0 {
            return Err(Error::invalid(format!("{what}: cooldowns above a day")));
        }
        if self.min_ready > self.max_workers {
            return Err(Error::invalid(format!(
                "{what}: min_ready {} above max_workers {}",
                self.min_ready, self.max_workers
            )));
        }
        if let Some(p) = &self.provider {
            p.validate(&format!("{what}.provider"))?;
        }
        for w in &self.no_capacity {
            w.validate(&format!("{what}.no_capacity"))?;
        }
        for i in &self.interruptions {
            non_negative(&format!("{what}.interruptions.at_secs"), i.at_secs)?;
            non_negative(&format!("{what}.interruptions.notice_secs"), i.notice_secs)?;
            probability(&format!("{what}.interruptions.fraction"), i.fraction)?;
        }
        Ok(())
    }
}

/// A kind of job of a multi-pool scenario: what it needs (the requirement's `count` is
/// ignored) and its share of the arrivals (weights are relative).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct JobClass {
    /// What the job needs of a worker.
    pub requirement: Requirement,
    /// Its share of the arrivals, relative to the other classes' weights.
    pub weight: f64,
}
crate::object_form::object_form!(JobClass, "a job class");

impl Default for JobClass {
    fn default() -> Self {
        JobClass {
            requirement: Requirement::new(0),
            weight: 1.0,
        }
    }
}
