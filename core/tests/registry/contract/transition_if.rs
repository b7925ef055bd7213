//! `transition_if`: applied only while its guard holds, and never to a worker a claim took.

use std::sync::{Arc, Barrier};
use std::thread;

use super::{get, job, kinds, ready, secs, setup, T0};
use hodei_workers::*;

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
