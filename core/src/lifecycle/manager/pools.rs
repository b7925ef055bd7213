//! Pools and demand on the manager (DESIGN.md §12): the pool set (`set_pools` / `add_pool` /
//! `remove_pool`, a removed pool's workers drain). The scaling step of `tick` for a
//! [`Demand`](super::super::pools::Demand) is in `pool_tick`, interruption notices in
//! `interruptions`.
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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::Timestamp;
use crate::error::{quote_input, Error, Result};
use crate::filter::WorkerFilter;
use crate::ids::{ProviderId, WorkerId};
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker, WorkerSpec};

use super::super::pools::{Pool, Requirement, POOL_LABEL};
use super::super::report::TickReport;
use super::destroy_queue::{Destroyed, Destroys};
use super::pool_tick::replacement;
use super::{Budget, WorkerLifecycleManager};

/// What pool `pool`'s template asks of a worker it takes as its own (its labels,
/// capabilities, architecture and at least its resources: [`WorkerFilter::matches_spec`]), a
/// job of the template being able to claim it. A worker of the pool that it does not take (of
/// an old template) leaves as from a removed pool.
pub(super) fn template_needs(pool: &Pool) -> WorkerFilter {
    replacement(pool, 1).filter()
}

/// The manager's pools and the interruption notices it is acting on.
#[derive(Debug, Default)]
pub(super) struct PoolSet {
    pub(super) entries: BTreeMap<String, PoolEntry>,
    pub(super) interruptions: BTreeMap<WorkerId, Interruption>,
    /// Pools whose workers no longer belong to them but are not all drained: removed or
    /// reshaped by a call on a replica that does not lead, or left by a drain that a registry
    /// error, a lost lease or a tick's action cap cut short. The leader's ticks drain them (so
    /// does the leader's next `set_pools`, or `remove_pool` of the name).
    pub(super) undrained: BTreeSet<String>,
    /// Pools whose drain a call or a tick has taken and is running (how many drains of each):
    /// a name goes in with the lock hold that takes it out of `entries` or `undrained`, and
    /// leaves with the one that puts it back in `undrained` if its drain was cut short, so
    /// that `remove_pool` always finds a pool being drained in one of the three.
    pub(super) draining: BTreeMap<String, usize>,
    /// The names of the pools this replica removed (`set_pools` leaving them out,
    /// `remove_pool`) and has not set again: a provision of such a pool's spec that starts
    /// after the removal (a host that read `pools()` just before it) is drained as one in
    /// flight at the removal is (`Ticket::note_if_pool_removed`). As many as the names a host
    /// ever removed: a few.
    pub(super) removed: BTreeSet<String>,
    /// When the scale-down cooldowns last restarted (a takeover, or a tick of a leader whose
    /// takeover is incomplete): a pool added since starts its own from there, as if it had
    /// been known at the takeover.
    pub(super) cooldowns_restarted_at: Option<Timestamp>,
}

impl PoolSet {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Notes that a drain of each of `names` starts (under the lock that took them).
    fn start_draining<'a>(&mut self, names: impl IntoIterator<Item = &'a String>) {
        for name in names {
            *self.draining.entry(name.clone()).or_insert(0) += 1;
        }
    }

    /// Notes that the drains of `names` are over.
    fn stop_draining<'a>(&mut self, names: impl IntoIterator<Item = &'a String>) {
        for name in names {
            if let Some(n) = self.draining.get_mut(name) {
                *n -= 1;
                if *n == 0 {
                    self.draining.remove(name);
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct PoolEntry {
    pub(super) pool: Pool,
    /// The template plus the pool label: what is provisioned.
    pub(super) spec: Arc<WorkerSpec>,
    pub(super) last_scale_up: Option<Timestamp>,
    pub(super) last_scale_action: Option<Timestamp>,
}

impl PoolEntry {
    /// A pool new to this manager. Its scale-down cooldown runs from the last takeover
    /// (`restarted_at`), if any: the old leader's decisions about its workers are no better
    /// known to this replica for a pool its host sets a moment after the takeover (a rolling
    /// deploy) than for one it knew at it.
    fn new(pool: Pool, restarted_at: Option<Timestamp>) -> Self {
        PoolEntry {
            spec: pool.worker_spec(),
            pool,
            last_scale_up: None,
            last_scale_action: restarted_at,
        }
    }
}

/// Puts the pools a [`drain_pools`](WorkerLifecycleManager::drain_pools) took back into
/// `undrained`, and ends their `draining` mark, when the drain unwinds (a host's registry that
/// panics; a tick catches it and the manager goes on): otherwise no tick would drain them
/// again (a worker of a removed pool left taking jobs), and `remove_pool` of a name would
/// answer for ever that a drain is running. All of them go back, the drained ones too: a
/// drain finds nothing left of those. (No registry call here: a second panic while unwinding
/// would abort the process.)
struct DrainsOnUnwind<'a> {
    pools: &'a Mutex<PoolSet>,
    names: &'a BTreeSet<String>,
}

impl Drop for DrainsOnUnwind<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut set = self.pools.lock();
        set.undrained.extend(self.names.iter().cloned());
        set.stop_draining(self.names);
    }
}

/// What draining pools did (`drain_pools`).
#[derive(Debug, Default)]
pub(super) struct PoolDrains {
    /// Every worker taken out of service: drained, or terminated while still starting.
    pub(super) out: Vec<WorkerId>,
    /// Those moved to `Draining`.
    pub(super) drained: Vec<WorkerId>,
    /// The destroys of those terminated while starting.
    pub(super) destroyed: Destroyed,
    /// Per pool whose workers were not all drained, the error.
    pub(super) failed: Vec<(String, Error)>,
    /// The pools left for the leader's next ticks (in `undrained`): those of `failed`, and
    /// every pool after a lost lease or an exhausted budget.
    pub(super) left: Vec<String>,
    /// The budget ran out.
    pub(super) capped: bool,
    /// Per pool, how many of its workers were taken out of service (pools with none left
    /// out).
    pub(super) per_pool: Vec<(String, usize)>,
}

#[derive(Debug, Clone)]
pub(super) struct Interruption {
    pub(super) deadline: Timestamp,
    /// The pool the worker belonged to, if any (its template is the replacement's requirement).
    pub(super) pool: Option<String>,
    /// Its provider: a worker of no pool is replaced by the scaling target on that provider.
    pub(super) provider_id: ProviderId,
    /// What the worker offered (its spec without the pool label; count 0): the replacement's
    /// requirement in a pools tick when none of the manager's pools owns the worker (its
    /// pool removed, or no pool).
    pub(super) offered: Requirement,
}

impl WorkerLifecycleManager {
    // ----- the pool set ----------------------------------------------------------------------

    /// Replaces the pools. Pools with a name already known keep their cooldown clocks; pools no
    /// longer listed are removed as by [`remove_pool`](Self::remove_pool) (their workers drain).
    /// A pool listed again with another template keeps the workers made from the old one that
    /// a job of the new one could claim (its labels, capabilities, architecture and at least
    /// its resources: an image change keeps them all); the others drain as from a removed pool
    /// (they would count as the pool's capacity for demand they cannot take). The returned ids
    /// are every worker taken out of service. While any pool is set, `tick` scales the pools
    /// and ignores the scaling target.
    ///
    /// On a replicated manager the pools are each replica's own configuration (every replica's
    /// host sets them), but draining is leader work: **a follower drains nothing** — it sets
    /// the pools and returns no id; the replica that leads drains. The pools it removed or
    /// reshaped are remembered, and its ticks drain them once it leads. On the leader each
    /// drain is a fenced leader write.
    ///
    /// A tick running meanwhile makes each of its provisions from the pool as it is then, and
    /// none that a requirement was planned for against the old template when the new one no
    /// longer satisfies it (its decisions say so; the next plan counts the requirement against
    /// the new template). A create already in flight is not cancelled: its worker registers,
    /// and is drained if the new template does not take it (or its pool is gone), whoever
    /// asked for it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an invalid pool ([`Pool::validate`]) or two pools with
    /// one name; [`Error::ProviderNotFound`] when a pool's provider is not registered. Nothing
    /// changes on those errors.
    ///
    /// A registry error while listing a pool's workers or draining one of them (a shared
    /// database gone away): the pools are set all the same, the other workers are drained, and
    /// the error (of the registry's kind) names the workers taken out of service and the pools
    /// whose workers were not all; the leader's next ticks drain those (so does the next
    /// `set_pools`, or `remove_pool` of such a pool's name). [`Error::NotLeader`] when the
    /// lease was lost midway: the pools are set, the drain stops there, the error names the
    /// workers taken out of service and the pools left, which this replica's ticks drain once
    /// it leads again.
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
        let mut names = BTreeSet::new();
        for pool in &pools {
            self.check_pool(pool)?;
            if !names.insert(pool.name.clone()) {
                return Err(Error::invalid(format!("two pools are named {}", pool.name)));
            }
        }
        // Taken before the pools' lock (the lease's lock is never taken under it). A replica
        // that becomes leader right after this look drains at its first tick as leader; one
        // that loses the lease right after it stops at the first fenced drain.
        let leading = self.fence().is_ok();
        // Pools listed again whose template now asks more of a worker: their workers made from
        // the old one are checked against the new one when drained.
        let to_drain: BTreeSet<String> = {
            let mut set = self.pools.lock();
            let mut to_drain = set
                .entries
                .keys()
                .filter(|n| !names.contains(*n))
                .cloned()
                .collect::<BTreeSet<_>>();
            let mut gauges = self.pool_gauges.lock();
            for name in &to_drain {
                set.entries.remove(name);
                gauges.remove(name);
            }
            set.removed.extend(to_drain.iter().cloned());
            for pool in pools {
                set.removed.remove(&pool.name);
                match set.entries.get_mut(&pool.name) {
                    Some(entry) => {
                        let spec = pool.worker_spec();
                        if spec != entry.spec {
                            to_drain.insert(pool.name.clone());
                        }
                        entry.spec = spec;
                        entry.pool = pool;
                    }
                    None => {
                        let entry = PoolEntry::new(pool, set.cooldowns_restarted_at);
                        set.entries.insert(entry.pool.name.clone(), entry);
                    }
                }
            }
            // Their creates in flight, whoever asked for them, are registered after the drain
            // below looked for the pools' workers: each puts its pool back into `undrained`
            // when it ends. (Lock order: the pools', then the ledger's.)
            let mut ledger = self.ledger.lock();
            for name in &to_drain {
                ledger.pool_changed(name);
            }
            drop(ledger);
            if !leading {
                // Draining is leader work: the replica that leads drains (this one, at its
                // ticks, once it does).
                set.undrained.extend(to_drain);
                return Ok(Vec::new());
            }
            // Left by an earlier call or tick: drained as from a removed pool, or, for a pool
            // listed now, those its template does not take.
            to_drain.extend(std::mem::take(&mut set.undrained));
            set.start_draining(&to_drain);
            to_drain
        };
        let mut drains = PoolDrains::default();
        self.drain_pools(to_drain, &mut Budget::unlimited(), &mut drains);
        self.drains_failed(drains, "set_pools set the pools")
    }

    /// Drains the pools named `names`, in order, each as [`drain_left`](Self::drain_left):
    /// what the pool's current template (if any) does not take. A pool whose drain an error
    /// cut short, and every pool after a lost lease or an exhausted `budget`, goes back into
    /// `undrained`, where the leader's ticks find it. The caller noted the names in
    /// `draining` (`start_draining`) with the lock hold that took them; they leave it here,
    /// in the hold that puts those left back into `undrained`. What it does is written into
    /// `out` as it goes.
    fn drain_pools(&self, names: BTreeSet<String>, budget: &mut Budget, out: &mut PoolDrains) {
        let _unwinding = DrainsOnUnwind {
            pools: &self.pools,
            names: &names,
        };
        let mut stopped = false;
        for name in names.iter().cloned() {
            if stopped {
                out.left.push(name);
                continue;
            }
            let before = out.out.len();
            let error = self.drain_left(&name, budget, out);
            if out.out.len() > before {
                out.per_pool.push((name.clone(), out.out.len() - before));
            }
            match error {
                Some(e) => {
                    // A lost lease ends the drain: the rest is the next leader's tick's.
                    stopped = matches!(e, Error::NotLeader(_));
                    out.left.push(name.clone());
                    out.failed.push((name, e));
                }
                None if out.capped => {
                    stopped = true;
                    out.left.push(name);
                }
                None => {}
            }
        }
        let mut set = self.pools.lock();
        set.undrained.extend(out.left.iter().cloned());
        set.stop_draining(&names);
    }

    /// Drains the workers of pool `name` that no longer belong to it: all of them when no pool
    /// has the name, those its template does not take otherwise. Returns the first error that
    /// left one in service.
    fn drain_left(&self, name: &str, budget: &mut Budget, out: &mut PoolDrains) -> Option<Error> {
        let pool = self.pools.lock().entries.get(name).map(|e| e.pool.clone());
        match pool {
            None => self.drain_pool(name, |_| true, budget, out),
            Some(pool) => {
                // The plan counts a pool's idle and starting workers as capacity for whatever
                // its template satisfies; a worker made from an old template that a job of the
                // current one could not claim (a label, capability, architecture or resource
                // it lacks) would be counted as serving demand it can never take, and nothing
                // would be provisioned for it. Such workers leave as from a removed pool.
                let needs = template_needs(&pool);
                self.drain_pool(name, |w| !needs.matches_spec(&w.spec), budget, out)
            }
        }
    }

    /// The answer of a call that drained pools: the workers taken out of service, or, when
    /// some pools' workers were not all drained, an error saying what the call did — `done`,
    /// the workers taken out of service — and which pools are left (remembered in
    /// `undrained`, drained by the leader's ticks). The error is `NotLeader` when the lease
    /// was lost midway, otherwise the first registry error (its kind kept).
    fn drains_failed(&self, drains: PoolDrains, done: &str) -> Result<Vec<WorkerId>> {
        let lost = drains
            .failed
            .iter()
            .find(|(_, e)| matches!(e, Error::NotLeader(_)));
        let Some((_, first)) = lost.or(drains.failed.first()) else {
            return Ok(drains.out);
        };
        let names: Vec<String> = drains.left.iter().map(|n| format!("{n:?}")).collect();
        let ids: Vec<String> = drains.out.iter().map(WorkerId::to_string).collect();
        let why = if lost.is_some() {
            "(this replica lost the lease: it drains them at its ticks once it leads again)"
        } else {
            "(the registry failed): the leader's next ticks drain them (so does the next \
             set_pools, or remove_pool of the name)"
        };
        let note = format!(
            "{done} and took {} worker(s) out of service [{}], but did not drain every worker \
             of pool(s) {} {why}",
            drains.out.len(),
            ids.join(", "),
            names.join(", ")
        );
        Err(noted(first.clone(), &note))
    }

    /// `tick`'s drain of the pools left in `undrained` (by a call on a follower, a lost lease,
    /// a registry error): a replica that becomes leader drains what its configuration
    /// removed, and a drain that failed is retried without waiting for the host's next
    /// `set_pools`. One lock and an emptiness check when there are none. What it does is
    /// written into `drains` as it goes (outside a panic's unwind: see `tick_with`), and
    /// said in `report`.
    pub(super) fn drain_undrained(
        &self,
        budget: &mut Budget,
        report: &mut TickReport,
        drains: &mut PoolDrains,
    ) {
        let names = {
            let mut set = self.pools.lock();
            if set.undrained.is_empty() {
                return;
            }
            let names = std::mem::take(&mut set.undrained);
            set.start_draining(&names);
            names
        };
        self.drain_pools(names, budget, drains);
        for (name, n) in &drains.per_pool {
            report.decisions.push(format!(
                "pool {name:?} removed, or its template changed, with its workers not all \
                 drained: {n} worker(s) taken out of service"
            ));
        }
        for (name, e) in &drains.failed {
            report.decisions.push(format!(
                "pool {name:?}: draining its workers failed: {e}; retried by the next tick"
            ));
        }
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
        set.removed.remove(&pool.name);
        let entry = PoolEntry::new(pool, set.cooldowns_restarted_at);
        set.entries.insert(entry.pool.name.clone(), entry);
        Ok(())
    }

    /// Removes a pool: nothing more is provisioned for it, and its workers drain — idle ones
    /// are retired by the next cleanup, busy ones finish their job first, starting ones are
    /// terminated (they hold no job; one that reports in meanwhile is drained instead).
    /// Returns the workers taken out of service. On a replicated manager, a follower drains
    /// nothing (it removes the pool from its configuration and returns no id): the replica
    /// that leads drains, this one at its ticks once it leads (see
    /// [`set_pools`](Self::set_pools)).
    ///
    /// A create of the pool's spec still in flight (the pool's own tick's, or the host's own
    /// [`provision_worker`](Self::provision_worker) of a spec with its label) registers its
    /// worker after this call looked for the pool's workers: the leader's next tick takes it
    /// out of service (drained; terminated if still starting), whoever started it. Likewise
    /// for a pool that [`set_pools`](Self::set_pools) reshapes, for a worker its new template
    /// does not take.
    ///
    /// The name of a pool removed earlier whose workers are not all drained yet (see
    /// `set_pools`'s errors) is accepted: its workers are drained now. If a tick (or another
    /// call) is draining them at that very moment, the answer is `Ok` with no id: that drain
    /// reports them.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when no pool has that name (nor is any left to drain under
    /// it); a registry error listing or draining the pool's workers: the pool is removed all
    /// the same, the error names the workers taken out of service, and the leader's next
    /// ticks drain the others (so does calling `remove_pool` with its name again, or the next
    /// `set_pools`); [`Error::NotLeader`] when the lease was lost midway (the rest is drained
    /// by this replica's ticks once it leads again).
    pub fn remove_pool(&self, name: &str) -> Result<Vec<WorkerId>> {
        let leading = self.fence().is_ok();
        {
            let mut set = self.pools.lock();
            let removed = set.entries.remove(name).is_some();
            if removed {
                set.removed.insert(name.to_owned());
            }
            if !removed && !set.undrained.contains(name) {
                if set.draining.contains_key(name) {
                    // A pool removed earlier whose workers a tick (or another call) is
                    // draining right now: that drain reports them, and puts the name back
                    // in `undrained` if it is cut short.
                    return Ok(Vec::new());
                }
                return Err(Error::invalid(format!(
                    "no pool named {}",
                    quote_input(name)
                )));
            }
            self.pool_gauges.lock().remove(name);
            // Its creates in flight, whoever asked for them, are registered after the drain
            // below: each puts the pool back into `undrained` when it ends. (Lock order: the
            // pools', then the ledger's.)
            self.ledger.lock().pool_changed(name);
            if !leading {
                // Draining is leader work: the replica that leads drains.
                set.undrained.insert(name.to_owned());
                return Ok(Vec::new());
            }
            set.undrained.remove(name);
            set.start_draining([&name.to_owned()]);
        }
        let mut drains = PoolDrains::default();
        let names = BTreeSet::from([name.to_owned()]);
        self.drain_pools(names, &mut Budget::unlimited(), &mut drains);
        self.drains_failed(drains, "remove_pool removed the pool")
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

    /// Takes the workers of pool `name` that `leaves` picks out of service: idle and busy ones
    /// drain, starting ones are terminated — each a leader write, fenced. Adds those taken out
    /// of service to `out`; returns the first registry error that left one in service (or kept
    /// the pool's workers from being listed), if any: the others are drained all the same,
    /// unless the lease was lost (`NotLeader`: nothing more is drained) or `budget` ran out
    /// (`out.capped`). A worker that moved on meanwhile (left, or on its way out) is no error.
    fn drain_pool(
        &self,
        name: &str,
        leaves: impl Fn(&Worker) -> bool,
        budget: &mut Budget,
        out: &mut PoolDrains,
    ) -> Option<Error> {
        let workers = match self
            .registry
            .find(&WorkerFilter::new().label(POOL_LABEL, name))
        {
            Ok(workers) => workers,
            Err(e) => return Some(e),
        };
        let mut error = None;
        for w in workers.into_iter().filter(|w| leaves(w)) {
            if !matches!(
                w.state,
                WorkerState::Ready
                    | WorkerState::Busy
                    | WorkerState::Creating
                    | WorkerState::Connecting
            ) {
                continue;
            }
            // Fenced before the action is taken (each move is fenced by `write` too): a worker
            // left for the lost lease is no action of the tick's.
            if let Err(e) = self.fence() {
                error = Some(e);
                break;
            }
            if !budget.take() {
                out.capped = true;
                break;
            }
            // A drain applied whose reply was lost counts as applied (the record is looked at).
            let drain = || {
                let answer = self.write(|r| r.update_state(&w.id, WorkerState::Draining));
                self.drain_looked_at(&w.id, answer)
            };
            let taken = match w.state {
                // Terminated if it still has not reported in (it holds no job); drained like
                // the others if it did meanwhile (a job it took since finishes first).
                WorkerState::Creating | WorkerState::Connecting => {
                    let destroyed = out.destroyed.destroys();
                    match self.retire_if_starting(
                        &w,
                        TerminationReason::ScaledDown,
                        budget,
                        destroyed,
                    ) {
                        Ok(Some(_)) => Ok(false),
                        Ok(None) => drain().map(|_| true),
                        Err(e) => Err(e),
                    }
                }
                _ => drain().map(|_| true),
            };
            match taken {
                Ok(drained) => {
                    out.out.push(w.id);
                    if drained {
                        out.drained.push(w.id);
                    }
                }
                Err(Error::NotFound(_) | Error::InvalidTransition { .. }) => {}
                Err(e @ Error::NotLeader(_)) => {
                    // The lease is lost: nothing more is drained, and that is what the
                    // caller is told (the pool stays left all the same).
                    error = Some(e);
                    break;
                }
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        error
    }

    pub(super) fn with_pool(&self, name: &str, f: impl FnOnce(&mut PoolEntry)) {
        if let Some(e) = self.pools.lock().entries.get_mut(name) {
            f(e);
        }
    }
}

/// `e` with `note` added to its message, of the same kind (a kind without a message is kept as
/// it is).
fn noted(e: Error, note: &str) -> Error {
    match e {
        Error::Backend(m) => Error::Backend(format!("{m}; {note}")),
        Error::NotLeader(m) => Error::NotLeader(format!("{m}; {note}")),
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{m}; {note}")),
        Error::CapacityExceeded(m) => Error::CapacityExceeded(format!("{m}; {note}")),
        Error::Snapshot(m) => Error::Snapshot(format!("{m}; {note}")),
        Error::Provider {
            provider_id,
            message,
        } => Error::Provider {
            provider_id,
            message: format!("{message}; {note}"),
        },
        other => other,
    }
}
