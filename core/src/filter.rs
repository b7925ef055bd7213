//! [`WorkerFilter`]: which workers a `find` or `claim` is about.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::clock::{millis, Timestamp};
use crate::ids::ProviderId;
use crate::state::WorkerState;
use crate::worker::{ProviderType, Worker, WorkerHandle, WorkerSpec};

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
    /// No heartbeat for longer than this.
    pub unhealthy_for: Option<Duration>,
    /// Every one of these labels, with these values.
    pub labels: BTreeMap<String, String>,
    /// Every one of these capabilities.
    pub capabilities: BTreeSet<String>,
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

    /// Only workers without a heartbeat for longer than `duration`.
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

    /// Caps the number of results.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether the conditions on what never changes in a record (provider, labels,
    /// capabilities) hold. Used by `claim` before it looks at the live record.
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
