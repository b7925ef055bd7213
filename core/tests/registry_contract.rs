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

/// The registry under test.
fn new_registry(clock: Arc<ManualClock>) -> Arc<dyn WorkerRegistry> {
    Arc::new(InMemoryWorkerRegistry::with_clock(clock))
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
    for round in 0..20 {
        let (_clock, registry) = setup();
        let ids: Vec<WorkerId> = (0..200).map(|_| ready(&*registry)).collect();
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
        for i in 0..200 {
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
