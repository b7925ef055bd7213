//! [`Demand`]: the pending jobs, by what they need ([`Requirement`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{quote_input, Error, Result};
use crate::filter::WorkerFilter;
use crate::worker::{Architecture, ResourceRequirements};

/// `count` pending jobs that all need the same of a worker: labels (exact values),
/// capabilities, an architecture, at least these resources — the vocabulary of
/// [`WorkerFilter`], so a scheduler claims for such a job with [`Requirement::filter`].
///
/// Its serde form refuses unknown fields; every field but `count` may be left out:
/// `{"labels": {"gpu": "a100"}, "count": 3}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct Requirement {
    /// Every one of these labels, with these values.
    pub labels: BTreeMap<String, String>,
    /// Every one of these capabilities.
    pub capabilities: BTreeSet<String>,
    /// At least these resources (and this GPU model when one is named).
    pub resources: ResourceRequirements,
    /// This CPU architecture, if any is required.
    pub architecture: Option<Architecture>,
    /// How many jobs need it.
    pub count: usize,
}
crate::object_form::object_form!(Requirement, "a demand requirement");

impl Requirement {
    /// `count` jobs that need nothing in particular.
    pub fn new(count: usize) -> Self {
        Requirement {
            count,
            ..Self::default()
        }
    }

    /// Requires a label (builder style).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Requires a capability (builder style).
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.insert(capability.into());
        self
    }

    /// Requires at least these resources (builder style).
    pub fn resources(mut self, resources: ResourceRequirements) -> Self {
        self.resources = resources;
        self
    }

    /// Requires an architecture (builder style).
    pub fn architecture(mut self, architecture: Architecture) -> Self {
        self.architecture = Some(architecture);
        self
    }

    /// The filter a scheduler claims a worker with for one of these jobs: the labels, the
    /// capabilities, the architecture, and [`WorkerFilter::fits`] of the resources (left out
    /// when they ask for nothing).
    pub fn filter(&self) -> WorkerFilter {
        let mut filter = WorkerFilter {
            labels: self.labels.clone(),
            capabilities: self.capabilities.clone(),
            architecture: self.architecture,
            ..WorkerFilter::default()
        };
        if self.resources != ResourceRequirements::default() {
            filter.fits = Some(self.resources.clone());
        }
        filter
    }

    /// Whether it asks for nothing (every worker satisfies it).
    pub fn is_unconstrained(&self) -> bool {
        self.labels.is_empty()
            && self.capabilities.is_empty()
            && self.architecture.is_none()
            && self.resources == ResourceRequirements::default()
    }

    /// Checks the requirement: finite non-negative CPU, no NUL in a string, and strings a
    /// worker can hold, as [`WorkerFilter::validate`] checks them (label keys, capabilities and
    /// the GPU model of at most [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes, label values of at
    /// most [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN), at most
    /// [`MAX_ENTRIES`](crate::MAX_ENTRIES) labels and capabilities): no pool's worker could
    /// serve a longer one, so it is a mistake to say, not a job to report unschedulable on
    /// every tick.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        crate::filter::check_wanted(
            "requirement.",
            "resources.",
            &self.labels,
            &self.capabilities,
            self.resources.gpu_type.as_deref(),
        )?;
        let cpu = self.resources.cpu_cores;
        if !cpu.is_finite() || cpu < 0.0 {
            return Err(Error::invalid(format!(
                "requirement resources.cpu_cores must be finite and >= 0, got {cpu}"
            )));
        }
        let strings = self
            .labels
            .iter()
            .flat_map(|(k, v)| [k, v])
            .chain(&self.capabilities)
            .chain(&self.resources.gpu_type);
        for s in strings {
            if s.contains('\0') {
                return Err(Error::invalid(format!(
                    "requirement string {} contains NUL",
                    quote_input(s)
                )));
            }
        }
        Ok(())
    }
}

/// What the requirement asks for, compactly: `gpu=a100,+cuda,arm64,cpu>=4,gpu>=1` (`any` when
/// nothing).
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.labels.iter().map(|(k, v)| format!("{k}={v}")));
        parts.extend(self.capabilities.iter().map(|c| format!("+{c}")));
        if let Some(a) = self.architecture {
            parts.push(a.to_string());
        }
        parts.extend(resource_parts(&self.resources));
        if parts.is_empty() {
            f.write_str("any")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// The non-zero resources as `cpu>=4`, `memory>=8GiB`-style parts.
pub(crate) fn resource_parts(r: &ResourceRequirements) -> Vec<String> {
    let mut parts = Vec::new();
    if r.cpu_cores != 0.0 {
        parts.push(format!("cpu>={}", r.cpu_cores));
    }
    if r.memory_bytes > 0 {
        parts.push(format!("memory>={}", bytes(r.memory_bytes)));
    }
    if r.disk_bytes > 0 {
        parts.push(format!("disk>={}", bytes(r.disk_bytes)));
    }
    if r.gpu_count > 0 {
        parts.push(format!("gpu>={}", r.gpu_count));
    }
    if let Some(t) = &r.gpu_type {
        parts.push(format!("gpu_type={t}"));
    }
    parts
}

fn bytes(n: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if n % GIB == 0 {
        format!("{}GiB", n / GIB)
    } else if n % MIB == 0 {
        format!("{}MiB", n / MIB)
    } else {
        format!("{n}B")
    }
}

/// The pending jobs by requirement: what [`tick`](crate::WorkerLifecycleManager::tick) scales
/// toward. A plain number of jobs converts into a demand of one requirement that asks for
/// nothing (`Demand::from(5)`), which is what `tick(5)` means.
///
/// Serde form: a list of requirements, `[{"labels": {"gpu": "a100"}, "count": 3}]`.
///
/// ```
/// use hodei_workers::*;
/// let demand = Demand::new()
///     .with(Requirement::new(3).label("gpu", "a100"))
///     .with(Requirement::new(5).architecture(Architecture::Arm64));
/// assert_eq!(demand.total(), 8);
/// let parsed: Demand = serde_json::from_str(r#"[{"labels": {"gpu": "a100"}, "count": 3}]"#)?;
/// assert_eq!(parsed.requirements[0], Requirement::new(3).label("gpu", "a100"));
/// assert_eq!(Demand::from(4), Demand::new().with(Requirement::new(4)));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Demand {
    /// The requirements, in the host's order (the plan's reports refer to them by index).
    pub requirements: Vec<Requirement>,
}

impl Demand {
    /// No pending jobs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a requirement (builder style).
    pub fn with(mut self, requirement: Requirement) -> Self {
        self.requirements.push(requirement);
        self
    }

    /// Adds a requirement.
    pub fn push(&mut self, requirement: Requirement) {
        self.requirements.push(requirement);
    }

    /// Pending jobs in all (saturating).
    pub fn total(&self) -> usize {
        self.requirements
            .iter()
            .fold(0usize, |acc, r| acc.saturating_add(r.count))
    }

    /// Checks every requirement ([`Requirement::validate`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the requirement's index.
    pub fn validate(&self) -> Result<()> {
        for (i, r) in self.requirements.iter().enumerate() {
            // The inner message, so that the error says "invalid argument" once.
            r.validate().map_err(|e| match e {
                Error::InvalidArgument(m) => Error::invalid(format!("demand[{i}]: {m}")),
                other => other,
            })?;
        }
        Ok(())
    }
}

impl From<usize> for Demand {
    /// `pending` jobs that need nothing in particular (no requirement when zero).
    fn from(pending: usize) -> Self {
        if pending == 0 {
            Demand::new()
        } else {
            Demand::new().with(Requirement::new(pending))
        }
    }
}

impl From<&Demand> for Demand {
    fn from(demand: &Demand) -> Self {
        demand.clone()
    }
}

impl From<Vec<Requirement>> for Demand {
    fn from(requirements: Vec<Requirement>) -> Self {
        Demand { requirements }
    }
}

impl From<Requirement> for Demand {
    fn from(requirement: Requirement) -> Self {
        Demand {
            requirements: vec![requirement],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_filter() {
        let r = Requirement::new(2)
            .label("gpu", "a100")
            .capability("cuda")
            .architecture(Architecture::Arm64)
            .resources(ResourceRequirements {
                cpu_cores: 4.0,
                memory_bytes: 8 << 30,
                gpu_count: 1,
                ..Default::default()
            });
        assert_eq!(
            r.to_string(),
            "gpu=a100,+cuda,arm64,cpu>=4,memory>=8GiB,gpu>=1"
        );
        assert_eq!(Requirement::new(1).to_string(), "any");
        let f = r.filter();
        assert_eq!(f.labels.get("gpu").unwrap(), "a100");
        assert!(f.capabilities.contains("cuda"));
        assert_eq!(f.architecture, Some(Architecture::Arm64));
        assert_eq!(f.fits.unwrap().gpu_count, 1);
        assert_eq!(Requirement::new(1).filter(), WorkerFilter::new());
    }

    #[test]
    fn serde_and_validation() {
        let d: Demand = serde_json::from_str(
            r#"[{"labels": {"gpu": "a100"}, "count": 3}, {"resources": {"cpu_cores": 2}, "count": 1}]"#,
        )
        .unwrap();
        assert_eq!(d.total(), 4);
        assert!(serde_json::from_str::<Demand>(r#"[{"count": 1, "lables": {}}]"#).is_err());
        let bad = Demand::new().with(Requirement::new(1).resources(ResourceRequirements {
            cpu_cores: f64::NAN,
            ..Default::default()
        }));
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("demand[0]"));
        let nul = Demand::new().with(Requirement::new(1).label("a\0", "b"));
        assert!(nul.validate().is_err());
    }

    #[test]
    fn strings_no_worker_holds_are_refused_naming_the_field() {
        use crate::worker::{MAX_ENTRIES, MAX_KEY_LEN, MAX_VALUE_LEN};
        let long = "x".repeat(MAX_KEY_LEN + 1);
        let gpu = ResourceRequirements {
            gpu_type: Some(long.clone()),
            ..Default::default()
        };
        let mut many = Requirement::new(1);
        for i in 0..=MAX_ENTRIES {
            many = many.capability(format!("c{i}"));
        }
        let cases = [
            (
                "requirement.labels key",
                Requirement::new(1).label(&long, "v"),
            ),
            (
                "requirement.labels[\"k\"] value",
                Requirement::new(1).label("k", "v".repeat(MAX_VALUE_LEN + 1)),
            ),
            (
                "requirement.capabilities",
                Requirement::new(1).capability(&long),
            ),
            (
                "requirement.resources.gpu_type",
                Requirement::new(1).resources(gpu),
            ),
            ("requirement.capabilities", many),
        ];
        for (field, r) in cases {
            let demand = Demand::new().with(Requirement::new(2)).with(r);
            match demand.validate() {
                Err(Error::InvalidArgument(m)) => {
                    assert!(m.starts_with("demand[1]: ") && m.contains(field), "{m}");
                    assert!(!m.contains("invalid argument"), "said once: {m}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        // At the limits: valid.
        let at = Requirement::new(1)
            .label("k".repeat(MAX_KEY_LEN), "v".repeat(MAX_VALUE_LEN))
            .capability("c".repeat(MAX_KEY_LEN));
        assert!(at.validate().is_ok());
        assert_eq!(Demand::from(0), Demand::new());
        assert_eq!(
            Demand::from(vec![Requirement::new(usize::MAX), Requirement::new(2)]).total(),
            usize::MAX
        );
    }
}
