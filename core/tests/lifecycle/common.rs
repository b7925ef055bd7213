//! Helpers shared by the lifecycle suite (core/tests/lifecycle/, and its PostgreSQL copy in
//! pg/tests/lifecycle.rs): a manager on a [`ManualClock`] over a registry of the backend under
//! test (`crate::backend::new_registry`), and a
//! scriptable [`TestProvider`] that can fail, panic, stall, lose instances, and re-enter the
//! manager and the registry from inside its calls (which would deadlock if any lock were held
//! across a provider call).
#![allow(dead_code)] // each test crate uses a different part of it

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use hodei_workers::*;

/// Where the manual clock starts.
pub const T0: Timestamp = 1_700_000_000_000;

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

pub fn pid(name: &str) -> ProviderId {
    ProviderId::new(name).expect("valid provider id")
}

pub fn job(name: &str) -> JobId {
    JobId::new(name).expect("valid job id")
}

pub fn spec() -> Arc<WorkerSpec> {
    Arc::new(WorkerSpec::new("img"))
}

/// What the next `create_worker` does.
#[derive(Debug, Clone)]
pub enum CreateStep {
    Ok,
    Fail(&'static str),
    /// Fails with [`ProviderErrorKind::NoCapacity`].
    NoCapacity,
    /// Fails with [`ProviderErrorKind::Interrupted`] (the host cut the call short).
    Interrupted,
    Panic,
    /// Blocks until [`TestProvider::release_stalled`] is called, then succeeds.
    Stall,
    /// Returns a handle with this worker id instead of the one it was given (a provider bug).
    DuplicateId(WorkerId),
    /// Blocks until [`TestProvider::release_stalled`] is called, then fails.
    StallFail(&'static str),
    /// Makes the instance at once (listed from then on), then blocks until
    /// [`TestProvider::release_stalled`] is called and succeeds: a create whose reply is slow.
    /// The instance is not made again when the reply comes (destroyed meanwhile, it stays
    /// gone). Without [`fencing`](TestProvider::fencing).
    StallReply,
}

/// What the next `destroy_worker` does.
#[derive(Debug, Clone)]
pub enum DestroyStep {
    Ok,
    Fail(&'static str),
    Panic,
    NotFound,
    /// Fails with [`ProviderErrorKind::Interrupted`] (the host cut the call short).
    Interrupted,
    /// Blocks until [`TestProvider::release_stalled`] is called, then succeeds.
    Stall,
    /// Blocks until [`TestProvider::release_stalled`] is called, then fails.
    StallFail(&'static str),
}

/// A provider under the test's control. Unscripted calls succeed.
pub struct TestProvider {
    pub id: ProviderId,
    pub creates: Mutex<VecDeque<CreateStep>>,
    pub destroys: Mutex<VecDeque<DestroyStep>>,
    /// Instances that exist at the "cloud": resource id -> handle.
    pub instances: Mutex<BTreeMap<String, WorkerHandle>>,
    /// Every call, in order: `"create"`, `"destroy <resource>"`, `"list"`.
    pub calls: Mutex<Vec<String>>,
    /// The handle of every destroy call, in order.
    pub destroyed: Mutex<Vec<WorkerHandle>>,
    /// Destroy attempts with the manager's clock reading at each.
    pub destroy_times: Mutex<Vec<(String, Timestamp)>>,
    pub list_supported: bool,
    next: AtomicUsize,
    stall_tx: Sender<()>,
    stall_rx: Receiver<()>,
    /// Threads inside `create_worker` now, and the most seen at once.
    pub creating_now: AtomicUsize,
    /// Threads inside `destroy_worker` now.
    pub destroying_now: AtomicUsize,
    /// When set, every call re-enters the manager (stats, plan) and the registry (find, count).
    pub reenter: OnceLock<Weak<WorkerLifecycleManager>>,
    /// Optional pause inside `create_worker` to widen race windows.
    pub create_delay: Mutex<Option<Duration>>,
    /// The fencing token of every create and destroy, in order: `("create", token)`,
    /// `("destroy <resource>", token)`.
    pub tokens: Mutex<Vec<(String, Term)>>,
    /// When set, the "cloud" refuses a create or destroy whose token is below the largest it
    /// has served (checked when the call reaches it: after a stall).
    pub fencing: AtomicBool,
    highest_token: AtomicU64,
    /// The calls refused for their token: `(call, token)` as in `tokens`.
    pub refused: Mutex<Vec<(String, Term)>>,
    /// The next `list_workers` calls fail, one with each of these messages, in order.
    pub list_failures: Mutex<VecDeque<&'static str>>,
}

impl std::fmt::Debug for TestProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestProvider")
            .field("id", &self.id)
            .finish()
    }
}

impl TestProvider {
    pub fn new(name: &str) -> Arc<Self> {
        Self::build(name, true)
    }

    pub fn without_list(name: &str) -> Arc<Self> {
        Self::build(name, false)
    }

    fn build(name: &str, list_supported: bool) -> Arc<Self> {
        let (stall_tx, stall_rx) = crossbeam_channel::unbounded();
        Arc::new(TestProvider {
            id: pid(name),
            creates: Mutex::new(VecDeque::new()),
            destroys: Mutex::new(VecDeque::new()),
            instances: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(Vec::new()),
            destroyed: Mutex::new(Vec::new()),
            destroy_times: Mutex::new(Vec::new()),
            list_supported,
            next: AtomicUsize::new(0),
            stall_tx,
            stall_rx,
            creating_now: AtomicUsize::new(0),
            destroying_now: AtomicUsize::new(0),
            reenter: OnceLock::new(),
            create_delay: Mutex::new(None),
            tokens: Mutex::new(Vec::new()),
            fencing: AtomicBool::new(false),
            highest_token: AtomicU64::new(0),
            refused: Mutex::new(Vec::new()),
            list_failures: Mutex::new(VecDeque::new()),
        })
    }

    pub fn script_creates(&self, steps: impl IntoIterator<Item = CreateStep>) {
        self.creates.lock().extend(steps);
    }

    pub fn script_destroys(&self, steps: impl IntoIterator<Item = DestroyStep>) {
        self.destroys.lock().extend(steps);
    }

    pub fn release_stalled(&self, n: usize) {
        for _ in 0..n {
            self.stall_tx.send(()).unwrap();
        }
    }

    pub fn instance_ids(&self) -> Vec<String> {
        self.instances.lock().keys().cloned().collect()
    }

    /// The instance disappears on the provider's side (spot reclaim, manual delete).
    pub fn lose(&self, resource_id: &str) {
        self.instances.lock().remove(resource_id);
    }

    /// An instance the registry does not know (an orphan of a crashed host).
    pub fn add_orphan(&self, resource_id: &str) {
        let handle = WorkerHandle::new(self.id.clone(), ProviderType::Docker, resource_id);
        self.instances.lock().insert(resource_id.to_owned(), handle);
    }

    /// Spins (yielding) until `counter` reads `n`: a thread reached a stalled call. Bounded, so
    /// a broken test fails instead of hanging.
    pub fn wait_for(counter: &AtomicUsize, n: usize) {
        for _ in 0..50_000_000u64 {
            if counter.load(Ordering::SeqCst) == n {
                return;
            }
            std::thread::yield_now();
        }
        panic!("a provider call never got there");
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().clone()
    }

    /// How many destroy calls named the instance `resource_id` (failed ones included).
    pub fn destroys_of(&self, resource_id: &str) -> usize {
        self.destroyed
            .lock()
            .iter()
            .filter(|h| h.resource_id == resource_id)
            .count()
    }

    /// The destroy calls among [`calls`](Self::calls), in order.
    pub fn destroy_calls(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with("destroy"))
            .collect()
    }

    fn reenter_now(&self) {
        if let Some(manager) = self.reenter.get().and_then(Weak::upgrade) {
            // Each of these takes a manager or registry lock: a lock held across this provider
            // call would deadlock here.
            manager.stats().unwrap();
            manager.plan_scaling(1).unwrap();
            manager.plan_pools(&Demand::from(1)).unwrap();
            let _ = manager.pending_destroys();
            let _ = manager.provider_backoff();
            manager.registry().find(&WorkerFilter::new()).unwrap();
            manager.registry().count().unwrap();
            manager.registry().snapshot().unwrap();
        }
    }
}

impl WorkerProvider for TestProvider {
    fn provider_id(&self) -> ProviderId {
        self.id.clone()
    }

    fn provider_type(&self) -> ProviderType {
        ProviderType::Docker
    }

    fn create_worker(&self, id: WorkerId, _spec: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        self.create(None, id)
    }

    fn create_worker_fenced(
        &self,
        token: Term,
        id: WorkerId,
        _spec: &WorkerSpec,
    ) -> ProviderResult<WorkerHandle> {
        self.tokens.lock().push(("create".to_owned(), token));
        self.create(Some(token), id)
    }

    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
        self.destroy(None, handle)
    }

    fn destroy_worker_fenced(&self, token: Term, handle: &WorkerHandle) -> ProviderResult<()> {
        self.tokens
            .lock()
            .push((format!("destroy {}", handle.resource_id), token));
        self.destroy(Some(token), handle)
    }

    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        self.calls.lock().push("list".to_owned());
        if !self.list_supported {
            return Err(ProviderError::unsupported("list_workers"));
        }
        self.reenter_now();
        if let Some(message) = self.list_failures.lock().pop_front() {
            return Err(ProviderError::new(message));
        }
        Ok(self.instances.lock().values().cloned().collect())
    }
}

impl TestProvider {
    /// The cloud's side of fencing: refuses `token` below the largest served (when
    /// [`fencing`](Self::fencing) is set), else serves it.
    fn admit(&self, call: &str, token: Option<Term>) -> ProviderResult<()> {
        let Some(token) = token.filter(|_| self.fencing.load(Ordering::SeqCst)) else {
            return Ok(());
        };
        let highest = self.highest_token.fetch_max(token, Ordering::SeqCst);
        if token < highest {
            self.refused.lock().push((call.to_owned(), token));
            return Err(ProviderError::fenced(format!(
                "token {token} is below {highest}, already served"
            )));
        }
        Ok(())
    }

    fn create(&self, token: Option<Term>, id: WorkerId) -> ProviderResult<WorkerHandle> {
        self.calls.lock().push("create".to_owned());
        self.reenter_now();
        let step = self.creates.lock().pop_front().unwrap_or(CreateStep::Ok);
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let resource = format!("{}-{n}", self.id);
        let handle = WorkerHandle {
            worker_id: id,
            ..WorkerHandle::new(self.id.clone(), ProviderType::Docker, &resource)
        };
        let made_before_the_reply = matches!(step, CreateStep::StallReply);
        if made_before_the_reply {
            // Made before a thread waiting on `creating_now` sees this call inside.
            self.instances
                .lock()
                .insert(handle.resource_id.clone(), handle.clone());
        }
        self.creating_now.fetch_add(1, Ordering::SeqCst);
        if let Some(delay) = *self.create_delay.lock() {
            std::thread::sleep(delay);
        }
        let result = match step {
            CreateStep::Ok => Ok(handle),
            CreateStep::Fail(msg) => Err(ProviderError::new(msg)),
            CreateStep::NoCapacity => Err(ProviderError::no_capacity("no capacity")),
            CreateStep::Interrupted => Err(ProviderError::interrupted("Ctrl-C")),
            CreateStep::Panic => {
                self.creating_now.fetch_sub(1, Ordering::SeqCst);
                panic!("provider {} exploded", self.id)
            }
            CreateStep::Stall | CreateStep::StallReply => {
                self.stall_rx.recv().unwrap();
                Ok(handle)
            }
            CreateStep::StallFail(msg) => {
                self.stall_rx.recv().unwrap();
                Err(ProviderError::new(msg))
            }
            CreateStep::DuplicateId(other) => Ok(WorkerHandle {
                worker_id: other,
                ..handle
            }),
        };
        let result = self.admit("create", token).and(result);
        if let (Ok(handle), false) = (&result, made_before_the_reply) {
            self.instances
                .lock()
                .insert(handle.resource_id.clone(), handle.clone());
        }
        self.creating_now.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn destroy(&self, token: Option<Term>, handle: &WorkerHandle) -> ProviderResult<()> {
        self.calls
            .lock()
            .push(format!("destroy {}", handle.resource_id));
        let now = self
            .reenter
            .get()
            .and_then(Weak::upgrade)
            .map(|m| m.registry().now())
            .unwrap_or(0);
        self.destroyed.lock().push(handle.clone());
        self.destroy_times
            .lock()
            .push((handle.resource_id.clone(), now));
        self.reenter_now();
        let step = self.destroys.lock().pop_front().unwrap_or(DestroyStep::Ok);
        self.destroying_now.fetch_add(1, Ordering::SeqCst);
        let result = self.destroy_step(step, handle, token);
        self.destroying_now.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn destroy_step(
        &self,
        step: DestroyStep,
        handle: &WorkerHandle,
        token: Option<Term>,
    ) -> ProviderResult<()> {
        if matches!(step, DestroyStep::Stall | DestroyStep::StallFail(_)) {
            self.stall_rx.recv().unwrap();
        }
        // The call reaches the cloud now.
        self.admit(&format!("destroy {}", handle.resource_id), token)?;
        match step {
            DestroyStep::Ok | DestroyStep::Stall => {
                self.instances.lock().remove(&handle.resource_id);
                Ok(())
            }
            DestroyStep::Fail(msg) | DestroyStep::StallFail(msg) => Err(ProviderError::new(msg)),
            DestroyStep::Panic => panic!("destroy of {} exploded", handle.resource_id),
            DestroyStep::Interrupted => Err(ProviderError::interrupted("Ctrl-C")),
            DestroyStep::NotFound => {
                self.instances.lock().remove(&handle.resource_id);
                Err(ProviderError::not_found("no such instance"))
            }
        }
    }
}

/// A manager on a manual clock with `config`, one [`TestProvider`] named `"test"` registered
/// (re-entering the manager from its calls), and an event subscription.
pub struct Fixture {
    pub clock: Arc<ManualClock>,
    pub registry: Arc<dyn WorkerRegistry>,
    pub manager: Arc<WorkerLifecycleManager>,
    pub provider: Arc<TestProvider>,
    pub events: Subscription,
}

impl Fixture {
    pub fn new(config: WorkerLifecycleConfig) -> Fixture {
        let clock = Arc::new(ManualClock::new(T0));
        let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(clock.clone());
        let events = registry
            .subscribe(SubscribeOptions::default().capacity(100_000))
            .unwrap();
        let manager = Arc::new(WorkerLifecycleManager::new(registry.clone(), config).unwrap());
        let provider = TestProvider::new("test");
        provider.reenter.set(Arc::downgrade(&manager)).unwrap();
        manager.register_provider(provider.clone()).unwrap();
        Fixture {
            clock,
            registry,
            manager,
            provider,
            events,
        }
    }

    pub fn default() -> Fixture {
        Fixture::new(WorkerLifecycleConfig::default())
    }

    pub fn advance(&self, by: Duration) -> Timestamp {
        self.clock.advance(by)
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Provisions a worker from the test provider (in `Creating`).
    pub fn provision(&self) -> Worker {
        self.manager
            .provision_worker(&self.provider.id, spec())
            .expect("provision")
    }

    pub fn provision_with(&self, spec: WorkerSpec) -> Worker {
        self.manager
            .provision_worker(&self.provider.id, Arc::new(spec))
            .expect("provision")
    }

    /// Provisions a worker and has it report in (`Ready`).
    pub fn ready(&self) -> WorkerId {
        let id = self.provision().id;
        self.registry.update_state(&id, WorkerState::Ready).unwrap();
        id
    }

    pub fn ready_with(&self, spec: WorkerSpec) -> WorkerId {
        let id = self.provision_with(spec).id;
        self.registry.update_state(&id, WorkerState::Ready).unwrap();
        id
    }

    pub fn state(&self, id: &WorkerId) -> Option<WorkerState> {
        self.registry.get(id).unwrap().map(|w| w.state)
    }

    /// Drains the event stream.
    pub fn drain(&self) -> Vec<EventKind> {
        self.events.drain().into_iter().map(|e| e.kind).collect()
    }

    /// Names of the drained events about `id` (or of every event, with `None`).
    pub fn names(events: &[EventKind], id: Option<WorkerId>) -> Vec<&'static str> {
        events
            .iter()
            .filter(|e| id.is_none() || e.worker_id() == id)
            .map(|e| e.name())
            .collect()
    }

    /// Every worker id currently registered.
    pub fn ids(&self) -> Vec<WorkerId> {
        self.registry
            .find(&WorkerFilter::new())
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect()
    }

    /// [`assert_no_leak`](Self::assert_no_leak) over several providers: every record's
    /// instance exists at one of them, and every instance has a record.
    pub fn assert_no_leak_of(&self, providers: &[&Arc<TestProvider>]) {
        let mut records: Vec<String> = self
            .registry
            .find(&WorkerFilter::new())
            .unwrap()
            .into_iter()
            .map(|w| w.handle.resource_id.clone())
            .collect();
        records.sort();
        let mut instances: Vec<String> = self.provider.instance_ids();
        for p in providers {
            instances.extend(p.instance_ids());
        }
        instances.sort();
        assert_eq!(instances, records, "instances vs records");
    }

    /// No instance at the provider without a registry record, and vice versa.
    pub fn assert_no_leak(&self) {
        let records: Vec<String> = self
            .registry
            .find(&WorkerFilter::new())
            .unwrap()
            .into_iter()
            .map(|w| w.handle.resource_id.clone())
            .collect();
        let mut records = records;
        records.sort();
        assert_eq!(
            self.provider.instance_ids(),
            records,
            "instances vs records"
        );
    }
}

/// A config with round numbers for the tests.
pub fn config() -> WorkerLifecycleConfig {
    WorkerLifecycleConfig {
        heartbeat_timeout: secs(60),
        health_check_interval: secs(30),
        startup_timeout: secs(300),
        ..WorkerLifecycleConfig::default()
    }
}

/// What is wrong with the pooled workers in service (`Creating`, `Connecting`, `Ready`, `Busy`,
/// carrying a pool label) given a manager's `pools`: one line per worker of a pool `pools` does
/// not have, or that does not fit its pool's template (labels, capabilities, resources,
/// architecture). After a leader's tick its pools own every such worker (§12: a removed pool's
/// workers, or those its new template does not take, are drained).
pub fn misplaced_pooled_workers(registry: &dyn WorkerRegistry, pools: &[Pool]) -> Vec<String> {
    let mut misplaced = Vec::new();
    for w in registry.find(&WorkerFilter::new()).unwrap() {
        let Some(name) = w.spec.labels.get(POOL_LABEL) else {
            continue;
        };
        if !matches!(
            w.state,
            WorkerState::Ready
                | WorkerState::Busy
                | WorkerState::Creating
                | WorkerState::Connecting
        ) {
            continue;
        }
        let Some(pool) = pools.iter().find(|p| p.name == *name) else {
            misplaced.push(format!(
                "worker {} ({:?}) of pool {name}: no such pool",
                w.id, w.state
            ));
            continue;
        };
        let mut need = Requirement::new(1);
        need.labels = pool.template.labels.clone();
        need.capabilities = pool.template.capabilities.clone();
        need.resources = pool.template.resources.clone();
        need.architecture = Some(pool.template.architecture);
        if !need.filter().matches_static(&w.handle, &w.spec) {
            misplaced.push(format!(
                "worker {} ({:?}) of pool {name}: does not fit its template",
                w.id, w.state
            ));
        }
    }
    misplaced
}
