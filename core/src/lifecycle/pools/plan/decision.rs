//! What [`plan`](super::plan) decides: per pool a [`PoolDecision`] (with its inputs, what
//! it serves, spills and takebacks), over every pool a [`PoolPlan`] (with unschedulable and
//! waiting demand).

use serde::Serialize;

use crate::clock::Timestamp;
use crate::ids::{ProviderId, WorkerId};

/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PoolBlock {
    /// Its provider backs off after consecutive create failures.
    BackedOff {
        /// Consecutive failures.
        failures: u32,
        /// When it may be asked again (registry clock).
        until: Timestamp,
    },
    /// Its provider backs off after a create (this pool's or not: the back-off is the
    /// provider's) that failed with [`ProviderErrorKind::NoCapacity`](crate::ProviderErrorKind::NoCapacity).
    NoCapacity {
        /// When it is asked again (registry clock).
        until: Timestamp,
    },
    /// Its provider is not registered with the manager.
    NoProvider,
}

impl PoolBlock {
    /// Says it in a few words, relative to `now`: `backed off 40 s`.
    pub fn describe(&self, now: Timestamp) -> String {
        match self {
            PoolBlock::BackedOff { until, .. } => {
                format!("backed off {}", secs(until.saturating_sub(now)))
            }
            PoolBlock::NoCapacity { until } => {
                format!("no capacity, retry in {}", secs(until.saturating_sub(now)))
            }
            PoolBlock::NoProvider => "provider not registered".to_owned(),
        }
    }
}

pub(super) fn secs(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// What a pool's workers do for one requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Serving {
    /// Index of the requirement in the demand (past its end, a [`Replacement`]'s).
    pub requirement: usize,
    /// Jobs served by the pool's existing capacity (idle, starting, in flight).
    pub existing: usize,
    /// New workers wanted for it (before the caps).
    pub wanted: usize,
    /// New workers provisioned for it now (after the caps).
    pub provisioned: usize,
}

/// Demand passed over by a pool that could not provide, to the pool that takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spill {
    /// Index of the requirement in the demand (past its end, a [`Replacement`]'s).
    pub requirement: usize,
    /// The pool passed over.
    pub source: String,
    /// The pool that takes it.
    pub target: String,
    /// Jobs spilled.
    pub count: usize,
    /// Why `from` could not provide (`backed off 40 s`, `at max_workers 4`).
    pub reason: String,
}

/// Jobs of interrupted workers of a pool that still run (or lost at their deadline in this
/// tick): `tick` adds their replacement to the demand as a requirement of its own — the
/// pool's template — after the host's requirements. Its index is `requirement`, which the
/// plan's other indices ([`Serving`], [`Spill`], [`UnmetDemand`]) may name. For workers that
/// none of the manager's pools owns (their pool removed, or of no pool), the requirement is
/// what the workers offered: their spec's labels without the pool label, capabilities,
/// architecture and resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replacement {
    /// Index of the requirement in the plan: past the demand's own (the demand's length plus
    /// the position in [`PoolPlan::replacements`]).
    pub requirement: usize,
    /// The pool of the interrupted workers (its template is the requirement); the name of a
    /// pool the manager no longer has, or empty for workers of no pool (the requirement is
    /// then what they offered).
    pub pool: String,
    /// Jobs to replace.
    pub count: usize,
    /// The requirement, compactly (`gpu=a100,+cuda,amd64,cpu>=16`).
    pub description: String,
}

/// Jobs of a requirement that no pool will ever run: no pool's template satisfies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unschedulable {
    /// Index of the requirement in the demand (past its end, a [`Replacement`]'s).
    pub requirement: usize,
    /// Jobs affected.
    pub count: usize,
    /// The requirement, compactly (`gpu=h100,arm64`).
    pub description: String,
    /// Which constraint no pool meets (`no pool offers label gpu=h100`).
    pub reason: String,
}

/// Jobs of a schedulable requirement left without capacity now: every pool that satisfies it
/// is blocked or full. Unlike [`Unschedulable`], this passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmetDemand {
    /// Index of the requirement in the demand (past its end, a [`Replacement`]'s).
    pub requirement: usize,
    /// Jobs without capacity.
    pub count: usize,
    /// Why, pool by pool (`gpu-spot backed off 40 s; gpu-ondemand at max_workers 2`).
    pub reason: String,
}

/// One pool's scaling decision with its inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolDecision {
    /// The pool.
    pub pool: String,
    /// Its provider.
    pub provider_id: Option<ProviderId>,
    /// Its priority.
    pub priority: i32,
    /// Jobs this pool serves (from existing capacity and new workers).
    pub demand: usize,
    /// Idle `Ready` workers of the pool.
    pub ready: usize,
    /// `Busy` workers of the pool.
    pub busy: usize,
    /// `Creating` + `Connecting` workers of the pool.
    pub starting: usize,
    /// Provisions in flight of a spec of the pool, whoever asked (its tick, or the host's own
    /// `provision_worker` of a spec with its label).
    pub in_flight: usize,
    /// Registered workers of the pool (every state) plus provisions in flight.
    pub total: usize,
    /// The pool's `max_workers`.
    pub max_workers: usize,
    /// The pool's `min_ready`.
    pub min_ready: usize,
    /// New workers wanted beyond what is ready or on its way (demand taken and warm pool),
    /// before the caps.
    pub wanted: usize,
    /// Workers to provision now (after the caps).
    pub provision: usize,
    /// Of `provision`, those for the warm pool (`min_ready`).
    pub warm: usize,
    /// Per requirement served.
    pub serves: Vec<Serving>,
    /// Idle `Ready` workers to retire now (never more than `ready`).
    pub retire: usize,
    /// Which ones, longest idle first (filled by the manager).
    pub scale_down: Vec<WorkerId>,
    /// Set when the pool cannot provide now.
    pub blocked: Option<PoolBlock>,
    /// Demand it took from pools that could not provide.
    pub spilled_in: Vec<Spill>,
    /// Demand it passed to other pools.
    pub spilled_out: Vec<Spill>,
    /// Demand it takes back from lower-priority pools whose idle workers served it, now that
    /// it can provide (`source`: the pool giving it back; included in `provision`).
    pub taken_back: Vec<Spill>,
    /// Demand it gives back to a higher-priority pool that can provide again (`target`: the
    /// taker, which provisions for it). Make before break: not included in `retire` — its
    /// idle workers keep serving until the taker's new workers are up; a later plan then
    /// places the demand on those and retires these as surplus (scale-down cooldown
    /// honoured, never a busy one).
    pub given_back: Vec<Spill>,
    /// What limited it (`scale-up cooldown until …`, `global max_workers 10`, …).
    pub limits: Vec<String>,
    /// One line with its inputs, e.g. `gpu-ondemand +2: demand 3 (3 gpu=a100), ready 1, …;
    /// spilled from gpu-spot (backed off 40 s) to gpu-ondemand`.
    pub explanation: String,
}

/// What one of a pool's planned provisions is for ([`PoolDecision::provisions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProvisionFor {
    /// A requirement it serves (its index in the plan's demand), taken back or not.
    Requirement(usize),
    /// The pool's warm `min_ready`.
    Warm,
    /// The takeback `taken_back[k]` (a requirement a giver's idle worker serves meanwhile).
    TakeBack(usize),
}

impl ProvisionFor {
    /// The index of the requirement it was planned for, if any.
    pub(crate) fn requirement(self, d: &PoolDecision) -> Option<usize> {
        match self {
            ProvisionFor::Requirement(ri) => Some(ri),
            ProvisionFor::Warm => None,
            ProvisionFor::TakeBack(k) => d.taken_back.get(k).map(|t| t.requirement),
        }
    }
}

impl PoolDecision {
    /// Its `provision` broken down by what each is for, in the order the manager makes them:
    /// the requirements it serves (`serves`, less their takebacks), the warm pool, then the
    /// takebacks (last: a giver's idle worker serves their jobs meanwhile, so a cap or a
    /// failed create that cuts the tick short holds these back first). Runs of
    /// one purpose with their length (the counts add up to `provision`); O(requirements
    /// served + takebacks).
    pub(crate) fn provisions(&self) -> Vec<(ProvisionFor, usize)> {
        let mut out = Vec::new();
        for s in &self.serves {
            let taken: usize = self
                .taken_back
                .iter()
                .filter(|t| t.requirement == s.requirement)
                .fold(0, |acc, t| acc.saturating_add(t.count));
            let n = s.provisioned.saturating_sub(taken);
            if n > 0 {
                out.push((ProvisionFor::Requirement(s.requirement), n));
            }
        }
        if self.warm > 0 {
            out.push((ProvisionFor::Warm, self.warm));
        }
        for (k, t) in self.taken_back.iter().enumerate() {
            if t.count > 0 {
                out.push((ProvisionFor::TakeBack(k), t.count));
            }
        }
        out
    }
}

/// The decision over every pool (see [`plan_pools`](crate::WorkerLifecycleManager::plan_pools)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolPlan {
    /// When it was computed (registry clock).
    pub at: Timestamp,
    /// The jobs of every requirement planned, unschedulable ones included: the demand's
    /// ([`Demand::total`](crate::Demand::total)) and, in a tick, one per job of an interrupted
    /// worker that needs a replacement ([`replacements`](Self::replacements)). So a tick's may
    /// exceed its [`TickReport::pending_jobs`](crate::TickReport::pending_jobs), which counts
    /// the host's demand only; from [`plan_pools`](crate::WorkerLifecycleManager::plan_pools)
    /// it is the demand's total.
    pub pending_jobs: usize,
    /// Every registered worker plus provisions in flight (in a pool or not).
    pub total: usize,
    /// The global `max_workers`.
    pub max_workers: usize,
    /// One decision per pool, highest priority first.
    pub pools: Vec<PoolDecision>,
    /// Requirements no pool satisfies.
    pub unschedulable: Vec<Unschedulable>,
    /// Demand left without capacity for now.
    pub unmet: Vec<UnmetDemand>,
    /// The requirements a tick added after the demand's for the replacements of interrupted
    /// workers, in index order (empty from [`plan_pools`](crate::WorkerLifecycleManager::plan_pools)):
    /// a requirement index at or past the demand's length is one of these.
    pub replacements: Vec<Replacement>,
    /// The pools' explanations, then one line per unschedulable and unmet requirement.
    pub explanation: Vec<String>,
}

impl PoolPlan {
    /// Workers to provision now, over every pool (saturating; at most `max_per_tick` anyway).
    pub fn provision(&self) -> usize {
        self.pools
            .iter()
            .fold(0usize, |acc, d| acc.saturating_add(d.provision))
    }

    /// The decision of `pool`, if it is one of the plan's.
    pub fn pool(&self, pool: &str) -> Option<&PoolDecision> {
        self.pools.iter().find(|d| d.pool == pool)
    }
}
