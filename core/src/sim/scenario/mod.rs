//! What a simulation run is made of: the [`Scenario`] (serde, JSON files in
//! `core/examples/scenarios/`) and its parts, plus the built-in scenarios.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{json_error_message, Error, Result};
use crate::lifecycle::{Requirement, WorkerLifecycleConfig};
use crate::worker::{ResourceRequirements, WorkerSpec};

mod builtin;
mod parts;
mod replication;

pub use parts::*;
pub use replication::*;

/// One simulation: the manager configuration under test, the worker spec, the provider and
/// agent models, the workload, the host loop and the faults, plus a seed and a length.
///
/// JSON (every field optional, unknown fields refused; the `lifecycle` object is
/// [`WorkerLifecycleConfig`]'s own serde form, durations in seconds):
///
/// ```
/// use hodei_workers::sim::Scenario;
/// let s: Scenario = serde_json::from_str(r#"{
///     "name": "tiny", "seed": 7, "duration_secs": 600,
///     "lifecycle": {"max_workers": 4, "heartbeat_timeout": 30},
///     "workload": {"kind": "poisson", "rate_per_minute": 2,
///                  "duration": {"dist": "fixed", "secs": 30}}
/// }"#).unwrap();
/// s.validate().unwrap();
/// assert_eq!(s.lifecycle.max_workers, 4);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct Scenario {
    /// Name shown in reports.
    pub name: String,
    /// Seed of every random draw of the run.
    pub seed: u64,
    /// Simulated length of the run, seconds.
    pub duration_secs: f64,
    /// Simulated time per step, seconds (the clock advances by this much; invariants are
    /// checked after every step).
    pub step_secs: f64,
    /// Name of the configuration under test, in reports.
    pub label: String,
    /// The manager configuration under test.
    pub lifecycle: WorkerLifecycleConfig,
    /// The spec of the workers the autoscaler provisions.
    pub worker: WorkerSpec,
    /// An optional second configuration, run side by side on the same workload and seed.
    pub compare: Option<Variant>,
    /// The simulated provider.
    pub provider: ProviderModel,
    /// The simulated agents.
    pub agents: AgentModel,
    /// The jobs.
    pub workload: Workload,
    /// The host loop.
    pub host: HostModel,
    /// Faults on a schedule.
    pub faults: Faults,
    /// Pools: when any is given, the manager scales these (each on its own simulated cloud)
    /// from the demand by job class, instead of the single `worker` target.
    pub pools: Vec<SimPool>,
    /// Kinds of job, drawn per arrival by weight; none: every job needs nothing in particular.
    pub job_classes: Vec<JobClass>,
    /// Several managers on the registry, and the leader's faults (one manager by default).
    pub replication: Replication,
}
crate::object_form::object_form!(Scenario, "a scenario");

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "default".into(),
            seed: 1,
            duration_secs: 4.0 * 3600.0,
            step_secs: 1.0,
            label: "config".into(),
            lifecycle: WorkerLifecycleConfig::default(),
            worker: WorkerSpec::new("sim-worker").with_idle_timeout(Duration::from_secs(300)),
            compare: None,
            provider: ProviderModel::default(),
            agents: AgentModel::default(),
            workload: Workload::default(),
            host: HostModel::default(),
            faults: Faults::default(),
            pools: Vec::new(),
            job_classes: Vec::new(),
            replication: Replication::default(),
        }
    }
}

pub(super) fn probability(what: &str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid(format!(
            "{what} must be a probability in [0, 1], got {p}"
        )));
    }
    Ok(())
}

pub(super) fn non_negative(what: &str, x: f64) -> Result<()> {
    if !x.is_finite() || x < 0.0 {
        return Err(Error::invalid(format!(
            "{what} must be finite and >= 0, got {x}"
        )));
    }
    Ok(())
}

impl Scenario {
    /// Checks the scenario for nonsense (and the configurations and specs in it).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field: a step outside `[1 ms, 1 h]`, a negative
    /// or non-finite duration, rate or parameter, a probability outside `[0, 1]`, a window
    /// that ends before it starts, an invalid lifecycle configuration or worker spec.
    pub fn validate(&self) -> Result<()> {
        if !(0.001..=3600.0).contains(&self.step_secs) {
            return Err(Error::invalid(format!(
                "step_secs must be in [0.001, 3600], got {}",
                self.step_secs
            )));
        }
        non_negative("duration_secs", self.duration_secs)?;
        if self.duration_secs / self.step_secs > 1e9 {
            return Err(Error::invalid(
                "duration_secs / step_secs exceeds 1e9 steps",
            ));
        }
        self.lifecycle.validate()?;
        self.worker.validate()?;
        if let Some(v) = &self.compare {
            v.lifecycle.validate()?;
            if let Some(w) = &v.worker {
                w.validate()?;
            }
            for (k, pool) in v.pools.iter().flatten().enumerate() {
                pool.validate(&format!("compare.pools[{k}]"))?;
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (k, pool) in self.pools.iter().enumerate() {
            pool.validate(&format!("pools[{k}]"))?;
            if !names.insert(&pool.name) {
                return Err(Error::invalid(format!(
                    "pools: two pools named {}",
                    pool.name
                )));
            }
        }
        for (k, class) in self.job_classes.iter().enumerate() {
            non_negative(&format!("job_classes[{k}].weight"), class.weight)?;
            // The inner message, so that the error says "invalid argument" once.
            class.requirement.validate().map_err(|e| match e {
                Error::InvalidArgument(m) => Error::invalid(format!("job_classes[{k}]: {m}")),
                other => other,
            })?;
        }
        if !self.job_classes.is_empty() && self.job_classes.iter().all(|c| c.weight == 0.0) {
            return Err(Error::invalid("job_classes: every weight is 0"));
        }
        self.provider.validate("provider")?;
        self.replication.validate()?;
        let a = &self.agents;
        a.connect.validate("agents.connect")?;
        non_negative("agents.heartbeat_interval_secs", a.heartbeat_interval_secs)?;
        if a.heartbeat_interval_secs < 0.001 {
            return Err(Error::invalid(
                "agents.heartbeat_interval_secs must be at least 0.001",
            ));
        }
        non_negative("agents.heartbeat_jitter_secs", a.heartbeat_jitter_secs)?;
        probability(
            "agents.heartbeat_loss_probability",
            a.heartbeat_loss_probability,
        )?;
        non_negative("agents.crash_per_hour", a.crash_per_hour)?;
        match &self.workload {
            Workload::Poisson {
                rate_per_minute,
                duration,
                bursts,
            } => {
                non_negative("workload.rate_per_minute", *rate_per_minute)?;
                duration.validate("workload.duration")?;
                for b in bursts {
                    Window {
                        start_secs: b.start_secs,
                        end_secs: b.end_secs,
                    }
                    .validate("workload.bursts")?;
                    non_negative("workload.bursts.rate_per_minute", b.rate_per_minute)?;
                }
            }
            Workload::Trace { jobs } => {
                for j in jobs {
                    non_negative("workload.jobs arrival", j[0])?;
                    non_negative("workload.jobs duration", j[1])?;
                }
            }
            Workload::TraceFile { path } => {
                if path.is_empty() {
                    return Err(Error::invalid("workload.path is empty"));
                }
            }
        }
        let h = &self.host;
        if !(0.001..=86_400.0).contains(&h.tick_interval_secs) {
            return Err(Error::invalid(format!(
                "host.tick_interval_secs must be in [0.001, 86400], got {}",
                h.tick_interval_secs
            )));
        }
        non_negative("host.reconcile_interval_secs", h.reconcile_interval_secs)?;
        non_negative("host.flap_window_secs", h.flap_window_secs)?;
        let f = &self.faults;
        for w in &f.provider_outages {
            w.validate("faults.provider_outages")?;
        }
        for w in &f.host_stalls {
            w.validate("faults.host_stalls")?;
        }
        for w in &f.clock_stalls {
            w.validate("faults.clock_stalls")?;
        }
        for p in &f.partitions {
            p.window().validate("faults.partitions")?;
            probability("faults.partitions.fraction", p.fraction)?;
        }
        Ok(())
    }

    /// Reads a scenario from JSON and validates it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for malformed JSON, unknown fields or invalid values.
    pub fn from_json(text: &str) -> Result<Self> {
        let s: Scenario = serde_json::from_str(text).map_err(|e| {
            Error::invalid(format!("invalid scenario JSON: {}", json_error_message(&e)))
        })?;
        s.validate()?;
        Ok(s)
    }
}
