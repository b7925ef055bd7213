//! The registry contract of issue 10 (conditional transitions, longest idle, bulk heartbeats,
//! ids never reused, grace on restore, ...), written against `dyn WorkerRegistry`: every test
//! gets its registry from [`new_registry`], so the file can later run against every backend.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use hodei_workers::*;

/// Where the manual clock starts: far enough from zero that `now - timeout` never saturates.
const T0: Timestamp = 1_700_000_000_000;

/// The registry under test: the backend of the binary that includes this module.
fn new_registry(clock: Arc<ManualClock>) -> Arc<dyn WorkerRegistry> {
    crate::backend::new_registry(clock)
}

fn setup() -> (Arc<ManualClock>, Arc<dyn WorkerRegistry>) {
    let clock = Arc::new(ManualClock::new(T0));
    (clock.clone(), new_registry(clock))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn job(name: &str) -> JobId {
    JobId::new(name).unwrap()
}

fn handle() -> WorkerHandle {
    WorkerHandle::new(
        ProviderId::new("docker-local").unwrap(),
        ProviderType::Docker,
        "c",
    )
}

fn spec() -> Arc<WorkerSpec> {
    Arc::new(WorkerSpec::new("img"))
}

fn register(registry: &dyn WorkerRegistry) -> WorkerId {
    registry.register(handle(), spec()).unwrap().id
}

fn ready(registry: &dyn WorkerRegistry) -> WorkerId {
    let id = register(registry);
    registry.update_state(&id, WorkerState::Ready).unwrap();
    id
}

fn get(registry: &dyn WorkerRegistry, id: &WorkerId) -> Worker {
    registry.get(id).unwrap().expect("registered")
}

fn kinds(events: &[WorkerLifecycleEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

// ---------------------------------------------------------------------------------------------
// transition_if

#[test]
fn transition_if_applies_when_the_guard_holds() {
    let (clock, registry) = setup();
    let id = ready(&*registry);
    let since = get(&*registry, &id).idle_since.unwrap();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    clock.advance(secs(3));
    let guard = TransitionGuard::new()
        .in_state(WorkerState::Ready)
        .idle_since(since)
        .without_job();
    let moved = registry
        .transition_if(&id, &guard, WorkerState::Terminating)
        .unwrap()
        .expect("the guard holds");
    assert_eq!(moved.from, WorkerState::Ready);
    assert_eq!(moved.worker.state, WorkerState::Terminating);
    assert_eq!(moved.worker.state_changed_at, T0 + 3_000);
    assert_eq!(moved.lost_job, None);
    assert_eq!(moved.worker, get(&*registry, &id));
    assert_eq!(kinds(&events.drain()), ["state_changed"]);
}

#[test]
fn transition_if_does_nothing_when_the_guard_no_longer_holds() {
    let (clock, registry) = setup();
    let id = ready(&*registry);
    let since = get(&*registry, &id).idle_since.unwrap();
    // The decision was taken on this view; meanwhile the worker is claimed.
    registry.assign_to_job(&id, job("j1")).unwrap();
    let before = get(&*registry, &id);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let to = WorkerState::Terminating;
    for guard in [
        TransitionGuard::new().in_state(WorkerState::Ready),
        TransitionGuard::new().idle_since(since),
        TransitionGuard::new().without_job(),
        TransitionGuard::new()
            .in_state(WorkerState::Creating)
            .in_state(WorkerState::Connecting),
    ] {
        assert_eq!(
            registry.transition_if(&id, &guard, to),
            Ok(None),
            "{guard:?}"
        );
    }
    // Claimed and released since: idle again, but not since the same instant.
    clock.advance(secs(1));
    registry.release_from_job(&id, Some(&job("j1"))).unwrap();
    let guard = TransitionGuard::new()
        .in_state(WorkerState::Ready)
        .idle_since(since);
    assert_eq!(registry.transition_if(&id, &guard, to), Ok(None));
    assert_eq!(get(&*registry, &id).state, WorkerState::Ready);
    assert_eq!(before.current_job, Some(job("j1")));
    assert_eq!(
        kinds(&events.drain()),
        ["released_from_job", "state_changed"]
    );
}

#[test]
fn transition_if_reports_the_job_it_takes() {
    let (_clock, registry) = setup();
    let id = ready(&*registry);
    registry.assign_to_job(&id, job("j1")).unwrap();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let guard = TransitionGuard::new().in_state(WorkerState::Busy);
    let moved = registry
        .transition_if(&id, &guard, WorkerState::Terminating)
        .unwrap()
        .unwrap();
    assert_eq!(moved.from, WorkerState::Busy);
    assert_eq!(moved.lost_job, Some(job("j1")));
    assert_eq!(moved.worker.current_job, None);
    assert_eq!(kinds(&events.drain()), ["state_changed", "job_lost"]);
    // The job is free again.
    let other = ready(&*registry);
    registry.assign_to_job(&other, job("j1")).unwrap();
}

#[test]
fn transition_if_same_state_is_a_silent_no_op_and_refusals_are_errors() {
    let (_clock, registry) = setup();
    let id = ready(&*registry);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let same = registry
        .transition_if(&id, &TransitionGuard::new(), WorkerState::Ready)
        .unwrap()
        .unwrap();
    assert_eq!(
        (same.from, same.worker.state),
        (WorkerState::Ready, WorkerState::Ready)
    );
    assert!(events.is_empty());
    // The guard holds, the state machine refuses.
    assert_eq!(
        registry.transition_if(&id, &TransitionGuard::new(), WorkerState::Connecting),
        Err(Error::InvalidTransition {
            worker_id: id,
            from: WorkerState::Ready,
            to: WorkerState::Connecting
        })
    );
    assert!(matches!(
        registry.transition_if(&id, &TransitionGuard::new(), WorkerState::Busy),
        Err(Error::InvalidTransition { .. })
    ));
    let unknown = WorkerId::new();
    assert_eq!(
        registry.transition_if(&unknown, &TransitionGuard::new(), WorkerState::Terminating),
        Err(Error::NotFound(unknown))
    );
}

#[test]
fn transition_if_racing_claims_never_takes_a_claimed_worker() {
    // One thread retires idle workers ("still Ready, still without a job"), another claims:
    // every worker ends either busy with its job or terminating without one, and no job is
    // ever lost.
    for round in 0..crate::common::scaled(20, 3) {
        let (_clock, registry) = setup();
        let ids: Vec<WorkerId> = (0..crate::common::scaled(200, 60))
            .map(|_| ready(&*registry))
            .collect();
        let events = registry
            .subscribe(SubscribeOptions::default().capacity(100_000))
            .unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let retire = {
            let (registry, barrier, ids) = (registry.clone(), barrier.clone(), ids.clone());
            thread::spawn(move || {
                barrier.wait();
                let guard = TransitionGuard::new()
                    .in_state(WorkerState::Ready)
                    .without_job();
                ids.iter()
                    .filter(|id| {
                        registry
                            .transition_if(id, &guard, WorkerState::Terminating)
                            .unwrap()
                            .is_some()
                    })
                    .count()
            })
        };
        barrier.wait();
        let mut claimed = 0;
        for i in 0..ids.len() {
            if registry
                .claim(&WorkerFilter::new(), job(&format!("r{round}-{i}")))
                .unwrap()
                .is_some()
            {
                claimed += 1;
            }
        }
        let retired = retire.join().unwrap();
        assert_eq!(claimed + retired, ids.len(), "round {round}");
        for id in &ids {
            let w = get(&*registry, id);
            match w.state {
                WorkerState::Busy => assert!(w.current_job.is_some()),
                WorkerState::Terminating => assert_eq!(w.current_job, None),
                other => panic!("round {round}: worker in {other}"),
            }
        }
        assert!(!kinds(&events.drain()).contains(&"job_lost"));
    }
}

// ---------------------------------------------------------------------------------------------
// longest_idle

#[test]
fn longest_idle_lists_ready_workers_longest_idle_first() {
    let (clock, registry) = setup();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(ready(&*registry));
        clock.advance(secs(1));
    }
    // Not ready: left out.
    register(&*registry);
    let busy = ready(&*registry);
    registry.assign_to_job(&busy, job("j")).unwrap();
    // ids[0] is claimed and released: now the most recently idle.
    registry.assign_to_job(&ids[0], job("k")).unwrap();
    clock.advance(secs(1));
    registry.release_from_job(&ids[0], None).unwrap();

    let order = |n| -> Vec<WorkerId> {
        registry
            .longest_idle(n)
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect()
    };
    assert_eq!(order(3), [ids[1], ids[2], ids[3]]);
    assert_eq!(order(100), [ids[1], ids[2], ids[3], ids[4], ids[0]]);
    assert_eq!(order(0), Vec::<WorkerId>::new());
    let all = registry.longest_idle(usize::MAX).unwrap();
    assert!(all.iter().all(|w| w.state == WorkerState::Ready));
    assert!(all.windows(2).all(|p| p[0].idle_since <= p[1].idle_since));
}

#[test]
fn a_fleet_made_ready_at_one_instant_is_claimed_by_id_and_listed_by_id() {
    // The clock stands still: every worker is idle since the same millisecond, in the random
    // order of their ids, so ties decide everything (in memory, most of them land far inside
    // the ready set's deque, in the B-tree beside it). claim takes the greater id first,
    // longest_idle lists ascending ids; drained workers taken back keep their place.
    let (_clock, registry) = setup();
    let mut ids: Vec<WorkerId> = (0..300).map(|_| ready(&*registry)).collect();
    ids.sort();
    let listed: Vec<WorkerId> = registry
        .longest_idle(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(listed, ids);
    // Drain every third worker, take them back to Ready in reverse id order.
    for id in ids.iter().step_by(3) {
        registry.update_state(id, WorkerState::Draining).unwrap();
    }
    for id in ids.iter().step_by(3).rev() {
        registry.update_state(id, WorkerState::Ready).unwrap();
    }
    for (n, expected) in ids.iter().rev().enumerate() {
        let claimed = registry
            .claim(&WorkerFilter::new(), job(&format!("job-{n}")))
            .unwrap()
            .expect("a ready worker");
        assert_eq!(claimed.id, *expected, "claim {n}");
    }
    assert_eq!(
        registry
            .claim(&WorkerFilter::new(), job("one-more"))
            .unwrap(),
        None
    );
}

#[test]
fn longest_idle_on_an_empty_registry_is_empty() {
    let (_clock, registry) = setup();
    assert!(registry.longest_idle(10).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// heartbeat_many

#[test]
fn heartbeat_many_answers_each_id_in_order() {
    let (clock, registry) = setup();
    let a = ready(&*registry);
    let b = ready(&*registry);
    let unknown = WorkerId::new();
    clock.advance(secs(5));
    let answers = registry.heartbeat_many(&[a, unknown, b]).unwrap();
    assert_eq!(answers, [Ok(()), Err(Error::NotFound(unknown)), Ok(())]);
    assert_eq!(get(&*registry, &a).last_heartbeat, T0 + 5_000);
    assert_eq!(get(&*registry, &b).last_heartbeat, T0 + 5_000);
    assert_eq!(registry.heartbeat_many(&[]).unwrap(), []);
    // The heartbeats count for the health check.
    clock.advance(secs(30));
    let silent: BTreeSet<WorkerId> = registry
        .find_unhealthy(secs(31))
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert!(silent.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. a one-shot worker is not made ready again

#[test]
fn a_worker_that_ran_its_max_jobs_cannot_go_back_to_ready() {
    let (_clock, registry) = setup();
    let one_shot = Arc::new(WorkerSpec::new("img").with_max_jobs(1));
    let id = registry.register(handle(), one_shot).unwrap().id;
    registry.update_state(&id, WorkerState::Ready).unwrap();
    registry.claim(&WorkerFilter::new(), job("first")).unwrap();
    registry.release_from_job(&id, None).unwrap();
    assert_eq!(get(&*registry, &id).state, WorkerState::Draining);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();

    let err = registry
        .update_state(&id, WorkerState::Ready)
        .expect_err("a one-shot worker takes no second job");
    assert_eq!(
        err,
        Error::InvalidTransition {
            worker_id: id,
            from: WorkerState::Draining,
            to: WorkerState::Ready
        }
    );
    assert!(err.to_string().contains("max_jobs"), "{err}");
    assert_eq!(
        registry.transition_if(&id, &TransitionGuard::new(), WorkerState::Ready),
        Err(err)
    );
    assert_eq!(
        registry.claim(&WorkerFilter::new(), job("second")),
        Ok(None)
    );
    assert_eq!(get(&*registry, &id).state, WorkerState::Draining);
    assert!(events.is_empty());
    // Retiring it stays open.
    registry
        .update_state(&id, WorkerState::Terminating)
        .unwrap();
}

#[test]
fn a_draining_worker_below_its_max_jobs_may_go_back_to_ready() {
    let (_clock, registry) = setup();
    let id = registry
        .register(handle(), Arc::new(WorkerSpec::new("img").with_max_jobs(2)))
        .unwrap()
        .id;
    registry.update_state(&id, WorkerState::Ready).unwrap();
    registry.assign_to_job(&id, job("a")).unwrap();
    registry.release_from_job(&id, None).unwrap();
    registry.update_state(&id, WorkerState::Draining).unwrap();
    registry.update_state(&id, WorkerState::Ready).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 6. restore grants grace from now

#[test]
fn restore_grants_grace_from_now() {
    let (clock, original) = setup();
    let starting = register(&*original);
    let connecting = register(&*original);
    original
        .update_state(&connecting, WorkerState::Connecting)
        .unwrap();
    let idle = ready(&*original);
    let busy = ready(&*original);
    original.assign_to_job(&busy, job("j")).unwrap();
    clock.advance(secs(10));
    let snapshot = original.snapshot().unwrap();

    // The host was down for two minutes: every deadline passed on the old clock.
    clock.advance(secs(120));
    let copy = new_registry(clock.clone());
    copy.restore(snapshot).unwrap();
    let restored_at = clock.now();
    assert!(copy.find_unhealthy(secs(60)).unwrap().is_empty());
    assert!(copy.find_startup_expired(secs(60)).unwrap().is_empty());

    // The grace lasts one timeout from the restore, not longer.
    clock.set(restored_at + 60_000);
    assert!(copy.find_unhealthy(secs(60)).unwrap().is_empty());
    clock.set(restored_at + 60_001);
    let silent: BTreeSet<WorkerId> = copy
        .find_unhealthy(secs(60))
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(silent, BTreeSet::from([connecting, idle, busy]));
    let late: BTreeSet<WorkerId> = copy
        .find_startup_expired(secs(60))
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(late, BTreeSet::from([starting, connecting]));
}

// ---------------------------------------------------------------------------------------------
// 7. concurrent health checks each see every due worker

#[test]
fn concurrent_find_unhealthy_callers_each_see_every_due_worker() {
    let (clock, registry) = setup();
    let ids: Vec<WorkerId> = (0..crate::common::scaled(12_000, 400))
        .map(|_| {
            let id = register(&*registry);
            registry.update_state(&id, WorkerState::Connecting).unwrap();
            id
        })
        .collect();
    clock.advance(secs(100));
    // A few go silent (few enough per shard that the per-entry path does the work, not the
    // one-pass rebuild); the others keep beating.
    let silent: BTreeSet<WorkerId> = ids.iter().step_by(10).copied().collect();
    for id in &ids {
        if !silent.contains(id) {
            registry.heartbeat(id).unwrap();
        }
    }
    fn found(r: &dyn WorkerRegistry) -> BTreeSet<WorkerId> {
        r.find_unhealthy(Duration::from_secs(50))
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect()
    }
    // The first look files everyone under their live heartbeats.
    assert_eq!(found(&*registry), silent);
    let callers = 3;
    let barrier = Arc::new(Barrier::new(callers));
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let (registry, barrier, silent) = (registry.clone(), barrier.clone(), silent.clone());
            thread::spawn(move || {
                // Asserted after the join: a panic here would leave the others at the barrier.
                let mut misses = Vec::new();
                for round in 0..crate::common::scaled(300, 20) {
                    barrier.wait();
                    let got = found(&*registry);
                    if got != silent {
                        misses.push((round, silent.difference(&got).count()));
                    }
                }
                misses
            })
        })
        .collect();
    for t in threads {
        let misses = t.join().unwrap();
        assert!(misses.is_empty(), "(round, due workers missed): {misses:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 8. timestamps follow the event order

/// A clock that ticks one millisecond per reading and, once armed for a thread, holds that
/// thread's next reading (after taking its value) until released or for `HOLD` at most: it
/// reproduces "the time was read, then the thread was descheduled".
#[derive(Debug, Default)]
struct GatedClock {
    now: std::sync::atomic::AtomicU64,
    gate: std::sync::Mutex<Gate>,
    changed: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct Gate {
    armed_for: Option<thread::ThreadId>,
    holding: bool,
    released: bool,
}

const HOLD: Duration = Duration::from_millis(300);

impl GatedClock {
    fn arm(&self, thread: thread::ThreadId) {
        *self.gate.lock().unwrap() = Gate {
            armed_for: Some(thread),
            ..Gate::default()
        };
    }

    /// Waits until the armed thread is held in a reading.
    fn wait_holding(&self) {
        let mut gate = self.gate.lock().unwrap();
        while !gate.holding {
            gate = self.changed.wait(gate).unwrap();
        }
    }

    fn release(&self) {
        self.gate.lock().unwrap().released = true;
        self.changed.notify_all();
    }
}

impl Clock for GatedClock {
    fn now(&self) -> Timestamp {
        let t = T0 + self.now.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut gate = self.gate.lock().unwrap();
        if gate.armed_for == Some(thread::current().id()) {
            gate.armed_for = None;
            gate.holding = true;
            self.changed.notify_all();
            // Bounded: when the registry reads the time under its lock, the other thread
            // cannot finish (and release us) until we do.
            let _ = self
                .changed
                .wait_timeout_while(gate, HOLD, |g| !g.released)
                .unwrap();
        }
        t
    }
}

#[test]
fn event_times_and_record_times_never_go_backwards_in_seq_order() {
    let clock = Arc::new(GatedClock::default());
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let a = register(&*registry);
    let b = register(&*registry);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();

    // Thread A reads the time for its change, then stalls; B changes another worker meanwhile.
    let slow = {
        let (registry, clock) = (registry.clone(), clock.clone());
        thread::spawn(move || {
            clock.arm(thread::current().id());
            registry.update_state(&a, WorkerState::Ready).unwrap()
        })
    };
    clock.wait_holding();
    let fast = registry.update_state(&b, WorkerState::Ready).unwrap();
    clock.release();
    let slow = slow.join().unwrap();

    let got = events.drain();
    assert_eq!(got.len(), 2);
    assert!(
        got.windows(2).all(|p| p[0].at <= p[1].at),
        "event times go backwards: {got:?}"
    );
    // The records' times agree with the order of their events.
    let (first, second) = if got[0].kind.worker_id() == Some(a) {
        (&slow, &fast)
    } else {
        (&fast, &slow)
    };
    assert!(first.updated_at <= second.updated_at);
    assert!(first.idle_since <= second.idle_since);
    for (event, worker) in got.iter().zip([first, second]) {
        assert_eq!(event.at, worker.state_changed_at);
    }
}

// ---------------------------------------------------------------------------------------------
// 10. claims with filters that match few or none of a large ready set

#[test]
fn claim_with_an_unmatchable_filter_on_a_large_ready_set_finds_nothing() {
    let (_clock, registry) = setup();
    for _ in 0..crate::common::scaled(5000, 300) {
        ready(&*registry);
    }
    let gpu = WorkerFilter::new().label("gpu", "true");
    assert_eq!(registry.claim(&gpu, job("g")), Ok(None));
    assert_eq!(
        registry.claim(&WorkerFilter::new().capability("cuda"), job("g")),
        Ok(None)
    );
    // The job is not held by anyone: an unfiltered claim takes it.
    assert!(registry
        .claim(&WorkerFilter::new(), job("g"))
        .unwrap()
        .is_some());
    // Still: a job already held is an error, whatever the filter.
    assert!(matches!(
        registry.claim(&gpu, job("g")),
        Err(Error::JobAlreadyAssigned { .. })
    ));
}

#[test]
fn claim_finds_the_one_matching_worker_deep_in_a_large_ready_set() {
    let (clock, registry) = setup();
    // The matching workers are the longest idle: every other ready worker comes before them in
    // the claim's walk (most recently idle first).
    let gpu_spec = Arc::new(WorkerSpec::new("img").with_label("gpu", "true"));
    let gpus: Vec<WorkerId> = (0..2)
        .map(|_| {
            let id = registry.register(handle(), gpu_spec.clone()).unwrap().id;
            registry.update_state(&id, WorkerState::Ready).unwrap();
            clock.advance(Duration::from_millis(1));
            id
        })
        .collect();
    for _ in 0..crate::common::scaled(5000, 300) {
        ready(&*registry);
    }
    let filter = WorkerFilter::new().label("gpu", "true");
    let first = registry.claim(&filter, job("g1")).unwrap().unwrap();
    assert_eq!(first.id, gpus[1], "the most recently idle match first");
    let second = registry.claim(&filter, job("g2")).unwrap().unwrap();
    assert_eq!(second.id, gpus[0]);
    assert_eq!(registry.claim(&filter, job("g3")), Ok(None));
    assert_eq!(registry.stats().unwrap().by_state.busy, 2);
}

#[test]
fn concurrent_filtered_claims_never_give_a_worker_or_a_job_twice() {
    let (_clock, registry) = setup();
    let pools = ["a", "b", "c"];
    let mut per_pool = Vec::new();
    for pool in pools {
        let spec = Arc::new(WorkerSpec::new("img").with_label("pool", pool));
        let ids: Vec<WorkerId> = (0..crate::common::scaled(300, 40))
            .map(|_| {
                let id = registry.register(handle(), spec.clone()).unwrap().id;
                registry.update_state(&id, WorkerState::Ready).unwrap();
                id
            })
            .collect();
        per_pool.push(ids);
    }
    // Plenty of unmatchable ready workers around them.
    for _ in 0..crate::common::scaled(2000, 200) {
        ready(&*registry);
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let registry = registry.clone();
            thread::spawn(move || {
                let mut won = Vec::new();
                for i in 0..crate::common::scaled(400, 80) {
                    let pool = ["a", "b", "c", "none"][(t + i) % 4];
                    let filter = WorkerFilter::new().label("pool", pool);
                    // Every thread asks for the same job names: each job goes to one worker.
                    let j = job(&format!("{pool}-{}", i / 4));
                    match registry.claim(&filter, j.clone()) {
                        Ok(Some(w)) => {
                            assert_eq!(w.spec.labels["pool"], pool);
                            assert_eq!(w.current_job.as_ref(), Some(&j));
                            won.push((w.id, j));
                        }
                        Ok(None) | Err(Error::JobAlreadyAssigned { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                won
            })
        })
        .collect();
    let won: Vec<(WorkerId, JobId)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let workers: BTreeSet<WorkerId> = won.iter().map(|(w, _)| *w).collect();
    let jobs: BTreeSet<&JobId> = won.iter().map(|(_, j)| j).collect();
    assert_eq!(workers.len(), won.len(), "a worker was given two jobs");
    assert_eq!(jobs.len(), won.len(), "a job was given to two workers");
    for (id, j) in &won {
        assert_eq!(get(&*registry, id).current_job.as_ref(), Some(j));
    }
    assert_eq!(registry.stats().unwrap().by_state.busy, won.len());
}

// ---------------------------------------------------------------------------------------------
// 16. durations that cannot round-trip are refused

#[test]
fn durations_that_cannot_be_read_back_are_refused() {
    let (_clock, registry) = setup();
    for bad in [
        Duration::MAX,
        Duration::from_millis(u64::MAX),
        Duration::from_secs(u64::MAX),
        MAX_SPEC_DURATION + Duration::from_nanos(1),
    ] {
        for spec in [
            WorkerSpec::new("img").with_idle_timeout(bad),
            WorkerSpec::new("img").with_max_lifetime(bad),
        ] {
            assert!(
                matches!(spec.validate(), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
            assert!(matches!(
                registry.register(handle(), Arc::new(spec)),
                Err(Error::InvalidArgument(_))
            ));
        }
    }
    // The largest accepted durations round-trip through a snapshot exactly.
    let spec = WorkerSpec::new("img")
        .with_idle_timeout(MAX_SPEC_DURATION)
        .with_max_lifetime(MAX_SPEC_DURATION - Duration::from_millis(1));
    let id = registry
        .register(handle(), Arc::new(spec.clone()))
        .unwrap()
        .id;
    let text = registry.snapshot().unwrap().to_json().unwrap();
    let back = Snapshot::from_json(&text).unwrap();
    assert_eq!(*back.workers[0].spec, spec);
    assert_eq!(back.workers[0].id, id);
}

// ---------------------------------------------------------------------------------------------
// 17. strings that may reach C: no NUL, bounded lengths

fn bad_specs() -> Vec<(&'static str, WorkerSpec)> {
    let base = WorkerSpec::new("img");
    let mut gpu = base.clone();
    gpu.resources.gpu_type = Some("a\0b".into());
    let mut env_key = base.clone();
    env_key.environment.insert("A\0".into(), "v".into());
    let mut env_value = base.clone();
    env_value.environment.insert("A".into(), "v\0".into());
    let mut long_env = base.clone();
    long_env
        .environment
        .insert("A".into(), "v".repeat(MAX_VALUE_LEN + 1));
    let mut many_labels = base.clone();
    for i in 0..=MAX_ENTRIES {
        many_labels.labels.insert(format!("k{i}"), "v".into());
    }
    vec![
        ("image NUL", WorkerSpec::new("ubuntu\0:24.04")),
        ("image long", WorkerSpec::new("i".repeat(MAX_IMAGE_LEN + 1))),
        ("label key NUL", base.clone().with_label("a\0", "v")),
        ("label value NUL", base.clone().with_label("a", "v\0")),
        (
            "label key long",
            base.clone().with_label("k".repeat(MAX_KEY_LEN + 1), "v"),
        ),
        (
            "label value long",
            base.clone().with_label("k", "v".repeat(MAX_VALUE_LEN + 1)),
        ),
        ("capability NUL", base.clone().with_capability("gp\0u")),
        (
            "capability long",
            base.clone().with_capability("c".repeat(MAX_KEY_LEN + 1)),
        ),
        ("gpu type NUL", gpu),
        ("env key NUL", env_key),
        ("env value NUL", env_value),
        ("env value long", long_env),
        ("too many labels", many_labels),
    ]
}

fn bad_handles() -> Vec<(&'static str, WorkerHandle)> {
    let provider = ProviderId::new("p").unwrap();
    let with =
        |resource: String| WorkerHandle::new(provider.clone(), ProviderType::Docker, resource);
    vec![
        ("resource id NUL", with("c-\0-1".into())),
        (
            "resource id long",
            with("r".repeat(MAX_RESOURCE_ID_LEN + 1)),
        ),
        (
            "metadata key NUL",
            with("c".into()).with_metadata("k\0", "v"),
        ),
        (
            "metadata value NUL",
            with("c".into()).with_metadata("k", "\0"),
        ),
        (
            "metadata value long",
            with("c".into()).with_metadata("k", "v".repeat(MAX_VALUE_LEN + 1)),
        ),
    ]
}

#[test]
fn strings_with_nul_or_over_their_limit_are_refused_at_register() {
    let (_clock, registry) = setup();
    for (what, spec) in bad_specs() {
        assert!(
            matches!(spec.validate(), Err(Error::InvalidArgument(_))),
            "{what}"
        );
        assert!(
            matches!(
                registry.register(handle(), Arc::new(spec.clone())),
                Err(Error::InvalidArgument(_))
            ),
            "{what}"
        );
        // Through JSON (the bindings' way in): it parses, and validate() refuses it.
        let text = serde_json::to_string(&spec).unwrap();
        let parsed: WorkerSpec = serde_json::from_str(&text).unwrap();
        assert!(parsed.validate().is_err(), "{what} (JSON)");
    }
    for (what, h) in bad_handles() {
        assert!(
            matches!(h.validate(), Err(Error::InvalidArgument(_))),
            "{what}"
        );
        assert!(
            matches!(registry.register(h, spec()), Err(Error::InvalidArgument(_))),
            "{what}"
        );
    }
    assert_eq!(registry.count().unwrap(), 0);
    // At the limits: accepted.
    let spec = WorkerSpec::new("i".repeat(MAX_IMAGE_LEN))
        .with_label("k".repeat(MAX_KEY_LEN), "v".repeat(MAX_VALUE_LEN))
        .with_capability("c".repeat(MAX_KEY_LEN));
    let h = WorkerHandle::new(
        ProviderId::new("p").unwrap(),
        ProviderType::Docker,
        "r".repeat(MAX_RESOURCE_ID_LEN),
    )
    .with_metadata("k".repeat(MAX_KEY_LEN), "ä".repeat(MAX_VALUE_LEN / 2));
    registry.register(h, Arc::new(spec)).unwrap();
}

#[test]
fn strings_with_nul_are_refused_at_restore() {
    let (_clock, source) = setup();
    ready(&*source);
    let good = source.snapshot().unwrap();
    let mut cases: Vec<(&str, Snapshot)> = Vec::new();
    for (what, spec) in bad_specs() {
        let mut s = good.clone();
        s.workers[0].spec = Arc::new(spec);
        cases.push((what, s));
    }
    for (what, mut h) in bad_handles() {
        let mut s = good.clone();
        h.worker_id = s.workers[0].id;
        s.workers[0].handle = Arc::new(h);
        cases.push((what, s));
    }
    for (what, bad) in cases {
        let (_clock, target) = setup();
        assert!(
            matches!(target.restore(bad.clone()), Err(Error::Snapshot(_))),
            "{what}"
        );
        let text = bad.to_json().unwrap();
        assert!(
            matches!(Snapshot::from_json(&text), Err(Error::Snapshot(_))),
            "{what} (JSON)"
        );
        assert_eq!(target.count().unwrap(), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// 18. a snapshot's times may not lie after its own taken_at

#[test]
fn a_snapshot_with_times_after_its_taken_at_is_refused() {
    let (clock, source) = setup();
    let id = ready(&*source);
    clock.advance(secs(5));
    let good = source.snapshot().unwrap();
    type Edit = fn(&mut Worker);
    let edits: [(&str, Edit); 5] = [
        ("last_heartbeat", |w| w.last_heartbeat = u64::MAX),
        ("created_at", |w| w.created_at += 10_000),
        ("updated_at", |w| w.updated_at += 10_000),
        ("state_changed_at", |w| w.state_changed_at += 10_000),
        ("idle_since", |w| w.idle_since = Some(T0 + 10_000)),
    ];
    for (what, edit) in edits {
        let mut bad = good.clone();
        edit(&mut bad.workers[0]);
        let (_clock, target) = setup();
        assert!(
            matches!(target.restore(bad.clone()), Err(Error::Snapshot(_))),
            "{what}"
        );
        assert!(
            matches!(
                Snapshot::from_json(&bad.to_json().unwrap()),
                Err(Error::Snapshot(_))
            ),
            "{what}"
        );
    }
    // Times equal to taken_at are fine.
    let mut edge = good.clone();
    edge.workers[0].last_heartbeat = edge.taken_at;
    let (_clock, target) = setup();
    target.restore(edge).unwrap();
    assert!(target.get(&id).unwrap().is_some());
}

// ---------------------------------------------------------------------------------------------
// 20. ids are never reused

#[test]
fn an_unregistered_id_cannot_be_registered_again() {
    let (_clock, registry) = setup();
    let id = ready(&*registry);
    registry.assign_to_job(&id, job("old")).unwrap();
    let h = get(&*registry, &id).handle;
    registry
        .unregister(&id, TerminationReason::Requested)
        .unwrap();
    assert_eq!(
        registry.register((*h).clone(), spec()),
        Err(Error::AlreadyExists(id))
    );
    // So a stale release of the old job can never touch a new worker.
    assert_eq!(
        registry.release_from_job(&id, None),
        Err(Error::NotFound(id))
    );
}

#[test]
fn a_restored_registry_keeps_refusing_the_ids_retired_before_the_snapshot() {
    let (clock, original) = setup();
    let gone = register(&*original);
    let kept = register(&*original);
    let h = get(&*original, &gone).handle;
    original
        .unregister(&gone, TerminationReason::Requested)
        .unwrap();
    let text = original.snapshot().unwrap().to_json().unwrap();
    let copy = new_registry(clock);
    copy.restore(Snapshot::from_json(&text).unwrap()).unwrap();
    assert_eq!(
        copy.register((*h).clone(), spec()),
        Err(Error::AlreadyExists(gone))
    );
    assert!(copy.get(&kept).unwrap().is_some());
}

#[test]
fn a_snapshot_naming_a_worker_among_its_retired_ids_is_refused() {
    let (_clock, original) = setup();
    let a = register(&*original);
    let b = register(&*original);
    original
        .unregister(&b, TerminationReason::Requested)
        .unwrap();
    let mut bad = original.snapshot().unwrap();
    assert_eq!(bad.retired_ids, [b]);
    bad.retired_ids.push(a);
    let (_clock, target) = setup();
    assert!(matches!(target.restore(bad), Err(Error::Snapshot(_))));
}

// ---------------------------------------------------------------------------------------------
// 21. no event about a worker after its Unregistered

#[test]
fn no_event_about_a_worker_is_published_after_its_unregistered() {
    let (_clock, registry) = setup();
    let id = ready(&*registry);
    let provider = ProviderId::new("docker-local").unwrap();
    let destroy_failed = |worker_id| EventKind::DestroyFailed {
        worker_id,
        provider_id: provider.clone(),
        error: "boom".into(),
        attempts: 1,
    };
    // About a live worker: published.
    registry.publish(destroy_failed(id)).unwrap();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    registry
        .unregister(&id, TerminationReason::Requested)
        .unwrap();
    // After its Unregistered: refused, and nobody sees it.
    assert_eq!(
        registry.publish(destroy_failed(id)),
        Err(Error::NotFound(id))
    );
    assert_eq!(
        registry.publish(EventKind::UnhealthyDetected {
            worker_id: id,
            last_heartbeat: T0
        }),
        Err(Error::NotFound(id))
    );
    let never = WorkerId::new();
    assert_eq!(
        registry.publish(destroy_failed(never)),
        Err(Error::NotFound(never))
    );
    // Events about no worker are always published.
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: provider.clone(),
        })
        .unwrap();
    assert_eq!(
        kinds(&events.drain()),
        ["unregistered", "provision_requested"]
    );
}

#[test]
fn publishing_racing_unregister_never_follows_the_unregistered_event() {
    for _ in 0..crate::common::scaled(50, 5) {
        let (_clock, registry) = setup();
        let ids: Vec<WorkerId> = (0..100).map(|_| ready(&*registry)).collect();
        let events = registry
            .subscribe(SubscribeOptions::default().capacity(100_000))
            .unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let publisher = {
            let (registry, barrier, ids) = (registry.clone(), barrier.clone(), ids.clone());
            thread::spawn(move || {
                barrier.wait();
                for id in ids.iter().rev() {
                    let _ = registry.publish(EventKind::UnhealthyDetected {
                        worker_id: *id,
                        last_heartbeat: T0,
                    });
                }
            })
        };
        barrier.wait();
        for id in &ids {
            registry
                .unregister(id, TerminationReason::Requested)
                .unwrap();
        }
        publisher.join().unwrap();
        let mut gone = BTreeSet::new();
        for e in events.drain() {
            let who = e.kind.worker_id().unwrap();
            assert!(!gone.contains(&who), "{:?} after its unregistered", e.kind);
            if e.kind.name() == "unregistered" {
                gone.insert(who);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 22. subscription capacity 0

#[test]
fn a_subscription_of_capacity_zero_is_refused() {
    let (_clock, registry) = setup();
    assert!(matches!(
        registry.subscribe(SubscribeOptions::default().capacity(0)),
        Err(Error::InvalidArgument(_))
    ));
    let one = registry
        .subscribe(SubscribeOptions::default().capacity(1))
        .unwrap();
    register(&*registry);
    register(&*registry);
    assert_eq!((one.len(), one.dropped()), (1, 1));
}

#[test]
fn claim_judges_every_worker_of_a_shared_spec_by_its_own_provider() {
    // Workers share specs (one Arc per spec) and alternate between specs and providers: a
    // claim's answer for one worker must never leak to the next.
    let (clock, registry) = setup();
    let gpu = Arc::new(WorkerSpec::new("img").with_label("gpu", "true"));
    let cpu = Arc::new(WorkerSpec::new("img").with_label("gpu", "false"));
    let providers = [ProviderId::new("a").unwrap(), ProviderId::new("b").unwrap()];
    let mut expected = Vec::new();
    for i in 0..600 {
        let spec = if i % 3 == 0 { &gpu } else { &cpu };
        let provider = providers[i % 2].clone();
        let h = WorkerHandle::new(provider.clone(), ProviderType::Docker, "c");
        let id = registry.register(h, spec.clone()).unwrap().id;
        registry.update_state(&id, WorkerState::Ready).unwrap();
        clock.advance(Duration::from_millis(1));
        if i % 3 == 0 && i % 2 == 1 {
            expected.push(id);
        }
    }
    let filter = WorkerFilter::new()
        .label("gpu", "true")
        .provider_id(providers[1].clone());
    let mut got = Vec::new();
    while let Some(w) = registry
        .claim(&filter, job(&format!("j{}", got.len())))
        .unwrap()
    {
        assert_eq!(w.spec.labels["gpu"], "true");
        assert_eq!(w.handle.provider_id, providers[1]);
        got.push(w.id);
    }
    expected.reverse(); // most recently idle first
    assert_eq!(got, expected);
    // Without the provider condition: every gpu worker, none of the others.
    let gpu_only = WorkerFilter::new().label("gpu", "true");
    let mut more = 0;
    while let Some(w) = registry.claim(&gpu_only, job(&format!("k{more}"))).unwrap() {
        assert_eq!(w.spec.labels["gpu"], "true");
        more += 1;
    }
    assert_eq!(got.len() + more, 200);
}
