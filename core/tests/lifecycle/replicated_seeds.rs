//! Seeded runs of two replicated managers on one registry (an in-memory lease, manual clocks):
//! random ticks of either replica, time passing, a replica "pausing" (not ticking while time
//! passes), crashing (replaced by a fresh process with a new name), stepping down, workers
//! reporting in, taking and finishing jobs, going silent, destroys failing. Checked at every
//! step:
//! - no provider call (create, destroy, list) is made by a replica that does not lead (the
//!   provider asks the calling manager);
//! - at most one replica leads at any moment, and the terms seen never go backwards;
//! - no instance is destroyed twice;
//! - at the end, after the leader settles the fleet: every instance has a record and every
//!   record an instance, nothing is left `Terminating`.
//!
//! A failure prints its seed; `HW_REPLICATED_SEED=n` replays one seed.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::common::*;
use crate::rng::Rng;
use hodei_workers::*;
use parking_lot::Mutex;

const TTL: Duration = Duration::from_secs(15);

/// What the replicas' providers saw, shared.
#[derive(Default)]
struct Ledger {
    violations: Vec<String>,
    destroyed: BTreeSet<String>,
}

/// One replica's view of the shared cloud: checks that its manager leads at every call.
struct Tagged {
    name: String,
    cloud: Arc<TestProvider>,
    manager: OnceLock<Weak<WorkerLifecycleManager>>,
    ledger: Arc<Mutex<Ledger>>,
}

impl std::fmt::Debug for Tagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tagged").field("name", &self.name).finish()
    }
}

impl Tagged {
    fn check_leading(&self, call: &str) {
        let leading = self
            .manager
            .get()
            .and_then(Weak::upgrade)
            .is_some_and(|m| m.is_leader());
        if !leading {
            self.ledger
                .lock()
                .violations
                .push(format!("{} called {call} without leading", self.name));
        }
    }
}

impl WorkerProvider for Tagged {
    fn provider_id(&self) -> ProviderId {
        self.cloud.provider_id()
    }

    fn provider_type(&self) -> ProviderType {
        self.cloud.provider_type()
    }

    fn create_worker(&self, id: WorkerId, spec: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        self.check_leading("create");
        self.cloud.create_worker(id, spec)
    }

    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
        self.check_leading("destroy");
        let existed = self.cloud.instance_ids().contains(&handle.resource_id);
        let result = self.cloud.destroy_worker(handle);
        if result.is_ok() || result.as_ref().is_err_and(|e| e.is_not_found()) {
            let mut ledger = self.ledger.lock();
            if !ledger.destroyed.insert(handle.resource_id.clone()) && existed {
                ledger.violations.push(format!(
                    "{} destroyed {} twice",
                    self.name, handle.resource_id
                ));
            }
        }
        result
    }

    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        self.check_leading("list");
        self.cloud.list_workers()
    }
}

struct Replica {
    name: String,
    manager: Arc<WorkerLifecycleManager>,
    local: Arc<ManualClock>,
}

struct World {
    store: Arc<ManualClock>,
    registry: Arc<dyn WorkerRegistry>,
    lease: InMemoryLease,
    cloud: Arc<TestProvider>,
    ledger: Arc<Mutex<Ledger>>,
    replicas: Vec<Replica>,
    /// Workers whose agent died (they never heartbeat again).
    dead: BTreeSet<WorkerId>,
    max_term: u64,
    spawned: usize,
}

impl World {
    fn new() -> World {
        let store = Arc::new(ManualClock::new(T0));
        let registry: Arc<dyn WorkerRegistry> =
            Arc::new(InMemoryWorkerRegistry::with_clock(store.clone()));
        let lease = InMemoryLease::new(store.clone(), "a", TTL);
        let mut w = World {
            store,
            registry,
            lease,
            cloud: TestProvider::new("cloud"),
            ledger: Arc::new(Mutex::new(Ledger::default())),
            replicas: Vec::new(),
            dead: BTreeSet::new(),
            max_term: 0,
            spawned: 0,
        };
        for _ in 0..2 {
            let r = w.replica();
            w.replicas.push(r);
        }
        w
    }

    /// A new replica process with a fresh name.
    fn replica(&mut self) -> Replica {
        self.spawned += 1;
        let name = format!("r{}", self.spawned);
        let local = Arc::new(ManualClock::new(self.spawned as u64 * 1_000_000));
        let manager = Arc::new(
            WorkerLifecycleManager::with_leadership(
                self.registry.clone(),
                WorkerLifecycleConfig {
                    min_ready_workers: 1,
                    max_workers: 6,
                    scale_up_cooldown: secs(1),
                    scale_down_cooldown: secs(5),
                    ..config()
                },
                Arc::new(self.lease.replica(name.clone())),
                local.clone(),
            )
            .unwrap(),
        );
        let tagged = Arc::new(Tagged {
            name: name.clone(),
            cloud: self.cloud.clone(),
            manager: OnceLock::new(),
            ledger: self.ledger.clone(),
        });
        tagged.manager.set(Arc::downgrade(&manager)).unwrap();
        manager.register_provider(tagged).unwrap();
        manager.set_scaling_target(&self.cloud.id, spec()).unwrap();
        Replica {
            name,
            manager,
            local,
        }
    }

    /// Time passes for the store and every replica (a replica that does not tick meanwhile
    /// is "paused").
    fn advance(&self, by: Duration) {
        self.store.advance(by);
        for r in &self.replicas {
            r.local.advance(by);
        }
    }

    fn tick(&mut self, i: usize, pending: usize) {
        let report = self.replicas[i].manager.tick(pending);
        if let Some(l) = &report.leader {
            if report.leading && l.term < self.max_term {
                self.ledger.lock().violations.push(format!(
                    "{} leads under term {} after term {} was seen",
                    self.replicas[i].name, l.term, self.max_term
                ));
            }
            self.max_term = self.max_term.max(l.term);
        }
        let leaders: Vec<&str> = self
            .replicas
            .iter()
            .filter(|r| r.manager.is_leader())
            .map(|r| r.name.as_str())
            .collect();
        if leaders.len() > 1 {
            self.ledger
                .lock()
                .violations
                .push(format!("two leaders at once: {leaders:?}"));
        }
    }

    /// The agents: report in, heartbeat, finish jobs; the dead stay silent.
    fn agents(&mut self, rng: &mut Rng) {
        let workers = self.registry.find(&WorkerFilter::new()).unwrap();
        for w in workers {
            if self.dead.contains(&w.id) {
                continue;
            }
            let _ = self.registry.heartbeat(&w.id);
            match w.state {
                WorkerState::Creating => {
                    let _ = self.registry.update_state(&w.id, WorkerState::Ready);
                }
                WorkerState::Busy if rng.below(2) == 0 => {
                    let _ = self.registry.release_from_job(&w.id, None);
                }
                _ => {}
            }
        }
    }

    fn step(&mut self, rng: &mut Rng, n: u64) {
        match rng.below(20) {
            0..=7 => {
                let i = rng.below(self.replicas.len() as u64) as usize;
                let pending = rng.below(5) as usize;
                self.tick(i, pending);
            }
            8..=11 => {
                self.advance(Duration::from_millis(500 + rng.below(4_000)));
                self.agents(rng);
            }
            // A long pause of everyone but the agents (a replica may lose its lease).
            12 => {
                self.advance(Duration::from_millis(10_000 + rng.below(10_000)));
                self.agents(rng);
            }
            13 => {
                let job = JobId::new(format!("job-{n}")).unwrap();
                let _ = self.registry.claim(&WorkerFilter::new(), job);
            }
            14 => {
                // An agent dies.
                if let Some(w) = self.registry.find(&WorkerFilter::new()).unwrap().first() {
                    self.dead.insert(w.id);
                }
            }
            15 => self
                .cloud
                .script_destroys([DestroyStep::Fail("cloud API down")]),
            16 => {
                // A replica crashes: a new process with a new name takes its place.
                let i = rng.below(self.replicas.len() as u64) as usize;
                let fresh = self.replica();
                self.replicas[i] = fresh;
            }
            17 => {
                let i = rng.below(self.replicas.len() as u64) as usize;
                let _ = self.replicas[i].manager.step_down();
            }
            _ => {
                // A leader-only call made directly by the host of a random replica.
                let i = rng.below(self.replicas.len() as u64) as usize;
                let m = &self.replicas[i].manager;
                let _ = match rng.below(3) {
                    0 => m.reconcile().map(|_| ()),
                    1 => m.provision_worker(&self.cloud.id, spec()).map(|_| ()),
                    _ => m.cleanup_workers().map(|_| ()),
                };
            }
        }
    }

    /// Lets the fleet settle under one leader: no silent worker, no pending destroy, then a
    /// reconcile; returns what is still wrong.
    fn settle(&mut self, rng: &mut Rng) -> Vec<String> {
        self.dead.clear();
        // The dead instances are still there at the cloud; their records expire below.
        for _ in 0..40 {
            self.advance(secs(5));
            self.agents(rng);
            self.tick(0, 0);
            self.tick(1, 0);
        }
        let leader = self
            .replicas
            .iter()
            .find(|r| r.manager.is_leader())
            .map(|r| r.manager.clone());
        let Some(leader) = leader else {
            return vec!["no leader after settling".to_owned()];
        };
        let _ = leader.reconcile();
        self.advance(secs(5));
        self.tick(0, 0);
        self.tick(1, 0);
        let mut wrong = Vec::new();
        let mut records: Vec<String> = self
            .registry
            .find(&WorkerFilter::new())
            .unwrap()
            .into_iter()
            .map(|w| {
                if w.state.is_terminal() {
                    wrong.push(format!("{} left {:?}", w.id, w.state));
                }
                w.handle.resource_id.clone()
            })
            .collect();
        records.sort();
        let instances = self.cloud.instance_ids();
        if instances != records {
            wrong.push(format!("instances {instances:?} vs records {records:?}"));
        }
        wrong
    }
}

fn run(seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut world = World::new();
    for n in 0..300 {
        world.step(&mut rng, n);
    }
    let mut wrong = world.settle(&mut rng);
    let mut violations = std::mem::take(&mut world.ledger.lock().violations);
    violations.append(&mut wrong);
    violations
}

#[test]
fn replicated_managers_never_act_without_the_lease_and_leave_nothing_behind() {
    let seeds: Vec<u64> = match std::env::var("HW_REPLICATED_SEED") {
        Ok(s) => vec![s.parse().expect("a seed")],
        Err(_) => (0..24).collect(),
    };
    for seed in seeds {
        let violations = run(seed);
        assert!(
            violations.is_empty(),
            "seed {seed} (replay: HW_REPLICATED_SEED={seed}): {violations:#?}"
        );
    }
}
