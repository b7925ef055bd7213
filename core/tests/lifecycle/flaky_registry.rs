//! The manager on a registry that can fail (as a shared-database backend may): no panic, errors
//! reported, and no instance forgotten while the registry cannot answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::*;
use crate::test_registry::{Call, Hooks, TestRegistry};
use hodei_workers::*;

/// The faults a [`Flaky`] registry injects: `get`, `register`, `unregister` and the deadline
/// queries fail on demand; the next `register` or `unregister` can be applied and answered
/// `Backend` all the same (its reply lost after the commit), and so can the next move of a
/// given worker to `Terminating` or `Draining`.
#[derive(Debug, Default)]
struct Faults {
    fail_get: AtomicBool,
    fail_register: AtomicBool,
    fail_unregister: AtomicBool,
    lose_register_reply: AtomicBool,
    lose_unregister_reply: AtomicBool,
    fail_queries: AtomicBool,
    fail_grace: AtomicBool,
    fail_stats: AtomicBool,
    /// The next `register` panics (a host's own registry with a bug), once.
    panic_register: AtomicBool,
    /// The next `register` panics with this message, once.
    panic_register_with: parking_lot::Mutex<Option<String>>,
    /// The next `unregister` panics, once.
    panic_unregister: AtomicBool,
    /// When set to `n`, the `unregister` after the next `n` ones panics, once.
    panic_unregister_after: parking_lot::Mutex<Option<usize>>,
    /// The next move of this worker to `Terminating` panics (a host's own registry with a bug).
    panic_terminating_of: parking_lot::Mutex<Option<WorkerId>>,
    /// Simulates the agent's release arriving between the manager's two state changes.
    release_before_terminating: AtomicBool,
    /// The move of this worker to `Terminating` fails (the database goes away mid-check).
    fail_terminating_of: parking_lot::Mutex<Option<WorkerId>>,
    /// When set, `find_by_provider` (a scan without a filter) and `find_by_resource_ids` (the
    /// orphan retries' look) answer this many more times, then fail.
    scans_before_failing: parking_lot::Mutex<Option<usize>>,
    /// Simulates a starting worker's agent reporting in and the scheduler giving it this job
    /// right before the manager's move of it to `Terminating`.
    claim_before_terminating: parking_lot::Mutex<Option<JobId>>,
    /// The look-up of this pool's workers (a `find` by its pool label) fails.
    fail_find_of_pool: parking_lot::Mutex<Option<String>>,
    /// The move of this worker to `Draining` fails.
    fail_draining_of: parking_lot::Mutex<Option<WorkerId>>,
    /// The next move of this worker to `Draining` panics (a host's own registry with a bug).
    panic_draining_of: parking_lot::Mutex<Option<WorkerId>>,
    /// When set to `n`, the move to `Draining` after the next `n` ones panics, once.
    panic_draining_after: parking_lot::Mutex<Option<usize>>,
    /// The next move of this worker to `Terminating` is applied and answered `Backend` (its
    /// reply lost after the commit).
    lose_terminating_reply_of: parking_lot::Mutex<Option<WorkerId>>,
    /// The same for its next move to `Draining`.
    lose_draining_reply_of: parking_lot::Mutex<Option<WorkerId>>,
    /// The next `n` look-ups (`get`) of this worker fail (a blip of the registry).
    fail_gets_of: parking_lot::Mutex<Option<(WorkerId, usize)>>,
    /// Look-ups (`get`) of this worker answer `n` more times, then fail for good (a row the
    /// backend can no longer return).
    fail_gets_of_after: parking_lot::Mutex<Option<(WorkerId, usize)>>,
    /// The next `unregister` turns `fail_get` on (the registry stops answering right after it).
    fail_get_after_unregister: AtomicBool,
    /// The next look-up of this pool's workers says so on the gate's first channel and waits
    /// for the second before it answers (a drain caught in the middle).
    pause_find_of_pool: parking_lot::Mutex<Option<PoolGate>>,
}

/// Where a paused look-up of a pool's workers waits (see [`Faults::pause_find_of_pool`]).
#[derive(Debug)]
struct PoolGate {
    pool: String,
    entered: crossbeam_channel::Sender<()>,
    open: crossbeam_channel::Receiver<()>,
}

fn down() -> Error {
    Error::Backend("database unreachable".to_owned())
}

fn check(flag: &AtomicBool) -> Result<()> {
    if flag.load(Ordering::SeqCst) {
        Err(down())
    } else {
        Ok(())
    }
}

impl Hooks for Faults {
    fn before(&self, call: Call<'_>, inner: &dyn WorkerRegistry) -> Result<()> {
        match call {
            Call::Get(id) => {
                let mut gets = self.fail_gets_of.lock();
                if let Some((of, n)) = gets.as_mut() {
                    if of == id && *n > 0 {
                        *n -= 1;
                        return Err(down());
                    }
                }
                let mut after = self.fail_gets_of_after.lock();
                if let Some((of, n)) = after.as_mut() {
                    if of == id {
                        if *n == 0 {
                            return Err(down());
                        }
                        *n -= 1;
                    }
                }
                check(&self.fail_get)
            }
            Call::Register(_) => {
                if self.panic_register.swap(false, Ordering::SeqCst) {
                    panic!("registry bug in register");
                }
                if let Some(text) = self.panic_register_with.lock().take() {
                    panic!("{text}");
                }
                check(&self.fail_register)
            }
            Call::Unregister(_) => {
                if self.panic_unregister.swap(false, Ordering::SeqCst) {
                    panic!("registry bug in unregister");
                }
                let mut after = self.panic_unregister_after.lock();
                match *after {
                    Some(0) => {
                        *after = None;
                        drop(after);
                        panic!("registry bug in unregister");
                    }
                    Some(n) => *after = Some(n - 1),
                    None => {}
                }
                check(&self.fail_unregister)
            }
            Call::GrantGrace => check(&self.fail_grace),
            Call::Stats => check(&self.fail_stats),
            Call::Find(Some(filter))
                if filter
                    .labels
                    .get(POOL_LABEL)
                    .is_some_and(|pool| self.fail_find_of_pool.lock().as_ref() == Some(pool)) =>
            {
                Err(down())
            }
            Call::Find(Some(filter)) if filter.labels.contains_key(POOL_LABEL) => {
                let gate = {
                    let mut paused = self.pause_find_of_pool.lock();
                    let ours = paused
                        .as_ref()
                        .is_some_and(|g| filter.labels.get(POOL_LABEL) == Some(&g.pool));
                    if ours {
                        paused.take()
                    } else {
                        None
                    }
                };
                if let Some(gate) = gate {
                    gate.entered.send(()).unwrap();
                    gate.open.recv().unwrap();
                }
                Ok(())
            }
            Call::Find(None) | Call::FindByResourceIds(_) => {
                match &mut *self.scans_before_failing.lock() {
                    Some(0) => Err(down()),
                    Some(n) => {
                        *n -= 1;
                        Ok(())
                    }
                    None => Ok(()),
                }
            }
            c if c.is_deadline_query() => check(&self.fail_queries),
            c => {
                if let Some(id) = c.moves_to(WorkerState::Draining) {
                    if *self.fail_draining_of.lock() == Some(*id) {
                        return Err(down());
                    }
                    let mut panics = self.panic_draining_of.lock();
                    if *panics == Some(*id) {
                        *panics = None;
                        drop(panics);
                        panic!("registry bug in a move to Draining");
                    }
                    drop(panics);
                    let mut after = self.panic_draining_after.lock();
                    match *after {
                        Some(0) => {
                            *after = None;
                            drop(after);
                            panic!("registry bug in a move to Draining");
                        }
                        Some(n) => *after = Some(n - 1),
                        None => {}
                    }
                }
                if let Some(id) = c.moves_to(WorkerState::Terminating) {
                    if *self.fail_terminating_of.lock() == Some(*id) {
                        return Err(down());
                    }
                    let mut panics = self.panic_terminating_of.lock();
                    if *panics == Some(*id) {
                        *panics = None;
                        drop(panics);
                        panic!("registry bug in a move to Terminating");
                    }
                    if let Some(job) = self.claim_before_terminating.lock().take() {
                        inner.update_state(id, WorkerState::Ready)?;
                        inner.assign_to_job(id, job)?;
                    }
                    if self
                        .release_before_terminating
                        .swap(false, Ordering::SeqCst)
                    {
                        inner.release_from_job(id, None)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn after(&self, call: Call<'_>, _inner: &dyn WorkerRegistry) {
        if matches!(call, Call::Unregister(_))
            && self.fail_get_after_unregister.swap(false, Ordering::SeqCst)
        {
            self.fail_get.store(true, Ordering::SeqCst);
        }
    }

    fn lose_reply(&self, call: Call<'_>) -> Option<Error> {
        for (to, of) in [
            (WorkerState::Terminating, &self.lose_terminating_reply_of),
            (WorkerState::Draining, &self.lose_draining_reply_of),
        ] {
            if let Some(id) = call.moves_to(to) {
                let mut of = of.lock();
                if *of == Some(*id) {
                    *of = None;
                    return Some(Error::Backend(
                        "connection closed before the reply (committed)".into(),
                    ));
                }
            }
        }
        let lost = match call {
            Call::Register(_) => &self.lose_register_reply,
            Call::Unregister(_) => &self.lose_unregister_reply,
            _ => return None,
        };
        lost.swap(false, Ordering::SeqCst)
            .then(|| Error::Backend("connection closed before the reply (committed)".into()))
    }
}

/// A registry of the backend under test that fails on demand (see [`Faults`]).
struct Flaky {
    registry: TestRegistry,
    faults: Arc<Faults>,
}

impl std::ops::Deref for Flaky {
    type Target = TestRegistry;
    fn deref(&self) -> &TestRegistry {
        &self.registry
    }
}

impl Flaky {
    /// The registry cannot answer a read of the records (`get`, and a scan such as
    /// `find_by_provider`: what the ticks' orphan retries read) while `failing`.
    fn reads_fail(&self, failing: bool) {
        self.faults.fail_get.store(failing, Ordering::SeqCst);
        *self.faults.scans_before_failing.lock() = failing.then_some(0);
    }
}

/// The backend's registry at `T0`, wrapped with fault switches.
fn flaky_registry() -> (Arc<ManualClock>, Flaky) {
    let clock = Arc::new(ManualClock::new(T0));
    let faults = Arc::new(Faults::default());
    let flaky = Flaky {
        registry: TestRegistry::with_hooks(
            crate::backend::new_registry(clock.clone()),
            faults.clone(),
        ),
        faults,
    };
    (clock, flaky)
}

/// Sets one pool, `a` (`min_ready` `n`), and makes the `n` workers its tick provisions `Ready`.
fn ready_workers_of_pool_a(
    flaky: &Flaky,
    manager: &WorkerLifecycleManager,
    n: usize,
) -> Vec<WorkerId> {
    manager
        .set_pools(vec![Pool::new("a", pid("test"), WorkerSpec::new("img"))
            .unwrap()
            .with_min_ready(n)])
        .unwrap();
    let report = manager.tick(Demand::new());
    assert_eq!(report.provisioned.len(), n, "{:?}", report.decisions);
    let ids: Vec<WorkerId> = report.provisioned.iter().map(|p| p.worker_id).collect();
    for id in &ids {
        flaky.update_state(id, WorkerState::Ready).unwrap();
    }
    ids
}

/// `n` workers of `spec` provisioned from provider `test` and moved to `Ready`.
fn ready_workers(
    flaky: &Flaky,
    manager: &WorkerLifecycleManager,
    n: usize,
    spec: Arc<WorkerSpec>,
) -> Vec<WorkerId> {
    (0..n)
        .map(|_| {
            let id = manager
                .provision_worker(&pid("test"), spec.clone())
                .unwrap()
                .id;
            flaky.update_state(&id, WorkerState::Ready).unwrap();
            id
        })
        .collect()
}

/// The first two of `ids` in id order (the order a health check takes them in), given the
/// jobs `job-first` and `job-second`.
fn two_busy(flaky: &Flaky, ids: &[WorkerId]) -> [WorkerId; 2] {
    let mut busy = [ids[0], ids[1]];
    busy.sort();
    flaky.assign_to_job(&busy[0], job("job-first")).unwrap();
    flaky.assign_to_job(&busy[1], job("job-second")).unwrap();
    busy
}

/// `report` is a tick's that panicked in `phase` with `message`: said in `panicked` and in a
/// line of `decisions`.
fn assert_panicked_in(report: &TickReport, phase: &str, message: &str) {
    assert_eq!(
        report.panicked.as_deref(),
        Some(message),
        "{:?}",
        report.decisions
    );
    let line = format!("tick panicked in the {phase} phase: {message}; the rest of the tick");
    assert!(
        report.decisions.iter().any(|d| d.starts_with(&line)),
        "no {line:?} in {:?}",
        report.decisions
    );
}

/// `report` terminated exactly one worker, one of `ids`, for `reason`, and it is gone from
/// `flaky`; returns it.
fn assert_one_terminated(
    report: &TickReport,
    ids: &[WorkerId],
    reason: TerminationReason,
    flaky: &Flaky,
) -> WorkerId {
    let terminated: Vec<(WorkerId, TerminationReason)> = report
        .terminated
        .iter()
        .map(|t| (t.worker_id, t.reason))
        .collect();
    assert_eq!(terminated.len(), 1, "{:?}", report.decisions);
    assert!(ids.contains(&terminated[0].0), "{terminated:?}");
    assert_eq!(terminated[0].1, reason);
    assert_eq!(flaky.get(&terminated[0].0).unwrap(), None);
    terminated[0].0
}

/// A manager over `flaky` with `config`, provider `test` registered, and a scaling target of
/// [`spec`] on it.
fn target_manager(
    flaky: &Flaky,
    config: WorkerLifecycleConfig,
) -> (WorkerLifecycleManager, Arc<TestProvider>) {
    let manager = WorkerLifecycleManager::new(flaky.shared(), config).unwrap();
    let provider = TestProvider::new("test");
    manager.register_provider(provider.clone()).unwrap();
    manager.set_scaling_target(&pid("test"), spec()).unwrap();
    (manager, provider)
}

fn setup() -> (
    Arc<ManualClock>,
    Flaky,
    WorkerLifecycleManager,
    Arc<TestProvider>,
) {
    let (clock, flaky) = flaky_registry();
    let manager = WorkerLifecycleManager::new(flaky.shared(), config()).unwrap();
    let provider = TestProvider::new("test");
    manager.register_provider(provider.clone()).unwrap();
    (clock, flaky, manager, provider)
}

#[test]
fn a_record_that_cannot_be_unregistered_stays_queued_until_it_can() {
    let (clock, flaky, manager, provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    flaky.faults.fail_unregister.store(true, Ordering::SeqCst);
    let r = manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    assert!(
        r.terminated.is_empty(),
        "not confirmed while the record stays"
    );
    assert!(
        provider.instance_ids().is_empty(),
        "the instance is destroyed"
    );
    assert_eq!(manager.pending_destroys().len(), 1);
    assert_eq!(
        flaky.get(&w.id).unwrap().unwrap().state,
        WorkerState::Terminating
    );

    flaky.faults.fail_unregister.store(false, Ordering::SeqCst);
    clock.advance(secs(1));
    let c = manager.cleanup_workers().unwrap();
    assert_eq!(c.terminated.len(), 1);
    assert!(flaky.get(&w.id).unwrap().is_none());
    assert!(manager.pending_destroys().is_empty());
    // The retry only unregistered: the provider confirmed the instance gone the first time,
    // and is not asked twice for one worker.
    assert_eq!(destroy_calls(&provider, &w), 1, "{:?}", provider.calls());
}

fn destroy_calls(provider: &TestProvider, w: &Worker) -> usize {
    provider.destroys_of(&w.handle.resource_id)
}

/// An unregister applied by the store but answered `Backend` (its reply lost): the manager asks
/// the registry, finds the record gone, and reports the worker terminated -- once: no later
/// tick calls the provider again or reports it a second time.
///
/// The worker was reported nowhere: its destroy and unregister were done, the call said
/// neither (`terminated` empty), the next tick found the record gone and dropped the entry
/// without a word, and `terminated_total` never counted it.
#[test]
fn an_unregister_whose_reply_was_lost_is_not_followed_by_a_second_destroy() {
    let (clock, flaky, manager, provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    flaky
        .faults
        .lose_unregister_reply
        .store(true, Ordering::SeqCst);
    let r = manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    assert_eq!(
        r.terminated,
        vec![TerminatedWorker {
            worker_id: w.id,
            provider_id: pid("test"),
            resource_id: w.handle.resource_id.clone(),
            reason: TerminationReason::Requested,
        }],
        "destroyed and unregistered (the reply was lost, the registry says so): {r:?}"
    );
    assert_eq!(manager.stats().unwrap().terminated_total, 1);
    assert!(manager.pending_destroys().is_empty());
    assert!(flaky.get(&w.id).unwrap().is_none(), "applied all the same");
    for _ in 0..5 {
        clock.advance(secs(30));
        let t = manager.tick(0);
        assert!(t.terminated.is_empty(), "{t:?}");
    }
    assert!(manager.pending_destroys().is_empty());
    assert_eq!(destroy_calls(&provider, &w), 1, "{:?}", provider.calls());
    assert_eq!(manager.stats().unwrap().terminated_total, 1);
}

/// The instance of a provision: the one the provider holds (none destroyed yet).
fn only_instance(provider: &TestProvider) -> WorkerHandle {
    let instances = provider.instances.lock();
    assert_eq!(instances.len(), 1, "{instances:?}");
    instances.values().next().unwrap().clone()
}

/// Found by review (pg/tests review_ambiguous_register): on PostgreSQL a `register` can commit
/// and still answer `Backend` (the connection dropped before the reply). `provision_worker`
/// took every such error for "not recorded" and destroyed the instance: a `Creating` record
/// without an instance, counted as capacity on its way until the startup timeout, whose
/// expiry destroyed it a second time. The registry is asked instead: the worker is registered.
#[test]
fn a_registration_applied_but_answered_backend_is_a_provisioned_worker() {
    let (clock, flaky, manager, provider) = setup();
    flaky
        .faults
        .lose_register_reply
        .store(true, Ordering::SeqCst);
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    assert_eq!(w.state, WorkerState::Creating);
    assert_eq!(flaky.get(&w.id).unwrap().unwrap().handle, w.handle);
    assert_eq!(provider.instance_ids(), vec![w.handle.resource_id.clone()]);
    assert_eq!(manager.stats().unwrap().provisioned_total, 1);
    // It comes up as any worker does; nothing destroys it.
    flaky.update_state(&w.id, WorkerState::Ready).unwrap();
    for _ in 0..5 {
        clock.advance(secs(30));
        flaky.heartbeat(&w.id).unwrap();
        manager.tick(0);
    }
    assert_eq!(destroy_calls(&provider, &w), 0, "{:?}", provider.calls());
    assert!(manager.pending_orphans().is_empty());
}

/// A registration answered `Backend` while the registry cannot say whether it holds the
/// worker either: the instance is neither destroyed blindly (it may be a registered worker's)
/// nor leaked. It is kept as an orphan: once the registry answers, a tick destroys it if no
/// record holds it (here: the registration was not applied) — once.
#[test]
fn a_registration_whose_outcome_is_unknown_keeps_the_instance_until_the_registry_says() {
    let (clock, flaky, manager, provider) = setup();
    flaky.faults.fail_register.store(true, Ordering::SeqCst);
    flaky.reads_fail(true);
    let err = manager.provision_worker(&pid("test"), spec()).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err}");
    flaky.faults.fail_register.store(false, Ordering::SeqCst);
    let instance = only_instance(&provider);
    assert!(provider.destroyed.lock().is_empty(), "{err}");
    assert_eq!(manager.pending_orphans().len(), 1);
    // Still no answer from the registry: still not destroyed, nor a failed attempt.
    clock.advance(secs(30));
    manager.tick(0);
    assert!(provider.destroyed.lock().is_empty());
    assert_eq!(manager.pending_orphans().len(), 1);
    assert_eq!(manager.pending_orphans()[0].attempts, 0);
    assert_eq!(manager.stats().unwrap().destroy_failures_total, 0);
    // It answers: no record holds the instance, so it goes.
    flaky.reads_fail(false);
    for _ in 0..3 {
        clock.advance(secs(30));
        manager.tick(0);
    }
    assert!(provider.instance_ids().is_empty());
    assert_eq!(
        provider.destroys_of(&instance.resource_id),
        1,
        "{:?}",
        provider.calls()
    );
    assert!(manager.pending_orphans().is_empty());
    assert!(flaky.get(&instance.worker_id).unwrap().is_none());
}

/// A provision whose registration is applied but answered `Backend`, with every read failing
/// (so `provision_worker` cannot tell whether it was applied, and says so); reads still fail
/// when it returns. Returns the created instance.
fn provision_with_its_registration_unknown(
    flaky: &Flaky,
    manager: &WorkerLifecycleManager,
    provider: &TestProvider,
) -> WorkerHandle {
    flaky
        .faults
        .lose_register_reply
        .store(true, Ordering::SeqCst);
    flaky.reads_fail(true);
    let err = manager.provision_worker(&pid("test"), spec()).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err}");
    only_instance(provider)
}

/// As above, but the registration was applied: once the registry answers, the worker is found
/// registered and its instance is kept.
#[test]
fn a_registration_applied_whose_outcome_was_unknown_keeps_its_instance() {
    let (clock, flaky, manager, provider) = setup();
    let instance = provision_with_its_registration_unknown(&flaky, &manager, &provider);
    flaky.reads_fail(false);
    for _ in 0..3 {
        clock.advance(secs(30));
        manager.tick(0);
    }
    assert!(
        provider.destroyed.lock().is_empty(),
        "{:?}",
        provider.calls()
    );
    assert!(manager.pending_orphans().is_empty());
    assert!(flaky.get(&instance.worker_id).unwrap().is_some());
}

#[test]
fn a_registry_that_cannot_say_whether_a_worker_exists_keeps_its_destroy_queued() {
    let (clock, flaky, manager, provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    provider.script_destroys([DestroyStep::Fail("later")]);
    manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    flaky.faults.fail_get.store(true, Ordering::SeqCst);
    clock.advance(secs(1));
    let c = manager.cleanup_workers().unwrap();
    assert!(c.terminated.is_empty() && c.failed.is_empty());
    assert_eq!(manager.pending_destroys().len(), 1, "not forgotten");
    assert_eq!(provider.instance_ids().len(), 1);
    flaky.faults.fail_get.store(false, Ordering::SeqCst);
    clock.advance(secs(2));
    assert_eq!(manager.cleanup_workers().unwrap().terminated.len(), 1);
    assert!(provider.instance_ids().is_empty());
}

#[test]
fn tick_reports_registry_errors_instead_of_failing() {
    let (_clock, flaky, manager, _provider) = setup();
    flaky.faults.fail_queries.store(true, Ordering::SeqCst);
    let r = manager.tick(0);
    assert!(!r.health_checked);
    assert!(r
        .decisions
        .iter()
        .any(|d| d == "health check failed: backend error: database unreachable"));
    assert!(r
        .decisions
        .iter()
        .any(|d| d == "cleanup failed: backend error: database unreachable"));
    assert_eq!(manager.run_health_check().unwrap_err(), down());
    assert_eq!(manager.cleanup_workers().unwrap_err(), down());
    flaky.faults.fail_queries.store(false, Ordering::SeqCst);
    assert!(manager.tick(0).health_checked, "retried on the next tick");
}

/// `hodei_workers_health_checks_total` and the health-check histogram's `_count`, and
/// `hodei_workers_ticks_total`, of `manager`'s metrics.
fn check_counts(manager: &WorkerLifecycleManager) -> [f64; 3] {
    let text = manager.metrics_text();
    [
        "hodei_workers_health_checks_total",
        "hodei_workers_health_check_duration_seconds_count",
        "hodei_workers_ticks_total",
    ]
    .map(|name| {
        let line = text
            .lines()
            .find(|l| l.rsplit_once(' ').map(|(k, _)| k) == Some(name))
            .unwrap_or_else(|| panic!("no sample {name}:\n{text}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    })
}

/// A health check counts (`hodei_workers_health_checks_total`, the histogram's `_count`) once
/// it began — its deadline queries asked, even when they fail — and not when it checked
/// nothing: here refused because the grace period the fleet is owed after a host stall could
/// not be granted ("until it can, nothing is checked"). A tick counts whatever it reports.
#[test]
fn a_health_check_counts_once_it_began_and_a_tick_whatever_it_reports() {
    let (clock, flaky, manager, _provider) = setup();
    assert!(manager.tick(0).health_checked);
    assert_eq!(check_counts(&manager), [1.0, 1.0, 1.0]);
    // A host stall whose grace period cannot be granted: the tick checks nothing, and neither
    // does a direct call, refused with the registry's error.
    clock.advance(secs(61));
    flaky.faults.fail_grace.store(true, Ordering::SeqCst);
    let r = manager.tick(0);
    assert!(!r.health_checked, "{:?}", r.decisions);
    assert_eq!(manager.run_health_check().unwrap_err(), down());
    assert_eq!(check_counts(&manager), [1.0, 1.0, 2.0], "nothing checked");
    // The grace granted, the deadline queries fail: that check began, and counts.
    flaky.faults.fail_grace.store(false, Ordering::SeqCst);
    flaky.faults.fail_queries.store(true, Ordering::SeqCst);
    assert_eq!(manager.run_health_check().unwrap_err(), down());
    assert_eq!(
        check_counts(&manager),
        [2.0, 2.0, 2.0],
        "a check that failed"
    );
    // So does a tick's check that fails, and the tick that reports it.
    let r = manager.tick(0);
    assert!(
        r.decisions
            .iter()
            .any(|d| d.starts_with("health check failed")),
        "{:?}",
        r.decisions
    );
    assert_eq!(check_counts(&manager), [3.0, 3.0, 3.0]);
}

/// The cleanup retries the due destroys first, then asks the registry what else is due; that
/// question failing returned the error alone, dropping the workers the same call had just
/// destroyed and unregistered: in no `CleanupResult`, no `TickReport` (only "cleanup
/// failed"), though `terminated_total` counted them.
#[test]
fn a_registry_failure_after_the_destroy_retries_keeps_them_in_the_cleanup_result() {
    let (clock, flaky, manager, provider) = setup();
    // A worker whose destroy failed, due for its retry, and the deadline queries failing.
    let retried = || {
        let w = manager.provision_worker(&pid("test"), spec()).unwrap();
        provider.script_destroys([DestroyStep::Fail("cloud down")]);
        let t = manager
            .terminate_worker(&w.id, TerminationReason::Requested)
            .unwrap();
        assert_eq!(t.failed.len(), 1, "{t:?}");
        clock.advance(secs(3));
        flaky.faults.fail_queries.store(true, Ordering::SeqCst);
        w.id
    };

    let w = retried();
    let c = manager
        .cleanup_workers()
        .expect("the destroy it retried is reported");
    assert_eq!(
        c.terminated.iter().map(|t| t.worker_id).collect::<Vec<_>>(),
        [w],
        "{c:?}"
    );
    assert!(flaky.get(&w).unwrap().is_none());
    assert_eq!(manager.stats().unwrap().terminated_total, 1);
    // Nothing done before the failure: the error, as before.
    assert_eq!(manager.cleanup_workers().unwrap_err(), down());

    // A tick reports both: the destroy, and the failure.
    flaky.faults.fail_queries.store(false, Ordering::SeqCst);
    let w = retried();
    let r = manager.tick(0);
    assert_eq!(
        r.terminated.iter().map(|t| t.worker_id).collect::<Vec<_>>(),
        [w],
        "{:?}",
        r.decisions
    );
    assert!(
        r.decisions
            .iter()
            .any(|d| d == "cleanup failed: backend error: database unreachable"),
        "{:?}",
        r.decisions
    );
}

/// The brake lets go when the fleet is back under the limit, with a fresh grace period for the
/// stragglers. When the registry failed to grant it, the check returned the error but the
/// brake had already let go: the next check expired the stragglers in one batch, as if it had
/// never held — what the grace period is for.
#[test]
fn a_brake_release_whose_grace_period_failed_releases_again_at_the_next_check() {
    let (clock, flaky, manager, _provider) = setup();
    let ids = ready_workers(&flaky, &manager, 10, spec());
    // 6 of 10 silent: more than floor(0.55 * 10), the brake holds.
    clock.advance(secs(61));
    for id in &ids[..4] {
        manager.process_heartbeat(id).unwrap();
    }
    let check = manager.run_health_check().unwrap();
    assert!(check.held.is_some(), "{check:?}");
    // Two come back: 4 silent, under the limit; the release's grace period fails.
    for id in &ids[4..6] {
        manager.process_heartbeat(id).unwrap();
    }
    flaky.faults.fail_grace.store(true, Ordering::SeqCst);
    assert_eq!(manager.run_health_check().unwrap_err(), down());
    flaky.faults.fail_grace.store(false, Ordering::SeqCst);
    let check = manager.run_health_check().unwrap();
    assert!(check.unhealthy.is_empty(), "{check:?}");
    assert!(check.brake_released, "{check:?}");
    assert_eq!(flaky.count().unwrap(), 10);
}

#[test]
fn a_job_released_while_its_worker_is_taken_out_of_service_is_not_reported_lost() {
    let (_clock, flaky, manager, _provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap().id;
    flaky.update_state(&w, WorkerState::Ready).unwrap();
    flaky.assign_to_job(&w, job("done-just-now")).unwrap();
    let events = flaky.subscribe(SubscribeOptions::default()).unwrap();
    flaky
        .faults
        .release_before_terminating
        .store(true, Ordering::SeqCst);
    let r = manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert!(
        r.lost_jobs.is_empty(),
        "it finished: requeueing would run it twice"
    );
    let names: Vec<&str> = events.drain().iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        // The release lands just before the conditional move to Terminating (no Draining step
        // any more: `transition_if` returns exactly the job the move took, here none).
        vec![
            "released_from_job",
            "state_changed",
            "state_changed",
            "unregistered"
        ]
    );
    // And without the release, the same path reports the job.
    let w = manager.provision_worker(&pid("test"), spec()).unwrap().id;
    flaky.update_state(&w, WorkerState::Ready).unwrap();
    flaky.assign_to_job(&w, job("running")).unwrap();
    let r = manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: w,
            job_id: job("running")
        }]
    );
}

/// The health check takes silent workers out of service one by one; the registry failing on
/// one of them (a database gone mid-check) must not drop what the check did to the others:
/// it returned the error alone, so the job of a worker it had already moved to
/// `Terminating` (and whose `JobLost` the registry had emitted) was in no result, and the
/// manager's counters missed it.
#[test]
fn a_registry_failure_mid_health_check_keeps_the_jobs_already_lost_in_its_result() {
    let (clock, flaky, manager, _provider) = setup();
    let ids = ready_workers(&flaky, &manager, 10, spec());
    // Two busy workers go silent (2 of 10: the brake lets them through).
    let silent = two_busy(&flaky, &ids);
    clock.advance(secs(61));
    for id in &ids[2..] {
        manager.process_heartbeat(id).unwrap();
    }
    let events = flaky.subscribe(SubscribeOptions::default()).unwrap();
    // The check moves them in id order: the second move fails.
    *flaky.faults.fail_terminating_of.lock() = Some(silent[1]);
    let r = manager.run_health_check();
    let lost_events: Vec<JobId> = events
        .drain()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::JobLost { job_id, .. } => Some(job_id),
            _ => None,
        })
        .collect();
    assert_eq!(lost_events, vec![job("job-first")]);
    let r = r.expect("the jobs lost before the failure are reported");
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: silent[0],
            job_id: job("job-first")
        }]
    );
    assert_eq!(r.unhealthy.len(), 1, "{r:?}");
    assert_eq!(manager.stats().unwrap().lost_jobs_total, 1);
    // The other one is left as it is, and taken out by the next check.
    assert_eq!(
        flaky.get(&silent[1]).unwrap().unwrap().state,
        WorkerState::Busy
    );
    *flaky.faults.fail_terminating_of.lock() = None;
    let again = manager.run_health_check().unwrap();
    assert_eq!(
        again.lost_jobs,
        vec![LostJob {
            worker_id: silent[1],
            job_id: job("job-second")
        }]
    );
}

/// A host's registry that panics with a megabyte of text (a whole response body in the
/// message): the tick's report carries at most [`MAX_PROVIDER_MESSAGE_LEN`] bytes of it, in
/// `panicked` and in its decisions line, as a provider's message is cut. Before, the whole
/// text was copied into both, and on into the ticker's reports, logs and the bindings.
#[test]
fn a_tick_that_panics_with_a_huge_message_reports_its_head() {
    let (_clock, flaky) = flaky_registry();
    let (manager, _provider) = target_manager(
        &flaky,
        WorkerLifecycleConfig {
            min_ready_workers: 1,
            ..config()
        },
    );
    let huge = format!("registry bug: {}", "é".repeat(1 << 19));
    *flaky.faults.panic_register_with.lock() = Some(huge.clone());
    let report = manager.tick(0);
    let said = report.panicked.as_deref().expect("the tick panicked");
    assert!(
        said.len() <= MAX_PROVIDER_MESSAGE_LEN && said.ends_with("… (truncated)"),
        "{} bytes",
        said.len()
    );
    assert!(huge.starts_with(said.trim_end_matches("… (truncated)")));
    let line = report
        .decisions
        .iter()
        .find(|d| d.starts_with("tick panicked in the scaling phase: registry bug: é"))
        .expect("a decisions line names the panic");
    assert!(
        line.len() <= MAX_PROVIDER_MESSAGE_LEN + 200,
        "{} bytes",
        line.len()
    );
}

/// A busy worker goes silent and a tick's health check takes it out of service (its job
/// reported lost); then the registry panics in the `register` of the same tick's scaling (a
/// host's own registry with a bug). The tick returns the report built so far — the lost job
/// in it, the panic said — instead of unwinding: before, the report was dropped with the
/// unwind, and the job, already taken out of the registry (its `JobLost` emitted), reached no
/// host that requeues from the tick's reports. The manager goes on: the next tick works and
/// the registry's counts are a recount of its records.
#[test]
fn a_tick_that_panics_after_its_health_check_returns_the_jobs_it_lost() {
    let (clock, flaky) = flaky_registry();
    let (manager, provider) = target_manager(
        &flaky,
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            scale_up_cooldown: std::time::Duration::ZERO,
            ..config()
        },
    );
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    flaky.update_state(&w.id, WorkerState::Ready).unwrap();
    flaky.assign_to_job(&w.id, job("running")).unwrap();
    // Ticks closer together than heartbeat_timeout (no host stall): the second finds the
    // worker silent for longer than the timeout.
    clock.advance(secs(40));
    let first = manager.tick(0);
    assert!(first.lost_jobs.is_empty(), "{:?}", first.decisions);
    clock.advance(secs(40));
    flaky.faults.panic_register.store(true, Ordering::SeqCst);
    let report = manager.tick(1);
    assert_eq!(
        report.lost_jobs,
        vec![LostJob {
            worker_id: w.id,
            job_id: job("running")
        }],
        "{:?}",
        report.decisions
    );
    assert_eq!(report.unhealthy.len(), 1, "{:?}", report.decisions);
    assert!(report.provisioned.is_empty(), "{:?}", report.decisions);
    assert_eq!(
        report.panicked.as_deref(),
        Some("registry bug in register"),
        "{:?}",
        report.decisions
    );
    assert!(
        report.decisions.iter().any(|d| d.starts_with(
            "tick panicked in the scaling phase: registry bug in register; the rest of the \
             tick was not done"
        )),
        "{:?}",
        report.decisions
    );
    // Nothing held: the tick flag, the provision's ledger ticket.
    assert_eq!(manager.stats().unwrap().in_flight, 0);
    let next = manager.tick(1);
    assert!(!next.skipped, "{:?}", next.decisions);
    assert_eq!(next.panicked, None, "{:?}", next.decisions);
    assert_eq!(next.provisioned.len(), 1, "{:?}", next.decisions);
    let all = flaky.find(&WorkerFilter::new()).unwrap();
    assert_eq!(
        manager.stats().unwrap().registry,
        WorkerRegistryStats::recount(&all)
    );
    assert_eq!(manager.stats().unwrap().lost_jobs_total, 1);
    // Three ticks ran, the panicked one among them; it is counted apart too.
    let text = manager.metrics_text();
    for line in [
        "hodei_workers_ticks_total 3",
        "hodei_workers_tick_panics_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    // The instance the panicked provision had created is no record's: destroyed by the
    // orphan retries of the tick after it.
    assert_eq!(
        provider.instance_ids().len(),
        all.len(),
        "{:?}",
        provider.calls()
    );
}

/// A tick's health check takes two silent busy workers out of service, in id order, and the
/// registry panics on the move of the second (a host's own registry with a bug). The first
/// one's job, already taken out of the registry (its `JobLost` emitted), is in the tick's
/// report with the worker declared unhealthy and destroyed: before 2026-12-08 the health
/// check's result went with the unwind, and the report held nothing of the phase.
#[test]
fn a_tick_whose_health_check_panics_midway_reports_what_it_did_before() {
    let (clock, flaky, manager, _provider) = setup();
    let ids = ready_workers(&flaky, &manager, 10, spec());
    // Two busy workers go silent (2 of 10: the brake lets them through).
    let silent = two_busy(&flaky, &ids);
    // Ticks closer together than heartbeat_timeout (no host stall): the second finds the
    // two silent for longer than the timeout.
    clock.advance(secs(40));
    for id in &ids[2..] {
        manager.process_heartbeat(id).unwrap();
    }
    let first = manager.tick(0);
    assert!(first.lost_jobs.is_empty(), "{:?}", first.decisions);
    clock.advance(secs(40));
    for id in &ids[2..] {
        manager.process_heartbeat(id).unwrap();
    }
    // The check moves them in id order: the second move panics.
    *flaky.faults.panic_terminating_of.lock() = Some(silent[1]);
    let report = manager.tick(0);
    assert_panicked_in(
        &report,
        "health check",
        "registry bug in a move to Terminating",
    );
    assert_eq!(
        report.lost_jobs,
        vec![LostJob {
            worker_id: silent[0],
            job_id: job("job-first")
        }],
        "{:?}",
        report.decisions
    );
    let unhealthy: Vec<WorkerId> = report.unhealthy.iter().map(|u| u.worker_id).collect();
    assert_eq!(unhealthy, vec![silent[0]]);
    let terminated: Vec<WorkerId> = report.terminated.iter().map(|t| t.worker_id).collect();
    assert_eq!(terminated, vec![silent[0]]);
    assert_eq!(manager.stats().unwrap().lost_jobs_total, 1);
    // The second is left as it was, and the next tick's check takes it out.
    assert_eq!(
        flaky.get(&silent[1]).unwrap().unwrap().state,
        WorkerState::Busy
    );
    let next = manager.tick(0);
    assert_eq!(next.panicked, None, "{:?}", next.decisions);
    assert_eq!(
        next.lost_jobs,
        vec![LostJob {
            worker_id: silent[1],
            job_id: job("job-second")
        }],
        "{:?}",
        next.decisions
    );
}

/// A tick's cleanup retires two idle workers one after the other, and the registry panics in
/// the unregister of the second. The first, destroyed and unregistered, is in the tick's
/// `terminated`: before 2026-12-08 the cleanup's result went with the unwind. The second's
/// destroy stays queued and a later tick finishes it.
#[test]
fn a_tick_whose_cleanup_panics_midway_reports_the_workers_it_terminated_before() {
    let (clock, flaky, manager, provider) = setup();
    let idle = Arc::new(WorkerSpec::new("img").with_idle_timeout(secs(30)));
    let ids = ready_workers(&flaky, &manager, 2, idle);
    clock.advance(secs(40));
    for id in &ids {
        manager.process_heartbeat(id).unwrap();
    }
    // The unregister after the next one panics.
    *flaky.faults.panic_unregister_after.lock() = Some(1);
    let report = manager.tick(0);
    assert_panicked_in(&report, "cleanup", "registry bug in unregister");
    let done = assert_one_terminated(&report, &ids, TerminationReason::Idle, &flaky);
    // The other one's destroy is retried until it is done.
    let other = *ids.iter().find(|id| **id != done).unwrap();
    for _ in 0..10 {
        if flaky.get(&other).unwrap().is_none() {
            break;
        }
        clock.advance(secs(10));
        let _ = manager.tick(0);
    }
    assert_eq!(flaky.get(&other).unwrap(), None);
    assert!(provider.instance_ids().is_empty(), "{:?}", provider.calls());
}

/// The ticks' periodic reconcile finds two busy workers' instances gone and unregisters them
/// as vanished, one after the other; the registry panics in the second unregister. The first
/// one's job is in the tick's `lost_jobs`: before 2026-12-08 the reconcile's report, which
/// held it, went with the unwind.
#[test]
fn a_tick_whose_reconcile_panics_midway_reports_the_jobs_of_the_records_it_removed() {
    let (clock, flaky, manager, provider) = setup();
    let ids = ready_workers(&flaky, &manager, 10, spec());
    // Every worker busy (none retired idle meanwhile); two instances vanish (2 of 10: the
    // brake lets them through).
    let jobs: Vec<JobId> = (0..ids.len()).map(|i| job(&format!("job-{i}"))).collect();
    for (id, job) in ids.iter().zip(&jobs) {
        flaky.assign_to_job(id, job.clone()).unwrap();
    }
    for id in &ids[..2] {
        provider.lose(&flaky.get(id).unwrap().unwrap().handle.resource_id);
    }
    // The unregister after the next one panics: the reconcile's second.
    *flaky.faults.panic_unregister_after.lock() = Some(1);
    let interval = manager.config().reconcile_interval;
    let mut waited = std::time::Duration::ZERO;
    let report = loop {
        assert!(waited <= interval + secs(60), "no reconcile panicked");
        clock.advance(secs(30));
        waited += secs(30);
        for id in &ids {
            let _ = manager.process_heartbeat(id);
        }
        let report = manager.tick(0);
        if report.panicked.is_some() {
            break report;
        }
        assert!(report.lost_jobs.is_empty(), "{:?}", report.decisions);
    };
    assert_panicked_in(&report, "reconcile", "registry bug in unregister");
    assert_eq!(report.lost_jobs.len(), 1, "{:?}", report.decisions);
    let lost = &report.lost_jobs[0];
    let at = ids.iter().position(|id| *id == lost.worker_id).unwrap();
    assert_eq!(lost.job_id, jobs[at]);
    assert_eq!(flaky.get(&lost.worker_id).unwrap(), None);
    assert_eq!(manager.stats().unwrap().lost_jobs_total, 1);
}

/// The scaling target retires two idle workers in one tick, and the registry panics in the
/// unregister of the second. The first, destroyed and unregistered, is in the tick's
/// `terminated`: before 2026-12-08 the scale-down's destroys returned their list at the end,
/// and the unwind took it.
#[test]
fn a_tick_whose_scale_down_panics_midway_reports_the_workers_it_terminated_before() {
    let (clock, flaky) = flaky_registry();
    let (manager, _provider) = target_manager(
        &flaky,
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            ..config()
        },
    );
    let ids = ready_workers(&flaky, &manager, 2, spec());
    clock.advance(secs(1));
    // The unregister after the next one panics: the scale-down's second.
    *flaky.faults.panic_unregister_after.lock() = Some(1);
    let report = manager.tick(0);
    assert_panicked_in(&report, "scaling", "registry bug in unregister");
    assert_one_terminated(&report, &ids, TerminationReason::ScaledDown, &flaky);
}

/// An interrupted busy worker's deadline passes: the tick terminates it, its job reported
/// lost, and the registry panics in its unregister. The job is in the tick's `lost_jobs`:
/// before 2026-12-08 it was only in the registry's `JobLost` event, the termination's result
/// gone with the unwind.
#[test]
fn a_tick_that_panics_in_an_interruptions_destroy_reports_its_job_lost() {
    let (clock, flaky, manager, _provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap().id;
    flaky.update_state(&w, WorkerState::Ready).unwrap();
    flaky.assign_to_job(&w, job("running")).unwrap();
    manager
        .notify_interruption(&w, clock.now() + 10_000)
        .unwrap();
    clock.advance(secs(20));
    manager.process_heartbeat(&w).unwrap();
    flaky.faults.panic_unregister.store(true, Ordering::SeqCst);
    let report = manager.tick(0);
    assert_panicked_in(&report, "scaling", "registry bug in unregister");
    assert_eq!(
        report.lost_jobs,
        vec![LostJob {
            worker_id: w,
            job_id: job("running")
        }],
        "{:?}",
        report.decisions
    );
    assert_eq!(manager.stats().unwrap().lost_jobs_total, 1);
}

/// `reconcile` withdraws the destroy entry of a `Terminating` record whose instance vanished,
/// then unregisters it; the registry panicking in that unregister (a host's own registry with
/// a bug; a tick or a binding catches it and goes on) lost the entry: the record stayed, with
/// no destroy queued, its failed attempts forgotten. The entry is put back as it was.
#[test]
fn a_reconcile_whose_unregister_panics_keeps_the_destroy_entry_it_withdrew() {
    let (clock, flaky, manager, provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    provider.script_destroys([DestroyStep::Fail("api 503")]);
    let r = manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    assert_eq!(r.failed.len(), 1, "{r:?}");
    let before = manager.pending_destroys();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].1, 1, "one failed attempt");
    provider.lose(&w.handle.resource_id);
    // Old enough to be judged vanished (registered before the listing began).
    clock.advance(secs(1));
    flaky.faults.panic_unregister.store(true, Ordering::SeqCst);
    let reconciled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| manager.reconcile()));
    assert!(
        reconciled.is_err(),
        "the registry's panic unwinds out of reconcile(): {:?}",
        reconciled.as_ref().ok()
    );
    assert_eq!(
        flaky.get(&w.id).unwrap().map(|w| w.state),
        Some(WorkerState::Terminating)
    );
    assert_eq!(manager.pending_destroys(), before);
}

/// `reconcile` goes provider by provider; the registry failing on a later provider's records
/// returned that error alone, dropping the report of what was done already — the job of a
/// worker whose instance had vanished (unregistered, its `JobLost` emitted) was in no result.
#[test]
fn a_registry_failure_mid_reconcile_keeps_the_jobs_already_lost_in_its_report() {
    let (clock, flaky, manager, provider) = setup();
    // A second provider, reconciled after "test" (providers go in id order).
    let other = TestProvider::new("zz");
    manager.register_provider(other.clone()).unwrap();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    flaky.update_state(&w.id, WorkerState::Ready).unwrap();
    flaky
        .assign_to_job(&w.id, job("on-a-lost-instance"))
        .unwrap();
    provider.lose(&w.handle.resource_id);
    clock.advance(secs(1));
    // The first provider's records are read; the second's are not.
    *flaky.faults.scans_before_failing.lock() = Some(1);
    let events = flaky.subscribe(SubscribeOptions::default()).unwrap();
    let r = manager.reconcile();
    let lost_events = events
        .drain()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::JobLost { .. }))
        .count();
    assert_eq!(lost_events, 1);
    let r = r.expect("the jobs lost before the failure are reported");
    assert_eq!(r.vanished, vec![w.id]);
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: w.id,
            job_id: job("on-a-lost-instance")
        }]
    );
    assert_eq!(r.checked, vec![pid("test")], "{r:?}");
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(r.errors[0].0, pid("zz"));
    assert!(r.errors[0].1.contains("database unreachable"), "{r:?}");
    assert_eq!(manager.stats().unwrap().lost_jobs_total, 1);
}

/// Removing a pool drains its workers; starting ones hold no job, so they are terminated. The
/// look at the pool's workers may be stale by the time each is acted on: a worker that reported
/// in and took a job meanwhile was terminated all the same (`terminate_worker` takes a worker
/// out of service whatever it does), its job lost — and the loss in no result (`remove_pool`
/// returns ids). It must be drained like the other busy ones: its job finishes first.
#[test]
fn a_starting_worker_that_took_a_job_as_its_pool_is_removed_is_drained_not_terminated() {
    let (_clock, flaky, manager, provider) = setup();
    manager
        .set_pools(vec![
            Pool::new("p", pid("test"), WorkerSpec::new("img")).unwrap()
        ])
        .unwrap();
    let report = manager.tick(1);
    assert_eq!(report.provisioned.len(), 1, "{:?}", report.decisions);
    let w = report.provisioned[0].worker_id;
    assert_eq!(flaky.get(&w).unwrap().unwrap().state, WorkerState::Creating);
    let events = flaky.subscribe(SubscribeOptions::default()).unwrap();
    *flaky.faults.claim_before_terminating.lock() = Some(job("just-claimed"));
    let drained = manager.remove_pool("p").unwrap();
    assert_eq!(drained, vec![w]);
    let lost = events
        .drain()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::JobLost { .. }))
        .count();
    assert_eq!(lost, 0, "its job was lost");
    let now = flaky.get(&w).unwrap().expect("still registered");
    assert_eq!(now.state, WorkerState::Draining);
    assert_eq!(now.current_job, Some(job("just-claimed")));
    assert_eq!(provider.instance_ids().len(), 1, "not destroyed");
}

/// The same stale look in `notify_interruption`: a worker still starting when looked at was
/// terminated at once (it holds no job), also when it had reported in and taken a job by
/// then — lost before its deadline, and in no result. It must drain like a running worker: the
/// job is reported lost only if it still runs at the deadline.
#[test]
fn a_starting_worker_that_took_a_job_as_it_is_interrupted_drains_until_the_deadline() {
    let (clock, flaky, manager, provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap().id;
    let events = flaky.subscribe(SubscribeOptions::default()).unwrap();
    *flaky.faults.claim_before_terminating.lock() = Some(job("just-claimed"));
    let deadline = clock.now() + 120_000;
    let noticed = manager.notify_interruption(&w, deadline).unwrap();
    let lost = events
        .drain()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::JobLost { .. }))
        .count();
    assert_eq!(lost, 0, "its job was lost before the deadline");
    assert_eq!(noticed.state, WorkerState::Draining);
    assert_eq!(noticed.current_job, Some(job("just-claimed")));
    assert_eq!(manager.interruptions(), vec![(w, deadline)]);
    assert_eq!(provider.instance_ids().len(), 1, "not destroyed");
    // Still running at the deadline: reported lost by the tick that reaches it.
    clock.advance(secs(121));
    manager.process_heartbeat(&w).unwrap();
    let r = manager.tick(0);
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: w,
            job_id: job("just-claimed")
        }],
        "{:?}",
        r.decisions
    );
}

/// A replicated manager competes for the backend's own lease (PostgreSQL's; the in-memory
/// registry has none and the manager always leads) and writes through the backend's fenced
/// view: the faults reach those writes too, since the test registry wraps the view.
#[test]
fn a_replicated_managers_fenced_writes_meet_the_faults() {
    let (_clock, flaky) = flaky_registry();
    let manager = WorkerLifecycleManager::replicated(
        flaky.shared(),
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            ..config()
        },
        "flaky-replica",
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let provider = TestProvider::new("test");
    manager.register_provider(provider.clone()).unwrap();
    let r = manager.tick(0);
    if !r.leading {
        // A backend whose registries are views of a term held for the whole test (the
        // PostgreSQL fenced suite): its lease is taken, rightly.
        assert!(
            r.leader
                .as_ref()
                .is_some_and(|l| l.holder != "flaky-replica"),
            "{r:?}"
        );
        return;
    }
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    flaky.update_state(&w.id, WorkerState::Ready).unwrap();
    *flaky.faults.fail_terminating_of.lock() = Some(w.id);
    let err = manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err}");
    assert_eq!(
        flaky.get(&w.id).unwrap().unwrap().state,
        WorkerState::Ready,
        "the fault stopped the manager's write"
    );
    *flaky.faults.fail_terminating_of.lock() = None;
    manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    assert!(flaky.get(&w.id).unwrap().is_none());
}

/// `set_pools` drains the workers of every pool it removes, pool by pool; the registry failing
/// on a later pool's workers returned that error alone: the workers of the pools drained
/// before were out of service (`Draining`) and in no result, and the failed pool's workers
/// were never drained (the pool was gone, `remove_pool` refused its name). The call now drains
/// every pool it can, says in its error what it did, and the next call retries the rest.
#[test]
fn a_registry_failure_mid_set_pools_says_what_was_drained_and_the_next_call_finishes() {
    let (_clock, flaky, manager, _provider) = setup();
    let pool = |name: &str| {
        Pool::new(name, pid("test"), WorkerSpec::new("img"))
            .unwrap()
            .with_min_ready(1)
    };
    manager
        .set_pools(vec![pool("a"), pool("b"), pool("c")])
        .unwrap();
    let report = manager.tick(Demand::new());
    assert_eq!(report.provisioned.len(), 3, "{:?}", report.decisions);
    let mut of_pool = BTreeMap::new();
    for p in &report.provisioned {
        flaky
            .update_state(&p.worker_id, WorkerState::Ready)
            .unwrap();
        let w = flaky.get(&p.worker_id).unwrap().unwrap();
        of_pool.insert(w.spec.labels[POOL_LABEL].clone(), w.id);
    }
    // The pools are removed in name order; "b"'s workers cannot be listed.
    *flaky.faults.fail_find_of_pool.lock() = Some("b".to_owned());
    let err = manager.set_pools(vec![]).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err}");
    let state = |id: &WorkerId| flaky.get(id).unwrap().unwrap().state;
    for name in ["a", "c"] {
        let id = of_pool[name];
        assert_eq!(state(&id), WorkerState::Draining, "pool {name}");
        assert!(
            err.to_string().contains(&id.to_string()),
            "the error does not name {id} of pool {name}, drained: {err}"
        );
    }
    assert!(err.to_string().contains("\"b\""), "{err}");
    assert_eq!(state(&of_pool["b"]), WorkerState::Ready);
    assert!(manager.pools().is_empty());
    // The next call drains what the failure left.
    *flaky.faults.fail_find_of_pool.lock() = None;
    assert_eq!(manager.set_pools(vec![]).unwrap(), vec![of_pool["b"]]);
    assert_eq!(state(&of_pool["b"]), WorkerState::Draining);
    assert_eq!(manager.set_pools(vec![]).unwrap(), vec![]);
}

/// Pool "a" with two workers made `Ready`, then removed by `set_pools(vec![])` while the
/// registry fails on the second one's drain: the ids, and the `Backend` error the call answered.
fn removed_pool_whose_second_drain_fails(
    flaky: &Flaky,
    manager: &WorkerLifecycleManager,
) -> (Vec<WorkerId>, Error) {
    let ids = ready_workers_of_pool_a(flaky, manager, 2);
    *flaky.faults.fail_draining_of.lock() = Some(ids[1]);
    let err = manager.set_pools(vec![]).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err}");
    (ids, err)
}

/// The same when the registry fails on one worker of a removed pool: its drain failed
/// silently (`set_pools` answered `Ok` with the others), and nothing would ever drain it —
/// a worker of a pool that no longer exists, still taking jobs.
#[test]
fn a_registry_failure_on_one_workers_drain_is_said_and_retried_by_the_next_call() {
    let (_clock, flaky, manager, _provider) = setup();
    let (ids, err) = removed_pool_whose_second_drain_fails(&flaky, &manager);
    assert!(err.to_string().contains(&ids[0].to_string()), "{err}");
    assert!(err.to_string().contains("\"a\""), "{err}");
    let state = |id: &WorkerId| flaky.get(id).unwrap().unwrap().state;
    assert_eq!(state(&ids[0]), WorkerState::Draining);
    assert_eq!(state(&ids[1]), WorkerState::Ready);
    *flaky.faults.fail_draining_of.lock() = None;
    assert_eq!(manager.remove_pool("a").unwrap(), vec![ids[1]]);
    assert_eq!(state(&ids[1]), WorkerState::Draining);
    assert!(
        manager.remove_pool("a").is_err(),
        "drained: the name is gone"
    );
}

/// `remove_pool` of a name left in `undrained` (its drain cut short by the registry) drains
/// it. Called while the leader's tick was draining that very name (the tick had taken it out
/// of `undrained`, its drain not over), it answered `InvalidArgument` ("no pool named") —
/// the answer hung on the race, though the pool's workers were being drained. It is `Ok`
/// with no id now (the tick's report has them); once the drain is over, the name is gone.
#[test]
fn remove_pool_of_a_name_a_tick_is_draining_is_no_error() {
    let (clock, flaky, manager, _provider) = setup();
    let (ids, _) = removed_pool_whose_second_drain_fails(&flaky, &manager);
    *flaky.faults.fail_draining_of.lock() = None;
    let (entered, entered_rx) = crossbeam_channel::unbounded();
    let (open_tx, open) = crossbeam_channel::unbounded();
    *flaky.faults.pause_find_of_pool.lock() = Some(PoolGate {
        pool: "a".to_owned(),
        entered,
        open,
    });
    clock.advance(secs(1));
    let (removed, report) = std::thread::scope(|s| {
        let tick = s.spawn(|| manager.tick(Demand::new()));
        // The tick has taken "a" and is looking up its workers.
        entered_rx.recv().unwrap();
        let removed = manager.remove_pool("a");
        open_tx.send(()).unwrap();
        (removed, tick.join().unwrap())
    });
    assert_eq!(
        removed.unwrap(),
        vec![],
        "remove_pool of a pool whose drain a tick is running"
    );
    assert_eq!(report.drained, vec![ids[1]], "{:?}", report.decisions);
    assert_eq!(
        flaky.get(&ids[1]).unwrap().unwrap().state,
        WorkerState::Draining
    );
    // Drained before this call began: the name is no pool's any more.
    let err = manager.remove_pool("a").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

/// A tick's drain of a pool left undrained panics in the registry (a host's own registry with
/// a bug): the tick returns its report, the panic said, and the pool stays to drain — the
/// next tick drains its worker, and `remove_pool` of the name is still the drain it was.
/// Before, the drain had taken the name out of `undrained` and marked it `draining` for
/// ever: no tick drained the worker again (a worker of a removed pool, taking jobs), and
/// `remove_pool("a")` answered `Ok` with no id, as if a drain were running.
#[test]
fn a_pool_drain_cut_by_a_panic_is_finished_by_the_next_tick() {
    let (clock, flaky, manager, _provider) = setup();
    let (ids, _) = removed_pool_whose_second_drain_fails(&flaky, &manager);
    *flaky.faults.fail_draining_of.lock() = None;
    *flaky.faults.panic_draining_of.lock() = Some(ids[1]);
    clock.advance(secs(1));
    let report = manager.tick(Demand::new());
    assert_eq!(
        report.panicked.as_deref(),
        Some("registry bug in a move to Draining")
    );
    assert!(
        report
            .decisions
            .iter()
            .any(|d| d.contains("panicked in the pool drains phase")),
        "{:?}",
        report.decisions
    );
    let state = |id: &WorkerId| flaky.get(id).unwrap().unwrap().state;
    assert_eq!(state(&ids[1]), WorkerState::Ready);
    clock.advance(secs(1));
    let next = manager.tick(Demand::new());
    assert_eq!(next.drained, vec![ids[1]], "{:?}", next.decisions);
    assert_eq!(state(&ids[1]), WorkerState::Draining);
    let err = manager.remove_pool("a").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

/// A tick drains a removed pool's two workers left undrained, one after the other, and the
/// registry panics on the move of the second. The first, `Draining` now, is in the tick's
/// `drained`: before 2026-12-08 the drain's lists went with the unwind. The next tick drains
/// the other.
#[test]
fn a_tick_whose_pool_drain_panics_midway_reports_the_workers_it_drained_before() {
    let (clock, flaky, manager, _provider) = setup();
    let ids = ready_workers_of_pool_a(&flaky, &manager, 2);
    // The removal's look-up of the pool's workers fails: the pool is left to the ticks.
    *flaky.faults.fail_find_of_pool.lock() = Some("a".to_owned());
    assert!(manager.set_pools(vec![]).is_err());
    *flaky.faults.fail_find_of_pool.lock() = None;
    *flaky.faults.panic_draining_after.lock() = Some(1);
    clock.advance(secs(1));
    let report = manager.tick(Demand::new());
    assert_panicked_in(&report, "pool drains", "registry bug in a move to Draining");
    assert_eq!(report.drained.len(), 1, "{:?}", report.decisions);
    let state = |id: &WorkerId| flaky.get(id).unwrap().unwrap().state;
    assert_eq!(state(&report.drained[0]), WorkerState::Draining);
    let other = *ids.iter().find(|id| **id != report.drained[0]).unwrap();
    assert_eq!(state(&other), WorkerState::Ready);
    clock.advance(secs(1));
    let next = manager.tick(Demand::new());
    assert_eq!(next.drained, vec![other], "{:?}", next.decisions);
}

/// The same when `set_pools` (on another thread) is draining the pool it removed: a
/// `remove_pool` of the name meanwhile is no error either — that call reports the workers.
#[test]
fn remove_pool_of_a_name_set_pools_is_draining_is_no_error() {
    let (_clock, flaky, manager, _provider) = setup();
    let id = ready_workers_of_pool_a(&flaky, &manager, 1)[0];
    let (entered, entered_rx) = crossbeam_channel::unbounded();
    let (open_tx, open) = crossbeam_channel::unbounded();
    *flaky.faults.pause_find_of_pool.lock() = Some(PoolGate {
        pool: "a".to_owned(),
        entered,
        open,
    });
    let (removed, set) = std::thread::scope(|s| {
        let set = s.spawn(|| manager.set_pools(vec![]));
        entered_rx.recv().unwrap();
        let removed = manager.remove_pool("a");
        open_tx.send(()).unwrap();
        (removed, set.join().unwrap())
    });
    assert_eq!(removed.unwrap(), vec![]);
    assert_eq!(set.unwrap(), vec![id]);
    let err = manager.remove_pool("a").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

/// Removes pool "a" through the manager while the tick's registration of a worker for it is
/// on its way (after the create), then loses that registration's reply (applied) and fails
/// the look that would tell: whether the worker was registered is unknown to the tick.
#[derive(Debug, Default)]
struct RemovedDuringUnknownRegister {
    manager: std::sync::OnceLock<std::sync::Weak<WorkerLifecycleManager>>,
    armed: AtomicBool,
    fail_get: AtomicBool,
}

impl Hooks for RemovedDuringUnknownRegister {
    fn before(&self, call: Call<'_>, _: &dyn WorkerRegistry) -> Result<()> {
        match call {
            Call::Register(_) if self.armed.load(Ordering::SeqCst) => {
                let manager = self.manager.get().and_then(|m| m.upgrade()).unwrap();
                assert_eq!(manager.remove_pool("a").unwrap(), vec![]);
                Ok(())
            }
            Call::Get(_) => check(&self.fail_get),
            _ => Ok(()),
        }
    }

    fn lose_reply(&self, call: Call<'_>) -> Option<Error> {
        if matches!(call, Call::Register(_)) && self.armed.swap(false, Ordering::SeqCst) {
            self.fail_get.store(true, Ordering::SeqCst);
            return Some(down());
        }
        None
    }
}

/// A tick that provisions for a pool checks after its creates that the pool is still there,
/// and leaves it to the next tick's drain if not (`remove_pool` looked for its workers before
/// the new one was registered). It checked only when a create succeeded: a registration
/// whose outcome the registry could not tell (reply lost, look failed) counted as no worker,
/// so a worker that was registered after all — its orphan entry dropped by the next tick,
/// which finds its record — stayed in service for a pool that no longer exists, and nothing
/// drained it. Any create attempted now triggers the check.
#[test]
fn a_worker_registered_unbeknown_to_the_tick_for_a_pool_removed_meanwhile_is_drained() {
    let clock = Arc::new(ManualClock::new(T0));
    let hooks = Arc::new(RemovedDuringUnknownRegister::default());
    let registry =
        TestRegistry::with_hooks(crate::backend::new_registry(clock.clone()), hooks.clone());
    let manager = Arc::new(WorkerLifecycleManager::new(registry.shared(), config()).unwrap());
    hooks.manager.set(Arc::downgrade(&manager)).unwrap();
    manager
        .register_provider(TestProvider::new("test"))
        .unwrap();
    manager
        .set_pools(vec![Pool::new("a", pid("test"), WorkerSpec::new("img"))
            .unwrap()
            .with_min_ready(1)])
        .unwrap();
    hooks.armed.store(true, Ordering::SeqCst);
    let r = manager.tick(Demand::new());
    assert!(r.provisioned.is_empty(), "{:?}", r.decisions);
    assert!(manager.pools().is_empty());
    hooks.fail_get.store(false, Ordering::SeqCst);
    let in_pool = WorkerFilter::new().label(POOL_LABEL, "a");
    let workers = registry.find(&in_pool).unwrap();
    assert_eq!(workers.len(), 1, "registered after all");
    let id = workers[0].id;

    clock.advance(secs(1));
    let r = manager.tick(Demand::new());
    let state = registry.get(&id).unwrap().map(|w| w.state);
    assert!(
        matches!(
            state,
            None | Some(WorkerState::Terminating | WorkerState::Terminated | WorkerState::Draining)
        ),
        "worker {id} of removed pool \"a\" still in service: {state:?}; {:?}",
        r.decisions
    );
}

/// A busy worker, provisioned through `manager` (`Ready`, holding `running`).
fn busy_worker(flaky: &Flaky, manager: &WorkerLifecycleManager, running: &str) -> Worker {
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    flaky.update_state(&w.id, WorkerState::Ready).unwrap();
    flaky.assign_to_job(&w.id, job(running)).unwrap()
}

fn terminated(w: &Worker, reason: TerminationReason) -> Vec<TerminatedWorker> {
    vec![TerminatedWorker {
        worker_id: w.id,
        provider_id: w.handle.provider_id.clone(),
        resource_id: w.handle.resource_id.clone(),
        reason,
    }]
}

/// Found by review: the health check's move of a silent worker to `Terminating`, applied by
/// the store but answered `Backend` (its reply lost), was taken for a failure: the registry
/// emitted `JobLost`, but the job was in no result (`lost_jobs` empty, `lost_jobs_total` 0),
/// the worker not in `unhealthy`, and its instance was queued only by a later cleanup, under
/// reason `Requested`. The manager now looks at the record: `Terminating`, the move was
/// applied, and it goes on as if the call had answered `Ok`.
#[test]
fn a_health_check_move_whose_reply_was_lost_reports_the_job_and_destroys_the_worker() {
    let (clock, flaky, manager, provider) = setup();
    let w = busy_worker(&flaky, &manager, "running");
    clock.advance(secs(61));
    *flaky.faults.lose_terminating_reply_of.lock() = Some(w.id);
    let r = manager.run_health_check().unwrap();
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: w.id,
            job_id: job("running")
        }],
        "{r:?}"
    );
    assert_eq!(r.unhealthy.len(), 1, "{r:?}");
    assert_eq!(r.unhealthy[0].worker_id, w.id);
    assert_eq!(r.unhealthy[0].state, WorkerState::Busy);
    assert_eq!(r.unhealthy[0].reason, TerminationReason::Unhealthy);
    assert_eq!(r.terminated, terminated(&w, TerminationReason::Unhealthy));
    assert_eq!(manager.stats().unwrap().lost_jobs_total, 1);
    assert!(flaky.get(&w.id).unwrap().is_none());
    assert_eq!(destroy_calls(&provider, &w), 1, "{:?}", provider.calls());
}

/// The same in `terminate_worker`: the move applied, its reply lost, the call answered the
/// error — the job lost (`JobLost` emitted) and in no result, the instance left to a later
/// tick. It now answers as for an `Ok` move: the job, the worker destroyed and unregistered.
#[test]
fn a_terminate_whose_move_reply_was_lost_reports_the_job_and_destroys_the_worker() {
    let (clock, flaky, manager, provider) = setup();
    let w = busy_worker(&flaky, &manager, "running");
    *flaky.faults.lose_terminating_reply_of.lock() = Some(w.id);
    let r = manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .expect("the move was applied: the call did what it was asked");
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: w.id,
            job_id: job("running")
        }],
        "{r:?}"
    );
    assert_eq!(r.terminated, terminated(&w, TerminationReason::Requested));
    assert_eq!(manager.stats().unwrap().lost_jobs_total, 1);
    assert!(flaky.get(&w.id).unwrap().is_none());
    for _ in 0..3 {
        clock.advance(secs(30));
        let t = manager.tick(0);
        assert!(t.terminated.is_empty() && t.lost_jobs.is_empty(), "{t:?}");
    }
    assert_eq!(destroy_calls(&provider, &w), 1, "{:?}", provider.calls());
}

/// With the reply lost, the job the move took is not known from the registry's answer: it is
/// the job of the record as read before the move, unless the worker ran a job to its end in
/// between (`jobs_executed` moved): then that job finished and is not reported (requeueing it
/// would run it twice).
#[test]
fn a_terminate_whose_move_reply_was_lost_does_not_report_a_job_released_before_the_move() {
    let (_clock, flaky, manager, _provider) = setup();
    let w = busy_worker(&flaky, &manager, "done-just-now");
    flaky
        .faults
        .release_before_terminating
        .store(true, Ordering::SeqCst);
    *flaky.faults.lose_terminating_reply_of.lock() = Some(w.id);
    let r = manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    assert!(r.lost_jobs.is_empty(), "{r:?}");
    assert_eq!(r.terminated, terminated(&w, TerminationReason::Requested));
    assert_eq!(manager.stats().unwrap().lost_jobs_total, 0);
}

/// `reconcile`'s unregister of a record whose instance vanished, applied but answered
/// `Backend`: the record was gone, its `JobLost` and `Unregistered` emitted, and the report
/// said nothing (not in `vanished`, its job not in `lost_jobs`); no later call could say it.
#[test]
fn a_vanished_records_unregister_whose_reply_was_lost_is_in_the_reconcile_report() {
    let (clock, flaky, manager, provider) = setup();
    let w = busy_worker(&flaky, &manager, "on-a-lost-instance");
    provider.lose(&w.handle.resource_id);
    clock.advance(secs(1));
    flaky
        .faults
        .lose_unregister_reply
        .store(true, Ordering::SeqCst);
    let r = manager.reconcile().unwrap();
    assert_eq!(r.vanished, vec![w.id], "{r:?}");
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: w.id,
            job_id: job("on-a-lost-instance")
        }],
        "{r:?}"
    );
    assert_eq!(manager.stats().unwrap().lost_jobs_total, 1);
    assert!(flaky.get(&w.id).unwrap().is_none());
}

/// `reconcile`'s unregister of a record whose instance vanished that fails (the record
/// stays) is said in `errors` for its provider, as the registry failing on a provider's
/// records is, and the run is incomplete: the ticks run it again after their back-off. Before,
/// the report said nothing of it and read as complete: the host was not told that a worker
/// whose instance is gone was still registered with its job, and the ticks' next look was the
/// periodic one, `reconcile_interval` later.
#[test]
fn a_vanished_record_that_cannot_be_unregistered_is_in_the_reconcile_errors() {
    let (clock, flaky, manager, provider) = setup();
    let w = busy_worker(&flaky, &manager, "on-a-lost-instance");
    provider.lose(&w.handle.resource_id);
    clock.advance(secs(1));
    flaky.faults.fail_unregister.store(true, Ordering::SeqCst);
    let r = manager.reconcile().unwrap();
    assert!(r.vanished.is_empty() && r.lost_jobs.is_empty(), "{r:?}");
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(r.errors[0].0, pid("test"));
    assert!(
        r.errors[0].1.starts_with(&format!(
            "1 vanished workers not unregistered (the first: worker {}: ",
            w.id
        )) && r.errors[0].1.contains("database unreachable"),
        "{r:?}"
    );
    assert_eq!(
        flaky.get(&w.id).unwrap().map(|w| w.state),
        Some(WorkerState::Busy)
    );
    // Once the registry answers, the next reconcile expires it, its job reported.
    flaky.faults.fail_unregister.store(false, Ordering::SeqCst);
    let r = manager.reconcile().unwrap();
    assert_eq!(r.vanished, vec![w.id], "{r:?}");
    assert!(r.errors.is_empty(), "{r:?}");
}

/// A pool's scale-in retirement whose move to `Terminating` was applied and answered
/// `Backend`: the worker was not destroyed by that tick nor in its report; the next tick
/// adopted the terminal record and destroyed it as `Requested`, not `ScaledDown`.
#[test]
fn a_scale_in_whose_move_reply_was_lost_destroys_the_worker_in_the_same_tick() {
    let (clock, flaky, manager, provider) = setup();
    manager
        .set_pools(vec![Pool::new("p", pid("test"), WorkerSpec::new("img"))
            .unwrap()
            .with_scale_down_cooldown(secs(1))])
        .unwrap();
    let report = manager.tick(1);
    assert_eq!(report.provisioned.len(), 1, "{:?}", report.decisions);
    let id = report.provisioned[0].worker_id;
    flaky.update_state(&id, WorkerState::Ready).unwrap();
    let w = flaky.get(&id).unwrap().unwrap();
    clock.advance(secs(10));
    manager.process_heartbeat(&id).unwrap();
    *flaky.faults.lose_terminating_reply_of.lock() = Some(id);
    let report = manager.tick(0);
    assert_eq!(
        report.terminated,
        terminated(&w, TerminationReason::ScaledDown),
        "{:#?}",
        report.decisions
    );
    assert!(flaky.get(&id).unwrap().is_none());
    for _ in 0..3 {
        clock.advance(secs(30));
        let t = manager.tick(0);
        assert!(t.terminated.iter().all(|t| t.worker_id != id), "{t:?}");
    }
    assert_eq!(destroy_calls(&provider, &w), 1, "{:?}", provider.calls());
    assert_eq!(manager.stats().unwrap().terminated_total, 1);
}

/// The cleanup's idle retirement: the same, in `cleanup_workers`.
#[test]
fn an_idle_retirement_whose_move_reply_was_lost_is_in_the_cleanup_result() {
    let (clock, flaky, manager, provider) = setup();
    let w = manager
        .provision_worker(
            &pid("test"),
            Arc::new(WorkerSpec::new("img").with_idle_timeout(secs(10))),
        )
        .unwrap();
    let w = flaky.update_state(&w.id, WorkerState::Ready).unwrap();
    clock.advance(secs(11));
    *flaky.faults.lose_terminating_reply_of.lock() = Some(w.id);
    let c = manager.cleanup_workers().unwrap();
    assert_eq!(
        c.terminated,
        terminated(&w, TerminationReason::Idle),
        "{c:?}"
    );
    assert!(flaky.get(&w.id).unwrap().is_none());
    assert_eq!(destroy_calls(&provider, &w), 1, "{:?}", provider.calls());
}

/// The cleanup's lifetime drain of a busy worker (`Busy` -> `Draining`), applied and answered
/// `Backend`: the worker was drained and in no `drained` list (a later cleanup leaves a
/// draining worker with its job alone, and never says it).
#[test]
fn a_lifetime_drain_whose_reply_was_lost_is_in_the_cleanup_result() {
    let (clock, flaky, manager, _provider) = setup();
    let w = manager
        .provision_worker(
            &pid("test"),
            Arc::new(WorkerSpec::new("img").with_max_lifetime(secs(10))),
        )
        .unwrap();
    flaky.update_state(&w.id, WorkerState::Ready).unwrap();
    flaky.assign_to_job(&w.id, job("long")).unwrap();
    clock.advance(secs(11));
    *flaky.faults.lose_draining_reply_of.lock() = Some(w.id);
    let c = manager.cleanup_workers().unwrap();
    assert_eq!(c.drained, vec![w.id], "{c:?}");
    assert!(c.lost_jobs.is_empty() && c.terminated.is_empty(), "{c:?}");
    let now = flaky.get(&w.id).unwrap().unwrap();
    assert_eq!(now.state, WorkerState::Draining);
    assert_eq!(now.current_job, Some(job("long")));
}

/// `notify_interruption` of a worker still starting terminates it; that move applied and
/// answered `Backend` made the call fail — the worker out of service, its destroy left to a
/// later tick, and no notice kept. It now answers as for an `Ok` move: the worker on its way
/// out, destroyed.
#[test]
fn an_interrupted_starting_worker_whose_move_reply_was_lost_is_terminated() {
    let (_clock, flaky, manager, provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    *flaky.faults.lose_terminating_reply_of.lock() = Some(w.id);
    let deadline = flaky.now() + 120_000;
    let noticed = manager
        .notify_interruption(&w.id, deadline)
        .expect("the move was applied");
    assert!(noticed.state.is_terminal(), "{noticed:?}");
    assert!(flaky.get(&w.id).unwrap().is_none());
    assert_eq!(destroy_calls(&provider, &w), 1, "{:?}", provider.calls());
    assert!(manager.interruptions().is_empty());
}

/// An unregister applied and answered `Backend` while the registry then cannot answer the look
/// at the record either: the entry is kept for the unregister alone (right). The retry found
/// the record gone and dropped the entry without a word — a worker whose instance the provider
/// confirmed destroyed and whose record left the registry, in no result (`terminated`), never
/// counted by `terminated_total`; the periodic check of the terminal records could drop it the
/// same way. The retry now reports it terminated (once), as the look right after the unregister
/// does when the registry answers.
#[test]
fn an_unregister_whose_reply_was_lost_and_outcome_unknown_is_reported_by_its_retry() {
    let (clock, flaky, manager, provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    flaky
        .faults
        .lose_unregister_reply
        .store(true, Ordering::SeqCst);
    flaky
        .faults
        .fail_get_after_unregister
        .store(true, Ordering::SeqCst);
    let r = manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    assert!(r.terminated.is_empty(), "not known yet: {r:?}");
    assert_eq!(manager.pending_destroys().len(), 1);
    assert!(flaky.inner().get(&w.id).unwrap().is_none(), "applied");
    flaky.faults.fail_get.store(false, Ordering::SeqCst);
    let mut reported = Vec::new();
    for _ in 0..4 {
        clock.advance(secs(30));
        reported.extend(manager.tick(0).terminated);
    }
    assert_eq!(reported, terminated(&w, TerminationReason::Requested));
    assert_eq!(manager.stats().unwrap().terminated_total, 1);
    assert!(manager.pending_destroys().is_empty());
    assert_eq!(destroy_calls(&provider, &w), 1, "{:?}", provider.calls());
}

/// Removing a pool drains its workers; a drain applied and answered `Backend` (its reply lost)
/// made the call fail without naming that worker, and the retry the error asks for found it
/// `Draining` already and left it out too: a worker taken out of service that no answer named.
/// It is now looked at: found `Draining`, it was drained by this call and is returned.
#[test]
fn a_pool_drain_whose_reply_was_lost_names_the_worker() {
    let (_clock, flaky, manager, _provider) = setup();
    let id = ready_workers_of_pool_a(&flaky, &manager, 1)[0];
    *flaky.faults.lose_draining_reply_of.lock() = Some(id);
    assert_eq!(manager.set_pools(vec![]).unwrap(), vec![id]);
    assert_eq!(
        flaky.get(&id).unwrap().unwrap().state,
        WorkerState::Draining
    );
}

/// `notify_interruption`'s drain applied and answered `Backend`: the call failed and kept no
/// notice — the worker drained all the same, with no replacement counted ahead of its deadline
/// and its job never reported lost at the deadline. Found `Draining`, the notice is kept.
#[test]
fn an_interruption_drain_whose_reply_was_lost_keeps_the_notice() {
    let (clock, flaky, manager, _provider) = setup();
    let w = busy_worker(&flaky, &manager, "running");
    *flaky.faults.lose_draining_reply_of.lock() = Some(w.id);
    let deadline = clock.now() + 120_000;
    let noticed = manager
        .notify_interruption(&w.id, deadline)
        .expect("the drain was applied");
    assert_eq!(noticed.state, WorkerState::Draining);
    assert_eq!(noticed.current_job, Some(job("running")));
    assert_eq!(manager.interruptions(), vec![(w.id, deadline)]);
    clock.advance(secs(121));
    manager.process_heartbeat(&w.id).unwrap();
    let r = manager.tick(0);
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: w.id,
            job_id: job("running")
        }],
        "{:?}",
        r.decisions
    );
}

/// A drain that `set_pools` could not finish (the registry failed on a worker) is retried by
/// the next ticks, not only by the host's next `set_pools` or `remove_pool`: a host that sets
/// its pools once at start-up would otherwise leave the worker of a removed pool taking jobs
/// for ever. The tick reports it in `drained`.
#[test]
fn a_drain_that_set_pools_could_not_finish_is_retried_by_the_next_tick() {
    let (clock, flaky, manager, _provider) = setup();
    let (ids, _) = removed_pool_whose_second_drain_fails(&flaky, &manager);
    let state = |id: &WorkerId| flaky.get(id).unwrap().unwrap().state;
    assert_eq!(state(&ids[1]), WorkerState::Ready);

    // Still failing: the tick says so and keeps it for the next one.
    clock.advance(secs(1));
    let r = manager.tick(Demand::new());
    assert!(r.drained.is_empty(), "{:?}", r.decisions);
    assert!(
        r.decisions
            .iter()
            .any(|d| d.contains("database unreachable")),
        "{:?}",
        r.decisions
    );
    assert_eq!(state(&ids[1]), WorkerState::Ready);

    *flaky.faults.fail_draining_of.lock() = None;
    clock.advance(secs(1));
    let r = manager.tick(Demand::new());
    assert_eq!(r.drained, vec![ids[1]], "{:?}", r.decisions);
    assert!(
        r.decisions
            .iter()
            .any(|d| d.contains("pool \"a\"") && d.contains("1 worker(s)")),
        "{:?}",
        r.decisions
    );
    assert_eq!(state(&ids[1]), WorkerState::Draining);
    // Nothing left: the name is gone, the next tick drains nothing.
    assert!(manager.remove_pool("a").is_err());
    clock.advance(secs(1));
    assert!(manager.tick(Demand::new()).drained.is_empty());
}

/// Replicas `a` and `b` on one flaky registry, sharing an in-memory lease that `a` holds
/// first (15 s ttl) and one provider.
fn two_flaky_replicas() -> (
    Arc<ManualClock>,
    Flaky,
    Arc<TestProvider>,
    WorkerLifecycleManager,
    WorkerLifecycleManager,
) {
    let (clock, flaky) = flaky_registry();
    let provider = TestProvider::new("test");
    let lease = InMemoryLease::new(clock.clone(), "a", std::time::Duration::from_secs(15));
    let b = flaky_replica(&flaky, &clock, lease.replica("b"), &provider);
    let a = flaky_replica(&flaky, &clock, lease, &provider);
    (clock, flaky, provider, a, b)
}

/// A replica of a replicated manager on the flaky registry, under `lease`, trusting it on the
/// registry's own clock (the store's and the replica's time move together).
fn flaky_replica(
    flaky: &Flaky,
    clock: &Arc<ManualClock>,
    lease: InMemoryLease,
    provider: &Arc<TestProvider>,
) -> WorkerLifecycleManager {
    let manager = WorkerLifecycleManager::with_leadership(
        flaky.shared(),
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            // No mass-expiry brake: the takeover's grace alone must keep the fleet alive.
            max_unhealthy_fraction: 1.0,
            ..config()
        },
        Arc::new(lease),
        clock.clone(),
    )
    .unwrap();
    manager.register_provider(provider.clone()).unwrap();
    manager.set_scaling_target(&provider.id, spec()).unwrap();
    manager
}

/// A new leader grants the fleet a grace period before acting (DESIGN.md §11). When that
/// write failed, the takeover only said so in its report: the same tick's health check ran
/// without the grace and expired the workers whose heartbeats had gone to the dead leader
/// (and a later tick's scale-down retired workers on the same stale view). Now the takeover
/// stays incomplete — no health check, no scale-down — until a later tick's retry of the
/// grace succeeds; from then on the grace holds as after any takeover.
#[test]
fn a_takeover_whose_grace_period_failed_acts_on_no_worker_until_a_tick_grants_it() {
    let (clock, flaky, provider, a, b) = two_flaky_replicas();
    assert!(a.tick(0).leading);
    let workers: Vec<WorkerId> = (0..2)
        .map(|_| a.provision_worker(&provider.id, spec()).unwrap().id)
        .collect();
    for id in &workers {
        flaky.update_state(id, WorkerState::Ready).unwrap();
    }

    // a dies; its workers' heartbeats went to it (nowhere) for longer than the heartbeat
    // timeout; b takes over while the registry refuses the grace period.
    clock.advance(secs(90));
    flaky.faults.fail_grace.store(true, Ordering::SeqCst);
    let r = b.tick(0);
    assert!(r.leading, "{:?}", r.decisions);
    assert!(
        r.unhealthy.is_empty(),
        "{:?} {:?}",
        r.unhealthy,
        r.decisions
    );
    assert!(!r.health_checked, "{:?}", r.decisions);
    assert!(
        r.decisions.iter().any(|d| d.contains("grant_grace failed")),
        "{:?}",
        r.decisions
    );
    // Past the health check interval and the scale-down cooldown: still nothing is done to
    // the fleet while the grace cannot be granted.
    clock.advance(secs(61));
    let r = b.tick(0);
    assert!(r.leading, "{:?}", r.decisions);
    assert!(!r.health_checked, "{:?}", r.decisions);
    assert!(r.unhealthy.is_empty(), "{:?}", r.decisions);
    assert!(
        r.scaling.as_ref().is_none_or(|s| s.scale_down.is_empty()),
        "{:?}",
        r.decisions
    );
    assert!(r.terminated.is_empty(), "{:?}", r.decisions);
    assert!(
        r.decisions
            .iter()
            .any(|d| d.contains("grant_grace failed again")),
        "{:?}",
        r.decisions
    );
    assert_eq!(flaky.count().unwrap(), 2);

    // The registry is back: the next tick grants the grace first, then checks the fleet.
    flaky.faults.fail_grace.store(false, Ordering::SeqCst);
    clock.advance(secs(1));
    let r = b.tick(0);
    assert!(r.health_checked, "{:?}", r.decisions);
    assert!(r.unhealthy.is_empty(), "{:?}", r.decisions);
    assert!(r.terminated.is_empty(), "{:?}", r.decisions);
    assert!(
        r.decisions
            .iter()
            .any(|d| d.contains("grace period granted")),
        "{:?}",
        r.decisions
    );
    // The grace holds for a heartbeat timeout from then (demand 2: no scale-down meanwhile)…
    clock.advance(secs(59));
    let r = b.tick(2);
    assert!(r.health_checked, "{:?}", r.decisions);
    assert!(r.unhealthy.is_empty(), "{:?}", r.decisions);
    // …and no longer: the silent workers are expired by the health check.
    clock.advance(secs(31));
    let r = b.tick(2);
    let mut unhealthy: Vec<WorkerId> = r.unhealthy.iter().map(|u| u.worker_id).collect();
    unhealthy.sort();
    let mut expected = workers.clone();
    expected.sort();
    assert_eq!(unhealthy, expected, "{:?}", r.decisions);
}

/// A `Terminating` worker whose instance the provider confirmed destroyed, but whose record
/// could not be unregistered, waits in the destroy queue for the unregister alone. A reconcile
/// meanwhile finds its instance gone (vanished): it took the entry off the queue before its
/// own unregister, which failed too — and then adopted the record again as a fresh
/// `Terminating` one (reason `Requested`), so the next tick called the provider's destroy a
/// second time for the same worker. Now the entry, instance confirmed gone, stays queued.
#[test]
fn a_reconcile_that_cannot_unregister_a_destroyed_worker_does_not_destroy_it_again() {
    let (clock, flaky, manager, provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    flaky.faults.fail_unregister.store(true, Ordering::SeqCst);
    let r = manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    assert!(r.terminated.is_empty(), "{r:?}");
    assert_eq!(destroy_calls(&provider, &w), 1, "{:?}", provider.calls());

    clock.advance(secs(1));
    let rec = manager.reconcile().unwrap();
    assert!(rec.vanished.is_empty(), "not unregistered: {rec:?}");
    assert_eq!(manager.pending_destroys().len(), 1, "{rec:?}");

    flaky.faults.fail_unregister.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        clock.advance(secs(30));
        manager.tick(0);
    }
    assert!(flaky.get(&w.id).unwrap().is_none());
    assert!(manager.pending_destroys().is_empty());
    assert_eq!(destroy_calls(&provider, &w), 1, "{:?}", provider.calls());
}

/// The first tick after a host stall gives every worker a fresh grace period instead of
/// expiring the fleet (DESIGN.md §5). When that write failed, the tick only said so and its
/// health check expired the workers all the same (their heartbeats had not been seen during
/// the stall); the next tick was no stall any more. Now, as after a takeover whose grace
/// failed, no health check and no scale-down runs until a tick grants the grace.
#[test]
fn a_stall_whose_grace_period_failed_expires_no_worker_until_a_tick_grants_it() {
    let (clock, flaky, _, provider) = setup();
    let manager = WorkerLifecycleManager::new(
        flaky.shared(),
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            // No mass-expiry brake: the stall's grace alone must keep the fleet alive.
            max_unhealthy_fraction: 1.0,
            ..config()
        },
    )
    .unwrap();
    manager.register_provider(provider.clone()).unwrap();
    let workers: Vec<WorkerId> = (0..2)
        .map(|_| manager.provision_worker(&provider.id, spec()).unwrap().id)
        .collect();
    for id in &workers {
        flaky.update_state(id, WorkerState::Ready).unwrap();
    }
    manager.tick(2);

    clock.advance(secs(90));
    flaky.faults.fail_grace.store(true, Ordering::SeqCst);
    let r = manager.tick(2);
    assert!(
        r.unhealthy.is_empty(),
        "{:?} {:?}",
        r.unhealthy,
        r.decisions
    );
    assert!(!r.health_checked, "{:?}", r.decisions);
    clock.advance(secs(31));
    let r = manager.tick(2);
    assert!(
        r.unhealthy.is_empty(),
        "{:?} {:?}",
        r.unhealthy,
        r.decisions
    );
    assert!(!r.health_checked, "{:?}", r.decisions);

    flaky.faults.fail_grace.store(false, Ordering::SeqCst);
    clock.advance(secs(1));
    let r = manager.tick(2);
    assert!(r.health_checked, "{:?}", r.decisions);
    assert!(r.unhealthy.is_empty(), "{:?}", r.decisions);
    assert_eq!(flaky.count().unwrap(), 2);
    // The grace holds for a heartbeat timeout from then, and no longer.
    clock.advance(secs(59));
    assert!(manager.tick(2).unhealthy.is_empty());
    clock.advance(secs(31));
    assert_eq!(manager.tick(2).unhealthy.len(), 2);
}

/// The host's own `run_health_check` on a leader whose takeover could not grant the fleet its
/// grace period expired the workers whose heartbeats had gone to the dead leader (the ticks
/// skip their health check then, the direct call did not). It now grants the owed grace
/// first, and fails with the registry's error, checking nothing, while it cannot.
#[test]
fn a_direct_health_check_after_a_takeover_whose_grace_failed_grants_it_first() {
    let (clock, flaky, provider, a, b) = two_flaky_replicas();
    assert!(a.tick(0).leading);
    for _ in 0..2 {
        let w = a.provision_worker(&provider.id, spec()).unwrap();
        flaky.update_state(&w.id, WorkerState::Ready).unwrap();
    }
    clock.advance(secs(90));
    flaky.faults.fail_grace.store(true, Ordering::SeqCst);
    assert!(b.tick(0).leading);

    let checked = b.run_health_check();
    assert!(matches!(&checked, Err(Error::Backend(_))), "{checked:?}");
    assert_eq!(flaky.count().unwrap(), 2);

    flaky.faults.fail_grace.store(false, Ordering::SeqCst);
    let checked = b.run_health_check().unwrap();
    assert!(checked.unhealthy.is_empty(), "{checked:?}");
    assert_eq!(flaky.count().unwrap(), 2);
    // Granted: the ticks check the fleet again, under that grace.
    clock.advance(secs(31));
    let r = b.tick(2);
    assert!(r.health_checked, "{:?}", r.decisions);
    assert!(r.unhealthy.is_empty(), "{:?}", r.decisions);
}

/// A registry that cannot answer `stats()` at scrape time omits the metric families built from
/// its counts, and only those ("a registry error at scrape time omits the families that needed
/// the answer"): the manager's own numbers (leadership, lifetime totals, providers, provisions
/// in flight, pending destroys) still read, when an outage is when they matter most.
#[test]
fn a_registry_that_cannot_count_hides_only_the_families_of_its_counts() {
    let (_clock, flaky, manager, _provider) = setup();
    manager.provision_worker(&pid("test"), spec()).unwrap();
    manager.tick(0);
    let stats = manager.stats().unwrap();
    flaky.faults.fail_stats.store(true, Ordering::SeqCst);
    assert!(manager.stats().is_err());
    let text = manager.metrics_text();
    for sample in [
        "hodei_workers_leader 1".to_owned(),
        "hodei_workers_leader_term 1".to_owned(),
        "hodei_workers_providers 1".to_owned(),
        "hodei_workers_provisions_requested_total{provider=\"test\"} 1".to_owned(),
        format!(
            "hodei_workers_provisions_succeeded_total {}",
            stats.provisioned_total
        ),
        "hodei_workers_provisions_in_flight 0".to_owned(),
        format!("hodei_workers_destroys_pending {}", stats.pending_destroys),
        "hodei_workers_provider_backoff_seconds{provider=\"test\"} 0.0".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == sample),
            "{sample:?} missing while the registry cannot count:\n{text}"
        );
    }
    for family in [
        "hodei_workers_workers",
        "hodei_workers_workers_by_provider",
        "hodei_workers_workers_by_provider_type",
    ] {
        assert!(
            !text.contains(&format!("# TYPE {family} ")),
            "{family} without the registry's counts:\n{text}"
        );
    }
    flaky.faults.fail_stats.store(false, Ordering::SeqCst);
    let text = manager.metrics_text();
    assert!(
        text.contains("hodei_workers_workers_by_provider{provider=\"test\"} 1"),
        "{text}"
    );
}

/// Unregisters the provider "test" right after the tick's look for scale-in candidates (the
/// host, on another thread, at the worst moment).
#[derive(Debug, Default)]
struct UnregisterDuringPlan {
    manager: std::sync::OnceLock<std::sync::Weak<WorkerLifecycleManager>>,
    armed: AtomicBool,
}

impl Hooks for UnregisterDuringPlan {
    fn after(&self, call: Call<'_>, _: &dyn WorkerRegistry) {
        if call == Call::LongestIdle && self.armed.swap(false, Ordering::SeqCst) {
            if let Some(m) = self.manager.get().and_then(std::sync::Weak::upgrade) {
                m.unregister_provider(&pid("test")).unwrap();
            }
        }
    }
}

/// `unregister_provider` clears a scaling target on the provider; a tick that planned with
/// that target before must not act on it after: it retired the target's idle workers, whose
/// destroys then failed (no provider to ask) and were retried at every tick, out of service
/// for nothing.
#[test]
fn a_tick_whose_scaling_target_was_cleared_meanwhile_retires_nothing() {
    let clock = Arc::new(ManualClock::new(T0));
    let hooks = Arc::new(UnregisterDuringPlan::default());
    let registry =
        TestRegistry::with_hooks(crate::backend::new_registry(clock.clone()), hooks.clone());
    let manager = Arc::new(WorkerLifecycleManager::new(registry.shared(), config()).unwrap());
    hooks.manager.set(Arc::downgrade(&manager)).unwrap();
    manager
        .register_provider(TestProvider::new("test"))
        .unwrap();
    manager.set_scaling_target(&pid("test"), spec()).unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let w = manager.provision_worker(&pid("test"), spec()).unwrap();
        registry.update_state(&w.id, WorkerState::Ready).unwrap();
        ids.push(w.id);
    }
    clock.advance(secs(1));
    hooks.armed.store(true, Ordering::SeqCst);
    let r = manager.tick(0);
    assert!(manager.scaling_target().is_none());
    assert!(
        r.terminated.is_empty() && r.failed.is_empty(),
        "terminated {}, failed {:?}: {:?}",
        r.terminated.len(),
        r.failed,
        r.decisions
    );
    for id in &ids {
        let state = registry.get(id).unwrap().map(|w| w.state);
        assert_eq!(state, Some(WorkerState::Ready), "{:?}", r.decisions);
    }
    assert!(
        r.decisions.iter().any(|d| d.contains("changed meanwhile")),
        "{:?}",
        r.decisions
    );
}

/// Lets a provision stalled in its create (on another thread) finish right after the registry
/// answered the manager's next `stats`: the worker is registered and its ledger entry removed
/// between the manager's read of the counts and its read of the provisions in flight.
#[derive(Debug, Default)]
struct ProvisionEndsAfterStats {
    provider: std::sync::OnceLock<Arc<TestProvider>>,
    provision: parking_lot::Mutex<Option<std::thread::JoinHandle<Result<Worker>>>>,
}

impl ProvisionEndsAfterStats {
    /// Starts a provision whose create stalls; returns once it is in flight.
    fn start(&self, manager: &Arc<WorkerLifecycleManager>) {
        let provider = self.provider.get().unwrap();
        provider.script_creates([CreateStep::Stall]);
        let m = Arc::clone(manager);
        *self.provision.lock() = Some(std::thread::spawn(move || {
            m.provision_worker(&pid("test"), spec())
        }));
        TestProvider::wait_for(&provider.creating_now, 1);
    }
}

impl Hooks for ProvisionEndsAfterStats {
    fn after(&self, call: Call<'_>, _: &dyn WorkerRegistry) {
        if call != Call::Stats {
            return;
        }
        if let Some(provision) = self.provision.lock().take() {
            self.provider.get().unwrap().release_stalled(1);
            provision.join().unwrap().expect("provisioned");
        }
    }
}

/// A provision that ends while the autoscaler reads its inputs is counted once at least: the
/// provisions in flight are read before the registry's counts ("registered first, ledger entry
/// removed second: the count never dips" holds for a reader in that order only). Before, the
/// counts were read first: a worker registered (and its ledger entry removed) between the two
/// reads was counted nowhere — `plan_scaling` wanted it again (a second worker provisioned for
/// one need) and `should_scale_up` saw room under `max_workers` where there was none.
#[test]
fn a_provision_ending_while_the_autoscaler_reads_is_not_missed() {
    let clock = Arc::new(ManualClock::new(T0));
    let hooks = Arc::new(ProvisionEndsAfterStats::default());
    let registry =
        TestRegistry::with_hooks(crate::backend::new_registry(clock.clone()), hooks.clone());
    let manager = Arc::new(WorkerLifecycleManager::new(registry.shared(), config()).unwrap());
    let provider = TestProvider::new("test");
    hooks.provider.set(provider.clone()).unwrap();
    manager.register_provider(provider).unwrap();
    manager.set_scaling_target(&pid("test"), spec()).unwrap();

    // One job pending, one worker warm (min_ready_workers 1): 2 wanted, 1 of them on its way.
    hooks.start(&manager);
    let plan = manager.plan_scaling(1).unwrap();
    assert!(
        hooks.provision.lock().is_none(),
        "the provision ended meanwhile"
    );
    assert_eq!(plan.starting + plan.in_flight, 1, "{}", plan.explanation);
    assert_eq!(
        (plan.wanted, plan.provision),
        (1, 1),
        "{}",
        plan.explanation
    );

    // 9 registered (one of them ready) and the 10th in flight: max_workers 10 is reached.
    for _ in 0..8 {
        manager.provision_worker(&pid("test"), spec()).unwrap();
    }
    let ready = registry.find(&WorkerFilter::new()).unwrap()[0].id;
    registry.update_state(&ready, WorkerState::Ready).unwrap();
    assert_eq!(registry.count().unwrap(), 9);
    hooks.start(&manager);
    assert!(
        !manager.should_scale_up(6),
        "no room: 9 registered and 1 in flight of max_workers 10"
    );
    assert!(
        hooks.provision.lock().is_none(),
        "the provision ended meanwhile"
    );
    assert_eq!(registry.count().unwrap(), 10);
}

/// A registration applied whose outcome was unknown leaves its instance remembered as an orphan
/// (the ticks' retry forgets it once it sees the record). Should the worker be destroyed and
/// unregistered before that retry looks (the host terminated it while the registry could not
/// be scanned), its instance is destroyed once: the confirmed destroy of the record's instance
/// is the orphan's too. Before, the retry found no record holding the instance and destroyed it
/// a second time (answered `NotFound` here; another instance, on a cloud that reuses names).
#[test]
fn a_remembered_orphan_whose_record_was_destroyed_meanwhile_is_not_destroyed_again() {
    let (clock, flaky, manager, provider) = setup();
    let instance = provision_with_its_registration_unknown(&flaky, &manager, &provider);
    assert_eq!(manager.pending_orphans().len(), 1);
    // `get` answers again, scans not yet: the host terminates the worker.
    flaky.faults.fail_get.store(false, Ordering::SeqCst);
    let r = manager
        .terminate_worker(&instance.worker_id, TerminationReason::Requested)
        .unwrap();
    assert_eq!(r.terminated.len(), 1, "{r:?}");
    assert!(provider.instance_ids().is_empty());
    flaky.reads_fail(false);
    for _ in 0..3 {
        clock.advance(secs(30));
        manager.tick(0);
    }
    assert_eq!(
        provider.destroys_of(&instance.resource_id),
        1,
        "{:?}",
        provider.calls()
    );
    assert!(manager.pending_orphans().is_empty());
}

/// A clock that runs a one-shot action at its next reading once armed: the place for another
/// call of the host's between two steps of the manager that read nothing else of the registry.
#[derive(Default)]
struct ArmedClock {
    inner: ManualClock,
    action: parking_lot::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for ArmedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmedClock").finish_non_exhaustive()
    }
}

impl Clock for ArmedClock {
    fn now(&self) -> Timestamp {
        let action = self.action.lock().take();
        if let Some(action) = action {
            action();
        }
        self.inner.now()
    }
}

/// The registration fails (`Backend`, not applied) and so does the look that would tell; the
/// look arms the clock with a `reconcile()` of the host's, run at the manager's next reading of
/// the registry's clock.
#[derive(Debug)]
struct ReconcileAfterUnknownRegister {
    manager: std::sync::OnceLock<std::sync::Weak<WorkerLifecycleManager>>,
    clock: Arc<ArmedClock>,
    armed: AtomicBool,
    report: Arc<parking_lot::Mutex<Option<ReconcileReport>>>,
}

impl Hooks for ReconcileAfterUnknownRegister {
    fn before(&self, call: Call<'_>, _: &dyn WorkerRegistry) -> Result<()> {
        match call {
            Call::Register(_) if self.armed.load(Ordering::SeqCst) => Err(down()),
            Call::Get(_) if self.armed.swap(false, Ordering::SeqCst) => {
                let manager = self.manager.get().unwrap().clone();
                let report = self.report.clone();
                *self.clock.action.lock() = Some(Box::new(move || {
                    let manager = manager.upgrade().unwrap();
                    *report.lock() = Some(manager.reconcile().unwrap());
                }));
                Err(down())
            }
            _ => Ok(()),
        }
    }
}

/// A provision whose registration's outcome the registry cannot tell keeps its instance as an
/// orphan, and is still in flight until it is remembered: a `reconcile()` of the host's on
/// another thread in between must not take the instance for an orphan of its own (it cannot
/// tell it from the instance of a provision in flight). Before, the provision was out of the
/// ledger first and remembered the instance second: a reconcile in between destroyed it, the
/// provision then remembered it, and the next tick's retry destroyed it a second time.
/// (In memory only: the reconcile runs at a reading of the registry's clock.)
#[test]
fn a_reconcile_between_an_unknown_registration_and_its_orphan_entry_does_not_destroy_it() {
    let clock = Arc::new(ArmedClock {
        inner: ManualClock::new(T0),
        ..ArmedClock::default()
    });
    let hooks = Arc::new(ReconcileAfterUnknownRegister {
        manager: std::sync::OnceLock::new(),
        clock: clock.clone(),
        armed: AtomicBool::new(true),
        report: Arc::default(),
    });
    let registry = TestRegistry::with_hooks(
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone())),
        hooks.clone(),
    );
    let manager = Arc::new(
        WorkerLifecycleManager::new(
            registry.shared(),
            WorkerLifecycleConfig {
                min_ready_workers: 0,
                ..config()
            },
        )
        .unwrap(),
    );
    hooks.manager.set(Arc::downgrade(&manager)).unwrap();
    let provider = TestProvider::new("test");
    manager.register_provider(provider.clone()).unwrap();
    let err = manager.provision_worker(&pid("test"), spec()).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err}");
    let r = hooks
        .report
        .lock()
        .take()
        .expect("the host's reconcile ran");
    assert!(r.orphans.is_empty(), "{r:?}");
    assert_eq!(manager.pending_orphans().len(), 1);
    for _ in 0..3 {
        clock.inner.advance(secs(30));
        manager.tick(0);
    }
    assert!(provider.instance_ids().is_empty());
    assert_eq!(
        provider.destroy_calls(),
        ["destroy test-0"],
        "{:?}",
        provider.calls()
    );
    assert!(manager.pending_orphans().is_empty());
}

/// A pool `a` whose busy worker got an interruption notice due `deadline_ms` after it, and the
/// `Ready` replacement the next tick provisioned; then 100 s of heartbeats from both, past the
/// pool's scale-down cooldown since the replacement came. Returns the busy worker and the
/// replacement.
fn interrupted_busy_worker_replaced(
    deadline_ms: u64,
) -> (
    Arc<ManualClock>,
    Flaky,
    WorkerLifecycleManager,
    WorkerId,
    WorkerId,
) {
    let (clock, flaky, manager, _provider) = setup();
    manager
        .set_pools(vec![
            Pool::new("a", pid("test"), WorkerSpec::new("img")).unwrap()
        ])
        .unwrap();
    let r = manager.tick(1);
    let busy = r.provisioned[0].worker_id;
    flaky.update_state(&busy, WorkerState::Ready).unwrap();
    flaky.assign_to_job(&busy, job("train")).unwrap();
    manager
        .notify_interruption(&busy, clock.now() + deadline_ms)
        .unwrap();

    clock.advance(secs(30));
    flaky.heartbeat(&busy).unwrap();
    let r = manager.tick(0);
    assert_eq!(r.provisioned.len(), 1, "{:?}", r.decisions);
    let replacement = r.provisioned[0].worker_id;
    flaky
        .update_state(&replacement, WorkerState::Ready)
        .unwrap();

    clock.advance(secs(50));
    for id in [busy, replacement] {
        flaky.heartbeat(&id).unwrap();
    }
    clock.advance(secs(50));
    for id in [busy, replacement] {
        flaky.heartbeat(&id).unwrap();
    }
    (clock, flaky, manager, busy, replacement)
}

/// An interrupted worker still running its job at the deadline whose termination fails: the
/// job still runs, so its replacement is still demand. Before, the tick that failed to
/// terminate it counted no replacement, and its pool retired the replacement as surplus.
#[test]
fn an_interrupted_worker_whose_termination_fails_keeps_its_replacement_in_service() {
    let (clock, flaky, manager, busy, replacement) = interrupted_busy_worker_replaced(120_000);
    // Now past the deadline.
    *flaky.faults.fail_terminating_of.lock() = Some(busy);
    let r = manager.tick(0);
    assert!(
        r.decisions.iter().any(|d| d.contains("terminate failed")),
        "{:?}",
        r.decisions
    );
    assert_eq!(
        flaky.get(&replacement).unwrap().map(|w| w.state),
        Some(WorkerState::Ready),
        "the replacement was retired while the job it replaces still runs: {:?}",
        r.decisions
    );

    // The registry answers again: the job is lost, the replacement serves its requeue.
    *flaky.faults.fail_terminating_of.lock() = None;
    clock.advance(secs(1));
    let r = manager.tick(0);
    assert_eq!(r.lost_jobs.len(), 1, "{:?}", r.decisions);
    assert_eq!(
        flaky.get(&replacement).unwrap().map(|w| w.state),
        Some(WorkerState::Ready)
    );
}

/// An interrupted worker still running its job, whose record the tick cannot read (a blip of
/// the registry): the job may still run, so its replacement is still demand. Before, the tick
/// counted no replacement for a notice it could not read, and the pool retired the
/// replacement as surplus while the job it replaces ran on.
#[test]
fn an_interrupted_worker_whose_record_cannot_be_read_keeps_its_replacement_in_service() {
    let (_clock, flaky, manager, busy, replacement) = interrupted_busy_worker_replaced(600_000);
    // Still before the deadline.
    // The notice's look at its worker fails; the registry answers the rest of the tick.
    *flaky.faults.fail_gets_of.lock() = Some((busy, 1));
    let r = manager.tick(0);
    let unread = format!("interruption of {busy}: ");
    assert!(
        r.decisions.iter().any(|d| d.starts_with(&unread)),
        "{:?}",
        r.decisions
    );
    assert_eq!(
        flaky.get(&replacement).unwrap().map(|w| w.state),
        Some(WorkerState::Ready),
        "the replacement was retired while the job it replaces may still run: {:?}",
        r.decisions
    );
    assert_eq!(
        r.pools.as_ref().and_then(|p| p.pool("a")).map(|d| d.retire),
        Some(0),
        "{:?}",
        r.decisions
    );
}

/// An interrupted worker whose record the registry keeps failing to read (a backend error on
/// that one row), whether the tick's look at the notice's deadline reads it first or not: the
/// pools are planned all the same, the notice's worker counted as still registered (none of
/// its pool's capacity, not against its max: its replacement is demand), and the tick says so
/// once. Before, the plan's count of interrupted workers failed on it, and with it every
/// pool's plan, at every tick for as long as the row could not be read.
#[test]
fn a_notice_whose_worker_cannot_be_read_does_not_fail_the_pools_plan() {
    // Gets answered before they fail: none (both of the tick's looks fail), then one (the
    // deadline's look reads it, the plan's does not).
    for answered in [0, 1] {
        let (_clock, flaky, manager, busy, replacement) = interrupted_busy_worker_replaced(600_000);
        // Still before the deadline.
        *flaky.faults.fail_gets_of_after.lock() = Some((busy, answered));
        let r = manager.tick(0);
        let Some(d) = r.pools.as_ref().and_then(|p| p.pool("a")) else {
            panic!("{answered}: no pool plan: {:?}", r.decisions);
        };
        // The replacement only: the interrupted worker counts as registered and interrupted.
        assert_eq!(
            (d.total, d.ready, d.retire),
            (1, 1, 0),
            "{answered}: {}",
            d.explanation
        );
        let unread = format!("interruption of {busy}: ");
        assert_eq!(
            r.decisions
                .iter()
                .filter(|l| l.starts_with(&unread))
                .count(),
            1,
            "{answered}: {:?}",
            r.decisions
        );
        assert_eq!(
            flaky.get(&replacement).unwrap().map(|w| w.state),
            Some(WorkerState::Ready),
            "{answered}: {:?}",
            r.decisions
        );
    }
}
