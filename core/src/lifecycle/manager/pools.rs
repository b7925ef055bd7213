//! Pools and demand on the manager (DESIGN.md §12): `set_pools` / `add_pool` / `remove_pool`,
//! `plan_pools`, the scaling step of `tick` for a [`Demand`], and interruption notices.
//!
//! A pool's workers are recognised by the label [`POOL_LABEL`]` = name`, which the manager
//! puts on every worker it provisions for the pool (the pool's template plus that label).
//! A tick reads each pool's workers per state from the registry's maintained counts
//! ([`WorkerRegistryStats::by_pool`](crate::WorkerRegistryStats::by_pool)): O(pools) plus one
//! `get` per interruption notice, whatever the fleet's size. Only a tick that retires workers
//! reads workers: the pool's longest-idle ready ones, from the registry's ready index
//! (`longest_idle_of`); removing a pool finds its workers by label (once).
//!
//! Pools that share a provider share its back-off (a create failure backs off the provider):
//! give each capacity market its own provider id (spot and on-demand) so that one can fall
//! back to the other.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::filter::WorkerFilter;
use crate::ids::WorkerId;
use crate::metrics::PoolGauges;
use crate::registry::StateCounts;
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker, WorkerSpec};

use super::super::pools::{
    plan, Demand, PlanInputs, Pool, PoolBlock, PoolFleet, PoolPlan, Requirement, POOL_LABEL,
};
use super::super::provider::ProviderErrorKind;
use super::super::report::{CleanupResult, ProvisionedWorker, TickReport};
use super::{Budget, WorkerLifecycleManager};

/// The manager's pools and the interruption notices it is acting on.
#[derive(Debug, Default)]
pub(super) struct PoolSet {
    entries: BTreeMap<String, PoolEntry>,
    interruptions: BTreeMap<WorkerId, Interruption>,
}

impl PoolSet {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Debug, Clone)]
struct PoolEntry {
    pool: Pool,
    /// The template plus the pool label: what is provisioned.
    spec: Arc<WorkerSpec>,
    last_scale_up: Option<Timestamp>,
    last_scale_action: Option<Timestamp>,
    /// Provisions for this pool in flight now.
    in_flight: usize,
    /// The kind of the pool's last failed create (cleared by a success): tells a provider
    /// back-off caused by "no capacity" from one caused by a failure.
    last_failure: Option<ProviderErrorKind>,
}

impl PoolEntry {
    fn new(pool: Pool) -> Self {
        PoolEntry {
            spec: pool.worker_spec(),
            pool,
            last_scale_up: None,
            last_scale_action: None,
            in_flight: 0,
            last_failure: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Interruption {
    deadline: Timestamp,
    /// The pool the worker belonged to, if any (its template is the replacement's requirement).
    pool: Option<String>,
}

/// What planning the pools yields: the plan, the idle workers chosen for retirement per pool,
/// and each pool's registered workers per state.
type Planned = (
    PoolPlan,
    BTreeMap<String, Vec<Worker>>,
    BTreeMap<String, StateCounts>,
);

/// The requirement a replacement for a worker of `pool` must meet: what its template offers.
fn replacement(pool: &Pool, count: usize) -> Requirement {
    let t = &pool.template;
    Requirement {
        labels: t.labels.clone(),
        capabilities: t.capabilities.clone(),
        resources: t.resources.clone(),
        architecture: Some(t.architecture),
        count,
    }
}

impl WorkerLifecycleManager {
    // ----- the pool set ----------------------------------------------------------------------

    /// Replaces the pools. Pools with a name already known keep their cooldown clocks; pools no
    /// longer listed are removed as by [`remove_pool`](Self::remove_pool) (their workers drain).
    /// While any pool is set, `tick` scales the pools and ignores the scaling target.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an invalid pool ([`Pool::validate`]) or two pools with
    /// one name; [`Error::ProviderNotFound`] when a pool's provider is not registered. Nothing
    /// changes on error.
    ///
    /// # Examples
    /// A CPU pool and two GPU pools: spot first, on-demand as the fallback.
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use hodei_workers::*;
    ///
    /// #[derive(Debug)]
    /// struct Cloud { id: &'static str, out_of_capacity: AtomicBool }
    /// impl WorkerProvider for Cloud {
    ///     fn provider_id(&self) -> ProviderId { ProviderId::new(self.id).unwrap() }
    ///     fn provider_type(&self) -> ProviderType { ProviderType::Ec2 }
    ///     fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
    ///         if self.out_of_capacity.load(Ordering::Relaxed) {
    ///             return Err(ProviderError::no_capacity("no g5.xlarge spot capacity"));
    ///         }
    ///         let handle = WorkerHandle::new(self.provider_id(), self.provider_type(), format!("i-{id}"));
    ///         Ok(WorkerHandle { worker_id: id, ..handle })
    ///     }
    ///     fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> { Ok(()) }
    /// }
    /// let cloud = |id| Arc::new(Cloud { id, out_of_capacity: AtomicBool::new(false) });
    /// let (spot, ondemand, k8s) = (cloud("ec2-spot"), cloud("ec2"), cloud("k8s"));
    ///
    /// let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    /// let registry: Arc<dyn WorkerRegistry> =
    ///     Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    /// let config = WorkerLifecycleConfig {
    ///     max_workers: 20,
    ///     max_provision_per_tick: 10,
    ///     ..Default::default()
    /// };
    /// let manager = WorkerLifecycleManager::new(registry.clone(), config)?;
    /// for p in [&spot, &ondemand, &k8s] {
    ///     manager.register_provider(p.clone())?;
    /// }
    ///
    /// let a100 = WorkerSpec {
    ///     resources: ResourceRequirements {
    ///         cpu_cores: 16.0,
    ///         gpu_count: 1,
    ///         gpu_type: Some("a100".into()),
    ///         ..Default::default()
    ///     },
    ///     ..WorkerSpec::new("trainer:2").with_label("gpu", "a100")
    /// };
    /// // Highest priority first among the pools that satisfy a job: jobs that need nothing in
    /// // particular go to the cheap CPU pool, GPU jobs to spot before on-demand.
    /// manager.set_pools(vec![
    ///     Pool::new("cpu", ProviderId::new("k8s")?, WorkerSpec::new("runner:1"))?
    ///         .with_priority(20)
    ///         .with_min_ready(1)
    ///         .with_max_workers(10),
    ///     Pool::new("gpu-spot", ProviderId::new("ec2-spot")?, a100.clone())?
    ///         .with_priority(10)
    ///         .with_max_workers(8),
    ///     Pool::new("gpu-ondemand", ProviderId::new("ec2")?, a100)?.with_max_workers(2),
    /// ])?;
    ///
    /// // Pending jobs, by what they need.
    /// let demand = Demand::new()
    ///     .with(Requirement::new(4))                          // anything
    ///     .with(Requirement::new(3).label("gpu", "a100"))     // an A100
    ///     .with(Requirement::new(1).label("gpu", "h100"));    // nobody has one
    /// let report = manager.tick(&demand);
    /// assert_eq!(report.provisioned.len(), 8); // 4 + 1 warm on cpu, 3 on gpu-spot
    /// assert_eq!(report.unschedulable[0].reason, "no pool offers label gpu=h100");
    /// let plan = report.pools.as_ref().unwrap();
    /// assert!(plan.pool("gpu-spot").unwrap().explanation.starts_with("gpu-spot +3: demand 3"));
    ///
    /// // Spot runs dry: its demand spills to on-demand (at most 2 there), and comes back later.
    /// spot.out_of_capacity.store(true, Ordering::Relaxed);
    /// clock.advance(std::time::Duration::from_secs(11));
    /// let more = Demand::new().with(Requirement::new(6).label("gpu", "a100"));
    /// let report = manager.tick(&more);
    /// assert_eq!(report.provision_failures[0].kind, ProviderErrorKind::NoCapacity);
    /// clock.advance(std::time::Duration::from_secs(1));
    /// let report = manager.tick(&more);
    /// let line = &report.pools.as_ref().unwrap().pool("gpu-ondemand").unwrap().explanation;
    /// assert!(line.contains("spilled from gpu-spot (no capacity, retry in 4 s) to gpu-ondemand"), "{line}");
    /// assert_eq!(report.provisioned.len(), 2);
    ///
    /// // A scheduler claims for a job exactly as its requirement describes it.
    /// for w in registry.find(&WorkerFilter::new())? {
    ///     registry.update_state(&w.id, WorkerState::Ready)?;
    /// }
    /// let gpu_job = &demand.requirements[1];
    /// let worker = registry.claim(&gpu_job.filter(), JobId::new("train-7")?)?.unwrap();
    /// assert_eq!(worker.spec.resources.gpu_count, 1);
    ///
    /// // A spot reclaim notice: the worker drains, a replacement comes ahead of the deadline.
    /// manager.notify_interruption(&worker.id, registry.now() + 120_000)?;
    /// # Ok::<(), hodei_workers::Error>(())
    /// ```
    pub fn set_pools(&self, pools: Vec<Pool>) -> Result<Vec<WorkerId>> {
        let mut names = std::collections::BTreeSet::new();
        for pool in &pools {
            self.check_pool(pool)?;
            if !names.insert(pool.name.clone()) {
                return Err(Error::invalid(format!("two pools are named {}", pool.name)));
            }
        }
        let removed: Vec<String> = {
            let mut set = self.pools.lock();
            let removed = set
                .entries
                .keys()
                .filter(|n| !names.contains(*n))
                .cloned()
                .collect::<Vec<_>>();
            let mut gauges = self.pool_gauges.lock();
            for name in &removed {
                set.entries.remove(name);
                gauges.remove(name);
            }
            for pool in pools {
                match set.entries.get_mut(&pool.name) {
                    Some(entry) => {
                        entry.spec = pool.worker_spec();
                        entry.pool = pool;
                    }
                    None => {
                        set.entries.insert(pool.name.clone(), PoolEntry::new(pool));
                    }
                }
            }
            removed
        };
        let mut drained = Vec::new();
        for name in removed {
            drained.extend(self.drain_pool(&name)?);
        }
        Ok(drained)
    }

    /// Adds a pool.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an invalid pool or a name in use;
    /// [`Error::ProviderNotFound`] when its provider is not registered.
    pub fn add_pool(&self, pool: Pool) -> Result<()> {
        self.check_pool(&pool)?;
        let mut set = self.pools.lock();
        if set.entries.contains_key(&pool.name) {
            return Err(Error::invalid(format!(
                "a pool named {} exists already",
                pool.name
            )));
        }
        set.entries.insert(pool.name.clone(), PoolEntry::new(pool));
        Ok(())
    }

    /// Removes a pool: nothing more is provisioned for it, and its workers drain — idle ones
    /// are retired by the next cleanup, busy ones finish their job first, starting ones are
    /// terminated (they hold no job). Returns the workers taken out of service.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when no pool has that name; a registry error.
    pub fn remove_pool(&self, name: &str) -> Result<Vec<WorkerId>> {
        {
            let mut set = self.pools.lock();
            if set.entries.remove(name).is_none() {
                return Err(Error::invalid(format!("no pool named {name:?}")));
            }
            self.pool_gauges.lock().remove(name);
        }
        self.drain_pool(name)
    }

    /// The pools, highest priority first (ties by name).
    pub fn pools(&self) -> Vec<Pool> {
        let mut pools: Vec<Pool> = self
            .pools
            .lock()
            .entries
            .values()
            .map(|e| e.pool.clone())
            .collect();
        pools.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
        pools
    }

    fn check_pool(&self, pool: &Pool) -> Result<()> {
        pool.validate()?;
        if !self.providers.read().contains_key(&pool.provider_id) {
            return Err(Error::ProviderNotFound(pool.provider_id.clone()));
        }
        Ok(())
    }

    fn drain_pool(&self, name: &str) -> Result<Vec<WorkerId>> {
        let workers = self
            .registry
            .find(&WorkerFilter::new().label(POOL_LABEL, name))?;
        let mut out = Vec::new();
        for w in workers {
            let taken = match w.state {
                WorkerState::Ready | WorkerState::Busy => self.drain_worker(&w.id).is_ok(),
                WorkerState::Creating | WorkerState::Connecting => self
                    .terminate_worker(&w.id, TerminationReason::ScaledDown)
                    .is_ok(),
                _ => false,
            };
            if taken {
                out.push(w.id);
            }
        }
        Ok(out)
    }

    // ----- interruptions ---------------------------------------------------------------------

    /// A notice that `worker_id`'s instance goes away at `deadline` (registry clock): a spot
    /// reclaim, a node drain. The worker drains at once (it takes no new job; an idle one is
    /// retired by the next cleanup; a starting one, holding no job, is terminated now). While
    /// it still runs a job, its pool counts one more job of demand — a replacement that its
    /// template's requirement describes — so that a worker is provisioned (or kept) ahead of
    /// the deadline, by priority and with fallback like any demand; it no longer counts
    /// against its pool's `max_workers` (it still counts against the global one). A job still
    /// running at the deadline is reported lost by the tick that reaches it (the worker is
    /// terminated with reason `Vanished`: its instance is gone), and still counts as its pool's
    /// demand in that tick (the host requeues it after the tick: its replacement is not
    /// retired as surplus meanwhile).
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidTransition`] for a worker already on its way out
    /// (`Terminating`, `Terminated`).
    pub fn notify_interruption(&self, worker_id: &WorkerId, deadline: Timestamp) -> Result<Worker> {
        let w = self
            .registry
            .get(worker_id)?
            .ok_or(Error::NotFound(*worker_id))?;
        if w.state.is_starting() {
            self.terminate_worker(worker_id, TerminationReason::Vanished)?;
            return self.registry.get(worker_id)?.map_or(Ok(w), Ok);
        }
        let drained = self
            .registry
            .update_state(worker_id, WorkerState::Draining)?;
        let pool = w.spec.labels.get(POOL_LABEL).cloned();
        self.pools
            .lock()
            .interruptions
            .insert(*worker_id, Interruption { deadline, pool });
        Ok(drained)
    }

    /// Workers under an interruption notice, with their deadline.
    pub fn interruptions(&self) -> Vec<(WorkerId, Timestamp)> {
        self.pools
            .lock()
            .interruptions
            .iter()
            .map(|(id, i)| (*id, i.deadline))
            .collect()
    }

    /// Terminates interrupted workers whose deadline passed (reporting the jobs they still
    /// held) and forgets notices about workers gone. Returns, per pool, the jobs that need a
    /// replacement: those still running before their deadline, and those lost now (the host
    /// requeues them after this tick).
    fn interruptions_due(
        &self,
        now: Timestamp,
        budget: &mut Budget,
        report: &mut TickReport,
    ) -> BTreeMap<String, usize> {
        let notices: Vec<(WorkerId, Interruption)> = self
            .pools
            .lock()
            .interruptions
            .iter()
            .map(|(id, i)| (*id, i.clone()))
            .collect();
        let mut running = BTreeMap::new();
        let mut forget = Vec::new();
        for (id, notice) in notices {
            let w = match self.registry.get(&id) {
                Ok(Some(w)) if !w.state.is_terminal() => w,
                Ok(_) => {
                    forget.push(id);
                    continue;
                }
                Err(e) => {
                    report.decisions.push(format!("interruption of {id}: {e}"));
                    continue;
                }
            };
            if now >= notice.deadline {
                if !budget.take() {
                    continue;
                }
                match self.terminate_worker(&id, TerminationReason::Vanished) {
                    Ok(result) => {
                        // The host requeues the lost job after this tick: its replacement must
                        // not be retired as surplus in the meantime.
                        if let (Some(pool), false) = (&notice.pool, result.lost_jobs.is_empty()) {
                            *running.entry(pool.clone()).or_insert(0) += result.lost_jobs.len();
                        }
                        for lost in &result.lost_jobs {
                            report.decisions.push(format!(
                                "interruption deadline of worker {id} reached: job {} lost",
                                lost.job_id
                            ));
                        }
                        report.lost_jobs.extend(result.lost_jobs);
                        report.terminated.extend(result.terminated);
                        report.failed.extend(result.failed);
                        forget.push(id);
                    }
                    Err(e) => report
                        .decisions
                        .push(format!("interruption of {id}: terminate failed: {e}")),
                }
            } else if w.current_job.is_some() {
                if let Some(pool) = notice.pool {
                    *running.entry(pool).or_insert(0) += 1;
                }
            }
        }
        if !forget.is_empty() {
            let mut set = self.pools.lock();
            for id in forget {
                set.interruptions.remove(&id);
            }
        }
        running
    }

    // ----- planning --------------------------------------------------------------------------

    /// The multi-pool scaling policy for `demand`, without acting on it (see the module
    /// documentation of the policy: matching by template, priority, fallback, caps,
    /// unschedulable demand). Without pools, the plan is empty but still lists the demand no
    /// pool satisfies. Interruption replacements are not included (`tick` adds them).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an invalid demand; a registry error.
    pub fn plan_pools(&self, demand: &Demand) -> Result<PoolPlan> {
        demand.validate()?;
        Ok(self.plan_pools_inner(demand, &BTreeMap::new())?.0)
    }

    /// The plan, the idle workers chosen for retirement per pool, and each pool's registered
    /// workers per state (for the metrics; counted in the same pass as the plan's fleet).
    fn plan_pools_inner(
        &self,
        demand: &Demand,
        interrupted_running: &BTreeMap<String, usize>,
    ) -> Result<Planned> {
        let now = self.registry.now();
        let entries: Vec<PoolEntry> = self.pools.lock().entries.values().cloned().collect();
        let pools: Vec<Pool> = entries.iter().map(|e| e.pool.clone()).collect();
        let mut demand = demand.clone();
        for entry in &entries {
            if let Some(&n) = interrupted_running.get(&entry.pool.name) {
                demand.push(replacement(&entry.pool, n));
            }
        }
        // Per-pool counts maintained by the registry: O(pools), whatever the fleet's size.
        let by_pool = self.registry.stats()?.by_pool;
        let interrupted = self.interrupted_per_pool()?;
        let mut fleet = Vec::with_capacity(entries.len());
        let mut states = BTreeMap::new();
        for entry in &entries {
            let name = entry.pool.name.as_str();
            let counts = by_pool.get(name).copied().unwrap_or_default();
            // An interrupted worker is draining: it is none of ready, busy or starting, and no
            // longer counts against its pool's max (its replacement is demand).
            let registered = counts
                .total()
                .saturating_sub(interrupted.get(name).copied().unwrap_or(0));
            fleet.push(PoolFleet {
                ready: counts.ready,
                busy: counts.busy,
                starting: counts.starting(),
                in_flight: entry.in_flight,
                registered,
                blocked: self.pool_block(entry, now),
                last_scale_up: entry.last_scale_up,
                last_scale_action: entry.last_scale_action,
            });
            states.insert(entry.pool.name.clone(), counts);
        }
        let total = self.registry.count()? + self.ledger.lock().in_flight.len();
        let mut plan = plan(&PlanInputs {
            now,
            pools: &pools,
            fleet: &fleet,
            demand: &demand,
            max_workers: self.config.max_workers,
            total,
            max_per_tick: self.config.max_provision_per_tick,
        });
        let mut chosen = BTreeMap::new();
        for d in &mut plan.pools {
            if d.retire == 0 {
                continue;
            }
            let workers = self.longest_idle_of(&d.pool, d.retire)?;
            d.scale_down = workers.iter().map(|w| w.id).collect();
            chosen.insert(d.pool.clone(), workers);
        }
        Ok((plan, chosen, states))
    }

    /// Per pool, the workers under an interruption notice that are still registered: one
    /// `get` per notice (O(notices), not the fleet).
    fn interrupted_per_pool(&self) -> Result<BTreeMap<String, usize>> {
        let notices: Vec<(WorkerId, String)> = self
            .pools
            .lock()
            .interruptions
            .iter()
            .filter_map(|(id, i)| i.pool.clone().map(|p| (*id, p)))
            .collect();
        let mut out = BTreeMap::new();
        for (id, pool) in notices {
            if self.registry.get(&id)?.is_some() {
                *out.entry(pool).or_insert(0) += 1;
            }
        }
        Ok(out)
    }

    /// The `n` longest-idle `Ready` workers of `pool`, longest idle first: the scale-in
    /// candidates, read only when the plan retires some. Walks the registry's ready index from
    /// the longest idle end ([`WorkerRegistry::longest_idle`]), doubling the window until `n`
    /// of the pool's workers are found or the ready workers run out: O(k log fleet) for the
    /// `k` ready workers idle longer than the chosen ones (at worst every ready worker), never
    /// a scan of the fleet. A pool-filtered index walk would need a new registry method.
    ///
    /// [`WorkerRegistry::longest_idle`]: crate::WorkerRegistry::longest_idle
    fn longest_idle_of(&self, pool: &str, n: usize) -> Result<Vec<Worker>> {
        let mut window = n.saturating_mul(4).max(16);
        loop {
            let idle = self.registry.longest_idle(window)?;
            let exhausted = idle.len() < window;
            let mine: Vec<Worker> = idle
                .into_iter()
                .filter(|w| w.spec.labels.get(POOL_LABEL).map(String::as_str) == Some(pool))
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
        Some(match entry.last_failure {
            Some(ProviderErrorKind::NoCapacity) => PoolBlock::NoCapacity {
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
    pub(super) fn scale_tick(&self, demand: &Demand, budget: &mut Budget, report: &mut TickReport) {
        let now = report.at;
        let running = self.interruptions_due(now, budget, report);
        if let Err(e) = demand.validate() {
            report.decisions.push(format!("demand refused: {e}"));
            return;
        }
        if self.pools.lock().is_empty() {
            self.target_tick(demand, budget, report);
            return;
        }
        let (plan, mut chosen, states) = match self.plan_pools_inner(demand, &running) {
            Ok(planned) => planned,
            Err(e) => {
                report.decisions.push(format!("pool plan failed: {e}"));
                return;
            }
        };
        self.store_pool_gauges(&plan, states);
        for d in &plan.pools {
            let candidates = chosen.remove(&d.pool).unwrap_or_default();
            self.execute_pool(d, &candidates, now, budget, report);
        }
        let mut lines = plan.explanation.clone();
        lines.append(&mut report.decisions);
        report.decisions = lines;
        report.unschedulable = plan.unschedulable.clone();
        report.pools = Some(plan);
    }

    fn execute_pool(
        &self,
        d: &super::super::pools::PoolDecision,
        candidates: &[Worker],
        now: Timestamp,
        budget: &mut Budget,
        report: &mut TickReport,
    ) {
        let Some(entry) = self.pools.lock().entries.get(&d.pool).cloned() else {
            return; // removed meanwhile
        };
        let provider_id = entry.pool.provider_id.clone();
        let mut provisioned = 0;
        for _ in 0..d.provision {
            if !budget.take() {
                break;
            }
            self.with_pool(&d.pool, |e| e.in_flight += 1);
            let result = self.provision_inner(&provider_id, Arc::clone(&entry.spec));
            self.with_pool(&d.pool, |e| e.in_flight = e.in_flight.saturating_sub(1));
            match result {
                Ok(w) => {
                    provisioned += 1;
                    self.with_pool(&d.pool, |e| e.last_failure = None);
                    report.provisioned.push(ProvisionedWorker {
                        worker_id: w.id,
                        provider_id: provider_id.clone(),
                        resource_id: w.handle.resource_id.clone(),
                    });
                }
                Err((e, failure)) => {
                    match failure {
                        Some(f) => {
                            self.with_pool(&d.pool, |e| e.last_failure = Some(f.kind));
                            report.decisions.push(format!(
                                "pool {}: provider {} failed to create a worker ({} in a row, {}): \
                                 {}; backing off until {} (its demand goes to the next pool)",
                                d.pool,
                                f.provider_id,
                                f.consecutive_failures,
                                f.kind,
                                f.error,
                                f.backoff_until
                            ));
                            report.provision_failures.push(f);
                        }
                        None => report
                            .decisions
                            .push(format!("pool {}: provisioning stopped: {e}", d.pool)),
                    }
                    break;
                }
            }
        }
        if provisioned > 0 {
            self.with_pool(&d.pool, |e| {
                e.last_scale_up = Some(now);
                e.last_scale_action = Some(now);
            });
        }
        let mut retired = Vec::new();
        let mut cleanup = CleanupResult::default();
        for w in candidates {
            if !budget.take() {
                break;
            }
            // Only a worker still idle since it was planned is retired: `retire` checks that
            // atomically (claimed, or claimed and released meanwhile, it is left alone).
            if self.retire(w, TerminationReason::ScaledDown, now, &mut cleanup) {
                retired.push(w.id);
            }
        }
        if !retired.is_empty() {
            self.with_pool(&d.pool, |e| e.last_scale_action = Some(now));
            let destroyed = self.destroy_due(Some(&retired), budget);
            report.terminated.extend(destroyed.terminated);
            report.failed.extend(destroyed.failed);
            report.drained.extend(cleanup.drained);
        }
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

    fn with_pool(&self, name: &str, f: impl FnOnce(&mut PoolEntry)) {
        if let Some(e) = self.pools.lock().entries.get_mut(name) {
            f(e);
        }
    }

    /// The single-target path (`set_scaling_target`), which `tick(pending)` has always taken:
    /// the jobs the target's spec satisfies are its pending jobs; the others are unschedulable.
    fn target_tick(&self, demand: &Demand, budget: &mut Budget, report: &mut TickReport) {
        let Some(target) = self.target.lock().clone() else {
            return;
        };
        // The target seen as a pool, only to match requirements against its spec.
        let as_pool = Pool {
            name: "scaling-target".to_owned(),
            provider_id: target.provider_id.clone(),
            template: Arc::clone(&target.spec),
            min_ready: 0,
            max_workers: usize::MAX,
            priority: 0,
            scale_up_cooldown: self.config.scale_up_cooldown,
            scale_down_cooldown: self.config.scale_down_cooldown,
        };
        let mut pending = 0usize;
        for (i, r) in demand.requirements.iter().enumerate() {
            if r.count == 0 {
                continue;
            }
            if as_pool.satisfies(r) {
                pending = pending.saturating_add(r.count);
            } else {
                let unschedulable = plan(&PlanInputs {
                    now: report.at,
                    pools: std::slice::from_ref(&as_pool),
                    fleet: &[PoolFleet::default()],
                    demand: &Demand::from(r.clone()),
                    max_workers: 0,
                    total: 0,
                    max_per_tick: 0,
                })
                .unschedulable;
                for mut u in unschedulable {
                    u.requirement = i;
                    u.reason = u
                        .reason
                        .replace("no pool offers", "the scaling target's spec does not offer");
                    report.decisions.push(format!(
                        "unschedulable: {} job(s) needing {}: {}",
                        u.count, u.description, u.reason
                    ));
                    report.unschedulable.push(u);
                }
            }
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
