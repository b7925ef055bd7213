//! `assign_to_job`: a ready worker made busy, and its refusals.

use super::{secs, worker};
use crate::common::*;
use hodei_workers::*;

#[test]
fn assign_makes_a_ready_worker_busy() {
    let (clock, registry) = registry();
    let id = ready(&registry, spec());
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    clock.advance(secs(1));
    let w = registry.assign_to_job(&id, job("j1")).unwrap();
    assert_eq!(w.state, WorkerState::Busy);
    assert_eq!(w.current_job, Some(job("j1")));
    assert_eq!(w.state_changed_at, T0 + 1_000);
    assert_eq!(w, worker(&registry, &id));
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::StateChanged {
                worker_id: id,
                from: WorkerState::Ready,
                to: WorkerState::Busy
            },
            EventKind::AssignedToJob {
                worker_id: id,
                job_id: job("j1")
            },
        ]
    );
    assert_invariants(&registry);
}

#[test]
fn assign_to_a_worker_that_is_not_ready_is_not_available() {
    let (_, registry) = registry();
    for (state, job_name) in [
        (WorkerState::Creating, None),
        (WorkerState::Connecting, None),
        (WorkerState::Busy, Some("held")),
        (WorkerState::Draining, None),
        (WorkerState::Terminating, None),
        (WorkerState::Terminated, None),
    ] {
        let id = in_state(&registry, state, job_name);
        let before = worker(&registry, &id);
        assert_eq!(
            registry.assign_to_job(&id, job("new")),
            Err(Error::NotAvailable {
                worker_id: id,
                state
            })
        );
        assert_eq!(worker(&registry, &id), before);
    }
    let id = WorkerId::new();
    assert_eq!(
        registry.assign_to_job(&id, job("new")),
        Err(Error::NotFound(id))
    );
    assert_invariants(&registry);
}

#[test]
fn assign_of_a_job_held_elsewhere_is_job_already_assigned() {
    let (_, registry) = registry();
    let holder = in_state(&registry, WorkerState::Busy, Some("j"));
    let other = ready(&registry, spec());
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let err = registry.assign_to_job(&other, job("j")).unwrap_err();
    assert_eq!(
        err,
        Error::JobAlreadyAssigned {
            job_id: job("j"),
            worker_id: holder
        }
    );
    assert!(err.to_string().contains(&holder.to_string()), "{err}");
    assert_eq!(worker(&registry, &other).state, WorkerState::Ready);
    assert!(events.is_empty());
    // A draining worker still holding the job holds it too.
    registry
        .update_state(&holder, WorkerState::Draining)
        .unwrap();
    assert!(matches!(
        registry.assign_to_job(&other, job("j")),
        Err(Error::JobAlreadyAssigned { .. })
    ));
    assert_invariants(&registry);
}
