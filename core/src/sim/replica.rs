//! The replicated mode's processes: what each replica (a [`WorkerLifecycleManager`] in its
//! own simulated process) sees of the shared registry and clouds, and what the simulation
//! checks there.
//!
//! Every replica reaches the registry through a [`ReplicaRegistry`] and each cloud through a
//! [`ReplicaProvider`]. They model the process: once it is dead (a crash), nothing it does
//! reaches the world any more (every call fails, as calls from a killed process never arrive);
//! a fault armed on a call (a crash or a pause *inside* `create_worker` / `destroy_worker`)
//! strikes after the call took effect and before the process learns the answer. A pause inside
//! a call lets the world go on meanwhile: the clocks advance and the other replicas tick (one
//! of them takes the lease over), then the paused call returns.
//!
//! The registry also models the store's side of fencing: a manager writes its leader-only
//! changes through [`ReplicaRegistry::fenced`], the view of its term, whose writes the store
//! refuses once the lease names another holder or term (as the PostgreSQL registry's fenced
//! view does in the write's transaction). A fault armed on a write (`during: write`) strikes
//! in the gap the store closes: after the manager's own fence, before the store's check.
//!
//! And they check, at every call, what no replica may do without holding the lease at the
//! store (its holder, unexpired on the store's clock): call the provider, or write to the
//! registry outside the fenced view (through it, the store's check is the rule) — except
//! publishing `LeaderChanged` (a replica that learns it lost the lease says so),
//! `ProvisionFailed` / `DestroyFailed` (the outcome of a call it made while it led: the call
//! happened either way), and unregistering a worker whose instance is gone (the unregister
//! after a confirmed destroy is not fenced, by design: the instance is gone either way). And
//! that no worker id is created twice and no instance is destroyed again after a destroy was
//! confirmed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::{Clock, ManualClock, Timestamp};
use crate::error::{Error, Result};
use crate::events::{EventKind, SubscribeOptions, Subscription};
use crate::filter::WorkerFilter;
use crate::ids::{JobId, ProviderId, WorkerId};
use crate::lifecycle::{
    Demand, InMemoryLease, Leadership, ProviderError, Term, TickReport, WorkerLifecycleManager,
    WorkerProvider,
};
use crate::registry::{
    HeartbeatAges, JobTotals, Snapshot, SubscriberDrops, TransitionGuard, Transitioned,
    WorkerRegistry, WorkerRegistryStats,
};
use crate::state::WorkerState;
use crate::worker::{ProviderType, TerminationReason, Worker, WorkerHandle, WorkerSpec};

use super::check::Rule;
use super::cloud::Cloud;
use super::scenario::FaultPoint;

/// One replica process: its name in the lease, its own clock, whether it lives and runs.
#[derive(Debug)]
pub(crate) struct Process {
    pub name: String,
    /// The replica slot it runs in.
    pub slot: usize,
    /// Its own monotonic clock (true time: never stalls with the registry's; it lags after a
    /// pause its clock missed).
    pub local: Arc<ManualClock>,
    alive: AtomicBool,
    paused: AtomicBool,
    /// Its clock missed a pause (`LeaderPause::clock_missed`): its own fence can no longer be
    /// held to the lease's expiry, only to the store's (see `ReplicaWorld::leader_only`).
    clock_lied: AtomicBool,
    manager: Mutex<Weak<WorkerLifecycleManager>>,
}

impl Process {
    pub(crate) fn new(name: String, slot: usize, local: Arc<ManualClock>) -> Self {
        Process {
            name,
            slot,
            local,
            alive: AtomicBool::new(true),
            paused: AtomicBool::new(false),
            clock_lied: AtomicBool::new(false),
            manager: Mutex::new(Weak::new()),
        }
    }

    pub(crate) fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    pub(crate) fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }

    pub(crate) fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }

    pub(crate) fn set_manager(&self, manager: &Arc<WorkerLifecycleManager>) {
        *self.manager.lock() = Arc::downgrade(manager);
    }

    fn manager(&self) -> Option<Arc<WorkerLifecycleManager>> {
        self.manager.lock().upgrade()
    }
}

/// A crash or pause waiting for the leader's next call of a kind.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Armed {
    /// Dies inside the call; restarts after this long (ms).
    Crash { during: FaultPoint, restart_ms: u64 },
    /// Stops inside the call for this long (ms); with `clock_missed`, its own clock does not
    /// count the pause.
    Pause {
        during: FaultPoint,
        pause_ms: u64,
        clock_missed: bool,
    },
}

impl Armed {
    fn during(&self) -> FaultPoint {
        match *self {
            Armed::Crash { during, .. } | Armed::Pause { during, .. } => during,
        }
    }
}

/// What the world's calls record for the simulation loop.
#[derive(Debug, Default)]
pub(crate) struct WorldLog {
    /// Violations seen inside calls, for the next check.
    pub notes: Vec<(Rule, String)>,
    /// Replicas that died inside a call: `(slot, restart after ms)`.
    pub crashed: Vec<(usize, u64)>,
    /// Tick reports of the replicas that ticked while another was paused inside a call.
    pub nested: Vec<(usize, TickReport)>,
    /// Pauses that struck inside a call.
    pub pauses: u64,
    /// Fenced writes the store refused (another replica had taken the lease).
    pub refusals: u64,
    /// The fault waiting for a call, if any.
    pub armed: Option<Armed>,
    created: HashSet<WorkerId>,
    destroyed: HashSet<String>,
}

/// What the replicas share: the registry clock (the store's), the lease, the clouds, the live
/// processes, and the log of what happened inside calls.
#[derive(Debug)]
pub(crate) struct ReplicaWorld {
    pub store: Arc<ManualClock>,
    /// A view of the lease (for reading who holds it).
    pub lease: InMemoryLease,
    pub clouds: Vec<Arc<Mutex<Cloud>>>,
    pub processes: Mutex<Vec<Arc<Process>>>,
    pub log: Mutex<WorldLog>,
    /// The host's demand at its last pass (what replicas tick with during a pause).
    pub demand: Mutex<Demand>,
    /// The interval between two ticks of a replica, ms.
    pub tick_ms: u64,
    /// Whether the registry gives a leader the store-fenced view of its term
    /// ([`ReplicaRegistry::fenced`]); off only when broken on purpose
    /// ([`Hooks::no_store_fencing`](crate::sim::Hooks::no_store_fencing)), or when every
    /// replica has a lease of its own, which the store does not keep.
    pub store_fencing: bool,
}

impl ReplicaWorld {
    /// Whether `name` holds the lease now, as the store sees it.
    pub(crate) fn holds(&self, name: &str) -> bool {
        let now = self.store.now();
        matches!(self.lease.current(), Ok(Some(l)) if l.holder == name && l.expires_at > now)
    }

    /// The live process holding the lease at the store, if any.
    pub(crate) fn holder(&self) -> Option<Arc<Process>> {
        self.processes
            .lock()
            .iter()
            .find(|p| p.alive() && self.holds(&p.name))
            .cloned()
    }

    fn note(&self, rule: Rule, detail: String) {
        self.log.lock().notes.push((rule, detail));
    }

    /// Whether the lease row names `name`, expired or not: no other replica took it since.
    fn named(&self, name: &str) -> bool {
        matches!(self.lease.current(), Ok(Some(l)) if l.holder == name)
    }

    /// `process` may act as the leader only while it holds the lease at the store (unexpired).
    /// A process whose clock missed a pause is held to the store's rule alone: no other
    /// replica took the lease since (its own fence, on a clock that lied, cannot know when the
    /// lease expired; acting after expiry with nobody else leading harms nothing).
    fn leader_only(&self, process: &Process, what: &str) {
        if !self.may_lead(process) {
            self.not_leader(process, what);
        }
    }

    /// Whether `process` may act as the leader now (see [`leader_only`](Self::leader_only)).
    fn may_lead(&self, process: &Process) -> bool {
        if process.clock_lied.load(Ordering::SeqCst) {
            self.named(&process.name)
        } else {
            self.holds(&process.name)
        }
    }

    /// Notes that `process` did `what`, which only the leader may do, without the lease.
    fn not_leader(&self, process: &Process, what: &str) {
        let leader = match self.lease.current() {
            Ok(Some(l)) => format!(
                "{} holds term {} until {} (now {})",
                l.holder,
                l.term,
                l.expires_at,
                self.store.now()
            ),
            _ => "nobody holds the lease".to_owned(),
        };
        self.note(
            Rule::LeaderOnly,
            format!(
                "replica {} called {what} without the lease ({leader})",
                process.name
            ),
        );
    }

    fn instance_exists(&self, worker: &WorkerId) -> bool {
        self.clouds.iter().any(|c| c.lock().has_worker(worker))
    }

    /// At most one running replica believes it leads; checked after every tick. A stopped
    /// process decides nothing: its belief counts again once it runs (a pause its clock missed
    /// leaves the belief until its next word from the store, see `LeaderPause::clock_missed`).
    pub(crate) fn check_one_leader(&self) {
        let leaders: Vec<String> = self
            .processes
            .lock()
            .iter()
            .filter(|p| p.alive() && !p.paused() && p.manager().is_some_and(|m| m.is_leader()))
            .map(|p| p.name.clone())
            .collect();
        if leaders.len() > 1 {
            self.note(
                Rule::OneLeader,
                format!("replicas {leaders:?} lead at the same time"),
            );
        }
    }

    /// A call of `process` reached `call` (inside a provider call after it took effect, before
    /// a provider call leaves, inside a registry write): the armed fault strikes if it aims
    /// there and the process leads. Returns whether the process died.
    fn strike(&self, process: &Process, call: FaultPoint) -> bool {
        let armed = {
            let mut log = self.log.lock();
            match log.armed {
                Some(a) if a.during() == call && self.holds(&process.name) => log.armed.take(),
                _ => None,
            }
        };
        match armed {
            Some(Armed::Crash { restart_ms, .. }) => {
                process.kill();
                self.log.lock().crashed.push((process.slot, restart_ms));
                true
            }
            Some(Armed::Pause {
                pause_ms,
                clock_missed,
                ..
            }) => {
                self.pause_inside(process, pause_ms, clock_missed);
                false
            }
            None => false,
        }
    }

    /// The store's side of a write of `process` through the fenced view of `term`: the lease
    /// row must still name the process under `term`. Expiry alone is not a refusal: the row
    /// changes only when another replica takes it.
    fn store_check(&self, process: &Process, term: Term, what: &str) -> Result<()> {
        match self.lease.current() {
            Ok(Some(l)) if l.holder == process.name && l.term == term => Ok(()),
            _ => {
                self.log.lock().refusals += 1;
                Err(Error::NotLeader(format!(
                    "the store refused {what} of replica {} under term {term}: another \
                     replica took the lease",
                    process.name
                )))
            }
        }
    }

    /// `process` stops for `pause_ms` inside a call: time passes for everyone (by tick
    /// intervals), and the other live replicas tick meanwhile. `clock_missed`: the paused
    /// process's own clock stands still meanwhile (and lags from then on).
    fn pause_inside(&self, process: &Process, pause_ms: u64, clock_missed: bool) {
        process.set_paused(true);
        if clock_missed {
            process.clock_lied.store(true, Ordering::SeqCst);
        }
        self.log.lock().pauses += 1;
        let others: Vec<(Arc<Process>, Arc<WorkerLifecycleManager>)> = self
            .processes
            .lock()
            .iter()
            .filter(|p| p.alive() && !p.paused() && p.slot != process.slot)
            .filter_map(|p| p.manager().map(|m| (p.clone(), m)))
            .collect();
        let demand = self.demand.lock().clone();
        let mut left = pause_ms;
        while left > 0 {
            let step = left.min(self.tick_ms.max(1));
            left -= step;
            let by = Duration::from_millis(step);
            self.store.advance(by);
            for p in self.processes.lock().iter() {
                if !(clock_missed && p.slot == process.slot) {
                    p.local.advance(by);
                }
            }
            for (p, m) in &others {
                if p.alive() {
                    let report = m.tick(demand.clone());
                    self.log.lock().nested.push((p.slot, report));
                }
            }
            self.check_one_leader();
        }
        process.set_paused(false);
    }
}

fn dead_backend(process: &Process) -> Error {
    Error::Backend(format!("replica {} is dead", process.name))
}

/// A replica's view of the shared registry (see the module docs).
#[derive(Debug)]
pub(crate) struct ReplicaRegistry {
    pub inner: Arc<dyn WorkerRegistry>,
    pub process: Arc<Process>,
    pub world: Arc<ReplicaWorld>,
    /// The term of a store-fenced view ([`WorkerRegistry::fenced`]); `None` for the
    /// replica's plain view.
    pub fence: Option<Term>,
}

impl ReplicaRegistry {
    fn read(&self) -> Result<()> {
        if self.process.alive() {
            Ok(())
        } else {
            Err(dead_backend(&self.process))
        }
    }

    /// A leader-only write `what`. The fault armed on a write strikes first: the process
    /// stops, or dies, between the manager's own fence and the store. Then, through the fenced
    /// view, the store's check (which may refuse it); through the plain view, the process must
    /// hold the lease (`leader_only`).
    fn write(&self, what: &str) -> Result<()> {
        self.read()?;
        if self.world.strike(&self.process, FaultPoint::Write) {
            return Err(dead_backend(&self.process));
        }
        match self.fence {
            Some(term) => self.world.store_check(&self.process, term, what),
            None => {
                self.world.leader_only(&self.process, what);
                Ok(())
            }
        }
    }
}

impl WorkerRegistry for ReplicaRegistry {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }
    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker> {
        self.write("register")?;
        self.inner.register(handle, spec)
    }
    fn unregister(&self, id: &WorkerId, reason: TerminationReason) -> Result<Worker> {
        self.read()?;
        if self.fence.is_some() {
            self.write("unregister")?;
        } else if self.world.instance_exists(id) {
            // Not fenced by design once the instance is gone (a confirmed destroy).
            self.world
                .leader_only(&self.process, "unregister (instance alive)");
        }
        self.inner.unregister(id, reason)
    }
    fn get(&self, id: &WorkerId) -> Result<Option<Worker>> {
        self.read()?;
        self.inner.get(id)
    }
    fn find(&self, filter: &WorkerFilter) -> Result<Vec<Worker>> {
        self.read()?;
        self.inner.find(filter)
    }
    fn find_available(&self) -> Result<Vec<Worker>> {
        self.read()?;
        self.inner.find_available()
    }
    fn find_by_provider(&self, provider_id: &ProviderId) -> Result<Vec<Worker>> {
        self.read()?;
        self.inner.find_by_provider(provider_id)
    }
    fn find_by_resource_ids(
        &self,
        provider_id: &ProviderId,
        resource_ids: &[&str],
    ) -> Result<Vec<Worker>> {
        self.read()?;
        self.inner.find_by_resource_ids(provider_id, resource_ids)
    }
    fn update_state(&self, id: &WorkerId, state: WorkerState) -> Result<Worker> {
        self.write("update_state")?;
        self.inner.update_state(id, state)
    }
    fn heartbeat(&self, id: &WorkerId) -> Result<()> {
        // Any replica serves its agents' heartbeats.
        self.read()?;
        self.inner.heartbeat(id)
    }
    fn assign_to_job(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        self.read()?;
        if self.fence.is_some() {
            self.write("assign_to_job")?;
        }
        self.inner.assign_to_job(id, job)
    }
    fn release_from_job(&self, id: &WorkerId, expected_job: Option<&JobId>) -> Result<JobId> {
        self.read()?;
        self.inner.release_from_job(id, expected_job)
    }
    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        self.read()?;
        self.inner.claim(filter, job)
    }
    fn find_unhealthy(&self, heartbeat_timeout: Duration) -> Result<Vec<Worker>> {
        self.read()?;
        self.inner.find_unhealthy(heartbeat_timeout)
    }
    fn count_unhealthy(&self, heartbeat_timeout: Duration) -> Result<usize> {
        self.read()?;
        self.inner.count_unhealthy(heartbeat_timeout)
    }
    fn find_startup_expired(&self, startup_timeout: Duration) -> Result<Vec<Worker>> {
        self.read()?;
        self.inner.find_startup_expired(startup_timeout)
    }
    fn find_for_termination(&self) -> Result<Vec<(Worker, TerminationReason)>> {
        self.read()?;
        self.inner.find_for_termination()
    }
    fn grant_grace(&self, since: Timestamp) -> Result<()> {
        self.write("grant_grace")?;
        self.inner.grant_grace(since)
    }
    fn stats(&self) -> Result<WorkerRegistryStats> {
        self.read()?;
        self.inner.stats()
    }
    fn count(&self) -> Result<usize> {
        self.read()?;
        self.inner.count()
    }
    fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription> {
        self.read()?;
        self.inner.subscribe(options)
    }
    fn publish(&self, kind: EventKind) -> Result<()> {
        self.read()?;
        if self.fence.is_some() {
            self.write(&format!("publish({kind:?})"))?;
            return self.inner.publish(kind);
        }
        // Allowed without the lease: saying it lost the lease, and reporting the outcome of a
        // provider call it made while it held the lease (the call happened either way).
        if !matches!(
            kind,
            EventKind::LeaderChanged { .. }
                | EventKind::ProvisionFailed { .. }
                | EventKind::DestroyFailed { .. }
        ) {
            self.world
                .leader_only(&self.process, &format!("publish({kind:?})"));
        }
        self.inner.publish(kind)
    }
    fn snapshot(&self) -> Result<Snapshot> {
        self.read()?;
        self.inner.snapshot()
    }
    fn transition_if(
        &self,
        id: &WorkerId,
        guard: &TransitionGuard,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        self.write("transition_if")?;
        self.inner.transition_if(id, guard, to)
    }
    fn longest_idle(&self, n: usize) -> Result<Vec<Worker>> {
        self.read()?;
        self.inner.longest_idle(n)
    }
    fn restore(&self, snapshot: Snapshot) -> Result<()> {
        // Not fenced by the store, as on PostgreSQL: the lease rule.
        self.read()?;
        self.world.leader_only(&self.process, "restore");
        self.inner.restore(snapshot)
    }
    fn fenced(&self, lease: &dyn Leadership, term: Term) -> Option<Arc<dyn WorkerRegistry>> {
        // The run's one lease, as this process holds it: the store keeps it.
        let own = self.world.store_fencing && lease.holder() == self.process.name;
        own.then(|| {
            Arc::new(ReplicaRegistry {
                inner: Arc::clone(&self.inner),
                process: Arc::clone(&self.process),
                world: Arc::clone(&self.world),
                fence: Some(term),
            }) as Arc<dyn WorkerRegistry>
        })
    }
    fn job_totals(&self) -> Result<Option<JobTotals>> {
        self.read()?;
        self.inner.job_totals()
    }
    fn heartbeat_age_histogram(&self) -> Result<Option<HeartbeatAges>> {
        self.read()?;
        self.inner.heartbeat_age_histogram()
    }
    fn subscriber_drops(&self) -> Result<Vec<SubscriberDrops>> {
        self.read()?;
        self.inner.subscriber_drops()
    }
}

/// A replica's view of one simulated cloud (see the module docs).
pub(crate) struct ReplicaProvider {
    pub inner: Arc<dyn WorkerProvider>,
    pub process: Arc<Process>,
    pub world: Arc<ReplicaWorld>,
}

impl std::fmt::Debug for ReplicaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaProvider")
            .field("provider", &self.inner.provider_id())
            .field("process", &self.process.name)
            .finish()
    }
}

impl ReplicaProvider {
    fn alive(&self) -> std::result::Result<(), ProviderError> {
        if self.process.alive() {
            Ok(())
        } else {
            Err(ProviderError::new(format!(
                "replica {} is dead",
                self.process.name
            )))
        }
    }

    /// A create of worker `id` by `call` (the inner provider's create, with or without the
    /// fencing token), checked against the world's rules, with its faults.
    fn create(
        &self,
        id: WorkerId,
        call: impl FnOnce() -> std::result::Result<WorkerHandle, ProviderError>,
    ) -> std::result::Result<WorkerHandle, ProviderError> {
        self.alive()?;
        if self.world.strike(&self.process, FaultPoint::BeforeCreate) {
            return Err(ProviderError::new("killed before the call left"));
        }
        // Judged when the call reaches the cloud (after a `before_create` pause); a call the
        // cloud refused for its fencing token took no effect.
        let may_lead = self.world.may_lead(&self.process);
        let result = call();
        if !fenced(&result) {
            if !may_lead {
                self.world.not_leader(&self.process, "create_worker");
            }
            if !self.world.log.lock().created.insert(id) {
                self.world.note(
                    Rule::ProviderOnce,
                    format!("replica {} created worker {id} again", self.process.name),
                );
            }
        }
        if self.world.strike(&self.process, FaultPoint::Create) {
            return Err(ProviderError::new("killed before the answer arrived"));
        }
        result
    }

    /// A destroy of `handle` by `call`, as [`create`](Self::create).
    fn destroy(
        &self,
        handle: &WorkerHandle,
        call: impl FnOnce() -> std::result::Result<(), ProviderError>,
    ) -> std::result::Result<(), ProviderError> {
        self.alive()?;
        if self.world.strike(&self.process, FaultPoint::BeforeDestroy) {
            return Err(ProviderError::new("killed before the call left"));
        }
        // As in `create`.
        let may_lead = self.world.may_lead(&self.process);
        let result = call();
        if !fenced(&result) {
            if !may_lead {
                self.world.not_leader(&self.process, "destroy_worker");
            }
            if self
                .world
                .log
                .lock()
                .destroyed
                .contains(&handle.resource_id)
            {
                self.world.note(
                    Rule::ProviderOnce,
                    format!(
                        "replica {} destroyed instance {} (worker {}) again after a confirmed \
                         destroy",
                        self.process.name, handle.resource_id, handle.worker_id
                    ),
                );
            }
        }
        if self.world.strike(&self.process, FaultPoint::Destroy) {
            return Err(ProviderError::new("killed before the answer arrived"));
        }
        if result.is_ok() {
            self.world
                .log
                .lock()
                .destroyed
                .insert(handle.resource_id.clone());
        }
        result
    }
}

/// Whether a provider call was refused by the cloud for its fencing token (it took no effect).
fn fenced<T>(result: &std::result::Result<T, ProviderError>) -> bool {
    matches!(result, Err(e) if e.is_fenced())
}

impl WorkerProvider for ReplicaProvider {
    fn provider_id(&self) -> ProviderId {
        self.inner.provider_id()
    }

    fn provider_type(&self) -> ProviderType {
        self.inner.provider_type()
    }

    fn create_worker(
        &self,
        id: WorkerId,
        spec: &WorkerSpec,
    ) -> std::result::Result<WorkerHandle, ProviderError> {
        self.create(id, || self.inner.create_worker(id, spec))
    }

    fn create_worker_fenced(
        &self,
        token: Term,
        id: WorkerId,
        spec: &WorkerSpec,
    ) -> std::result::Result<WorkerHandle, ProviderError> {
        self.create(id, || self.inner.create_worker_fenced(token, id, spec))
    }

    fn destroy_worker(&self, handle: &WorkerHandle) -> std::result::Result<(), ProviderError> {
        self.destroy(handle, || self.inner.destroy_worker(handle))
    }

    fn destroy_worker_fenced(
        &self,
        token: Term,
        handle: &WorkerHandle,
    ) -> std::result::Result<(), ProviderError> {
        self.destroy(handle, || self.inner.destroy_worker_fenced(token, handle))
    }

    fn list_workers(&self) -> std::result::Result<Vec<WorkerHandle>, ProviderError> {
        self.alive()?;
        self.world.leader_only(&self.process, "list_workers");
        self.inner.list_workers()
    }
}
