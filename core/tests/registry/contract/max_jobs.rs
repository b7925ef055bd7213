//! Item 4: a one-shot worker is not made ready again.

use std::sync::Arc;

use super::{get, handle, job, setup};
use hodei_workers::*;

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

/// A worker restored while still starting, having run its `max_jobs` already (a snapshot
/// validates: only a `Ready` one at `max_jobs` is refused), is not made ready either: a `Ready`
/// worker at `max_jobs` could take another job, and a snapshot holding it is refused.
#[test]
fn a_starting_worker_that_ran_its_max_jobs_cannot_become_ready() {
    let (clock, registry) = setup();
    let one_shot = Arc::new(WorkerSpec::new("img").with_max_jobs(1));
    let connecting = registry.register(handle(), one_shot.clone()).unwrap().id;
    registry
        .update_state(&connecting, WorkerState::Connecting)
        .unwrap();
    let creating = registry.register(handle(), one_shot).unwrap().id;
    let mut snapshot = registry.snapshot().unwrap();
    for w in &mut snapshot.workers {
        w.jobs_executed = 1;
    }
    let restored = super::new_registry(clock);
    restored.restore(snapshot).unwrap();
    for (id, from) in [
        (connecting, WorkerState::Connecting),
        (creating, WorkerState::Creating),
    ] {
        let refused = Error::InvalidTransition {
            worker_id: id,
            from,
            to: WorkerState::Ready,
        };
        assert_eq!(
            restored.update_state(&id, WorkerState::Ready),
            Err(refused.clone())
        );
        assert_eq!(
            restored.transition_if(&id, &TransitionGuard::new(), WorkerState::Ready),
            Err(refused)
        );
        assert_eq!(get(&*restored, &id).state, from);
    }
    assert_eq!(
        restored.claim(&WorkerFilter::new(), job("second")),
        Ok(None)
    );
    // Its own snapshot stays restorable.
    let again = super::new_registry(Arc::new(ManualClock::new(restored.now())));
    again.restore(restored.snapshot().unwrap()).unwrap();
}
