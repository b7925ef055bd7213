//! The manager's side of the contract breaks of issue 10: terminal records always reach the
//! destroy queue (1), decisions applied against the record as it is now (2), startup expiries
//! never held by the brake (5), hygiene of the ledger, back-off and destroy races (9),
//! scale-down from the ready index (11), config durations that round-trip (16), no event after
//! `Unregistered` (21).
//!
//! Races are made deterministic with [`Racy`], a registry that runs the host's move at the
//! exact point where the manager's view goes stale, and with stalled provider calls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::common::*;
use crate::test_registry::{Call, Hooks, TestRegistry};
use hodei_workers::*;

// ----- a registry that lets the host move in at the worst moment ------------------------------

type Hook = Box<dyn FnOnce(&dyn WorkerRegistry) + Send>;

/// The hooks of a [`Racy`] registry: the host's move, run right after `find_for_termination`
/// answers or right after `get` of one worker answers; and counts of the fleet scans, of the
/// reads of the terminal ids and of the snapshots of one worker.
#[derive(Default)]
struct HostMoves {
    after_find_for_termination: Mutex<Option<Hook>>,
    after_get: Mutex<Option<(WorkerId, Hook)>>,
    finds: AtomicUsize,
    terminal_ids: AtomicUsize,
    gets: AtomicUsize,
}

impl std::fmt::Debug for HostMoves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMoves").finish_non_exhaustive()
    }
}

impl Hooks for HostMoves {
    fn before(&self, call: Call<'_>, _inner: &dyn WorkerRegistry) -> Result<()> {
        let counter = match call {
            Call::Find(_) => &self.finds,
            Call::TerminalIds => &self.terminal_ids,
            Call::Get(_) => &self.gets,
            _ => return Ok(()),
        };
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn after(&self, call: Call<'_>, inner: &dyn WorkerRegistry) {
        let hook = match call {
            Call::FindForTermination => self.after_find_for_termination.lock().take(),
            Call::Get(id) => {
                let mut slot = self.after_get.lock();
                match slot.take() {
                    Some((for_id, hook)) if for_id == *id => Some(hook),
                    other => {
                        *slot = other;
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some(hook) = hook {
            hook(inner);
        }
    }
}

/// A registry of the backend under test whose hooks run right after `find_for_termination`
/// answers, or right after `get` of one worker answers — the host's move lands between the
/// manager's look and its action. Counts the scans of the fleet (`find` and its kin).
struct Racy {
    registry: TestRegistry,
    moves: Arc<HostMoves>,
}

impl std::ops::Deref for Racy {
    type Target = TestRegistry;
    fn deref(&self) -> &TestRegistry {
        &self.registry
    }
}

impl Racy {
    fn on_find_for_termination(&self, hook: impl FnOnce(&dyn WorkerRegistry) + Send + 'static) {
        *self.moves.after_find_for_termination.lock() = Some(Box::new(hook));
    }

    fn on_get(&self, id: WorkerId, hook: impl FnOnce(&dyn WorkerRegistry) + Send + 'static) {
        *self.moves.after_get.lock() = Some((id, Box::new(hook)));
    }

    /// Scans of the fleet so far.
    fn finds(&self) -> usize {
        self.moves.finds.load(Ordering::SeqCst)
    }

    /// Reads of the terminal ids so far.
    fn terminal_id_reads(&self) -> usize {
        self.moves.terminal_ids.load(Ordering::SeqCst)
    }

    /// Snapshots of one worker (`get`) so far.
    fn gets(&self) -> usize {
        self.moves.gets.load(Ordering::SeqCst)
    }
}

struct RacyFixture {
    clock: Arc<ManualClock>,
    racy: Racy,
    manager: Arc<WorkerLifecycleManager>,
    provider: Arc<TestProvider>,
    events: Subscription,
}

impl RacyFixture {
    fn new(config: WorkerLifecycleConfig) -> RacyFixture {
        let clock = Arc::new(ManualClock::new(T0));
        let moves = Arc::new(HostMoves::default());
        let racy = Racy {
            registry: TestRegistry::with_hooks(
                crate::backend::new_registry(clock.clone()),
                moves.clone(),
            ),
            moves,
        };
        let events = racy
            .subscribe(SubscribeOptions::default().capacity(100_000))
            .unwrap();
        let manager = Arc::new(WorkerLifecycleManager::new(racy.shared(), config).unwrap());
        let provider = TestProvider::new("test");
        manager.register_provider(provider.clone()).unwrap();
        RacyFixture {
            clock,
            racy,
            manager,
            provider,
            events,
        }
    }

    fn provision_with(&self, spec: WorkerSpec) -> WorkerId {
        self.manager
            .provision_worker(&self.provider.id, Arc::new(spec))
            .unwrap()
            .id
    }

    fn worker(&self, id: &WorkerId) -> Option<Worker> {
        self.racy.inner().get(id).unwrap()
    }

    fn names(&self, id: WorkerId) -> Vec<&'static str> {
        let events: Vec<EventKind> = self.events.drain().into_iter().map(|e| e.kind).collect();
        Fixture::names(&events, Some(id))
    }
}

fn lifetime_spec(secs_: u64) -> WorkerSpec {
    let mut s = WorkerSpec::new("img");
    s.max_lifetime = secs(secs_);
    s
}

fn idle_spec(secs_: u64) -> WorkerSpec {
    let mut s = WorkerSpec::new("img");
    s.idle_timeout = secs(secs_);
    s
}

/// Names of the events about `id` from the fixture's stream.
fn names_of(f: &Fixture, id: WorkerId) -> Vec<&'static str> {
    Fixture::names(&f.drain(), Some(id))
}

/// Nothing is said about a worker after its `Unregistered`.
fn assert_nothing_after_unregistered(names: &[&'static str]) {
    if let Some(at) = names.iter().position(|n| *n == "unregistered") {
        assert_eq!(at + 1, names.len(), "events after unregistered: {names:?}");
    }
}

// ----- 1: every terminal record reaches the destroy queue within one tick ----------------------

#[test]
fn a_worker_the_host_moved_to_terminating_or_terminated_is_destroyed_by_the_next_tick() {
    for state in [WorkerState::Terminating, WorkerState::Terminated] {
        let f = Fixture::new(config());
        let w = f.ready();
        let resource = f
            .registry
            .get(&w)
            .unwrap()
            .unwrap()
            .handle
            .resource_id
            .clone();
        f.registry.update_state(&w, state).unwrap();
        f.advance(secs(1));
        let r = f.manager.tick(0);
        assert_eq!(
            r.terminated.iter().map(|t| t.worker_id).collect::<Vec<_>>(),
            vec![w],
            "{state}: {r:?}"
        );
        assert_eq!(r.terminated[0].reason, TerminationReason::Requested);
        assert!(
            r.decisions
                .iter()
                .any(|d| d.starts_with("1 Terminating/Terminated record(s) nobody was destroying")),
            "{:?}",
            r.decisions
        );
        assert_eq!(f.state(&w), None, "{state}");
        assert!(f.provider.calls().contains(&format!("destroy {resource}")));
        f.assert_no_leak();
    }
}

#[test]
fn terminating_records_restored_from_a_snapshot_are_destroyed_by_the_first_tick() {
    let f = Fixture::new(config());
    let w = f.ready();
    let keep = f.ready();
    f.registry
        .update_state(&w, WorkerState::Terminating)
        .unwrap();
    let snapshot = f.registry.snapshot().unwrap();

    // The host restarts: a new registry from the snapshot, a new manager, the same cloud.
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(f.clock.clone());
    registry.restore(snapshot).unwrap();
    let manager = WorkerLifecycleManager::new(registry.clone(), config()).unwrap();
    manager.register_provider(f.provider.clone()).unwrap();
    let r = manager.tick(0);
    assert_eq!(
        r.terminated.iter().map(|t| t.worker_id).collect::<Vec<_>>(),
        vec![w],
        "{r:?}"
    );
    assert_eq!(registry.get(&w).unwrap(), None);
    assert!(registry.get(&keep).unwrap().is_some());
    assert_eq!(
        f.provider.instances.lock().len(),
        1,
        "only keep's instance is left"
    );
}

#[test]
fn a_tick_reads_the_terminal_ids_only_when_some_are_not_queued_or_once_per_interval() {
    let f = RacyFixture::new(WorkerLifecycleConfig {
        max_workers: 50,
        ..config()
    });
    let ids: Vec<WorkerId> = (0..20)
        .map(|_| f.provision_with(WorkerSpec::new("img")))
        .collect();
    for id in &ids {
        f.racy.update_state(id, WorkerState::Ready).unwrap();
    }
    for _ in 0..5 {
        f.clock.advance(secs(1));
        f.manager.tick(0);
    }
    assert_eq!(f.racy.terminal_id_reads(), 0, "no terminal record: no look");

    // One worker whose destroy keeps failing: queued, so the ticks do not look it up again.
    f.provider
        .script_destroys((0..10).map(|_| DestroyStep::Fail("cloud down")));
    let r = f
        .manager
        .terminate_worker(&ids[0], TerminationReason::Requested)
        .unwrap();
    assert_eq!(r.failed.len(), 1);
    for _ in 0..5 {
        f.clock.advance(secs(1));
        f.manager.tick(0);
    }
    assert_eq!(
        f.racy.terminal_id_reads(),
        1,
        "queued: one periodic comparison per health_check_interval, no more"
    );

    // The host moves one itself: one look, and it is destroyed in that tick.
    f.provider.destroys.lock().clear();
    f.racy
        .update_state(&ids[1], WorkerState::Terminating)
        .unwrap();
    f.clock.advance(secs(1));
    let r = f.manager.tick(0);
    assert!(r.terminated.iter().any(|t| t.worker_id == ids[1]), "{r:?}");
    assert_eq!(f.racy.terminal_id_reads(), 2);
    assert_eq!(f.racy.finds(), 0, "ids, never a scan of snapshots");
}

#[test]
fn the_periodic_check_of_a_destroy_backlog_reads_no_record_yet_finds_a_record_a_stale_entry_hides()
{
    let f = RacyFixture::new(WorkerLifecycleConfig {
        max_workers: 50,
        // No retry during the test: the only reads of a record are the check's.
        destroy_retry_initial: secs(600),
        destroy_retry_max: secs(600),
        ..config()
    });
    let ids: Vec<WorkerId> = (0..10)
        .map(|_| f.provision_with(WorkerSpec::new("img")))
        .collect();
    for id in &ids {
        f.racy.update_state(id, WorkerState::Ready).unwrap();
    }
    // A backlog: five destroys failing, queued for a retry in 600 s.
    f.provider
        .script_destroys((0..5).map(|_| DestroyStep::Fail("cloud down")));
    for id in &ids[..5] {
        let r = f
            .manager
            .terminate_worker(id, TerminationReason::Requested)
            .unwrap();
        assert_eq!(r.failed.len(), 1);
    }
    let gets = f.racy.gets();
    // Three health-check intervals (30 s each) of one tick a second.
    for _ in 0..90 {
        f.clock.advance(secs(1));
        let r = f.manager.tick(0);
        assert!(r.terminated.is_empty() && r.failed.is_empty(), "{r:?}");
    }
    assert_eq!(f.racy.terminal_id_reads(), 3, "once per interval");
    assert_eq!(
        (f.racy.finds(), f.racy.gets() - gets),
        (0, 0),
        "the queue holds exactly the terminal records: no snapshot"
    );

    // The host takes ids[0] over (its entry goes stale) and moves ids[5] to Terminating: five
    // terminal records, five entries — the counts balance and hide ids[5].
    f.racy
        .inner()
        .unregister(&ids[0], TerminationReason::Requested)
        .unwrap();
    f.racy
        .inner()
        .update_state(&ids[5], WorkerState::Terminating)
        .unwrap();
    let mut destroyed_after = None;
    for tick in 1..=30 {
        f.clock.advance(secs(1));
        let r = f.manager.tick(0);
        if r.terminated.iter().any(|t| t.worker_id == ids[5]) {
            destroyed_after = Some(tick);
            break;
        }
    }
    // The comparison of ids found both: within one interval.
    assert!(destroyed_after.is_some(), "hidden for a whole interval");
    assert_eq!(f.racy.terminal_id_reads(), 4);
    assert_eq!(f.racy.finds(), 0);
    assert_eq!(
        f.manager
            .pending_destroys()
            .into_iter()
            .map(|(id, ..)| id)
            .collect::<std::collections::BTreeSet<_>>(),
        ids[1..5].iter().copied().collect(),
        "the stale entry went, the backlog stays"
    );
}

#[test]
fn a_stale_queue_entry_hides_an_unqueued_record_for_one_health_check_interval_at_most() {
    let f = Fixture::new(WorkerLifecycleConfig {
        destroy_retry_initial: secs(120),
        destroy_retry_max: secs(300),
        ..config()
    });
    let (gone, moved) = (f.ready(), f.ready());
    let _keep = f.ready();
    f.provider
        .script_destroys([DestroyStep::Fail("cloud down")]);
    let r = f
        .manager
        .terminate_worker(&gone, TerminationReason::Requested)
        .unwrap();
    assert_eq!(r.failed.len(), 1, "queued, retried in 120 s");
    f.manager.tick(0);
    // The host takes `gone` over (its entry goes stale) and moves `moved` to Terminating: one
    // terminal record, one queue entry.
    f.registry
        .unregister(&gone, TerminationReason::Requested)
        .unwrap();
    f.registry
        .update_state(&moved, WorkerState::Terminating)
        .unwrap();
    let mut destroyed_at = None;
    for _ in 0..40 {
        f.advance(secs(1));
        if f.manager
            .tick(0)
            .terminated
            .iter()
            .any(|t| t.worker_id == moved)
        {
            destroyed_at = Some(f.now());
            break;
        }
    }
    let at = destroyed_at.expect("destroyed");
    assert!(at - T0 <= 31_000, "after {} ms", at - T0);
    assert_eq!(
        f.manager.pending_destroys(),
        vec![],
        "the stale entry went too"
    );
}

// ----- 2: decisions applied against the record as it is now -----------------------------------

#[test]
fn a_starting_worker_past_its_lifetime_claimed_meanwhile_is_drained_not_terminated() {
    let f = RacyFixture::new(config());
    let w = f.provision_with(lifetime_spec(600));
    f.clock.advance(secs(601));
    f.events.drain();
    // Between the cleanup's look and its action, the agent reports in and takes a job.
    f.racy.on_find_for_termination(move |inner| {
        inner.update_state(&w, WorkerState::Ready).unwrap();
        inner.assign_to_job(&w, job("late")).unwrap();
    });
    let c = f.manager.cleanup_workers().unwrap();
    assert!(c.terminated.is_empty(), "{c:?}");
    assert_eq!(c.drained, vec![w]);
    assert!(c.lost_jobs.is_empty());
    let now = f.worker(&w).unwrap();
    assert_eq!(now.state, WorkerState::Draining);
    assert_eq!(now.current_job, Some(job("late")));
    assert!(!f.names(w).contains(&"job_lost"));
}

#[test]
fn an_idle_worker_claimed_meanwhile_is_left_alone() {
    let f = RacyFixture::new(config());
    let w = f.provision_with(idle_spec(120));
    f.racy.update_state(&w, WorkerState::Ready).unwrap();
    f.clock.advance(secs(121));
    f.racy.on_find_for_termination(move |inner| {
        inner.assign_to_job(&w, job("j")).unwrap();
    });
    let c = f.manager.cleanup_workers().unwrap();
    assert_eq!(c, CleanupResult::default());
    let now = f.worker(&w).unwrap();
    assert_eq!(now.state, WorkerState::Busy, "not drained as idle");
    assert_eq!(now.current_job, Some(job("j")));
}

#[test]
fn an_idle_worker_claimed_and_released_meanwhile_is_left_alone() {
    let f = RacyFixture::new(config());
    let w = f.provision_with(idle_spec(120));
    f.racy.update_state(&w, WorkerState::Ready).unwrap();
    f.clock.advance(secs(121));
    let clock = f.clock.clone();
    f.racy.on_find_for_termination(move |inner| {
        inner.assign_to_job(&w, job("j")).unwrap();
        clock.advance(secs(1));
        inner.release_from_job(&w, Some(&job("j"))).unwrap();
    });
    let c = f.manager.cleanup_workers().unwrap();
    assert_eq!(c, CleanupResult::default());
    assert_eq!(
        f.worker(&w).unwrap().state,
        WorkerState::Ready,
        "its idle clock restarted"
    );
}

#[test]
fn a_health_check_reports_the_job_of_a_worker_claimed_after_its_last_look() {
    let f = RacyFixture::new(config());
    let w = f.provision_with(WorkerSpec::new("img"));
    f.racy.update_state(&w, WorkerState::Connecting).unwrap();
    let others: Vec<WorkerId> = (0..3)
        .map(|_| f.provision_with(WorkerSpec::new("img")))
        .collect();
    for o in &others {
        f.racy.update_state(o, WorkerState::Ready).unwrap();
    }
    f.clock.advance(secs(61));
    for o in &others {
        f.racy.heartbeat(o).unwrap();
    }
    // The silent worker reports in and is claimed right after the health check's fresh look.
    f.racy.on_get(w, move |inner| {
        inner.update_state(&w, WorkerState::Ready).unwrap();
        inner.assign_to_job(&w, job("claimed")).unwrap();
    });
    let h = f.manager.run_health_check().unwrap();
    assert_eq!(
        h.lost_jobs,
        vec![LostJob {
            worker_id: w,
            job_id: job("claimed")
        }],
        "{h:?}"
    );
    assert_eq!(h.terminated.len(), 1);
    assert_eq!(f.worker(&w), None);
}

#[test]
fn terminate_worker_reports_the_job_of_a_worker_claimed_after_its_look() {
    let f = RacyFixture::new(config());
    let w = f.provision_with(WorkerSpec::new("img"));
    f.racy.on_get(w, move |inner| {
        inner.update_state(&w, WorkerState::Ready).unwrap();
        inner.assign_to_job(&w, job("claimed")).unwrap();
    });
    let r = f
        .manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: w,
            job_id: job("claimed")
        }]
    );
    assert_eq!(r.terminated.len(), 1);
    assert_eq!(f.manager.stats().unwrap().lost_jobs_total, 1);
}

#[test]
fn an_interruption_notice_drains_a_starting_worker_claimed_after_its_look_and_keeps_its_job() {
    // The notice looks at a worker still starting (which would be terminated at once: it holds
    // no job), and the worker reports in and is claimed right after that look. Terminating it
    // then would lose the job with nobody told (the notice answers with a worker, not a
    // report): it is drained like any live worker instead, and its job finishes first.
    let f = RacyFixture::new(config());
    let w = f.provision_with(WorkerSpec::new("img"));
    f.racy.on_get(w, move |inner| {
        inner.update_state(&w, WorkerState::Ready).unwrap();
        inner.assign_to_job(&w, job("claimed")).unwrap();
    });
    let deadline = f.clock.now() + 120_000;
    let answer = f.manager.notify_interruption(&w, deadline).unwrap();
    assert_eq!(answer.state, WorkerState::Draining);
    assert_eq!(answer.current_job, Some(job("claimed")));
    let now = f.worker(&w).unwrap();
    assert_eq!(
        (now.state, now.current_job),
        (WorkerState::Draining, Some(job("claimed")))
    );
    assert_eq!(f.manager.interruptions(), vec![(w, deadline)]);
    assert_eq!(f.manager.stats().unwrap().lost_jobs_total, 0);
}

#[test]
fn an_interruption_notice_answers_a_starting_worker_as_it_left_it() {
    // A starting worker is taken out at once: the answer is the worker as the notice left
    // it (on its way out), not the snapshot read before (still `Creating`).
    let f = RacyFixture::new(config());
    let w = f.provision_with(WorkerSpec::new("img"));
    let answer = f
        .manager
        .notify_interruption(&w, f.clock.now() + 120_000)
        .unwrap();
    assert!(answer.state.is_terminal(), "{:?}", answer.state);
    assert_eq!(f.worker(&w), None, "destroyed and unregistered");
    assert!(f.manager.interruptions().is_empty());
    let names = f.names(w);
    assert!(names.contains(&"unregistered"), "{names:?}");
}

// ----- 5: startup expiries are never held by the brake ----------------------------------------

#[test]
fn workers_past_their_startup_deadline_are_expired_even_while_the_brake_holds() {
    let f = Fixture::new(config());
    let a = f.provision().id;
    let b = f.provision().id;
    for id in [a, b] {
        f.registry
            .update_state(&id, WorkerState::Connecting)
            .unwrap();
    }
    // Both silent from the start: the brake holds their heartbeat expiry (2 of 2 silent).
    let mut expired = Vec::new();
    while f.now() < T0 + 330_000 {
        f.advance(secs(30));
        let r = f.manager.run_health_check().unwrap();
        expired.extend(
            r.unhealthy
                .iter()
                .map(|u| (u.worker_id, u.reason, f.now() - T0)),
        );
    }
    expired.sort_by_key(|e| e.0);
    let mut want = vec![
        (a, TerminationReason::StartupTimeout, 330_000),
        (b, TerminationReason::StartupTimeout, 330_000),
    ];
    want.sort_by_key(|e| e.0);
    assert_eq!(
        expired, want,
        "expired at the first check past startup_timeout"
    );
    assert_eq!((f.state(&a), f.state(&b)), (None, None));
}

// ----- 9: hygiene -----------------------------------------------------------------------------

#[test]
fn a_create_failure_racing_unregister_provider_leaves_no_backoff() {
    let f = Fixture::new(config());
    f.provider.script_creates([CreateStep::StallFail("quota")]);
    let manager = f.manager.clone();
    let provider_id = f.provider.id.clone();
    let t = std::thread::spawn(move || manager.provision_worker(&provider_id, spec()));
    TestProvider::wait_for(&f.provider.creating_now, 1);
    f.manager.unregister_provider(&f.provider.id).unwrap();
    f.provider.release_stalled(1);
    assert!(matches!(t.join().unwrap(), Err(Error::Provider { .. })));
    assert_eq!(f.manager.provider_backoff(), vec![]);
    // Registered again, it starts with a clean slate.
    f.manager.register_provider(f.provider.clone()).unwrap();
    assert_eq!(f.manager.provider_backoff(), vec![]);
    f.manager.provision_worker(&f.provider.id, spec()).unwrap();
}

/// A worker whose destroy is stalled in the provider (in another thread) and whose instance is
/// already gone from the provider's list when `reconcile` runs.
fn reconcile_during_a_stalled_destroy(
    step: DestroyStep,
) -> (Fixture, WorkerId, ReconcileReport, CleanupResult) {
    let f = Fixture::new(config());
    let w = f.ready();
    let resource = f
        .registry
        .get(&w)
        .unwrap()
        .unwrap()
        .handle
        .resource_id
        .clone();
    // Registered before the listing starts (reconcile leaves younger records alone).
    f.advance(secs(1));
    f.drain();
    f.provider.script_destroys([step]);
    let manager = f.manager.clone();
    let t = std::thread::spawn(move || {
        manager
            .terminate_worker(&w, TerminationReason::Requested)
            .unwrap()
    });
    TestProvider::wait_for(&f.provider.destroying_now, 1);
    f.provider.lose(&resource);
    let report = f.manager.reconcile().unwrap();
    f.provider.release_stalled(1);
    let result = t.join().unwrap();
    (f, w, report, result)
}

#[test]
fn reconcile_racing_a_destroy_does_not_terminate_the_worker_twice() {
    let (f, w, report, result) = reconcile_during_a_stalled_destroy(DestroyStep::Stall);
    assert!(
        report.vanished.is_empty(),
        "its destroy is under way: {report:?}"
    );
    assert!(report.lost_jobs.is_empty());
    assert_eq!(
        result
            .terminated
            .iter()
            .map(|t| t.worker_id)
            .collect::<Vec<_>>(),
        vec![w]
    );
    assert_eq!(f.manager.stats().unwrap().terminated_total, 1);
    let names = names_of(&f, w);
    assert_eq!(names.iter().filter(|n| **n == "unregistered").count(), 1);
    assert_nothing_after_unregistered(&names);
}

#[test]
fn reconcile_racing_a_failing_destroy_reports_no_spurious_destroy_failed() {
    let (f, w, report, result) = reconcile_during_a_stalled_destroy(DestroyStep::StallFail("boom"));
    let names = names_of(&f, w);
    assert_nothing_after_unregistered(&names);
    if report.vanished.contains(&w) {
        // Only acceptable if the failure was not reported for a worker already gone.
        assert!(result.failed.is_empty(), "{result:?}");
    } else {
        // The destroy failed for a worker still Terminating: a real failure, retried; the next
        // reconcile sees its instance gone.
        assert_eq!(result.failed.len(), 1);
        assert_eq!(f.state(&w), Some(WorkerState::Terminating));
        let again = f.manager.reconcile().unwrap();
        assert_eq!(again.vanished, vec![w]);
        assert_eq!(f.state(&w), None);
        assert_eq!(f.manager.pending_destroys(), vec![]);
    }
}

#[test]
fn the_clean_up_destroy_of_a_refused_handle_never_carries_another_workers_id() {
    let f = Fixture::new(config());
    let other = f.ready();
    f.provider.script_creates([CreateStep::DuplicateId(other)]);
    let err = f
        .manager
        .provision_worker(&f.provider.id, spec())
        .unwrap_err();
    assert!(
        matches!(err, Error::Provider { .. } | Error::AlreadyExists(_)),
        "{err:?}"
    );
    let destroyed = f.provider.destroyed.lock().clone();
    assert_eq!(
        destroyed.len(),
        1,
        "the new instance is destroyed, not leaked"
    );
    assert_ne!(
        destroyed[0].worker_id, other,
        "would destroy the other worker"
    );
    assert_eq!(f.state(&other), Some(WorkerState::Ready));
    f.assert_no_leak();
}

/// The clean-up destroy of a refused handle that fails leaves the instance to the ticks' orphan
/// retries (before, only to the next reconcile), under the id the manager made.
#[test]
fn a_refused_handle_whose_clean_up_destroy_failed_is_destroyed_by_a_later_tick() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    let other = f.ready();
    f.provider.script_creates([CreateStep::DuplicateId(other)]);
    f.provider.script_destroys([DestroyStep::Fail("api down")]);
    let err = f
        .manager
        .provision_worker(&f.provider.id, spec())
        .unwrap_err();
    assert!(err.to_string().contains("api down"), "{err}");
    assert_eq!(f.manager.pending_orphans().len(), 1, "{err}");
    assert_eq!(f.provider.instance_ids().len(), 2);
    for _ in 0..20 {
        f.advance(secs(10));
        f.registry.heartbeat(&other).unwrap();
        f.manager.tick(0);
    }
    assert_eq!(f.manager.pending_orphans(), vec![]);
    let destroyed = f.provider.destroyed.lock().clone();
    // The failed attempt, then the tick's retry; both under the id the manager made.
    assert_eq!(destroyed.len(), 2, "{destroyed:?}");
    assert!(
        destroyed.iter().all(|h| h.worker_id != other),
        "{destroyed:?}"
    );
    assert_eq!(
        f.provider.instance_ids().len(),
        1,
        "only the other worker's"
    );
    assert_eq!(f.state(&other), Some(WorkerState::Ready));
    f.assert_no_leak();
}

// ----- 11: scale-down from the ready index ----------------------------------------------------

#[test]
fn scale_down_asks_for_the_longest_idle_without_scanning_the_fleet() {
    let f = RacyFixture::new(WorkerLifecycleConfig {
        min_ready_workers: 1,
        ..config()
    });
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = f.provision_with(WorkerSpec::new("img"));
        f.racy.update_state(&id, WorkerState::Ready).unwrap();
        ids.push(id);
        f.clock.advance(secs(1));
    }
    f.manager
        .set_scaling_target(&f.provider.id, spec())
        .unwrap();
    f.clock.advance(secs(120));
    for id in &ids {
        f.racy.heartbeat(id).unwrap();
    }
    let r = f.manager.tick(0);
    let plan = r.scaling.clone().unwrap();
    assert_eq!(
        plan.scale_down,
        ids[..4].to_vec(),
        "longest idle first: {r:?}"
    );
    assert_eq!(r.terminated.len(), 4);
    assert_eq!(f.racy.finds(), 0, "no find(Ready) scan");
}

// ----- 16: config durations must round-trip through JSON --------------------------------------

#[test]
fn config_durations_that_cannot_round_trip_are_refused() {
    type Field = fn(&mut WorkerLifecycleConfig) -> &mut Duration;
    let fields: [(&str, Field); 10] = [
        ("heartbeat_timeout", |c| &mut c.heartbeat_timeout),
        ("health_check_interval", |c| &mut c.health_check_interval),
        ("startup_timeout", |c| &mut c.startup_timeout),
        ("scale_up_cooldown", |c| &mut c.scale_up_cooldown),
        ("scale_down_cooldown", |c| &mut c.scale_down_cooldown),
        ("destroy_retry_max", |c| &mut c.destroy_retry_max),
        ("provider_backoff_max", |c| &mut c.provider_backoff_max),
        ("max_mass_expiry_hold", |c| &mut c.max_mass_expiry_hold),
        ("destroy_retry_initial", |c| &mut c.destroy_retry_initial),
        ("reconcile_interval", |c| &mut c.reconcile_interval),
    ];
    for (name, field) in fields {
        for huge in [Duration::MAX, Duration::from_secs(u64::MAX / 1000 + 1)] {
            let mut c = WorkerLifecycleConfig::default();
            *field(&mut c) = huge;
            // The *_max fields must stay above their initial value: keep that rule out of it.
            c.destroy_retry_max = c.destroy_retry_max.max(c.destroy_retry_initial);
            let err = c.validate().unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{name}: {err:?}");
            assert!(err.to_string().contains(name), "{name}: {err}");
            assert!(
                WorkerLifecycleManager::new(Arc::new(InMemoryWorkerRegistry::new()), c).is_err()
            );
        }
        // The longest accepted value reads back exactly.
        let mut c = WorkerLifecycleConfig::default();
        *field(&mut c) = MAX_CONFIG_DURATION;
        c.destroy_retry_max = c.destroy_retry_max.max(c.destroy_retry_initial);
        c.validate().unwrap();
        let back: WorkerLifecycleConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c, "{name}");
    }
}

// ----- 21: no event about a worker after its Unregistered -------------------------------------

#[test]
fn no_destroy_failed_after_the_host_unregistered_the_worker_during_its_destroy() {
    let f = Fixture::new(config());
    let w = f.ready();
    f.drain();
    f.provider.script_destroys([DestroyStep::StallFail("boom")]);
    let manager = f.manager.clone();
    let t = std::thread::spawn(move || {
        manager
            .terminate_worker(&w, TerminationReason::Requested)
            .unwrap()
    });
    TestProvider::wait_for(&f.provider.destroying_now, 1);
    f.registry
        .unregister(&w, TerminationReason::Requested)
        .unwrap();
    f.provider.release_stalled(1);
    let result = t.join().unwrap();
    let names = names_of(&f, w);
    assert_nothing_after_unregistered(&names);
    assert!(result.failed.is_empty(), "{result:?}");
    assert_eq!(f.manager.pending_destroys(), vec![]);
    assert_eq!(f.manager.stats().unwrap().destroy_failures_total, 0);
}
