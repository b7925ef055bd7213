//! The pools' scaling step of `tick` (DESIGN.md §12): the plan from the registry's per-pool
//! counts ([`plan_pools`](WorkerLifecycleManager::plan_pools)), its execution (provisions,
//! takebacks included, and retirements), and the single-target path that `tick(pending)`
//! keeps.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::ids::WorkerId;
use crate::metrics::PoolGauges;
use crate::registry::{pool_of, StateCounts};
use crate::worker::{Worker, WorkerSpec};

use super::super::pools::{
    plan, Demand, PlanInputs, Pool, PoolBlock, PoolDecision, PoolFleet, PoolPlan, Replacement,
    Requirement,
};
use super::super::provider::ProviderErrorKind;
use super::super::report::{ProvisionFailure, ProvisionedWorker, TickReport};
use super::interruptions::Replacements;
use super::pools::PoolEntry;
use super::{Budget, WorkerLifecycleManager};

/// What planning the pools yields.
struct Planned {
    plan: PoolPlan,
    /// The demand planned: the host's requirements, then the replacements' (the plan's
    /// requirement indices are into it).
    demand: Demand,
    /// The idle workers chosen for retirement, per pool.
    chosen: BTreeMap<String, Vec<Worker>>,
    /// Each pool's registered workers per state.
    states: BTreeMap<String, StateCounts>,
    /// The interruption notices whose worker could not be read (counted as still registered),
    /// with their pool and the registry's error.
    unread: Vec<(WorkerId, String, Error)>,
}

/// The requirement a replacement for a worker of `pool` must meet: what its template offers.
pub(super) fn replacement(pool: &Pool, count: usize) -> Requirement {
    let t = &pool.template;
    Requirement {
        labels: t.labels.clone(),
        capabilities: t.capabilities.clone(),
        resources: t.resources.clone(),
        architecture: Some(t.architecture),
        count,
    }
}

/// Says in the tick's decisions (and `provision_failures`) why a create of pool `pool`
/// failed: the tick provisions nothing more for it.
fn report_create_failure(
    pool: &str,
    e: Error,
    failure: Option<ProvisionFailure>,
    report: &mut TickReport,
) {
    match failure {
        Some(f) if f.kind == ProviderErrorKind::Interrupted => {
            report.decisions.push(format!(
                "pool {pool}: provider {}: a create was interrupted: {}; not counted as a \
                 failure of the provider (no back-off)",
                f.provider_id, f.error
            ));
            report.provision_failures.push(f);
        }
        Some(f) => {
            report.decisions.push(format!(
                "pool {pool}: provider {} failed to create a worker ({} in a row, {}): {}; \
                 backing off until {} (its demand goes to the next pool)",
                f.provider_id, f.consecutive_failures, f.kind, f.error, f.backoff_until
            ));
            report.provision_failures.push(f);
        }
        None => report
            .decisions
            .push(format!("pool {pool}: provisioning stopped: {e}")),
    }
}

impl WorkerLifecycleManager {
    // ----- planning --------------------------------------------------------------------------

    /// The multi-pool scaling policy for `demand`, without acting on it (see the module
    /// documentation of the policy: matching by template, priority, fallback, caps,
    /// unschedulable demand). Without pools, the plan is empty but still lists the demand no
    /// pool satisfies. Interruption replacements are not included (`tick` adds them); a notice
    /// whose worker the registry cannot read counts as a worker still registered and
    /// interrupted (none of its pool's capacity), as in a tick.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an invalid demand; a
    /// registry error.
    pub fn plan_pools(&self, demand: &Demand) -> Result<PoolPlan> {
        demand.validate()?;
        Ok(self
            .plan_pools_inner(demand, &Replacements::default())?
            .plan)
    }

    /// The plan, the idle workers chosen for retirement per pool, each pool's registered
    /// workers per state (for the metrics; counted in the same pass as the plan's fleet), and
    /// the notices whose worker could not be read.
    fn plan_pools_inner(&self, demand: &Demand, running: &Replacements) -> Result<Planned> {
        let now = self.registry.now();
        let entries: Vec<PoolEntry> = self.pools.lock().entries.values().cloned().collect();
        let pools: Vec<Pool> = entries.iter().map(|e| e.pool.clone()).collect();
        let mut demand = demand.clone();
        // Each after the host's requirements, with an index of its own that the plan names
        // (`PoolPlan::replacements`): the host's demand has no such index.
        let mut replacements = Vec::new();
        for entry in &entries {
            if let Some(&n) = running.pools.get(&entry.pool.name) {
                let r = replacement(&entry.pool, n);
                replacements.push(Replacement {
                    requirement: demand.requirements.len(),
                    pool: entry.pool.name.clone(),
                    count: n,
                    description: r.to_string(),
                });
                demand.push(r);
            }
        }
        // Workers that none of these pools owns (their pool removed, or of no pool: the
        // scaling target is ignored while pools are set): replaced by what they offered,
        // wherever a pool satisfies it. Before, nothing counted them, and their jobs waited
        // for the deadline to be lost before any worker was provisioned for them.
        let owned = |pool: &Option<String>| {
            pool.as_ref()
                .is_some_and(|name| entries.iter().any(|e| e.pool.name == *name))
        };
        // One requirement per pool label and offer, whatever the workers' providers.
        let mut unowned: Vec<(&Option<String>, &Requirement, usize)> = Vec::new();
        for o in running.offered.iter().filter(|o| !owned(&o.pool)) {
            match unowned
                .iter_mut()
                .find(|(pool, offered, _)| **pool == o.pool && **offered == o.offered)
            {
                Some((.., jobs)) => *jobs = jobs.saturating_add(o.jobs),
                None => unowned.push((&o.pool, &o.offered, o.jobs)),
            }
        }
        for (pool, offered, jobs) in unowned {
            let r = Requirement {
                count: jobs,
                ..offered.clone()
            };
            replacements.push(Replacement {
                requirement: demand.requirements.len(),
                pool: pool.clone().unwrap_or_default(),
                count: r.count,
                description: r.to_string(),
            });
            demand.push(r);
        }
        // The provisions in flight first, the registry's counts second (as `plan_inner` reads
        // them): a provision registers its worker before it leaves the ledger, so one ending
        // between the two reads is counted twice at worst, never nowhere (a second worker
        // provisioned for one need, room under `max_workers` that is not). A pool's are those
        // of its spec's pool, whoever asked (its tick, or the host's own `provision_worker`
        // of a spec with its label): its worker, once registered, is the pool's.
        let (in_flight_per_pool, in_flight) = {
            let ledger = self.ledger.lock();
            (ledger.in_flight_per_pool(), ledger.in_flight.len())
        };
        // Per-pool counts maintained by the registry: O(pools), whatever the fleet's size.
        let by_pool = self.registry.stats()?.by_pool;
        let interrupted = self.interrupted_per_pool();
        let mut fleet = Vec::with_capacity(entries.len());
        let mut states = BTreeMap::new();
        for entry in &entries {
            let name = entry.pool.name.as_str();
            let counts = by_pool.get(name).copied().unwrap_or_default();
            // An interrupted worker is draining: it is none of ready, busy or starting, and no
            // longer counts against its pool's max (its replacement is demand).
            let registered = counts
                .total()
                .saturating_sub(interrupted.per_pool.get(name).copied().unwrap_or(0));
            fleet.push(PoolFleet {
                ready: counts.ready,
                busy: counts.busy,
                starting: counts.starting(),
                in_flight: in_flight_per_pool.get(name).copied().unwrap_or(0),
                registered,
                blocked: self.pool_block(entry, now),
                last_scale_up: entry.last_scale_up,
                last_scale_action: entry.last_scale_action,
            });
            states.insert(entry.pool.name.clone(), counts);
        }
        let total = self.registry.count()? + in_flight;
        let mut plan = plan(&PlanInputs {
            now,
            pools: &pools,
            fleet: &fleet,
            demand: &demand,
            max_workers: self.config.max_workers,
            total,
            max_per_tick: self.config.max_provision_per_tick,
        });
        plan.replacements = replacements;
        let mut chosen = BTreeMap::new();
        for d in &mut plan.pools {
            if d.retire == 0 {
                continue;
            }
            let workers = self.longest_idle_of(Some(&d.pool), d.retire)?;
            d.scale_down = workers.iter().map(|w| w.id).collect();
            chosen.insert(d.pool.clone(), workers);
        }
        Ok(Planned {
            plan,
            demand,
            chosen,
            states,
            unread: interrupted.unread,
        })
    }

    /// The `n` longest-idle `Ready` workers of `pool` (of no pool with `None`: the scaling
    /// target's), longest idle first: the scale-in candidates, read only when the plan
    /// retires some. Walks the registry's ready index from
    /// the longest idle end ([`WorkerRegistry::longest_idle`]), doubling the window until `n`
    /// of the pool's workers are found or the ready workers run out: O(k log fleet) for the
    /// `k` ready workers idle longer than the chosen ones (at worst every ready worker), never
    /// a scan of the fleet. A pool-filtered index walk would need a new registry method.
    ///
    /// [`WorkerRegistry::longest_idle`]: crate::WorkerRegistry::longest_idle
    pub(super) fn longest_idle_of(&self, pool: Option<&str>, n: usize) -> Result<Vec<Worker>> {
        let mut window = n.saturating_mul(4).max(16);
        loop {
            let idle = self.registry.longest_idle(window)?;
            let exhausted = idle.len() < window;
            let mine: Vec<Worker> = idle
                .into_iter()
                .filter(|w| pool_of(&w.spec) == pool)
                .take(n)
                .collect();
            if mine.len() == n || exhausted {
                return Ok(mine);
            }
            window = window.saturating_mul(4);
        }
    }

    fn pool_block(&self, entry: &PoolEntry, now: Timestamp) -> Option<PoolBlock> {
        if !self.providers.read().contains_key(&entry.pool.provider_id) {
            return Some(PoolBlock::NoProvider);
        }
        let backoff = self
            .backoff
            .lock()
            .get(&entry.pool.provider_id)
            .filter(|b| b.until > now)
            .copied()?;
        Some(match backoff.kind {
            ProviderErrorKind::NoCapacity => PoolBlock::NoCapacity {
                until: backoff.until,
            },
            _ => PoolBlock::BackedOff {
                failures: backoff.failures,
                until: backoff.until,
            },
        })
    }

    // ----- the scaling step of tick ----------------------------------------------------------

    /// `tick`'s scaling step: interruption deadlines, then the pools (when any is set) or the
    /// single scaling target (when one is set; demand its spec does not satisfy is reported
    /// unschedulable).
    pub(super) fn scale_tick(
        &self,
        demand: Option<&Demand>,
        budget: &mut Budget,
        report: &mut TickReport,
    ) {
        let now = report.at;
        let running = self.interruptions_due(now, budget, report);
        let Some(demand) = demand else {
            report.decisions.push(
                "no scaling: the demand is not known yet (the ticker's demand callback has \
                 not answered once); nothing provisioned or retired"
                    .to_owned(),
            );
            return;
        };
        if let Err(e) = demand.validate() {
            report.decisions.push(format!("demand refused: {e}"));
            return;
        }
        if self.pools.lock().is_empty() {
            self.target_tick(demand, &running, budget, report);
            return;
        }
        let Planned {
            plan,
            demand: planned,
            mut chosen,
            states,
            unread,
        } = match self.plan_pools_inner(demand, &running) {
            Ok(planned) => planned,
            Err(e) => {
                report.decisions.push(format!("pool plan failed: {e}"));
                return;
            }
        };
        // Once per notice and tick: one whose deadline's look failed too said so already.
        for (id, pool, e) in unread {
            if !running.unread.contains(&id) {
                report.decisions.push(format!(
                    "interruption of {id}: {e} (counted as a worker of pool {pool} still \
                     registered and interrupted: its replacement is demand, not its capacity)"
                ));
            }
        }
        self.store_pool_gauges(&plan, states);
        // Each pool on its own: a takeback retires none of its givers' workers (make before
        // break: they serve until the taker's are up, and a later plan retires them as
        // surplus), so nothing a taker's creates do changes what a giver retires.
        for d in &plan.pools {
            let candidates = chosen.remove(&d.pool).unwrap_or_default();
            self.execute_pool(d, &planned.requirements, &candidates, now, budget, report);
        }
        let mut lines = plan.explanation.clone();
        lines.append(&mut report.decisions);
        report.decisions = lines;
        report.unschedulable = plan.unschedulable.clone();
        report.pools = Some(plan);
    }

    /// Provisions and retires what `d` says for its pool. Each provision is made from the pool
    /// as it is at that moment (`set_pools` may have reshaped it since the plan, or during
    /// this tick's creates), and one planned for a requirement (`requirements`: the plan's,
    /// replacements included) only if the pool's template still satisfies it: otherwise it is
    /// not made this tick, the decisions say so, and the next plan counts the requirement
    /// against the new template (unschedulable, unmet, or spilled, as the plan's rules say).
    /// Creates already in flight are not cancelled. Nothing more is provisioned once the pool
    /// is removed.
    fn execute_pool(
        &self,
        d: &PoolDecision,
        requirements: &[Requirement],
        candidates: &[Worker],
        now: Timestamp,
        budget: &mut Budget,
        report: &mut TickReport,
    ) {
        let Some(entry) = self.pools.lock().entries.get(&d.pool).cloned() else {
            return; // removed meanwhile
        };
        let mut provisioned = 0;
        // The plan was made before this tick's creates: a pool sharing its provider with one
        // that failed earlier in this tick would ask a provider that has just been backed
        // off (a second call to an API that just failed, and a doubled back-off).
        let blocked = if d.provision > 0 {
            self.pool_block(&entry, now)
        } else {
            None
        };
        if let Some(block) = &blocked {
            let why = match block {
                PoolBlock::NoProvider => "is no longer registered".to_owned(),
                _ => format!("{} after a create failed in this tick", block.describe(now)),
            };
            report.decisions.push(format!(
                "pool {}: provider {} {why}: nothing provisioned (its demand goes to the next \
                 pool)",
                d.pool, entry.pool.provider_id
            ));
        }
        let provisions = if blocked.is_some() {
            Vec::new()
        } else {
            d.provisions()
        };
        // Creates asked for: a failed one may have registered its worker all the same (a
        // registration whose outcome the registry could not tell). The specs they were made
        // from, each once.
        let mut attempted = 0;
        let mut specs: Vec<Arc<WorkerSpec>> = Vec::new();
        // Per requirement, the provisions not made: the pool's template no longer satisfies it.
        let mut unserved: BTreeMap<usize, usize> = BTreeMap::new();
        'provisions: for (purpose, n) in provisions {
            for _ in 0..n {
                let Some(current) = self.pools.lock().entries.get(&d.pool).cloned() else {
                    report.decisions.push(format!(
                        "pool {}: removed during this tick's creates: nothing more provisioned",
                        d.pool
                    ));
                    break 'provisions;
                };
                // Planned against the template of the plan: a pool reshaped since would
                // provision its new template for demand it may not serve (a worker no such
                // job can claim, counted as capacity for it by no plan).
                let planned_for = purpose.requirement(d);
                if let Some(ri) = planned_for {
                    if requirements
                        .get(ri)
                        .is_some_and(|r| !current.pool.satisfies(r))
                    {
                        *unserved.entry(ri).or_insert(0) += 1;
                        continue;
                    }
                }
                // Fenced before the action is taken: a provision left for the lost lease is
                // no action of the tick's (`provision_inner` fences too, for its other callers).
                if let Err(e) = self.fence() {
                    report
                        .decisions
                        .push(format!("pool {}: provisioning stopped: {e}", d.pool));
                    break 'provisions;
                }
                if !budget.take() {
                    break 'provisions;
                }
                attempted += 1;
                if !specs.contains(&current.spec) {
                    specs.push(Arc::clone(&current.spec));
                }
                let provider_id = &current.pool.provider_id;
                // In flight for the pool in the ledger (its spec carries the pool's label).
                match self.provision_inner(provider_id, Arc::clone(&current.spec)) {
                    Ok(w) => {
                        provisioned += 1;
                        report.provisioned.push(ProvisionedWorker {
                            worker_id: w.id,
                            provider_id: provider_id.clone(),
                            resource_id: w.handle.resource_id.clone(),
                        });
                    }
                    Err((e, failure)) => {
                        report_create_failure(&d.pool, e, failure, report);
                        break 'provisions;
                    }
                }
            }
        }
        for (ri, n) in unserved {
            report.decisions.push(format!(
                "pool {}: {n} provision(s) for {} not made: its template, changed since the \
                 plan, no longer satisfies it (the next plan counts it again)",
                d.pool, requirements[ri]
            ));
        }
        if attempted > 0 {
            let mut set = self.pools.lock();
            let reshaped = match set.entries.get_mut(&d.pool) {
                Some(e) => {
                    // The pool's cooldowns run from these provisions whatever its template
                    // is now: a worker of the old one that the new one takes stays the
                    // pool's capacity (and one it does not take is drained below), so a
                    // pool reshaped during the creates must not scale up again at once.
                    if provisioned > 0 {
                        e.last_scale_up = Some(now);
                        e.last_scale_action = Some(now);
                    }
                    specs.iter().any(|s| *s != e.spec)
                }
                None => true,
            };
            // Removed or reshaped by `set_pools`/`remove_pool` during the creates: their look
            // for the pool's workers ran before these were registered, so nothing drained
            // them. The next tick does (registered by now, they are found) — also after a
            // create that failed: its registration may have been applied with its reply lost
            // and the look that would tell failing (its worker then registered unbeknown to
            // this tick). (The ledger does the same for the creates in flight at the call,
            // whoever asked for them; this also covers a create that started right after it,
            // from the pool as this tick read it.)
            if reshaped {
                set.undrained.insert(d.pool.clone());
            }
        }
        self.retire_planned(candidates, now, budget, report, || {
            self.with_pool(&d.pool, |e| e.last_scale_action = Some(now));
        });
    }

    /// Keeps this tick's per-pool counts for the metrics (`hodei_workers_pool_*`): they
    /// replace the last tick's, so that a pool gone since is gone from the metrics too. A pool
    /// removed while this tick planned is left out (its removal forgot it already).
    fn store_pool_gauges(&self, plan: &PoolPlan, states: BTreeMap<String, StateCounts>) {
        let set = self.pools.lock();
        let gauges = states
            .into_iter()
            .filter(|(name, _)| set.entries.contains_key(name))
            .map(|(name, states)| {
                let demand = plan.pool(&name).map_or(0, |d| d.demand);
                (name, PoolGauges { states, demand })
            })
            .collect();
        *self.pool_gauges.lock() = gauges;
    }

    /// The single-target path (`set_scaling_target`), which `tick(pending)` has always taken:
    /// the jobs the target's spec satisfies are its pending jobs; the others are unschedulable.
    /// The jobs of interrupted workers count as pending too: those of the target's own
    /// workers, and those of any other worker whose offer the target's spec satisfies.
    fn target_tick(
        &self,
        demand: &Demand,
        interrupted: &Replacements,
        budget: &mut Budget,
        report: &mut TickReport,
    ) {
        let Some(target) = self.target.lock().clone() else {
            return;
        };
        // The target seen as a pool, only to match requirements against its spec. Its workers
        // carry no pool label (unless its spec has one): a job asking for a pool by name is
        // not theirs, so the name is one no requirement can ask for (a NUL is refused in a
        // demand); it shows in no reason.
        let as_pool = Pool {
            name: "\0scaling-target".to_owned(),
            provider_id: target.provider_id.clone(),
            template: Arc::clone(&target.spec),
            min_ready: 0,
            max_workers: usize::MAX,
            priority: 0,
            scale_up_cooldown: self.config.scale_up_cooldown,
            scale_down_cooldown: self.config.scale_down_cooldown,
        };
        // Why the target's spec cannot run `r` (`r.count` > 0), as the pools' plan says it.
        let cannot_run = |r: &Requirement| {
            plan(&PlanInputs {
                now: report.at,
                pools: std::slice::from_ref(&as_pool),
                fleet: &[PoolFleet::default()],
                demand: &Demand::from(r.clone()),
                max_workers: 0,
                total: 0,
                max_per_tick: 0,
            })
            .unschedulable
            .into_iter()
            .map(|mut u| {
                u.reason = u
                    .reason
                    .replace("no pool offers", "the scaling target's spec does not offer");
                u
            })
        };
        let mut pending = 0usize;
        for (i, r) in demand.requirements.iter().enumerate() {
            if r.count == 0 {
                continue;
            }
            if as_pool.satisfies(r) {
                pending = pending.saturating_add(r.count);
            } else {
                for mut u in cannot_run(r) {
                    u.requirement = i;
                    report.decisions.push(format!(
                        "unschedulable: {} job(s) needing {}: {}",
                        u.count, u.description, u.reason
                    ));
                    report.unschedulable.push(u);
                }
            }
        }
        // Interrupted workers of the target's that still run a job (or lost it at their
        // deadline in this tick) — those of no pool on its provider, or of its spec's pool if
        // its spec names one (its workers, see `plan_inner`): the target replaces them ahead
        // of the deadline, as a pool replaces its own.
        let own_pool = pool_of(&target.spec);
        let replaced = match own_pool {
            Some(own) => interrupted.pools.get(own),
            None => interrupted.unpooled.get(&target.provider_id),
        };
        if let Some(&n) = replaced {
            pending = pending.saturating_add(n);
            report.decisions.push(format!(
                "{n} job(s) of interrupted worker(s) on {}: counted as pending (their \
                 replacements come before the deadline)",
                target.provider_id
            ));
        }
        // The others — of a pool not the target's (removed by `set_pools`, or set on another
        // replica), or of no pool on another provider or beside a target of a pool: no pool
        // replaces them without pools, so the target does when its spec offers what they
        // did (as a pools tick places them on the pools that satisfy them). Before, nothing
        // was provisioned for them until the deadline lost their jobs.
        let mut others: Vec<(Option<&str>, Option<String>, usize)> = Vec::new();
        for o in &interrupted.offered {
            let own = match own_pool {
                Some(own) => o.pool.as_deref() == Some(own),
                None => o.pool.is_none() && o.provider_id == target.provider_id,
            };
            if own || o.jobs == 0 {
                continue;
            }
            let why_not = if as_pool.satisfies(&o.offered) {
                pending = pending.saturating_add(o.jobs);
                None
            } else {
                let r = Requirement {
                    count: o.jobs,
                    ..o.offered.clone()
                };
                cannot_run(&r).next().map(|u| u.reason)
            };
            let pool = o.pool.as_deref();
            match others
                .iter_mut()
                .find(|(p, why, _)| *p == pool && *why == why_not)
            {
                Some((.., n)) => *n = n.saturating_add(o.jobs),
                None => others.push((pool, why_not, o.jobs)),
            }
        }
        for (pool, why_not, n) in others {
            let whose = pool.map_or_else(|| "no pool".to_owned(), |p| format!("pool {p}"));
            report.decisions.push(match why_not {
                None => format!(
                    "{n} job(s) of interrupted worker(s) of {whose}, which the scaling target \
                     does not own: counted as pending (its spec offers what they did)"
                ),
                Some(why) => format!(
                    "{n} job(s) of interrupted worker(s) of {whose}, which the scaling target \
                     does not own: not replaced by it: {why}"
                ),
            });
        }
        match self.plan_inner(pending, Some(&target)) {
            Ok((plan, candidates)) => {
                self.execute_plan(&plan, &candidates, &target, budget, report);
                report.decisions.insert(0, plan.explanation.clone());
                report.scaling = Some(plan);
            }
            Err(e) => report.decisions.push(format!("scaling plan failed: {e}")),
        }
    }
}
