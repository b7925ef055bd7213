//! The worker record and what describes it: [`Worker`], [`WorkerSpec`], [`WorkerHandle`],
//! [`ProviderType`], [`ResourceRequirements`], [`Architecture`], [`TerminationReason`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::{duration_secs, Timestamp};
use crate::error::{quote_input, Error, Result};
use crate::ids::{JobId, ProviderId, WorkerId};
use crate::state::WorkerState;

/// The broad family of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderCategory {
    /// Containers and pods.
    Container,
    /// Functions and serverless containers.
    Serverless,
    /// Virtual machines.
    VirtualMachine,
    /// Physical machines.
    BareMetal,
}

/// The kind of infrastructure a provider runs workers on.
///
/// Its text form is stable and lowercase (`"docker"`, `"kubernetes"`, …, `"custom:NAME"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderType {
    /// Docker containers.
    Docker,
    /// Kubernetes pods.
    Kubernetes,
    /// AWS Fargate tasks.
    Fargate,
    /// Google Cloud Run.
    CloudRun,
    /// Azure Container Apps.
    ContainerApps,
    /// AWS Lambda.
    Lambda,
    /// Google Cloud Functions.
    CloudFunctions,
    /// Azure Functions.
    AzureFunctions,
    /// AWS EC2 instances.
    Ec2,
    /// Google Compute Engine instances.
    ComputeEngine,
    /// Azure virtual machines.
    AzureVms,
    /// Physical machines.
    BareMetal,
    /// Anything else, by name (1..=64 bytes, no control characters, no `:`).
    Custom(String),
}

const PROVIDER_TYPE_NAMES: [(&str, ProviderType); 12] = [
    ("docker", ProviderType::Docker),
    ("kubernetes", ProviderType::Kubernetes),
    ("fargate", ProviderType::Fargate),
    ("cloud_run", ProviderType::CloudRun),
    ("container_apps", ProviderType::ContainerApps),
    ("lambda", ProviderType::Lambda),
    ("cloud_functions", ProviderType::CloudFunctions),
    ("azure_functions", ProviderType::AzureFunctions),
    ("ec2", ProviderType::Ec2),
    ("compute_engine", ProviderType::ComputeEngine),
    ("azure_vms", ProviderType::AzureVms),
    ("bare_metal", ProviderType::BareMetal),
];

impl ProviderType {
    /// A custom provider type.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `name` is empty, over 64 bytes, or holds a control
    /// character or `:`.
    pub fn custom(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control() || c == ':') {
            return Err(Error::invalid(format!(
                "invalid custom provider type name {}",
                quote_input(&name)
            )));
        }
        Ok(ProviderType::Custom(name))
    }

    /// Checks a `Custom` name by the rules of [`ProviderType::custom`]: the variant can also
    /// be built directly, and a name breaking them would not survive its own text form (a
    /// snapshot holding it could not be read back).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an invalid custom name.
    pub fn validate(&self) -> Result<()> {
        match self {
            ProviderType::Custom(name) => Self::custom(name.as_str()).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The family this type belongs to.
    pub fn category(&self) -> ProviderCategory {
        use ProviderType::*;
        match self {
            Docker | Kubernetes | Custom(_) => ProviderCategory::Container,
            Fargate | CloudRun | ContainerApps | Lambda | CloudFunctions | AzureFunctions => {
                ProviderCategory::Serverless
            }
            Ec2 | ComputeEngine | AzureVms => ProviderCategory::VirtualMachine,
            BareMetal => ProviderCategory::BareMetal,
        }
    }

    /// The stable text form.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        match self {
            ProviderType::Custom(name) => format!("custom:{name}").into(),
            other => PROVIDER_TYPE_NAMES
                .iter()
                .find(|(_, t)| t == other)
                .map(|(n, _)| *n)
                .unwrap_or("custom")
                .into(),
        }
    }

    /// The built-in (non-custom) types.
    pub fn builtin() -> impl Iterator<Item = ProviderType> {
        PROVIDER_TYPE_NAMES.iter().map(|(_, t)| t.clone())
    }
}

impl fmt::Display for ProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl FromStr for ProviderType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if let Some(name) = s.strip_prefix("custom:") {
            return ProviderType::custom(name);
        }
        PROVIDER_TYPE_NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| Error::invalid(format!("unknown provider type {}", quote_input(s))))
    }
}

impl Serialize for ProviderType {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProviderType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// CPU architecture a worker runs on. Written by its name (`amd64`, `arm64`, `arm`); read
/// from it or from an alias (`x86_64`, `aarch64`), in JSON as in [`FromStr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// x86-64.
    #[default]
    Amd64,
    /// 64-bit ARM.
    Arm64,
    /// 32-bit ARM.
    Arm,
}

impl Architecture {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Amd64 => "amd64",
            Architecture::Arm64 => "arm64",
            Architecture::Arm => "arm",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Architecture {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "amd64" | "x86_64" => Ok(Architecture::Amd64),
            "arm64" | "aarch64" => Ok(Architecture::Arm64),
            "arm" => Ok(Architecture::Arm),
            _ => Err(Error::invalid(format!(
                "unknown architecture {}, expected one of amd64, arm64, arm (or x86_64, \
                 aarch64)",
                quote_input(s)
            ))),
        }
    }
}

// By hand, through `FromStr`: the derived reader took the names only (not the aliases that
// every other entry point takes), and serde_json answered a value of another type with a bare
// "expected value".
impl<'de> Deserialize<'de> for Architecture {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(|e: Error| match e {
            Error::InvalidArgument(message) => serde::de::Error::custom(message),
            other => serde::de::Error::custom(other),
        })
    }
}

/// What a worker needs of its host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct ResourceRequirements {
    /// CPU cores (fractions allowed).
    pub cpu_cores: f64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Disk in bytes.
    pub disk_bytes: u64,
    /// Number of GPUs.
    pub gpu_count: u32,
    /// GPU model, if any is asked for.
    pub gpu_type: Option<String>,
}
crate::object_form::object_form!(ResourceRequirements, "resources");

/// Longest `idle_timeout` / `max_lifetime` a spec may hold: 100 years (of 365 days). Longer
/// durations (up to `Duration::MAX`) could not be written to JSON and read back (a snapshot, a
/// spec file), so [`WorkerSpec::validate`] refuses them; up to this bound whole seconds and
/// milliseconds read back exactly (the registry measures in milliseconds).
pub const MAX_SPEC_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);
/// Longest [`WorkerSpec::image`], in bytes.
pub const MAX_IMAGE_LEN: usize = 4096;
/// Longest [`WorkerHandle::resource_id`], in bytes (an AWS ARN is at most 2048).
pub const MAX_RESOURCE_ID_LEN: usize = 2048;
/// Longest key of a label, environment variable or metadata entry, capability or GPU type,
/// in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Longest value of a label, environment variable or metadata entry, in bytes.
pub const MAX_VALUE_LEN: usize = 16 * 1024;
/// Most entries in one of a spec's or handle's maps or sets (labels, environment,
/// capabilities, metadata).
pub const MAX_ENTRIES: usize = 1024;

/// Default [`WorkerSpec::idle_timeout`]: 300 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`WorkerSpec::max_lifetime`]: 3600 s.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// What a worker is: image, resources, labels, limits. Shared (`Arc`) by the records of every
/// worker made from it.
///
/// Its serde form refuses unknown fields: a misspelt `"idle_timout"` is an error, not a
/// silent default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct WorkerSpec {
    /// Container image (or AMI, function name…).
    pub image: String,
    /// Resources asked for.
    pub resources: ResourceRequirements,
    /// Labels; a [`WorkerFilter`](crate::WorkerFilter) matches them exactly.
    pub labels: BTreeMap<String, String>,
    /// Environment for the worker process.
    pub environment: BTreeMap<String, String>,
    /// What the worker can do (e.g. `"gpu"`, `"docker-in-docker"`); a filter may require some.
    pub capabilities: BTreeSet<String>,
    /// CPU architecture.
    pub architecture: Architecture,
    /// An idle `Ready` worker is cleaned up after this long (measured from entering `Ready`;
    /// heartbeats do not reset it).
    #[serde(with = "duration_secs")]
    pub idle_timeout: Duration,
    /// A worker is retired after this long since creation (a busy one is drained first).
    #[serde(with = "duration_secs")]
    pub max_lifetime: Duration,
    /// After this many jobs the worker is drained; `Some(1)` is a one-shot worker.
    pub max_jobs: Option<u32>,
}
crate::object_form::object_form!(WorkerSpec, "a worker spec");

impl Default for WorkerSpec {
    fn default() -> Self {
        WorkerSpec {
            image: String::new(),
            resources: ResourceRequirements::default(),
            labels: BTreeMap::new(),
            environment: BTreeMap::new(),
            capabilities: BTreeSet::new(),
            architecture: Architecture::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            max_jobs: None,
        }
    }
}

impl WorkerSpec {
    /// A spec for `image` with the defaults.
    pub fn new(image: impl Into<String>) -> Self {
        WorkerSpec {
            image: image.into(),
            ..Self::default()
        }
    }

    /// Adds a label (builder style).
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a capability (builder style).
    pub fn with_capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.insert(capability.into());
        self
    }

    /// Sets the idle timeout (builder style).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the maximum lifetime (builder style).
    pub fn with_max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Sets the job limit (builder style).
    pub fn with_max_jobs(mut self, max_jobs: u32) -> Self {
        self.max_jobs = Some(max_jobs);
        self
    }

    /// Checks the spec: timeouts of 1 ms to [`MAX_SPEC_DURATION`], `max_jobs >= 1`, finite
    /// non-negative resources, and strings fit for C: no NUL, `image` at most
    /// [`MAX_IMAGE_LEN`] bytes, keys (labels, environment, capabilities, `gpu_type`) at most
    /// [`MAX_KEY_LEN`], values at most [`MAX_VALUE_LEN`], at most [`MAX_ENTRIES`] labels,
    /// variables and capabilities each. Every way in (register, restore, spec JSON in the
    /// bindings) goes through it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field.
    pub fn validate(&self) -> Result<()> {
        check_duration("spec.idle_timeout", self.idle_timeout)?;
        check_duration("spec.max_lifetime", self.max_lifetime)?;
        check_text("spec.image", &self.image, MAX_IMAGE_LEN)?;
        check_map("spec.labels", &self.labels)?;
        check_map("spec.environment", &self.environment)?;
        check_count("spec.capabilities", self.capabilities.len())?;
        for capability in &self.capabilities {
            check_text("spec.capabilities", capability, MAX_KEY_LEN)?;
        }
        if let Some(gpu) = &self.resources.gpu_type {
            check_text("spec.resources.gpu_type", gpu, MAX_KEY_LEN)?;
        }
        if self.max_jobs == Some(0) {
            return Err(Error::invalid("spec.max_jobs must be at least 1"));
        }
        let cpu = self.resources.cpu_cores;
        if !cpu.is_finite() || cpu < 0.0 {
            return Err(Error::invalid(format!(
                "spec.resources.cpu_cores must be finite and >= 0, got {cpu}"
            )));
        }
        Ok(())
    }
}

/// How a provider knows a worker: which provider, which instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct WorkerHandle {
    /// The worker's id in the registry.
    pub worker_id: WorkerId,
    /// The provider that owns the instance.
    pub provider_id: ProviderId,
    /// The provider's kind.
    pub provider_type: ProviderType,
    /// The provider's id of the instance (container id, pod name, instance id…): not empty,
    /// at most [`MAX_RESOURCE_ID_LEN`] bytes, no NUL ([`validate`](Self::validate)).
    pub resource_id: String,
    /// Anything else the provider wants to remember about the instance.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}
crate::object_form::object_form!(WorkerHandle, "a worker handle");

impl WorkerHandle {
    /// A handle for a new worker (fresh [`WorkerId`]).
    pub fn new(
        provider_id: ProviderId,
        provider_type: ProviderType,
        resource_id: impl Into<String>,
    ) -> Self {
        WorkerHandle {
            worker_id: WorkerId::new(),
            provider_id,
            provider_type,
            resource_id: resource_id.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// Checks what the registry relies on: a valid provider type (see
    /// [`ProviderType::validate`]), a `resource_id` that is not empty (it is how the provider
    /// knows the instance: `destroy_worker` is given it, and `reconcile` looks for it among
    /// the provider's listed instances, where an empty one is never found and its live worker
    /// would be taken for vanished), and strings fit for C: no NUL, `resource_id` at most
    /// [`MAX_RESOURCE_ID_LEN`] bytes, at most [`MAX_ENTRIES`] metadata entries with keys of
    /// at most [`MAX_KEY_LEN`] and values of at most [`MAX_VALUE_LEN`] bytes. Ids are valid
    /// by construction.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field.
    pub fn validate(&self) -> Result<()> {
        self.provider_type.validate()?;
        if self.resource_id.is_empty() {
            return Err(Error::invalid(format!(
                "handle.resource_id of worker {} (provider {}) is empty: it must name the \
                 provider's instance (container id, pod name, instance id…)",
                self.worker_id, self.provider_id
            )));
        }
        check_text("handle.resource_id", &self.resource_id, MAX_RESOURCE_ID_LEN)?;
        check_map("handle.metadata", &self.metadata)
    }

    /// Adds a metadata entry (builder style).
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// A duration of 1 ms to [`MAX_SPEC_DURATION`].
fn check_duration(field: &str, value: Duration) -> Result<()> {
    if value < Duration::from_millis(1) {
        return Err(Error::invalid(format!("{field} must be at least 1 ms")));
    }
    check_max_duration(field, value)
}

/// A duration that reads back from JSON (`duration_secs`): at most [`MAX_SPEC_DURATION`].
/// For every duration a configuration serialises as well (`WorkerLifecycleConfig::validate`).
pub(crate) fn check_max_duration(field: &str, value: Duration) -> Result<()> {
    if value > MAX_SPEC_DURATION {
        return Err(Error::invalid(format!(
            "{field} must be at most {} s (100 years), got {value:?}",
            MAX_SPEC_DURATION.as_secs()
        )));
    }
    Ok(())
}

/// A string that may reach C: no NUL (C would cut it there), at most `max` bytes.
fn check_text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::invalid(format!(
            "{field} must be at most {max} bytes, got {}",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(Error::invalid(format!("{field} contains a NUL byte")));
    }
    Ok(())
}

fn check_count(field: &str, count: usize) -> Result<()> {
    if count > MAX_ENTRIES {
        return Err(Error::invalid(format!(
            "{field} may hold at most {MAX_ENTRIES} entries, got {count}"
        )));
    }
    Ok(())
}

fn check_map(field: &str, map: &BTreeMap<String, String>) -> Result<()> {
    check_count(field, map.len())?;
    for (key, value) in map {
        check_text(field, key, MAX_KEY_LEN)?;
        check_text(field, value, MAX_VALUE_LEN)?;
    }
    Ok(())
}

/// Why a worker is (to be) terminated or was unregistered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TerminationReason {
    /// `Ready` longer than `spec.idle_timeout`.
    Idle = 0,
    /// Older than `spec.max_lifetime`.
    Lifetime = 1,
    /// Draining and done with its job.
    Drained = 2,
    /// Ran `spec.max_jobs` jobs.
    MaxJobs = 3,
    /// Missed its heartbeat deadline.
    Unhealthy = 4,
    /// Never reached `Ready` within the startup timeout.
    StartupTimeout = 5,
    /// Its instance disappeared from the provider.
    Vanished = 6,
    /// Removed by autoscaling (surplus idle capacity).
    ScaledDown = 7,
    /// Asked for by the host.
    Requested = 8,
    /// Its instance was reclaimed after an interruption notice
    /// ([`notify_interruption`](crate::WorkerLifecycleManager::notify_interruption): a spot
    /// reclaim, a node drain): at the notice's deadline, or at the notice for a worker still
    /// starting.
    Interrupted = 9,
}

impl TerminationReason {
    /// Every reason, in `repr(u8)` order.
    pub const ALL: [TerminationReason; 10] = [
        TerminationReason::Idle,
        TerminationReason::Lifetime,
        TerminationReason::Drained,
        TerminationReason::MaxJobs,
        TerminationReason::Unhealthy,
        TerminationReason::StartupTimeout,
        TerminationReason::Vanished,
        TerminationReason::ScaledDown,
        TerminationReason::Requested,
        TerminationReason::Interrupted,
    ];

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminationReason::Idle => "idle",
            TerminationReason::Lifetime => "lifetime",
            TerminationReason::Drained => "drained",
            TerminationReason::MaxJobs => "max_jobs",
            TerminationReason::Unhealthy => "unhealthy",
            TerminationReason::StartupTimeout => "startup_timeout",
            TerminationReason::Vanished => "vanished",
            TerminationReason::ScaledDown => "scaled_down",
            TerminationReason::Requested => "requested",
            TerminationReason::Interrupted => "interrupted",
        }
    }

    /// The reason with this `repr(u8)` value.
    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.get(value as usize).copied()
    }
}

impl fmt::Display for TerminationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TerminationReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::invalid(format!("unknown termination reason {}", quote_input(s))))
    }
}

/// A snapshot of one worker's record. A value: callers never hold references into the registry.
///
/// `handle` and `spec` are shared (`Arc`), so a snapshot is cheap to take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Worker {
    /// Identity.
    pub id: WorkerId,
    /// Provider, instance and metadata.
    pub handle: Arc<WorkerHandle>,
    /// What the worker is.
    pub spec: Arc<WorkerSpec>,
    /// Current state.
    pub state: WorkerState,
    /// The job it holds (`Busy`, or `Draining` while finishing it).
    pub current_job: Option<JobId>,
    /// Jobs released so far.
    pub jobs_executed: u64,
    /// When it was registered.
    pub created_at: Timestamp,
    /// Last change of any field but the heartbeat.
    pub updated_at: Timestamp,
    /// Last change of state.
    pub state_changed_at: Timestamp,
    /// Last heartbeat (registration counts as one).
    pub last_heartbeat: Timestamp,
    /// When it last entered `Ready` (the idle deadline starts here).
    pub idle_since: Option<Timestamp>,
}
crate::object_form::object_form!(Worker, "a worker record");

impl Worker {
    /// The provider that owns it.
    pub fn provider_id(&self) -> &ProviderId {
        &self.handle.provider_id
    }

    /// Whether it accepts jobs now (`Ready`).
    pub fn is_available(&self) -> bool {
        self.state.accepts_jobs() && self.current_job.is_none()
    }

    /// Milliseconds since its last heartbeat at `now`.
    pub fn heartbeat_age(&self, now: Timestamp) -> u64 {
        now.saturating_sub(self.last_heartbeat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON reads an architecture as `FromStr` does (names and aliases), writes its name, and
    /// says what it expected of a value it refuses.
    #[test]
    fn architecture_json_reads_what_from_str_reads() {
        for (text, arch) in [
            ("amd64", Architecture::Amd64),
            ("x86_64", Architecture::Amd64),
            ("arm64", Architecture::Arm64),
            ("aarch64", Architecture::Arm64),
            ("arm", Architecture::Arm),
        ] {
            let json = format!("{text:?}");
            assert_eq!(serde_json::from_str::<Architecture>(&json).unwrap(), arch);
            assert_eq!(text.parse::<Architecture>().unwrap(), arch);
            assert_eq!(
                serde_json::to_string(&arch).unwrap(),
                format!("{:?}", arch.as_str())
            );
        }
        let unknown = serde_json::from_str::<Architecture>("\"sparc\"")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.starts_with("unknown architecture \"sparc\", expected one of amd64"),
            "{unknown}"
        );
        let number = serde_json::from_str::<Architecture>("3")
            .unwrap_err()
            .to_string();
        assert!(
            number.starts_with("invalid type: integer `3`, expected a string"),
            "{number}"
        );
        let spec: WorkerSpec = serde_json::from_str(r#"{"architecture": "aarch64"}"#).unwrap();
        assert_eq!(spec.architecture, Architecture::Arm64);
    }

    #[test]
    fn provider_type_text_is_stable_and_round_trips() {
        for t in ProviderType::builtin() {
            let text = t.to_string();
            assert_eq!(text, text.to_lowercase());
            assert_eq!(text.parse::<ProviderType>().unwrap(), t);
        }
        let custom = ProviderType::custom("nomad").unwrap();
        assert_eq!(custom.to_string(), "custom:nomad");
        assert_eq!("custom:nomad".parse::<ProviderType>().unwrap(), custom);
        assert!("custom:".parse::<ProviderType>().is_err());
        assert!("podman".parse::<ProviderType>().is_err());
        assert_eq!(
            ProviderType::Lambda.category(),
            ProviderCategory::Serverless
        );
        assert_eq!(
            ProviderType::Ec2.category(),
            ProviderCategory::VirtualMachine
        );
        assert_eq!(ProviderType::Docker.category(), ProviderCategory::Container);
        assert_eq!(
            ProviderType::BareMetal.category(),
            ProviderCategory::BareMetal
        );
    }

    #[test]
    fn spec_defaults_and_validation() {
        let spec = WorkerSpec::new("img");
        assert_eq!(spec.idle_timeout, Duration::from_secs(300));
        assert_eq!(spec.max_lifetime, Duration::from_secs(3600));
        assert!(spec.validate().is_ok());
        assert!(spec.clone().with_max_jobs(0).validate().is_err());
        assert!(spec
            .clone()
            .with_idle_timeout(Duration::ZERO)
            .validate()
            .is_err());
        let mut bad = spec.clone();
        bad.resources.cpu_cores = f64::NAN;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn spec_json_uses_seconds() {
        let spec = WorkerSpec::new("img").with_idle_timeout(Duration::from_millis(1500));
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["idle_timeout"], 1.5);
        assert_eq!(json["max_lifetime"], 3600);
        let back: WorkerSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, spec);
        let partial: WorkerSpec = serde_json::from_str(r#"{"image":"x","max_jobs":1}"#).unwrap();
        assert_eq!(partial.max_jobs, Some(1));
        assert_eq!(partial.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert!(serde_json::from_str::<WorkerSpec>(r#"{"idle_timeout":-1}"#).is_err());
    }
}
