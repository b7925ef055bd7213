//! The managers of a run: one (always leading) or several replicas on one lease, with the
//! leader's faults — pauses and crashes, between ticks or inside a provider call or a write.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::{InMemoryLease, Leadership, ReconcileReport, Term, WorkerLifecycleManager};
use crate::sim::replica::{Armed, Process, ReplicaProvider, ReplicaRegistry, ReplicaWorld};
use crate::sim::scenario::{FaultPoint, Replication, ARMED_FOR_SECS};

use super::*;

/// What the manager scales: one provider's spec, or pools.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Single(ProviderId, Arc<WorkerSpec>),
    Pools(Vec<Pool>),
}

/// Everything a manager of the run is built from (again for every fresh replica process).
pub(super) struct ManagerSetup {
    pub registry: Arc<dyn WorkerRegistry>,
    pub config: WorkerLifecycleConfig,
    pub providers: Vec<(ProviderId, Arc<Mutex<Cloud>>)>,
    pub target: Target,
    pub seed: u64,
}

type ProviderHook = Box<dyn FnOnce(Arc<dyn WorkerProvider>) -> Arc<dyn WorkerProvider>>;

/// One manager slot: the process running in it now (a crashed one until its restart) and
/// its manager.
pub(super) struct Slot {
    pub process: Arc<Process>,
    /// The process's manager. A crashed process's manager is never called again (and every
    /// call it would make fails); it is dropped when the fresh process replaces it.
    pub manager: Arc<WorkerLifecycleManager>,
    pub restart_at: Option<u64>,
    pub paused_until: Option<u64>,
    /// The term this process led under at its last leading tick.
    pub term: Option<Term>,
}

impl Slot {
    pub fn runs(&self) -> bool {
        self.process.alive() && !self.process.paused()
    }
}

/// A fault of the schedule and whether it struck.
#[derive(Debug, Clone, Copy)]
struct Scheduled {
    at_ms: u64,
    armed: Armed,
    done: bool,
}

/// The managers of a run.
pub(super) struct Replicas {
    setup: ManagerSetup,
    pub slots: Vec<Slot>,
    /// Present in replicated runs.
    pub world: Option<Arc<ReplicaWorld>>,
    spawned: u64,
    faults: Vec<Scheduled>,
    /// The fault waiting for a call: its index and when it was armed.
    armed: Option<(usize, u64)>,
    pub max_term: Term,
    pub leader_changes: u64,
    pub crashes: u64,
    pub pauses: u64,
    /// Fenced writes the store refused.
    pub refusals: u64,
    /// Broken on purpose ([`Hooks::split_brain`]): a lease per replica.
    split_brain: bool,
}

impl Replicas {
    /// The managers of a run: one plain manager, or `replication.replicas` replicas on an
    /// [`InMemoryLease`] on the registry's clock. `wrap_provider` wraps the first provider of
    /// the first manager.
    pub fn start(
        setup: ManagerSetup,
        replication: &Replication,
        clock: &Arc<ManualClock>,
        tick_ms: u64,
        wrap_provider: Option<ProviderHook>,
        split_brain: bool,
        no_store_fencing: bool,
    ) -> Result<Replicas> {
        let world = replication.enabled().then(|| {
            Arc::new(ReplicaWorld {
                store: clock.clone(),
                lease: InMemoryLease::new(
                    clock.clone(),
                    "sim",
                    Duration::from_secs_f64(replication.lease_ttl_secs),
                ),
                clouds: setup.providers.iter().map(|(_, c)| c.clone()).collect(),
                processes: Mutex::new(Vec::new()),
                log: Mutex::new(Default::default()),
                demand: Mutex::new(Demand::default()),
                tick_ms,
                // A lease per replica is no lease the store keeps.
                store_fencing: !no_store_fencing && !split_brain,
            })
        });
        let mut faults = Vec::new();
        for p in &replication.leader_pauses {
            faults.push(Scheduled {
                at_ms: secs_to_ms(p.start_secs),
                armed: Armed::Pause {
                    during: p.during,
                    pause_ms: secs_to_ms(p.pause_secs),
                    clock_missed: p.clock_missed,
                },
                done: false,
            });
        }
        for c in &replication.leader_crashes {
            faults.push(Scheduled {
                at_ms: secs_to_ms(c.at_secs),
                armed: Armed::Crash {
                    during: c.during,
                    restart_ms: secs_to_ms(c.restart_after_secs),
                },
                done: false,
            });
        }
        faults.sort_by_key(|f| f.at_ms);
        let mut replicas = Replicas {
            setup,
            slots: Vec::new(),
            world,
            spawned: 0,
            faults,
            armed: None,
            max_term: 0,
            leader_changes: 0,
            crashes: 0,
            pauses: 0,
            refusals: 0,
            split_brain,
        };
        let mut wrap = wrap_provider;
        for k in 0..replication.replicas {
            let slot = replicas.spawn(k, 0, wrap.take())?;
            replicas.slots.push(slot);
        }
        Ok(replicas)
    }

    fn replicated(&self) -> bool {
        self.world.is_some()
    }

    /// A fresh process in slot `k` (a new name: a restarted process does not inherit its
    /// predecessor's term).
    fn spawn(&mut self, k: usize, t: u64, wrap: Option<ProviderHook>) -> Result<Slot> {
        let s = &self.setup;
        let n = self.spawned;
        self.spawned += 1;
        let local = Arc::new(ManualClock::new(SIM_EPOCH_MS + t));
        let process = Arc::new(Process::new(format!("replica-{k}.{n}"), k, local.clone()));
        let manager = match &self.world {
            None => WorkerLifecycleManager::new(Arc::clone(&s.registry), s.config.clone())?,
            Some(world) => {
                let registry: Arc<dyn WorkerRegistry> = Arc::new(ReplicaRegistry {
                    inner: Arc::clone(&s.registry),
                    process: process.clone(),
                    world: world.clone(),
                    fence: None,
                });
                let lease = if self.split_brain {
                    InMemoryLease::new(world.store.clone(), process.name.clone(), world.lease.ttl())
                } else {
                    world.lease.replica(process.name.clone())
                };
                WorkerLifecycleManager::with_leadership(
                    registry,
                    s.config.clone(),
                    Arc::new(lease),
                    local,
                )?
            }
        };
        // Worker ids from the seed: a run is the same run, id for id (each process its own
        // stream; the single manager's is the one it always was).
        let key = if self.world.is_some() {
            crate::sim::rng::mix(s.seed, STREAM_WORKER_ID, n + 1)
        } else {
            s.seed
        };
        let mut made = 0u64;
        manager.set_worker_id_source(move || loop {
            let bytes = SimRng::keyed(key, STREAM_WORKER_ID, made).bytes16();
            made += 1;
            // A nil id is not a worker id; a seeded draw is nil with probability 2^-128.
            if let Ok(id) = WorkerId::from_bytes(bytes) {
                return id;
            }
        });
        let mut wrap = wrap;
        for (provider_id, cloud) in &s.providers {
            let mut provider: Arc<dyn WorkerProvider> =
                Arc::new(SimProvider::new(Arc::clone(cloud), provider_id.clone()));
            if let Some(world) = &self.world {
                provider = Arc::new(ReplicaProvider {
                    inner: provider,
                    process: process.clone(),
                    world: world.clone(),
                });
            }
            // The hook wraps the first provider (the only one of a single-target run).
            if let Some(w) = wrap.take() {
                provider = w(provider);
            }
            manager.register_provider(provider)?;
        }
        match &s.target {
            Target::Single(provider_id, spec) => {
                manager.set_scaling_target(provider_id, spec.clone())?;
            }
            Target::Pools(pools) => {
                manager.set_pools(pools.clone())?;
            }
        }
        let manager = Arc::new(manager);
        if let Some(world) = &self.world {
            process.set_manager(&manager);
            let mut processes = world.processes.lock();
            processes.retain(|p| p.slot != k);
            processes.push(process.clone());
            processes.sort_by_key(|p| p.slot);
        }
        Ok(Slot {
            process,
            manager,
            restart_at: None,
            paused_until: None,
            term: None,
        })
    }

    /// The manager that leads now (running, trusting its lease); the single manager always.
    pub fn acting(&self) -> Option<&Arc<WorkerLifecycleManager>> {
        if !self.replicated() {
            return self.slots.first().map(|s| &s.manager);
        }
        self.slots
            .iter()
            .find(|s| s.runs() && s.manager.is_leader())
            .map(|s| &s.manager)
    }

    /// The leader's manager, else the first running one, else the first slot's.
    pub fn any(&self) -> &WorkerLifecycleManager {
        self.acting()
            .or_else(|| self.slots.iter().find(|s| s.runs()).map(|s| &s.manager))
            .unwrap_or(&self.slots[0].manager)
    }

    /// Whether some process runs (serves the agents and the host).
    pub fn serving(&self) -> bool {
        self.slots.iter().any(Slot::runs)
    }

    fn live(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| s.process.alive())
    }

    /// Provisions in flight, over the live processes.
    pub fn in_flight(&self) -> usize {
        self.live()
            .map(|s| s.manager.stats().map(|m| m.in_flight).unwrap_or(0))
            .sum()
    }

    /// Workers queued for destruction (records, and orphan instances whose destroy is
    /// retried), over the live processes.
    pub fn pending_destroys(&self) -> HashSet<WorkerId> {
        self.live()
            .flat_map(|s| {
                let m = &s.manager;
                let records = m.pending_destroys().into_iter().map(|(id, _, _)| id);
                let orphans = m.pending_orphans().into_iter().map(|o| o.worker_id);
                records.chain(orphans).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Workers under an interruption notice, over the live processes.
    pub fn interruptions(&self) -> HashSet<WorkerId> {
        self.live()
            .flat_map(|s| s.manager.interruptions())
            .map(|(id, _)| id)
            .collect()
    }

    /// The true time (ms since the run began) the processes' clocks reached: ahead of the
    /// loop's after a pause inside a call let the world go on.
    pub fn true_ms(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.process.local.now().saturating_sub(SIM_EPOCH_MS))
            .max()
            .unwrap_or(0)
    }

    /// Every process's clock to `t` (they never stall with the registry's).
    pub fn set_time(&self, t: u64) {
        for s in &self.slots {
            s.process.local.set(SIM_EPOCH_MS + t);
        }
    }

    fn holder_slot(&self) -> Option<usize> {
        self.world.as_ref()?.holder().map(|p| p.slot)
    }

    /// The schedule at `t`: restarts, the end of pauses, and the faults that are due.
    pub fn faults(&mut self, t: u64) -> Result<()> {
        let Some(world) = self.world.clone() else {
            return Ok(());
        };
        for k in 0..self.slots.len() {
            if self.slots[k].restart_at.is_some_and(|at| t >= at) {
                self.slots[k] = self.spawn(k, t, None)?;
            }
            if self.slots[k].paused_until.is_some_and(|at| t >= at) {
                self.slots[k].paused_until = None;
                self.slots[k].process.set_paused(false);
            }
        }
        // An armed fault that found no call in time strikes between ticks.
        if let Some((i, since)) = self.armed {
            let struck = world.log.lock().armed.is_none();
            if struck {
                self.armed = None;
            } else if t >= since + secs_to_ms(ARMED_FOR_SECS) {
                world.log.lock().armed = None;
                self.armed = None;
                self.strike(i, t);
            }
        }
        for i in 0..self.faults.len() {
            let f = self.faults[i];
            if f.done || t < f.at_ms || self.armed.is_some() {
                continue;
            }
            let during = match f.armed {
                Armed::Crash { during, .. } | Armed::Pause { during, .. } => during,
            };
            if during == FaultPoint::BetweenTicks {
                if self.strike(i, t) {
                    self.faults[i].done = true;
                }
            } else {
                world.log.lock().armed = Some(f.armed);
                self.armed = Some((i, t));
                self.faults[i].done = true;
            }
        }
        Ok(())
    }

    /// Fault `i` strikes the leader now, between ticks; `false` when nobody leads.
    fn strike(&mut self, i: usize, t: u64) -> bool {
        let Some(k) = self.holder_slot() else {
            return false;
        };
        let slot = &mut self.slots[k];
        match self.faults[i].armed {
            Armed::Crash { restart_ms, .. } => {
                slot.process.kill();
                slot.restart_at = Some(t + restart_ms);
                self.crashes += 1;
            }
            Armed::Pause { pause_ms, .. } => {
                slot.process.set_paused(true);
                slot.paused_until = Some(t + pause_ms);
                self.pauses += 1;
            }
        }
        true
    }

    /// Every running manager ticks (in slot order); returns the reports, those of the
    /// replicas that ticked while another was paused inside a call included.
    pub fn tick(&mut self, demand: Demand, t: u64) -> Vec<(usize, TickReport)> {
        let Some(world) = self.world.clone() else {
            return vec![(0, self.slots[0].manager.tick(demand))];
        };
        *world.demand.lock() = demand.clone();
        let mut reports = Vec::new();
        for k in 0..self.slots.len() {
            if !self.slots[k].runs() {
                continue;
            }
            let manager = self.slots[k].manager.clone();
            let report = manager.tick(demand.clone());
            self.drain(t, &mut reports);
            reports.push((k, report));
        }
        reports
    }

    /// The host's periodic reconcile, by the leader; with the reports of the replicas that
    /// ticked meanwhile (a pause inside one of its calls).
    pub fn reconcile(&mut self, t: u64) -> (Option<ReconcileReport>, Vec<(usize, TickReport)>) {
        let Some(manager) = self.acting().cloned() else {
            return (None, Vec::new());
        };
        let result = manager.reconcile().ok();
        let mut reports = Vec::new();
        self.drain(t, &mut reports);
        (result, reports)
    }

    /// What happened inside the calls of the last operation: nested reports, crashes, pauses.
    fn drain(&mut self, t: u64, reports: &mut Vec<(usize, TickReport)>) {
        let Some(world) = self.world.clone() else {
            return;
        };
        let mut log = world.log.lock();
        reports.append(&mut log.nested);
        for (slot, restart_ms) in std::mem::take(&mut log.crashed) {
            self.slots[slot].restart_at = Some(t + restart_ms);
            self.crashes += 1;
        }
        self.pauses += std::mem::take(&mut log.pauses);
        self.refusals += std::mem::take(&mut log.refusals);
        drop(log);
        world.check_one_leader();
    }

    /// What the calls of this step saw, for the checker.
    pub fn take_notes(&self) -> Vec<(Rule, String)> {
        match &self.world {
            Some(w) => std::mem::take(&mut w.log.lock().notes),
            None => Vec::new(),
        }
    }

    /// Called with every tick report: a new term held by the slot's process is a takeover
    /// (the first value: the takeover granted the fleet a grace at `report.at`, even when the
    /// tick then lost its trust window and reports `leading == false`); a leading tick under a
    /// term smaller than one seen before is a violation (the second).
    pub fn observe(&mut self, slot: usize, report: &TickReport) -> (bool, Option<String>) {
        let Some(leader) = &report.leader else {
            return (false, None);
        };
        if !self.replicated() || leader.holder != self.slots[slot].process.name {
            return (false, None);
        }
        let term = leader.term;
        let mut problem = None;
        if report.leading && term < self.max_term {
            problem = Some(format!(
                "replica {} leads under term {term} after term {} was granted",
                leader.holder, self.max_term
            ));
        }
        self.max_term = self.max_term.max(term);
        let took_over = self.slots[slot].term != Some(term);
        if took_over {
            self.slots[slot].term = Some(term);
            self.leader_changes += 1;
        }
        (took_over, problem)
    }

    /// Whether every slot runs a live process (no restart pending).
    pub fn all_running(&self) -> bool {
        self.slots
            .iter()
            .all(|s| s.process.alive() && s.restart_at.is_none())
    }
}
