//! Provider calls that call back into the same manager — not only reads (the fixture's
//! provider does those from every call) but the operations that change things:
//! `provision_worker`, `terminate_worker`, `drain_worker`, `tick`, `reconcile`, the health
//! check and cleanup, `unregister_provider`, stopping the ticker that made the call. No lock
//! may be held across a provider call (a deadlock, or a parking_lot re-entry), and the
//! promises hold from inside as from outside: `max_workers`, one destroy per instance, no
//! leak. Every scenario runs on its own thread with a deadline, so a deadlock fails the test
//! instead of hanging it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::common::*;
use hodei_workers::*;

/// What a hook is told about the call it runs inside.
#[derive(Debug, Clone)]
enum Call {
    Create,
    Destroy(WorkerHandle),
    List,
}

type Hook = Box<dyn Fn(&Arc<WorkerLifecycleManager>, &Call) + Send + Sync>;

/// A provider whose calls run `hook` (with the manager that made them) before they act.
struct Reentrant {
    id: ProviderId,
    manager: OnceLock<Weak<WorkerLifecycleManager>>,
    hook: Mutex<Option<Arc<Hook>>>,
    /// resource id -> handle: the instances that exist.
    instances: Mutex<BTreeMap<String, WorkerHandle>>,
    /// Destroy calls per resource id.
    destroy_calls: Mutex<BTreeMap<String, usize>>,
    creates: AtomicUsize,
    /// Instances whose next destroy fails (once each).
    fail_destroy: Mutex<std::collections::BTreeSet<String>>,
    /// The next create returns a handle the registry refuses (a resource id over its limit).
    unregistrable: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Reentrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reentrant").field("id", &self.id).finish()
    }
}

impl Reentrant {
    fn new(name: &str) -> Arc<Self> {
        Arc::new(Reentrant {
            id: pid(name),
            manager: OnceLock::new(),
            hook: Mutex::new(None),
            instances: Mutex::new(BTreeMap::new()),
            destroy_calls: Mutex::new(BTreeMap::new()),
            creates: AtomicUsize::new(0),
            fail_destroy: Mutex::default(),
            unregistrable: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn set_hook(&self, hook: impl Fn(&Arc<WorkerLifecycleManager>, &Call) + Send + Sync + 'static) {
        *self.hook.lock() = Some(Arc::new(Box::new(hook)));
    }

    fn run_hook(&self, call: Call) {
        // Taken out of the lock first: the hook may re-enter this provider.
        let hook = self.hook.lock().clone();
        let manager = self.manager.get().and_then(Weak::upgrade);
        if let (Some(hook), Some(manager)) = (hook, manager) {
            hook(&manager, &call);
        }
    }

    fn destroys_of(&self, resource: &str) -> usize {
        self.destroy_calls
            .lock()
            .get(resource)
            .copied()
            .unwrap_or(0)
    }

    fn instance_ids(&self) -> Vec<String> {
        self.instances.lock().keys().cloned().collect()
    }
}

impl WorkerProvider for Reentrant {
    fn provider_id(&self) -> ProviderId {
        self.id.clone()
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Docker
    }
    fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        let n = self.creates.fetch_add(1, Ordering::SeqCst);
        let resource = if self.unregistrable.swap(false, Ordering::SeqCst) {
            format!("r-{n}-{}", "x".repeat(MAX_RESOURCE_ID_LEN))
        } else {
            format!("r-{n}")
        };
        let handle = WorkerHandle {
            worker_id: id,
            ..WorkerHandle::new(self.id.clone(), ProviderType::Docker, resource)
        };
        // The instance exists from here on (its agent may report in at once).
        self.instances
            .lock()
            .insert(handle.resource_id.clone(), handle.clone());
        self.run_hook(Call::Create);
        Ok(handle)
    }
    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
        *self
            .destroy_calls
            .lock()
            .entry(handle.resource_id.clone())
            .or_default() += 1;
        self.run_hook(Call::Destroy(handle.clone()));
        if self.fail_destroy.lock().remove(&handle.resource_id) {
            return Err(ProviderError::new(format!(
                "{} is locked",
                handle.resource_id
            )));
        }
        match self.instances.lock().remove(&handle.resource_id) {
            Some(_) => Ok(()),
            None => Err(ProviderError::not_found(format!(
                "no instance {}",
                handle.resource_id
            ))),
        }
    }
    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        // The listing is taken first; the hook runs while it travels back to the manager.
        let listed = self.instances.lock().values().cloned().collect();
        self.run_hook(Call::List);
        Ok(listed)
    }
}

struct Setup {
    clock: Arc<ManualClock>,
    registry: Arc<dyn WorkerRegistry>,
    manager: Arc<WorkerLifecycleManager>,
    provider: Arc<Reentrant>,
}

fn setup(config: WorkerLifecycleConfig) -> Setup {
    let clock = Arc::new(ManualClock::new(T0));
    let registry = crate::backend::new_registry(clock.clone());
    let manager = Arc::new(WorkerLifecycleManager::new(registry.clone(), config).unwrap());
    let provider = Reentrant::new("re");
    provider.manager.set(Arc::downgrade(&manager)).unwrap();
    manager.register_provider(provider.clone()).unwrap();
    Setup {
        clock,
        registry,
        manager,
        provider,
    }
}

/// Runs `scenario` on a thread of its own; fails the test if it has not finished within a
/// minute (a deadlock), and re-raises its panic otherwise.
fn within_a_minute(scenario: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let thread = std::thread::spawn(move || {
        scenario();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => thread.join().unwrap(),
        // The sender dropped without a send: the scenario panicked.
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(thread.join().unwrap_err())
        }
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
            panic!("deadlock: a lock was held across a provider call that re-entered the manager")
        }
    }
}

#[test]
fn a_create_that_provisions_again_from_inside_counts_both_against_max_workers() {
    let s = setup(WorkerLifecycleConfig {
        max_workers: 2,
        ..config()
    });
    let nested: Arc<Mutex<Vec<Result<WorkerId>>>> = Arc::default();
    let seen = Arc::clone(&nested);
    let once = std::sync::atomic::AtomicBool::new(false);
    s.provider.set_hook(move |m, call| {
        // Only the outermost create provisions again, twice: the first nested one takes the
        // last place, the second finds none (the outer provision holds its own).
        if let Call::Create = call {
            if !once.swap(true, Ordering::SeqCst) {
                for _ in 0..2 {
                    let r = m.provision_worker(&pid("re"), spec()).map(|w| w.id);
                    seen.lock().push(r);
                }
            }
        }
    });
    let (manager, provider, registry) = (s.manager.clone(), s.provider.clone(), s.registry.clone());
    within_a_minute(move || {
        let outer = manager.provision_worker(&pid("re"), spec()).unwrap();
        let nested = nested.lock();
        assert!(nested[0].is_ok(), "{nested:?}");
        assert!(
            matches!(nested[1], Err(Error::CapacityExceeded(_))),
            "{nested:?}"
        );
        assert_eq!(registry.count().unwrap(), 2);
        assert!(registry.get(&outer.id).unwrap().is_some());
        assert_eq!(provider.instance_ids().len(), 2);
        assert_eq!(manager.stats().unwrap().in_flight, 0);
    });
}

#[test]
fn a_tick_from_inside_a_ticks_provider_call_is_skipped() {
    let s = setup(WorkerLifecycleConfig {
        min_ready_workers: 1,
        ..config()
    });
    s.manager.set_scaling_target(&pid("re"), spec()).unwrap();
    let inner: Arc<Mutex<Vec<TickReport>>> = Arc::default();
    let seen = Arc::clone(&inner);
    s.provider.set_hook(move |m, call| {
        if let Call::Create = call {
            seen.lock().push(m.tick(5));
        }
    });
    let manager = s.manager.clone();
    within_a_minute(move || {
        let outer = manager.tick(0);
        assert_eq!(outer.provisioned.len(), 1, "{:?}", outer.decisions);
        let inner = inner.lock();
        assert_eq!(inner.len(), 1);
        assert!(inner[0].skipped, "{:?}", inner[0].decisions);
        assert!(inner[0].provisioned.is_empty());
    });
}

#[test]
fn a_destroy_that_terminates_its_worker_again_and_drives_the_manager_destroys_once() {
    let s = setup(config());
    let ids: Vec<WorkerId> = (0..3)
        .map(|_| {
            let id = s.manager.provision_worker(&pid("re"), spec()).unwrap().id;
            s.registry.update_state(&id, WorkerState::Ready).unwrap();
            id
        })
        .collect();
    let inner: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&inner);
    let (first, other, third) = (ids[0], ids[1], ids[2]);
    s.provider.set_hook(move |m, call| {
        let Call::Destroy(handle) = call else {
            return;
        };
        if handle.worker_id != first {
            return;
        }
        // The worker being destroyed, asked again: its destroy is under way, not started twice.
        let again = m
            .terminate_worker(&handle.worker_id, TerminationReason::Requested)
            .unwrap();
        seen.lock().push(format!(
            "terminate again: {} terminated, {} failed",
            again.terminated.len(),
            again.failed.len()
        ));
        m.process_heartbeat(&other).unwrap();
        m.drain_worker(&other).unwrap();
        seen.lock()
            .push(format!("tick skipped: {}", m.tick(0).skipped));
        m.run_health_check().unwrap();
        m.cleanup_workers().unwrap();
        m.reconcile().unwrap();
        let _ = m.pending_destroys();
        let _ = m.metrics_text();
        // Another worker, terminated from inside: its own destroy runs nested.
        let t = m
            .terminate_worker(&third, TerminationReason::Requested)
            .unwrap();
        seen.lock()
            .push(format!("third terminated: {}", t.terminated.len()));
    });
    let (manager, provider, registry) = (s.manager.clone(), s.provider.clone(), s.registry.clone());
    within_a_minute(move || {
        let r = manager
            .terminate_worker(&ids[0], TerminationReason::Requested)
            .unwrap();
        assert_eq!(r.terminated.len(), 1, "{r:?}");
        assert!(r.failed.is_empty(), "{r:?}");
        let inner = inner.lock().clone();
        assert_eq!(
            inner,
            [
                "terminate again: 0 terminated, 0 failed",
                "tick skipped: false",
                "third terminated: 1",
            ],
        );
        assert_eq!(registry.get(&ids[0]).unwrap(), None);
        assert_eq!(registry.get(&ids[2]).unwrap(), None);
        // `other` was drained and, idle, retired by the nested cleanup.
        assert_eq!(registry.get(&ids[1]).unwrap(), None);
        for resource in ["r-0", "r-1", "r-2"] {
            assert_eq!(provider.destroys_of(resource), 1, "{resource}");
        }
        assert!(provider.instance_ids().is_empty());
        assert!(manager.pending_destroys().is_empty());
    });
}

#[test]
fn a_provider_call_made_by_the_ticker_can_stop_and_drop_that_ticker() {
    let s = setup(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    s.manager.set_scaling_target(&pid("re"), spec()).unwrap();
    let slot: Arc<Mutex<Option<Ticker>>> = Arc::default();
    let inside = Arc::clone(&slot);
    let (published_tx, published_rx) = crossbeam_channel::bounded::<()>(1);
    let (stopped_tx, stopped_rx) = crossbeam_channel::bounded::<bool>(1);
    s.provider.set_hook(move |_, call| {
        if let Call::Create = call {
            let _ = published_rx.recv();
            // Stop, then drop the handle, both on the ticker's own thread.
            let ticker = inside.lock().take();
            if let Some(ticker) = ticker {
                ticker.stop();
                let _ = stopped_tx.send(true);
                drop(ticker);
            }
        }
    });
    let manager = s.manager.clone();
    let provider = s.provider.clone();
    within_a_minute(move || {
        let before = Arc::strong_count(&manager);
        let ticker = manager
            .start_ticker(Duration::from_millis(1), || 1)
            .unwrap();
        *slot.lock() = Some(ticker);
        published_tx.send(()).unwrap();
        assert!(stopped_rx.recv_timeout(Duration::from_secs(30)).unwrap());
        // The thread ends after that tick, and lets go of the manager.
        for _ in 0..3000 {
            if Arc::strong_count(&manager) == before {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            Arc::strong_count(&manager),
            before,
            "the ticker thread still runs"
        );
        assert_eq!(provider.creates.load(Ordering::SeqCst), 1);
        assert_eq!(manager.registry().count().unwrap(), 1);
    });
}

#[test]
fn a_create_that_unregisters_its_own_provider_leaves_a_worker_that_is_destroyed_once_it_returns() {
    let s = setup(config());
    let unregistered: Arc<Mutex<Vec<Result<()>>>> = Arc::default();
    let seen = Arc::clone(&unregistered);
    s.provider.set_hook(move |m, call| {
        if let Call::Create = call {
            seen.lock().push(m.unregister_provider(&pid("re")));
        }
    });
    let (manager, provider, registry) = (s.manager.clone(), s.provider.clone(), s.registry.clone());
    within_a_minute(move || {
        let w = manager.provision_worker(&pid("re"), spec()).unwrap();
        assert!(unregistered.lock()[0].is_ok());
        assert_eq!(manager.providers(), Vec::<ProviderId>::new());
        assert_eq!(manager.stats().unwrap().in_flight, 0);
        // Its destroy waits for the provider to come back (documented), then goes through once.
        *provider.hook.lock() = None;
        let r = manager
            .terminate_worker(&w.id, TerminationReason::Requested)
            .unwrap();
        assert_eq!(r.failed.len(), 1, "{r:?}");
        manager.register_provider(provider.clone()).unwrap();
        let r = manager
            .terminate_worker(&w.id, TerminationReason::Requested)
            .unwrap();
        assert_eq!(r.terminated.len(), 1, "{r:?}");
        assert_eq!(registry.count().unwrap(), 0);
        assert!(provider.instance_ids().is_empty());
        assert_eq!(provider.destroys_of("r-0"), 1);
    });
}

#[test]
fn a_list_that_provisions_from_inside_is_not_taken_for_an_orphan() {
    let s = setup(config());
    let once = std::sync::atomic::AtomicBool::new(false);
    s.provider.set_hook(move |m, call| {
        if let Call::List = call {
            if !once.swap(true, Ordering::SeqCst) {
                m.provision_worker(&pid("re"), spec()).unwrap();
            }
        }
    });
    let (manager, provider, registry) = (s.manager.clone(), s.provider.clone(), s.registry.clone());
    within_a_minute(move || {
        let r = manager.reconcile().unwrap();
        assert!(r.orphans.is_empty(), "{r:?}");
        assert!(r.vanished.is_empty(), "{r:?}");
        assert_eq!(registry.count().unwrap(), 1);
        assert_eq!(provider.instance_ids().len(), 1);
        assert_eq!(provider.destroys_of("r-0"), 0);
    });
}

/// Found by the stress test below: a worker's destroy that completes (instance destroyed,
/// record unregistered) while `reconcile` lists the provider's instances left the instance in
/// the listing and its record out of the registry read that followed: reconcile took it for an
/// orphan and destroyed it a second time (a resource id reused by then would be another
/// instance).
#[test]
fn a_destroy_completing_during_reconciles_listing_is_not_destroyed_again_as_an_orphan() {
    let s = setup(config());
    let w = s.manager.provision_worker(&pid("re"), spec()).unwrap().id;
    s.registry.update_state(&w, WorkerState::Ready).unwrap();
    let once = std::sync::atomic::AtomicBool::new(false);
    s.provider.set_hook(move |m, call| {
        // While the listing (which shows the instance) is on its way back: the worker is
        // terminated, its instance destroyed, its record unregistered.
        if let Call::List = call {
            if !once.swap(true, Ordering::SeqCst) {
                let r = m
                    .terminate_worker(&w, TerminationReason::Requested)
                    .unwrap();
                assert_eq!(r.terminated.len(), 1, "{r:?}");
            }
        }
    });
    let (manager, provider, registry) = (s.manager.clone(), s.provider.clone(), s.registry.clone());
    within_a_minute(move || {
        let r = manager.reconcile().unwrap();
        assert_eq!(registry.get(&w).unwrap(), None);
        assert_eq!(
            provider.destroys_of("r-0"),
            1,
            "destroyed again as an orphan: {r:?}"
        );
        assert!(r.orphans.is_empty(), "{r:?}");
    });
}

/// The same race with the ticks' retry of an orphan whose first destroy failed: the retry
/// confirms the destroy while a `reconcile` lists the instance.
#[test]
fn an_orphan_destroyed_by_a_tick_during_reconciles_listing_is_not_destroyed_again() {
    let s = setup(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    let orphan = WorkerHandle::new(pid("re"), ProviderType::Docker, "lost-1");
    s.provider
        .instances
        .lock()
        .insert("lost-1".to_owned(), orphan);
    s.provider.fail_destroy.lock().insert("lost-1".to_owned());
    let first = s.manager.reconcile().unwrap();
    assert_eq!(first.orphans.len(), 1, "{first:?}");
    assert!(first.orphans[0].error.is_some(), "{first:?}");
    assert_eq!(s.manager.pending_orphans().len(), 1);
    s.clock.advance(secs(3600));
    let once = std::sync::atomic::AtomicBool::new(false);
    s.provider.set_hook(move |m, call| {
        if let Call::List = call {
            if !once.swap(true, Ordering::SeqCst) {
                // The tick retries the orphan's destroy, which succeeds this time.
                m.tick(0);
            }
        }
    });
    let (manager, provider) = (s.manager.clone(), s.provider.clone());
    within_a_minute(move || {
        let r = manager.reconcile().unwrap();
        assert!(manager.pending_orphans().is_empty());
        assert!(provider.instance_ids().is_empty());
        assert_eq!(
            provider.destroys_of("lost-1"),
            2,
            "one failed destroy, one that succeeded, and no more: {r:?}"
        );
    });
}

/// An orphan a tick's retry is destroying right now is left to it by a `reconcile` that lists
/// it meanwhile (here: one called from inside that very destroy), and the other way round.
#[test]
fn an_orphan_being_destroyed_by_one_thread_is_not_destroyed_by_another() {
    let s = setup(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    for name in ["lost-1", "lost-2"] {
        let orphan = WorkerHandle::new(pid("re"), ProviderType::Docker, name);
        s.provider.instances.lock().insert(name.to_owned(), orphan);
        s.provider.fail_destroy.lock().insert(name.to_owned());
    }
    let first = s.manager.reconcile().unwrap();
    assert_eq!(first.orphans.len(), 2, "{first:?}");
    assert_eq!(s.manager.pending_orphans().len(), 2);
    s.clock.advance(secs(3600));
    let nested: Arc<Mutex<Vec<ReconcileReport>>> = Arc::default();
    let seen = Arc::clone(&nested);
    let once = std::sync::atomic::AtomicBool::new(false);
    s.provider.set_hook(move |m, call| {
        if let Call::Destroy(h) = call {
            // The tick's retry of lost-1 is under way: a reconcile runs meanwhile.
            if h.resource_id == "lost-1" && !once.swap(true, Ordering::SeqCst) {
                let r = m.reconcile().unwrap();
                seen.lock().push(r);
            }
        }
    });
    let (manager, provider) = (s.manager.clone(), s.provider.clone());
    within_a_minute(move || {
        manager.tick(0);
        let nested = nested.lock();
        // The nested reconcile destroyed lost-2 (nobody else was), not lost-1.
        let destroyed: Vec<&str> = nested[0]
            .orphans
            .iter()
            .map(|o| o.resource_id.as_str())
            .collect();
        assert_eq!(destroyed, ["lost-2"], "{:?}", nested[0]);
        assert_eq!(provider.destroys_of("lost-1"), 2, "one failed, one retried");
        assert_eq!(
            provider.destroys_of("lost-2"),
            2,
            "one failed, one by reconcile"
        );
        assert!(provider.instance_ids().is_empty());
        assert!(manager.pending_orphans().is_empty());
    });
}

/// A created instance the registry refuses to record is destroyed by `provision_worker`; its
/// provision stopped counting as in flight before that destroy, so a `reconcile` listing the
/// instance meanwhile took it for an orphan and destroyed it too (here: one called from inside
/// that destroy).
#[test]
fn an_unregistrable_instance_being_destroyed_by_its_provision_is_not_destroyed_again() {
    let s = setup(config());
    s.provider.unregistrable.store(true, Ordering::SeqCst);
    let nested: Arc<Mutex<Vec<ReconcileReport>>> = Arc::default();
    let seen = Arc::clone(&nested);
    let once = std::sync::atomic::AtomicBool::new(false);
    s.provider.set_hook(move |m, call| {
        if let Call::Destroy(_) = call {
            if !once.swap(true, Ordering::SeqCst) {
                seen.lock().push(m.reconcile().unwrap());
            }
        }
    });
    let (manager, provider) = (s.manager.clone(), s.provider.clone());
    within_a_minute(move || {
        let e = manager.provision_worker(&pid("re"), spec()).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        let nested = nested.lock();
        assert_eq!(
            nested[0].orphans.len(),
            0,
            "taken for an orphan: {:?}",
            nested[0].orphan_check_skipped
        );
        let calls: usize = provider.destroy_calls.lock().values().sum();
        assert_eq!(calls, 1, "{:?}", provider.destroy_calls.lock());
        assert!(provider.instance_ids().is_empty());
        assert_eq!(manager.stats().unwrap().in_flight, 0);
    });
}

// ----- concurrency -------------------------------------------------------------------------

/// A provider that counts, per worker and per instance, every call the manager makes: creates
/// per worker id, destroy calls per instance and those made after the instance was confirmed
/// gone; every seventh create and every fifth destroy fails.
#[derive(Debug, Default)]
struct Counting {
    instances: Mutex<BTreeMap<String, WorkerHandle>>,
    creates_per_worker: Mutex<BTreeMap<WorkerId, usize>>,
    /// Instances whose destroy was confirmed (Ok or NotFound).
    gone: Mutex<std::collections::BTreeSet<String>>,
    /// Destroy calls for an instance already confirmed gone: a second destroy of one worker.
    destroys_after_gone: Mutex<Vec<String>>,
    next: AtomicUsize,
    destroys: AtomicUsize,
    peak: AtomicUsize,
}

impl WorkerProvider for Counting {
    fn provider_id(&self) -> ProviderId {
        pid("count")
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Docker
    }
    fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        *self.creates_per_worker.lock().entry(id).or_default() += 1;
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        if n % 7 == 6 {
            return Err(ProviderError::new("flaky create"));
        }
        let handle = WorkerHandle {
            worker_id: id,
            ..WorkerHandle::new(pid("count"), ProviderType::Docker, format!("c-{n}"))
        };
        let mut instances = self.instances.lock();
        instances.insert(handle.resource_id.clone(), handle.clone());
        self.peak.fetch_max(instances.len(), Ordering::SeqCst);
        Ok(handle)
    }
    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
        if self.gone.lock().contains(&handle.resource_id) {
            self.destroys_after_gone
                .lock()
                .push(handle.resource_id.clone());
        }
        if self.destroys.fetch_add(1, Ordering::SeqCst) % 5 == 4 {
            return Err(ProviderError::new("flaky destroy"));
        }
        self.gone.lock().insert(handle.resource_id.clone());
        match self.instances.lock().remove(&handle.resource_id) {
            Some(_) => Ok(()),
            None => Err(ProviderError::not_found("no such instance")),
        }
    }
    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        Ok(self.instances.lock().values().cloned().collect())
    }
}

#[derive(Default)]
struct Lost(Mutex<Vec<(WorkerId, JobId)>>);

impl Lost {
    fn add(&self, jobs: &[LostJob]) {
        self.0
            .lock()
            .extend(jobs.iter().map(|l| (l.worker_id, l.job_id.clone())));
    }
}

/// Provisions from several threads race the ticker thread, a second ticking thread,
/// terminations, drains, reconciles and the provider being unregistered and registered again.
/// After the run and a wind-down: the provider never held more than `max_workers` instances,
/// no worker was created twice nor destroyed again once its instance was gone, nothing leaked,
/// and every `JobLost` the registry emitted is in the result of the call that lost it.
#[test]
fn provisions_racing_ticks_terminations_drains_and_provider_churn_keep_every_promise() {
    const MAX: usize = 5;
    let clock = Arc::new(ManualClock::new(T0));
    let registry = crate::backend::new_registry(clock.clone());
    let events = registry
        .subscribe(SubscribeOptions::default().capacity(1 << 22))
        .unwrap();
    let manager = Arc::new(
        WorkerLifecycleManager::new(
            registry.clone(),
            WorkerLifecycleConfig {
                max_workers: MAX,
                min_ready_workers: 2,
                scale_up_cooldown: Duration::ZERO,
                scale_down_cooldown: Duration::ZERO,
                destroy_retry_initial: ms(10),
                destroy_retry_max: ms(40),
                provider_backoff_initial: ms(10),
                provider_backoff_max: ms(40),
                health_check_interval: secs(1),
                ..config()
            },
        )
        .unwrap(),
    );
    let provider = Arc::new(Counting::default());
    manager.register_provider(provider.clone()).unwrap();
    manager.set_scaling_target(&pid("count"), spec()).unwrap();
    let lost = Arc::new(Lost::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let demand = Arc::new(AtomicUsize::new(3));
    let mut threads = Vec::new();

    let ticker = {
        let (lost, demand) = (lost.clone(), demand.clone());
        manager
            .start_ticker_with(
                Duration::from_millis(1),
                move || demand.load(Ordering::Relaxed),
                move |r| lost.add(&r.lost_jobs),
            )
            .unwrap()
    };
    // A second thread ticks too (skipped while the ticker ticks), and moves the clock.
    {
        let (m, clock, stop, lost, demand) = (
            manager.clone(),
            clock.clone(),
            stop.clone(),
            lost.clone(),
            demand.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                clock.advance(ms(50));
                demand.store((n % 7) as usize, Ordering::Relaxed);
                lost.add(&m.tick((n % 5) as usize).lost_jobs);
            }
        }));
    }
    for _ in 0..2 {
        let (m, stop) = (manager.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match m.provision_worker(&pid("count"), spec()) {
                    Ok(_)
                    | Err(Error::CapacityExceeded(_))
                    | Err(Error::Provider { .. })
                    | Err(Error::ProviderNotFound(_)) => {}
                    Err(e) => panic!("unexpected provisioning error {e}"),
                }
            }
        }));
    }
    // Agents and scheduler; every few rounds a termination, a drain or a reconcile.
    {
        let (m, r, stop, lost) = (
            manager.clone(),
            registry.clone(),
            stop.clone(),
            lost.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                for (i, w) in r
                    .find(&WorkerFilter::new())
                    .unwrap()
                    .into_iter()
                    .enumerate()
                {
                    let k = n.wrapping_mul(31).wrapping_add(i as u64);
                    match w.state {
                        WorkerState::Creating => {
                            let _ = r.update_state(&w.id, WorkerState::Ready);
                        }
                        WorkerState::Busy if k % 3 == 0 => {
                            let _ = r.release_from_job(&w.id, w.current_job.as_ref());
                        }
                        _ => {}
                    }
                    let _ = m.process_heartbeat(&w.id);
                    match k % 29 {
                        0 => {
                            if let Ok(c) = m.terminate_worker(&w.id, TerminationReason::Requested) {
                                lost.add(&c.lost_jobs);
                            }
                        }
                        1 => {
                            let _ = m.drain_worker(&w.id);
                        }
                        _ => {}
                    }
                }
                let _ = r.claim(&WorkerFilter::new(), job(&format!("job-{n}")));
                if n % 17 == 0 {
                    if let Ok(rec) = m.reconcile() {
                        lost.add(&rec.lost_jobs);
                    }
                }
            }
        }));
    }
    // The provider leaves and comes back (its target with it).
    {
        let (m, p, stop) = (manager.clone(), provider.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                m.unregister_provider(&pid("count")).unwrap();
                std::thread::yield_now();
                m.register_provider(p.clone()).unwrap();
                m.set_scaling_target(&pid("count"), spec()).unwrap();
            }
        }));
    }

    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    ticker.stop();
    assert!(ticker.stats().ticks > 0);

    // Wind down: no target, everything terminated, the retries finished.
    manager.clear_scaling_target();
    for w in registry.find(&WorkerFilter::new()).unwrap() {
        if let Ok(c) = manager.terminate_worker(&w.id, TerminationReason::Requested) {
            lost.add(&c.lost_jobs);
        }
    }
    for _ in 0..200 {
        if manager.pending_destroys().is_empty() {
            break;
        }
        clock.advance(ms(50));
        lost.add(&manager.tick(0).lost_jobs);
    }

    let peak = provider.peak.load(Ordering::SeqCst);
    assert!(
        peak <= MAX,
        "the provider held {peak} instances, max_workers {MAX}"
    );
    let twice: Vec<_> = provider
        .creates_per_worker
        .lock()
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect();
    assert!(
        twice.is_empty(),
        "workers created more than once: {twice:?}"
    );
    assert_eq!(
        *provider.destroys_after_gone.lock(),
        Vec::<String>::new(),
        "instances destroyed again after their destroy was confirmed"
    );
    assert!(manager.pending_destroys().is_empty());
    assert_eq!(registry.count().unwrap(), 0);
    assert_eq!(
        provider
            .instances
            .lock()
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "leaked instances"
    );
    let stats = manager.stats().unwrap();
    assert_eq!(stats.in_flight, 0);
    assert!(stats.provisioned_total > MAX as u64, "{stats:?}");

    assert_eq!(events.dropped(), 0);
    let mut emitted: Vec<(WorkerId, JobId)> = events
        .drain()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::JobLost { worker_id, job_id } => Some((worker_id, job_id)),
            _ => None,
        })
        .collect();
    let mut reported = lost.0.lock().clone();
    emitted.sort();
    reported.sort();
    assert_eq!(emitted, reported, "JobLost events vs lost jobs in results");
    assert_eq!(stats.lost_jobs_total, reported.len() as u64);
}
