//! [`Pool`]: one kind of worker the manager scales — a provider, a spec template, bounds, a
//! priority and its own cooldowns.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::duration_secs;
use crate::error::{quote_input, Error, Result};
use crate::ids::ProviderId;
use crate::worker::WorkerSpec;

use super::demand::Requirement;

/// Defined with the registry, which counts workers per pool (`WorkerRegistryStats::by_pool`).
pub use crate::registry::POOL_LABEL;

/// Longest pool name, in bytes.
pub const MAX_POOL_NAME_LEN: usize = 64;

/// Default [`Pool::scale_up_cooldown`]: 10 s (as `WorkerLifecycleConfig`).
pub const DEFAULT_POOL_SCALE_UP_COOLDOWN: Duration = Duration::from_secs(10);
/// Default [`Pool::scale_down_cooldown`]: 60 s (as `WorkerLifecycleConfig`).
pub const DEFAULT_POOL_SCALE_DOWN_COOLDOWN: Duration = Duration::from_secs(60);

/// One kind of worker the manager scales: workers of `provider_id` made from `template`,
/// between `min_ready` idle ones kept warm and `max_workers` in all, tried before pools of lower
/// `priority` when several satisfy a demand.
///
/// Every worker provisioned for the pool carries the label [`POOL_LABEL`]` = name` (added to
/// the template; a template may not set that label itself). The pool's template is what a
/// [`Requirement`] is matched against: its labels (plus the pool label), capabilities,
/// architecture and resources (see [`Pool::satisfies`]).
///
/// ```
/// use std::time::Duration;
/// use hodei_workers::*;
///
/// let a100 = WorkerSpec {
///     resources: ResourceRequirements {
///         cpu_cores: 16.0,
///         gpu_count: 1,
///         gpu_type: Some("a100".into()),
///         ..Default::default()
///     },
///     ..WorkerSpec::new("trainer:1").with_label("gpu", "a100")
/// };
/// let spot = Pool::new("gpu-spot", ProviderId::new("ec2-spot")?, a100.clone())?
///     .with_max_workers(8)
///     .with_priority(10);
/// let on_demand = Pool::new("gpu-ondemand", ProviderId::new("ec2")?, a100)?
///     .with_max_workers(2)
///     .with_scale_up_cooldown(Duration::from_secs(30));
/// let job = Requirement::new(3).label("gpu", "a100");
/// assert!(spot.satisfies(&job) && on_demand.satisfies(&job));
/// assert!(!spot.satisfies(&Requirement::new(1).capability("docker")));
/// # Ok::<(), hodei_workers::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Pool {
    /// 1..=64 bytes of ASCII letters, digits, `-`, `_`, `.`; unique among a manager's pools.
    pub name: String,
    /// The provider asked for the pool's workers.
    pub provider_id: ProviderId,
    /// What the pool's workers are (the pool label is added when provisioning).
    pub template: Arc<WorkerSpec>,
    /// Idle `Ready` workers kept warm in this pool. Default 0.
    #[serde(default)]
    pub min_ready: usize,
    /// Most workers of this pool (registered, in any state, plus provisions in flight).
    /// Default: unbounded — the manager's global `max_workers` still caps every pool.
    #[serde(default = "unbounded")]
    pub max_workers: usize,
    /// Higher first: demand goes to the highest-priority pool that satisfies it and can provide.
    /// Ties go by name. Default 0.
    #[serde(default)]
    pub priority: i32,
    /// Minimum time between two automatic scale-ups of this pool. Default 10 s. A pool in its
    /// cooldown keeps its demand (it does not spill: a cooldown paces, it is not a failure).
    #[serde(default = "default_up", with = "duration_secs")]
    pub scale_up_cooldown: Duration,
    /// Minimum time after any automatic scaling action of this pool before it scales down.
    /// Default 60 s.
    #[serde(default = "default_down", with = "duration_secs")]
    pub scale_down_cooldown: Duration,
}
crate::object_form::object_form!(Pool, "a pool");

fn unbounded() -> usize {
    usize::MAX
}
fn default_up() -> Duration {
    DEFAULT_POOL_SCALE_UP_COOLDOWN
}
fn default_down() -> Duration {
    DEFAULT_POOL_SCALE_DOWN_COOLDOWN
}

impl Pool {
    /// A pool with the defaults (no warm workers, no own maximum, priority 0, cooldowns 10 s
    /// and 60 s).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] as [`Pool::validate`].
    pub fn new(
        name: impl Into<String>,
        provider_id: ProviderId,
        template: impl Into<Arc<WorkerSpec>>,
    ) -> Result<Self> {
        let pool = Pool {
            name: name.into(),
            provider_id,
            template: template.into(),
            min_ready: 0,
            max_workers: usize::MAX,
            priority: 0,
            scale_up_cooldown: DEFAULT_POOL_SCALE_UP_COOLDOWN,
            scale_down_cooldown: DEFAULT_POOL_SCALE_DOWN_COOLDOWN,
        };
        pool.validate()?;
        Ok(pool)
    }

    /// Sets `min_ready` (builder style).
    pub fn with_min_ready(mut self, n: usize) -> Self {
        self.min_ready = n;
        self
    }

    /// Sets `max_workers` (builder style).
    pub fn with_max_workers(mut self, n: usize) -> Self {
        self.max_workers = n;
        self
    }

    /// Sets `priority` (builder style).
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the scale-up cooldown (builder style).
    pub fn with_scale_up_cooldown(mut self, cooldown: Duration) -> Self {
        self.scale_up_cooldown = cooldown;
        self
    }

    /// Sets the scale-down cooldown (builder style).
    pub fn with_scale_down_cooldown(mut self, cooldown: Duration) -> Self {
        self.scale_down_cooldown = cooldown;
        self
    }

    /// Checks the pool: its name (see [`Pool::name`]), `min_ready <= max_workers`, a valid
    /// template that does not set [`POOL_LABEL`] itself, cooldowns that survive the serde form.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the pool and the field.
    pub fn validate(&self) -> Result<()> {
        validate_pool_name(&self.name)?;
        let name = &self.name;
        if self.min_ready > self.max_workers {
            return Err(Error::invalid(format!(
                "pool {name}: min_ready {} is above max_workers {}",
                self.min_ready, self.max_workers
            )));
        }
        if self.template.labels.contains_key(POOL_LABEL) {
            return Err(Error::invalid(format!(
                "pool {name}: the template may not set the label {POOL_LABEL} (the manager sets it)"
            )));
        }
        // The inner message, so that the error says "invalid argument" once.
        self.template.validate().map_err(|e| match e {
            Error::InvalidArgument(m) => Error::invalid(format!("pool {name}: template: {m}")),
            other => other,
        })?;
        for (what, d) in [
            ("scale_up_cooldown", self.scale_up_cooldown),
            ("scale_down_cooldown", self.scale_down_cooldown),
        ] {
            // Anything a ManualClock run or a JSON round trip could not represent.
            if d > Duration::from_secs(10 * 365 * 24 * 3600) {
                return Err(Error::invalid(format!(
                    "pool {name}: {what} {d:?} is longer than ten years"
                )));
            }
        }
        Ok(())
    }

    /// Whether this pool's workers can run jobs of `requirement`: the template has every
    /// required label with its value (the pool label [`POOL_LABEL`]` = name` counts), every
    /// required capability, the architecture if one is required, and resources that cover the
    /// required ones ([`ResourceRequirements::covers`](crate::ResourceRequirements::covers)).
    /// Ignores `count` and whether the pool can provide now.
    pub fn satisfies(&self, requirement: &Requirement) -> bool {
        let t = &self.template;
        requirement
            .labels
            .iter()
            .all(|(k, v)| t.labels.get(k) == Some(v) || (k == POOL_LABEL && *v == self.name))
            && requirement
                .capabilities
                .iter()
                .all(|c| t.capabilities.contains(c))
            && requirement.architecture.is_none_or(|a| a == t.architecture)
            && t.resources.covers(&requirement.resources)
    }

    /// The spec the pool's workers are provisioned with: the template plus the pool label.
    pub fn worker_spec(&self) -> Arc<WorkerSpec> {
        let mut spec = (*self.template).clone();
        spec.labels.insert(POOL_LABEL.to_owned(), self.name.clone());
        Arc::new(spec)
    }
}

/// Checks a pool name: 1..=64 bytes of ASCII letters, digits, `-`, `_`, `.` (so that it is a
/// readable label value and the same text in every language).
pub(crate) fn validate_pool_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_POOL_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Error::invalid(format!(
            "invalid pool name {}: 1..={MAX_POOL_NAME_LEN} bytes of letters, digits, '-', '_', '.'",
            quote_input(name)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::{Architecture, ResourceRequirements};

    fn pid() -> ProviderId {
        ProviderId::new("p").unwrap()
    }

    #[test]
    fn names_and_bounds_are_checked() {
        for bad in ["", "a b", "gpu/spot", "é", &"x".repeat(65)] {
            assert!(
                Pool::new(bad, pid(), WorkerSpec::new("i")).is_err(),
                "{bad:?}"
            );
        }
        Pool::new("gpu-spot_2.a", pid(), WorkerSpec::new("i")).unwrap();
        let p = Pool::new("p", pid(), WorkerSpec::new("i"))
            .unwrap()
            .with_min_ready(3)
            .with_max_workers(2);
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("min_ready 3"));
        let labelled = WorkerSpec::new("i").with_label(POOL_LABEL, "other");
        assert!(Pool::new("p", pid(), labelled).is_err());
        let broken = WorkerSpec::new("i").with_idle_timeout(Duration::ZERO);
        let said = Pool::new("p", pid(), broken).unwrap_err().to_string();
        assert!(
            said.contains("pool p: template: spec.idle_timeout"),
            "{said}"
        );
        assert_eq!(said.matches("invalid argument").count(), 1, "{said}");
    }

    #[test]
    fn satisfies_every_constraint_and_the_pool_label() {
        let spec = WorkerSpec {
            resources: ResourceRequirements {
                cpu_cores: 8.0,
                gpu_count: 2,
                gpu_type: Some("a100".into()),
                ..Default::default()
            },
            architecture: Architecture::Arm64,
            ..WorkerSpec::new("i")
                .with_label("gpu", "a100")
                .with_capability("cuda")
        };
        let pool = Pool::new("gpu", pid(), spec).unwrap();
        assert!(pool.satisfies(&Requirement::new(1)));
        assert!(pool.satisfies(
            &Requirement::new(1)
                .label("gpu", "a100")
                .label(POOL_LABEL, "gpu")
                .capability("cuda")
                .architecture(Architecture::Arm64)
                .resources(ResourceRequirements {
                    cpu_cores: 8.0,
                    gpu_count: 2,
                    ..Default::default()
                })
        ));
        for r in [
            Requirement::new(1).label("gpu", "h100"),
            Requirement::new(1).label(POOL_LABEL, "cpu"),
            Requirement::new(1).capability("docker"),
            Requirement::new(1).architecture(Architecture::Amd64),
            Requirement::new(1).resources(ResourceRequirements {
                cpu_cores: 9.0,
                ..Default::default()
            }),
        ] {
            assert!(!pool.satisfies(&r), "{r}");
        }
        assert_eq!(pool.worker_spec().labels.get(POOL_LABEL).unwrap(), "gpu");
    }
}
