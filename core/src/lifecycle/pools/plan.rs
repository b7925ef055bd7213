//! The multi-pool scaling policy as a pure function of its inputs, [`plan`], in the style of
//! `scaling::decide`: every rule is tested without a registry or a provider.
//!
//! How a demand becomes a plan:
//! 1. each requirement is matched to the pools whose template satisfies it, in priority order
//!    (higher first, ties by name); a requirement no pool satisfies (or only pools with
//!    `max_workers` 0) is **unschedulable**, with the constraint no pool meets;
//! 2. the most constrained requirements (fewest satisfying pools) go first, so a job that
//!    could run anywhere does not take the only GPU worker from a GPU job;
//! 3. existing capacity (idle `Ready`, `Creating`/`Connecting`, provisions in flight) serves
//!    demand first, in priority order: nothing is provisioned while a satisfying worker is idle
//!    or on its way;
//! 4. each pool keeps `min_ready` idle workers warm from what is left;
//! 5. the rest of a requirement goes to the first satisfying pool that **can provide**: a pool
//!    whose provider backs off, that had no capacity, whose provider is not registered, or that
//!    is at its `max_workers` is passed over and its share **spills** to the next satisfying
//!    pool (recorded with the reason); as soon as it can provide again, new demand goes back to
//!    it (and, demand falling, the lower pools' idle workers are the first retired). A pool in
//!    its scale-up cooldown keeps its demand: a cooldown paces, it is not a failure;
//! 6. caps in priority order: the pool's cooldown, the global `max_workers` (every registered
//!    worker and provision in flight, in every pool or none), `max_provision_per_tick`;
//! 7. a pool that wants nothing retires its idle `Ready` workers beyond what serves demand and
//!    `min_ready`, honouring its scale-down cooldown, lowest priority first — never a busy
//!    worker (the count is at most its idle `Ready` workers; the manager picks them).

use std::fmt::Write as _;

use serde::Serialize;

use crate::clock::{millis, Timestamp};
use crate::ids::{ProviderId, WorkerId};

use super::demand::{resource_parts, Demand, Requirement};
use super::pool::{Pool, POOL_LABEL};

/// Why a pool cannot provide workers now: its demand spills to the next pool that satisfies
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
    /// Its last create failed with [`ProviderErrorKind::NoCapacity`](crate::ProviderErrorKind::NoCapacity).
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

fn secs(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// What a pool's workers do for one requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Serving {
    /// Index of the requirement in the demand.
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
    /// Index of the requirement in the demand.
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

/// Jobs of a requirement that no pool will ever run: no pool's template satisfies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unschedulable {
    /// Index of the requirement in the demand.
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
    /// Index of the requirement in the demand.
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
    /// Provisions in flight for the pool.
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
    /// What limited it (`scale-up cooldown until …`, `global max_workers 10`, …).
    pub limits: Vec<String>,
    /// One line with its inputs, e.g. `gpu-ondemand +2: demand 3 (3 gpu=a100), ready 1, …;
    /// spilled from gpu-spot (backed off 40 s) to gpu-ondemand`.
    pub explanation: String,
}

/// The decision over every pool (see [`plan_pools`](crate::WorkerLifecycleManager::plan_pools)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolPlan {
    /// When it was computed (registry clock).
    pub at: Timestamp,
    /// Pending jobs in all.
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
    /// The pools' explanations, then one line per unschedulable and unmet requirement.
    pub explanation: Vec<String>,
}

impl PoolPlan {
    /// Workers to provision now, over every pool.
    pub fn provision(&self) -> usize {
        self.pools.iter().map(|d| d.provision).sum()
    }

    /// The decision of `pool`, if it is one of the plan's.
    pub fn pool(&self, pool: &str) -> Option<&PoolDecision> {
        self.pools.iter().find(|d| d.pool == pool)
    }
}

/// A pool's fleet and clocks, as the manager counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PoolFleet {
    pub ready: usize,
    pub busy: usize,
    /// `Creating` + `Connecting`.
    pub starting: usize,
    pub in_flight: usize,
    /// Every registered worker of the pool (any state).
    pub registered: usize,
    pub blocked: Option<PoolBlock>,
    pub last_scale_up: Option<Timestamp>,
    pub last_scale_action: Option<Timestamp>,
}

/// Everything [`plan`] looks at. `fleet[i]` belongs to `pools[i]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanInputs<'a> {
    pub now: Timestamp,
    pub pools: &'a [Pool],
    pub fleet: &'a [PoolFleet],
    pub demand: &'a Demand,
    /// The global cap.
    pub max_workers: usize,
    /// Every registered worker plus provisions in flight.
    pub total: usize,
    /// Most workers provisioned (and, separately, retired) in one plan, over every pool.
    pub max_per_tick: usize,
}

/// The plan. Promises (checked by the property test below):
/// - no pool is provisioned beyond its `max_workers`, nor the fleet beyond the global one
///   (already over: nothing is provisioned);
/// - every new worker serves a requirement its pool's template satisfies (or the pool's warm
///   `min_ready`), and a blocked pool is provisioned nothing;
/// - a pool retires at most its idle `Ready` workers, and only when it provisions nothing;
/// - at most `max_per_tick` provisions (and at most `max_per_tick` retirements).
pub(crate) fn plan(i: &PlanInputs<'_>) -> PoolPlan {
    assert_eq!(i.pools.len(), i.fleet.len(), "one fleet view per pool");
    let now = i.now;
    let reqs = &i.demand.requirements;

    // Priority order: higher first, ties by name.
    let mut order: Vec<usize> = (0..i.pools.len()).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (&i.pools[a], &i.pools[b]);
        pb.priority
            .cmp(&pa.priority)
            .then_with(|| pa.name.cmp(&pb.name))
    });
    let pools: Vec<&Pool> = order.iter().map(|&k| &i.pools[k]).collect();
    let fleet: Vec<&PoolFleet> = order.iter().map(|&k| &i.fleet[k]).collect();
    let n = pools.len();

    let satisfying: Vec<Vec<usize>> = reqs
        .iter()
        .map(|r| {
            (0..n)
                .filter(|&p| pools[p].max_workers > 0 && pools[p].satisfies(r))
                .collect()
        })
        .collect();

    let mut out = PoolPlan {
        at: now,
        pending_jobs: i.demand.total(),
        total: i.total,
        max_workers: i.max_workers,
        ..PoolPlan::default()
    };
    for (ri, r) in reqs.iter().enumerate() {
        if r.count > 0 && satisfying[ri].is_empty() {
            out.unschedulable.push(Unschedulable {
                requirement: ri,
                count: r.count,
                description: r.to_string(),
                reason: why_unschedulable(r, &pools),
            });
        }
    }
    let mut req_order: Vec<usize> = (0..reqs.len())
        .filter(|&ri| reqs[ri].count > 0 && !satisfying[ri].is_empty())
        .collect();
    req_order.sort_by_key(|&ri| (satisfying[ri].len(), ri));

    let mut serves: Vec<Vec<Serving>> = vec![Vec::new(); n];
    let serving = |serves: &mut Vec<Vec<Serving>>, p: usize, ri: usize| -> usize {
        if let Some(k) = serves[p].iter().position(|s| s.requirement == ri) {
            return k;
        }
        serves[p].push(Serving {
            requirement: ri,
            existing: 0,
            wanted: 0,
            provisioned: 0,
        });
        serves[p].len() - 1
    };

    // 3. Existing capacity first, in priority order.
    let mut supply: Vec<usize> = fleet
        .iter()
        .map(|f| f.ready + f.starting + f.in_flight)
        .collect();
    let mut used = vec![0usize; n];
    let mut rem: Vec<usize> = reqs.iter().map(|r| r.count).collect();
    for &ri in &req_order {
        for &p in &satisfying[ri] {
            let take = rem[ri].min(supply[p]);
            if take > 0 {
                supply[p] -= take;
                used[p] += take;
                rem[ri] -= take;
                let k = serving(&mut serves, p, ri);
                serves[p][k].existing += take;
            }
        }
    }
    // 4. The warm pool from what is left.
    let mut warm_needed = vec![0usize; n];
    for p in 0..n {
        let from_supply = pools[p].min_ready.min(supply[p]);
        used[p] += from_supply;
        warm_needed[p] = pools[p].min_ready - from_supply;
    }

    // 5. New workers, by priority, spilling past pools that cannot provide.
    let mut room: Vec<usize> = (0..n)
        .map(|p| {
            pools[p]
                .max_workers
                .saturating_sub(fleet[p].registered + fleet[p].in_flight)
        })
        .collect();
    let full = |p: usize| format!("at max_workers {}", pools[p].max_workers);
    let mut demand_new = vec![0usize; n];
    let mut spills: Vec<Spill> = Vec::new();
    for &ri in &req_order {
        if rem[ri] == 0 {
            continue;
        }
        let mut passed: Vec<(usize, String)> = Vec::new();
        for &p in &satisfying[ri] {
            if let Some(block) = &fleet[p].blocked {
                passed.push((p, block.describe(now)));
                continue;
            }
            if room[p] == 0 {
                passed.push((p, full(p)));
                continue;
            }
            let take = rem[ri].min(room[p]);
            room[p] -= take;
            rem[ri] -= take;
            demand_new[p] += take;
            let k = serving(&mut serves, p, ri);
            serves[p][k].wanted += take;
            for (from, reason) in &passed {
                spills.push(Spill {
                    requirement: ri,
                    source: pools[*from].name.clone(),
                    target: pools[p].name.clone(),
                    count: take,
                    reason: reason.clone(),
                });
            }
            if rem[ri] == 0 {
                break;
            }
            passed.push((p, full(p)));
        }
        if rem[ri] > 0 {
            out.unmet.push(UnmetDemand {
                requirement: ri,
                count: rem[ri],
                reason: passed
                    .iter()
                    .map(|(p, why)| format!("{} {why}", pools[*p].name))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
    }
    out.unmet.sort_by_key(|u| u.requirement);

    let mut decisions: Vec<PoolDecision> = (0..n)
        .map(|p| {
            let (pool, f) = (pools[p], fleet[p]);
            PoolDecision {
                pool: pool.name.clone(),
                provider_id: Some(pool.provider_id.clone()),
                priority: pool.priority,
                ready: f.ready,
                busy: f.busy,
                starting: f.starting,
                in_flight: f.in_flight,
                total: f.registered + f.in_flight,
                max_workers: pool.max_workers,
                min_ready: pool.min_ready,
                wanted: demand_new[p] + warm_needed[p],
                blocked: f.blocked.clone(),
                ..PoolDecision::default()
            }
        })
        .collect();

    // The warm pool's new workers, where the pool can provide.
    let mut warm_new = vec![0usize; n];
    for p in 0..n {
        if warm_needed[p] == 0 {
            continue;
        }
        if let Some(block) = &fleet[p].blocked {
            decisions[p]
                .limits
                .push(format!("min_ready: {}", block.describe(now)));
            continue;
        }
        warm_new[p] = warm_needed[p].min(room[p]);
        room[p] -= warm_new[p];
        if warm_new[p] < warm_needed[p] {
            decisions[p].limits.push(full(p));
        }
    }

    // 6. Caps, in priority order.
    let mut global_room = i.max_workers.saturating_sub(i.total);
    let mut tick_left = i.max_per_tick;
    for p in 0..n {
        let want = demand_new[p] + warm_new[p];
        if want == 0 {
            continue;
        }
        let d = &mut decisions[p];
        let mut provision = want;
        if let Some(last) = fleet[p].last_scale_up {
            let until = last.saturating_add(millis(pools[p].scale_up_cooldown));
            if now < until {
                provision = 0;
                d.limits
                    .push(format!("scale-up cooldown for {} more", secs(until - now)));
            }
        }
        if provision > global_room {
            provision = global_room;
            d.limits
                .push(format!("global max_workers {}", i.max_workers));
        }
        if provision > tick_left {
            provision = tick_left;
            d.limits
                .push(format!("max_provision_per_tick {}", i.max_per_tick));
        }
        global_room -= provision;
        tick_left -= provision;
        d.provision = provision;
        let mut left = provision;
        for s in &mut serves[p] {
            s.provisioned = s.wanted.min(left);
            left -= s.provisioned;
        }
        d.warm = warm_new[p].min(left);
    }

    // 7. Retire idle surplus, lowest priority first.
    let mut retire_left = i.max_per_tick;
    for p in (0..n).rev() {
        let d = &mut decisions[p];
        if d.wanted > 0 || d.provision > 0 {
            continue;
        }
        let mut retire = fleet[p].ready - used[p].min(fleet[p].ready);
        if retire == 0 {
            continue;
        }
        if let Some(last) = fleet[p].last_scale_action {
            let until = last.saturating_add(millis(pools[p].scale_down_cooldown));
            if now < until {
                d.limits.push(format!(
                    "scale-down cooldown for {} more",
                    secs(until - now)
                ));
                retire = 0;
            }
        }
        if retire > retire_left {
            retire = retire_left;
            d.limits
                .push(format!("max_provision_per_tick {}", i.max_per_tick));
        }
        retire_left -= retire;
        d.retire = retire;
    }

    for s in spills {
        let (from, to) = (
            pools.iter().position(|p| p.name == s.source),
            pools.iter().position(|p| p.name == s.target),
        );
        if let Some(from) = from {
            decisions[from].spilled_out.push(s.clone());
        }
        if let Some(to) = to {
            decisions[to].spilled_in.push(s);
        }
    }
    for (p, d) in decisions.iter_mut().enumerate() {
        d.serves = std::mem::take(&mut serves[p]);
        d.serves.sort_by_key(|s| s.requirement);
        d.demand = d.serves.iter().map(|s| s.existing + s.wanted).sum();
        d.explanation = explain(d, reqs, now);
    }
    out.explanation = decisions.iter().map(|d| d.explanation.clone()).collect();
    for u in &out.unschedulable {
        out.explanation.push(format!(
            "unschedulable: {} job(s) needing {}: {}",
            u.count, u.description, u.reason
        ));
    }
    for u in &out.unmet {
        out.explanation.push(format!(
            "waiting: {} job(s) needing {}: {}",
            u.count, reqs[u.requirement], u.reason
        ));
    }
    out.pools = decisions;
    out
}

fn explain(d: &PoolDecision, reqs: &[Requirement], now: Timestamp) -> String {
    let mut line = if d.provision > 0 {
        format!("{} +{}", d.pool, d.provision)
    } else if d.retire > 0 {
        format!("{} -{}", d.pool, d.retire)
    } else {
        format!("{} 0", d.pool)
    };
    let _ = write!(line, ": demand {}", d.demand);
    if !d.serves.is_empty() {
        let parts: Vec<String> = d
            .serves
            .iter()
            .map(|s| format!("{} {}", s.existing + s.wanted, reqs[s.requirement]))
            .collect();
        let _ = write!(line, " ({})", parts.join(" + "));
    }
    let _ = write!(
        line,
        ", ready {}, busy {}, starting {}, in flight {}, total {}",
        d.ready, d.busy, d.starting, d.in_flight, d.total
    );
    if d.max_workers != usize::MAX {
        let _ = write!(line, "/{}", d.max_workers);
    }
    let _ = write!(line, ", min ready {}, wanted {}", d.min_ready, d.wanted);
    if let Some(block) = &d.blocked {
        let _ = write!(line, "; {}", block.describe(now));
    }
    for s in &d.spilled_in {
        let _ = write!(
            line,
            "; {} spilled from {} ({}) to {}",
            s.count, s.source, s.reason, s.target
        );
    }
    for s in &d.spilled_out {
        let _ = write!(line, "; {} spilled to {} ({})", s.count, s.target, s.reason);
    }
    if !d.limits.is_empty() {
        let _ = write!(line, ", capped by {}", d.limits.join(", "));
    }
    line
}

/// Which constraint of `r` no pool meets; or, when each is met by some pool, that no pool meets
/// them together.
fn why_unschedulable(r: &Requirement, pools: &[&Pool]) -> String {
    if pools.is_empty() {
        return "no pools".to_owned();
    }
    let live: Vec<&Pool> = pools
        .iter()
        .copied()
        .filter(|p| p.max_workers > 0)
        .collect();
    // Called only when no pool with room satisfies `r`: a pool that does has max_workers 0.
    let closed: Vec<&str> = pools
        .iter()
        .filter(|p| p.satisfies(r))
        .map(|p| p.name.as_str())
        .collect();
    if !closed.is_empty() {
        return format!(
            "only pools with max_workers 0 satisfy it ({})",
            closed.join(", ")
        );
    }
    if live.is_empty() {
        return "every pool has max_workers 0".to_owned();
    }
    type Check<'a> = Box<dyn Fn(&Pool) -> bool + 'a>;
    let mut constraints: Vec<(String, Check<'_>)> = Vec::new();
    for (k, v) in &r.labels {
        let what = if k == POOL_LABEL {
            format!("pool {v}")
        } else {
            format!("label {k}={v}")
        };
        constraints.push((
            what,
            Box::new(move |p: &Pool| p.satisfies(&Requirement::new(1).label(k.clone(), v.clone()))),
        ));
    }
    for c in &r.capabilities {
        constraints.push((
            format!("capability {c}"),
            Box::new(move |p: &Pool| p.template.capabilities.contains(c)),
        ));
    }
    if let Some(a) = r.architecture {
        constraints.push((
            format!("architecture {a}"),
            Box::new(move |p: &Pool| p.template.architecture == a),
        ));
    }
    let need = &r.resources;
    let largest = |f: &dyn Fn(&Pool) -> f64| live.iter().map(|p| f(p)).fold(0.0, f64::max);
    if need.cpu_cores != 0.0 {
        constraints.push((
            format!(
                "cpu>={} (largest {})",
                need.cpu_cores,
                largest(&|p| p.template.resources.cpu_cores)
            ),
            Box::new(move |p: &Pool| p.template.resources.cpu_cores >= need.cpu_cores),
        ));
    }
    if need.memory_bytes > 0 {
        let parts = resource_parts(&crate::ResourceRequirements {
            memory_bytes: need.memory_bytes,
            ..Default::default()
        });
        constraints.push((
            parts.join(""),
            Box::new(move |p: &Pool| p.template.resources.memory_bytes >= need.memory_bytes),
        ));
    }
    if need.disk_bytes > 0 {
        let parts = resource_parts(&crate::ResourceRequirements {
            disk_bytes: need.disk_bytes,
            ..Default::default()
        });
        constraints.push((
            parts.join(""),
            Box::new(move |p: &Pool| p.template.resources.disk_bytes >= need.disk_bytes),
        ));
    }
    if need.gpu_count > 0 {
        constraints.push((
            format!(
                "gpu>={} (largest {})",
                need.gpu_count,
                largest(&|p| f64::from(p.template.resources.gpu_count))
            ),
            Box::new(move |p: &Pool| p.template.resources.gpu_count >= need.gpu_count),
        ));
    }
    if let Some(t) = &need.gpu_type {
        constraints.push((
            format!("gpu_type={t}"),
            Box::new(move |p: &Pool| p.template.resources.gpu_type.as_ref() == Some(t)),
        ));
    }
    let missing: Vec<&str> = constraints
        .iter()
        .filter(|(_, check)| !live.iter().any(|p| check(p)))
        .map(|(what, _)| what.as_str())
        .collect();
    if !missing.is_empty() {
        return format!("no pool offers {}", missing.join(", "));
    }
    let who: Vec<String> = constraints
        .iter()
        .map(|(what, check)| {
            let names: Vec<&str> = live
                .iter()
                .filter(|p| check(p))
                .map(|p| p.name.as_str())
                .collect();
            format!("{what}: {}", names.join(", "))
        })
        .collect();
    format!("no single pool offers all of it ({})", who.join("; "))
}

#[cfg(test)]
mod tests;
