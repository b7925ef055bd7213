//! [`WorkerFilter`]: which workers a `find` or `claim` is about.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::clock::{millis, Timestamp};
use crate::error::{Error, Result};
use crate::ids::ProviderId;
use crate::state::WorkerState;
use crate::worker::{
    Architecture, ProviderType, ResourceRequirements, Worker, WorkerHandle, WorkerSpec,
    MAX_ENTRIES, MAX_KEY_LEN, MAX_VALUE_LEN,
};

/// A conjunction of conditions on workers; the empty filter matches every worker.
///
/// ```
/// use hodei_workers::{WorkerFilter, WorkerState};
/// use std::time::Duration;
/// let filter = WorkerFilter::new()
///     .state(WorkerState::Ready)
///     .label("pool", "ci")
///     .capability("docker")
///     .idle_for(Duration::from_secs(60))
///     .limit(10);
/// assert_eq!(filter.limit, Some(10));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerFilter {
    /// The worker's state is one of these (empty: any state).
    pub states: BTreeSet<WorkerState>,
    /// Owned by this provider.
    pub provider_id: Option<ProviderId>,
    /// Of this provider type.
    pub provider_type: Option<ProviderType>,
    /// `Some(true)`: only workers accepting jobs (`Ready`); `Some(false)`: only the others.
    pub accepting_jobs: Option<bool>,
    /// `Ready` and idle for at least this long.
    pub idle_for: Option<Duration>,
    /// No heartbeat for longer than this, judged on `last_heartbeat` alone: in any state, and
    /// not moved by a grace period (`grant_grace`, `restore`), which is no sign of life. So
    /// it agrees with [`matches`](Self::matches) on a snapshot, not with
    /// [`find_unhealthy`](crate::WorkerRegistry::find_unhealthy) (monitored states, deadlines
    /// after a grace).
    pub unhealthy_for: Option<Duration>,
    /// Every one of these labels, with these values.
    pub labels: BTreeMap<String, String>,
    /// Every one of these capabilities.
    pub capabilities: BTreeSet<String>,
    /// The worker's resources cover these (each at least as much; the same GPU model when one
    /// is named): see [`ResourceRequirements::covers`]. A job's needs, so that a scheduler
    /// claims for it exactly as its [`Requirement`](crate::Requirement) describes it.
    pub fits: Option<ResourceRequirements>,
    /// Of this CPU architecture.
    pub architecture: Option<Architecture>,
    /// At most this many results.
    pub limit: Option<usize>,
}

impl WorkerFilter {
    /// The filter that matches everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an accepted state.
    pub fn state(mut self, state: WorkerState) -> Self {
        self.states.insert(state);
        self
    }

    /// Adds accepted states.
    pub fn states(mut self, states: impl IntoIterator<Item = WorkerState>) -> Self {
        self.states.extend(states);
        self
    }

    /// Only this provider's workers.
    pub fn provider_id(mut self, provider_id: ProviderId) -> Self {
        self.provider_id = Some(provider_id);
        self
    }

    /// Only workers of this provider type.
    pub fn provider_type(mut self, provider_type: ProviderType) -> Self {
        self.provider_type = Some(provider_type);
        self
    }

    /// Only workers that accept jobs (`true`) or only those that do not (`false`).
    pub fn accepting_jobs(mut self, accepting: bool) -> Self {
        self.accepting_jobs = Some(accepting);
        self
    }

    /// Only `Ready` workers idle for at least `duration`.
    pub fn idle_for(mut self, duration: Duration) -> Self {
        self.idle_for = Some(duration);
        self
    }

    /// Only workers without a heartbeat for longer than `duration` (strictly; see the field:
    /// any state, no grace period).
    pub fn unhealthy_for(mut self, duration: Duration) -> Self {
        self.unhealthy_for = Some(duration);
        self
    }

    /// Requires a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Requires a capability.
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.insert(capability.into());
        self
    }

    /// Only workers whose resources cover `resources` (worker's ≥ the job's, see
    /// [`ResourceRequirements::covers`]).
    ///
    /// Checked with the labels and capabilities on what never changes in a record, so `claim`
    /// answers it from the ready index like them: it walks ready workers (most recently idle
    /// first) until one fits, never the fleet.
    ///
    /// ```
    /// use hodei_workers::{ResourceRequirements, WorkerFilter};
    /// let job = ResourceRequirements { cpu_cores: 2.0, gpu_count: 1, ..Default::default() };
    /// let filter = WorkerFilter::new().fits(job.clone());
    /// assert_eq!(filter.fits, Some(job));
    /// ```
    pub fn fits(mut self, resources: ResourceRequirements) -> Self {
        self.fits = Some(resources);
        self
    }

    /// Only workers of this CPU architecture.
    pub fn architecture(mut self, architecture: Architecture) -> Self {
        self.architecture = Some(architecture);
        self
    }

    /// Caps the number of results.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Checks that the filter asks for nothing a worker cannot hold: label keys, capabilities
    /// and the `fits` GPU model of at most [`MAX_KEY_LEN`] bytes, label values of at most
    /// [`MAX_VALUE_LEN`], at most [`MAX_ENTRIES`] labels and capabilities (the limits of
    /// [`WorkerSpec::validate`]), and a `fits` CPU need that is finite and not negative (a NaN
    /// is covered by no worker). `find` and `claim` call it on every backend, so such a filter
    /// is the caller's mistake said, not an empty answer. A NUL byte is no error: it
    /// matches nothing, as a string compared exactly. Costs one length comparison per string;
    /// allocates only to say what is wrong.
    ///
    /// ```
    /// use hodei_workers::{Error, WorkerFilter, MAX_KEY_LEN};
    /// assert!(WorkerFilter::new().label("pool", "ci").validate().is_ok());
    /// let long = WorkerFilter::new().capability("c".repeat(MAX_KEY_LEN + 1));
    /// assert!(matches!(long.validate(), Err(Error::InvalidArgument(m)) if m.contains("filter.capabilities")));
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field (`filter.labels`, `filter.capabilities`,
    /// `filter.fits.gpu_type`, `filter.fits.cpu_cores`) and the limit.
    pub fn validate(&self) -> Result<()> {
        if let Some(cpu) = self.fits.as_ref().map(|f| f.cpu_cores) {
            if !cpu.is_finite() || cpu < 0.0 {
                return Err(Error::invalid(format!(
                    "filter.fits.cpu_cores must be finite and >= 0, got {cpu}"
                )));
            }
        }
        check_wanted(
            "filter.",
            "fits.",
            &self.labels,
            &self.capabilities,
            self.fits.as_ref().and_then(|f| f.gpu_type.as_deref()),
        )
    }

    /// Whether the conditions on what never changes in a record (provider, labels,
    /// capabilities, resources, architecture) hold. Used by `claim` before it looks at the
    /// live record.
    pub fn matches_static(&self, handle: &WorkerHandle, spec: &WorkerSpec) -> bool {
        if let Some(p) = &self.provider_id {
            if &handle.provider_id != p {
                return false;
            }
        }
        if let Some(t) = &self.provider_type {
            if &handle.provider_type != t {
                return false;
            }
        }
        self.matches_spec(spec)
    }

    /// Whether the conditions on the spec alone (labels, capabilities, resources,
    /// architecture) hold: [`matches_static`](Self::matches_static) without the provider's.
    /// What a pool's template asks of a worker it takes, before any worker exists.
    pub(crate) fn matches_spec(&self, spec: &WorkerSpec) -> bool {
        if let Some(need) = &self.fits {
            if !spec.resources.covers(need) {
                return false;
            }
        }
        if let Some(arch) = self.architecture {
            if spec.architecture != arch {
                return false;
            }
        }
        self.labels
            .iter()
            .all(|(k, v)| spec.labels.get(k) == Some(v))
            && self
                .capabilities
                .iter()
                .all(|c| spec.capabilities.contains(c))
    }

    /// Whether `worker` matches every condition at time `now`.
    pub fn matches(&self, worker: &Worker, now: Timestamp) -> bool {
        if !self.states.is_empty() && !self.states.contains(&worker.state) {
            return false;
        }
        if let Some(accepting) = self.accepting_jobs {
            if worker.is_available() != accepting {
                return false;
            }
        }
        if let Some(idle) = self.idle_for {
            match worker.idle_since {
                Some(since) if worker.state == WorkerState::Ready => {
                    if now.saturating_sub(since) < millis(idle) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        if let Some(silent) = self.unhealthy_for {
            if now.saturating_sub(worker.last_heartbeat) <= millis(silent) {
                return false;
            }
        }
        self.matches_static(&worker.handle, &worker.spec)
    }
}

/// The strings a filter or a demand's requirement asks a worker to hold, within the limits of
/// the worker's own strings (`MAX_*`): the one check of [`WorkerFilter::validate`] and
/// [`Requirement::validate`](crate::Requirement::validate). `prefix` names the owner
/// (`"filter."`), `resources` the path of the GPU model's struct (`"fits."`).
pub(crate) fn check_wanted(
    prefix: &str,
    resources: &str,
    labels: &BTreeMap<String, String>,
    capabilities: &BTreeSet<String>,
    gpu_type: Option<&str>,
) -> Result<()> {
    let too_many = |field: &str, n: usize| {
        Error::invalid(format!(
            "{prefix}{field} may hold at most {MAX_ENTRIES} entries (MAX_ENTRIES), got {n}"
        ))
    };
    let too_long = |field: &str, text: &str, max: usize, name: &str| {
        let start: String = text.chars().take(32).collect();
        Error::invalid(format!(
            "{prefix}{field} must be at most {max} bytes ({name}), got {} ({start:?}…): no \
             worker holds a longer one",
            text.len()
        ))
    };
    if labels.len() > MAX_ENTRIES {
        return Err(too_many("labels", labels.len()));
    }
    if capabilities.len() > MAX_ENTRIES {
        return Err(too_many("capabilities", capabilities.len()));
    }
    for (key, value) in labels {
        if key.len() > MAX_KEY_LEN {
            return Err(too_long("labels key", key, MAX_KEY_LEN, "MAX_KEY_LEN"));
        }
        if value.len() > MAX_VALUE_LEN {
            let field = format!("labels[{key:?}] value");
            return Err(too_long(&field, value, MAX_VALUE_LEN, "MAX_VALUE_LEN"));
        }
    }
    for capability in capabilities {
        if capability.len() > MAX_KEY_LEN {
            return Err(too_long(
                "capabilities",
                capability,
                MAX_KEY_LEN,
                "MAX_KEY_LEN",
            ));
        }
    }
    if let Some(gpu) = gpu_type.filter(|g| g.len() > MAX_KEY_LEN) {
        let field = format!("{resources}gpu_type");
        return Err(too_long(&field, gpu, MAX_KEY_LEN, "MAX_KEY_LEN"));
    }
    Ok(())
}

impl ResourceRequirements {
    /// Whether a worker with these resources can run a job that needs `need`: at least as many
    /// CPU cores, as much memory and disk, as many GPUs, and — when `need` names a GPU model —
    /// that model. Zero (the default) in `need` asks for nothing.
    ///
    /// ```
    /// use hodei_workers::ResourceRequirements;
    /// let worker = ResourceRequirements {
    ///     cpu_cores: 8.0,
    ///     gpu_count: 1,
    ///     gpu_type: Some("a100".into()),
    ///     ..Default::default()
    /// };
    /// let job = ResourceRequirements { cpu_cores: 4.0, gpu_count: 1, ..Default::default() };
    /// assert!(worker.covers(&job));
    /// let h100 = ResourceRequirements { gpu_type: Some("h100".into()), ..job };
    /// assert!(!worker.covers(&h100));
    /// ```
    pub fn covers(&self, need: &ResourceRequirements) -> bool {
        // `>=` on f64 is false for NaN: a NaN need is never covered (validate refuses it).
        self.cpu_cores >= need.cpu_cores
            && self.memory_bytes >= need.memory_bytes
            && self.disk_bytes >= need.disk_bytes
            && self.gpu_count >= need.gpu_count
            && need
                .gpu_type
                .as_ref()
                .is_none_or(|t| self.gpu_type.as_ref() == Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn spec(cpu: f64, mem: u64, gpus: u32, gpu_type: Option<&str>) -> WorkerSpec {
        WorkerSpec {
            resources: ResourceRequirements {
                cpu_cores: cpu,
                memory_bytes: mem,
                disk_bytes: 0,
                gpu_count: gpus,
                gpu_type: gpu_type.map(str::to_owned),
            },
            ..WorkerSpec::new("img")
        }
    }

    #[test]
    fn covers_is_at_least_on_every_resource_and_the_same_gpu_model() {
        let have = spec(4.0, 8 << 30, 2, Some("a100")).resources;
        let cases: &[(ResourceRequirements, bool)] = &[
            (ResourceRequirements::default(), true),
            (spec(4.0, 8 << 30, 2, Some("a100")).resources, true),
            (spec(4.5, 0, 0, None).resources, false),
            (spec(0.0, (8 << 30) + 1, 0, None).resources, false),
            (spec(0.0, 0, 3, None).resources, false),
            (spec(0.0, 0, 1, Some("h100")).resources, false),
            (spec(0.0, 0, 0, Some("a100")).resources, true),
            (spec(f64::NAN, 0, 0, None).resources, false),
            (
                ResourceRequirements {
                    disk_bytes: 1,
                    ..Default::default()
                },
                false,
            ),
        ];
        for (need, expected) in cases {
            assert_eq!(have.covers(need), *expected, "{need:?}");
        }
        // A worker without a GPU model does not cover a job that names one.
        assert!(!spec(4.0, 0, 1, None)
            .resources
            .covers(&spec(0.0, 0, 1, Some("a100")).resources));
    }

    #[test]
    fn fits_and_architecture_are_static_conditions() {
        let handle = WorkerHandle::new(
            crate::ProviderId::new("p").unwrap(),
            ProviderType::Docker,
            "c-1",
        );
        let gpu = Arc::new(spec(8.0, 16 << 30, 1, Some("a100")));
        let need = spec(4.0, 8 << 30, 1, None).resources;
        assert!(WorkerFilter::new()
            .fits(need.clone())
            .matches_static(&handle, &gpu));
        assert!(!WorkerFilter::new()
            .fits(spec(16.0, 0, 0, None).resources)
            .matches_static(&handle, &gpu));
        assert!(WorkerFilter::new()
            .architecture(Architecture::Amd64)
            .matches_static(&handle, &gpu));
        assert!(!WorkerFilter::new()
            .architecture(Architecture::Arm64)
            .fits(need)
            .matches_static(&handle, &gpu));
    }
}
