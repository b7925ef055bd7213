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
