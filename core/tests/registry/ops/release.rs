//! `release_from_job`: the job returned, late and stale releases, draining and `max_jobs`.

use std::sync::Arc;

use super::{secs, worker};
use crate::common::*;
use hodei_workers::*;

#[test]
fn release_returns_the_job_and_restarts_idle() {
    let (clock, registry) = registry();
    let id = in_state(&registry, WorkerState::Busy, Some("j"));
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    clock.advance(secs(42));
    assert_eq!(registry.release_from_job(&id, None), Ok(job("j")));
    let w = worker(&registry, &id);
    assert_eq!(w.state, WorkerState::Ready);
    assert_eq!(w.current_job, None);
    assert_eq!(w.jobs_executed, 1);
    assert_eq!(w.idle_since, Some(T0 + 42_000));
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::ReleasedFromJob {
                worker_id: id,
                job_id: job("j")
            },
            EventKind::StateChanged {
                worker_id: id,
                from: WorkerState::Busy,
                to: WorkerState::Ready
            },
        ]
    );
    // With the expected job named, too.
    registry.assign_to_job(&id, job("k")).unwrap();
    assert_eq!(
        registry.release_from_job(&id, Some(&job("k"))),
        Ok(job("k"))
    );
    assert_eq!(worker(&registry, &id).jobs_executed, 2);
    assert_invariants(&registry);
}

#[test]
fn release_without_a_job_is_not_busy() {
    let (_, registry) = registry();
    for state in [
        WorkerState::Creating,
        WorkerState::Ready,
        WorkerState::Draining,
        WorkerState::Terminated,
    ] {
        let id = in_state(&registry, state, None);
        let before = worker(&registry, &id);
        assert_eq!(
            registry.release_from_job(&id, None),
            Err(Error::NotBusy {
                worker_id: id,
                expected: None
            })
        );
        assert_eq!(
            registry.release_from_job(&id, Some(&job("x"))),
            Err(Error::NotBusy {
                worker_id: id,
                expected: Some(job("x"))
            })
        );
        assert_eq!(worker(&registry, &id), before);
    }
    let id = WorkerId::new();
    assert_eq!(
        registry.release_from_job(&id, None),
        Err(Error::NotFound(id))
    );
}

#[test]
fn a_late_release_of_an_old_job_changes_nothing() {
    let (clock, registry) = registry();
    let id = in_state(&registry, WorkerState::Busy, Some("old"));
    registry.release_from_job(&id, Some(&job("old"))).unwrap();
    registry.assign_to_job(&id, job("new")).unwrap();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    clock.advance(secs(1));
    let before = worker(&registry, &id);
    let err = registry
        .release_from_job(&id, Some(&job("old")))
        .unwrap_err();
    assert_eq!(
        err,
        Error::NotBusy {
            worker_id: id,
            expected: Some(job("old"))
        }
    );
    assert!(err.to_string().contains("old"), "{err}");
    assert_eq!(worker(&registry, &id), before, "the new job is untouched");
    assert!(events.is_empty());
    assert_invariants(&registry);
}

#[test]
fn release_of_a_draining_worker_keeps_it_draining() {
    let (_, registry) = registry();
    let id = in_state(&registry, WorkerState::Draining, Some("j"));
    assert_eq!(registry.find_for_termination().unwrap(), vec![]);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    assert_eq!(registry.release_from_job(&id, None), Ok(job("j")));
    let w = worker(&registry, &id);
    assert_eq!(
        (w.state, w.current_job.clone(), w.jobs_executed),
        (WorkerState::Draining, None, 1)
    );
    assert_eq!(
        kinds(&events),
        vec![EventKind::ReleasedFromJob {
            worker_id: id,
            job_id: job("j")
        }],
        "no state change"
    );
    assert_eq!(
        registry.find_for_termination().unwrap(),
        vec![(w, TerminationReason::Drained)]
    );
    assert_invariants(&registry);
}

#[test]
fn reaching_max_jobs_drains_the_worker() {
    let (_, registry) = registry();
    let id = ready(&registry, Arc::new(WorkerSpec::new("img").with_max_jobs(2)));
    registry.assign_to_job(&id, job("a")).unwrap();
    registry.release_from_job(&id, None).unwrap();
    assert_eq!(worker(&registry, &id).state, WorkerState::Ready);
    assert_eq!(registry.find_for_termination().unwrap(), vec![]);
    registry.assign_to_job(&id, job("b")).unwrap();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    registry.release_from_job(&id, None).unwrap();
    let w = worker(&registry, &id);
    assert_eq!((w.state, w.jobs_executed), (WorkerState::Draining, 2));
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::ReleasedFromJob {
                worker_id: id,
                job_id: job("b")
            },
            EventKind::StateChanged {
                worker_id: id,
                from: WorkerState::Busy,
                to: WorkerState::Draining
            },
        ]
    );
    assert_eq!(
        registry.find_for_termination().unwrap(),
        vec![(w, TerminationReason::MaxJobs)]
    );
    assert_eq!(registry.claim(&WorkerFilter::new(), job("c")), Ok(None));
    assert_invariants(&registry);
}

#[test]
fn a_stale_release_after_unregister_is_not_found() {
    let (_, registry) = registry();
    let id = in_state(&registry, WorkerState::Busy, Some("j"));
    registry
        .unregister(&id, TerminationReason::Requested)
        .unwrap();
    assert_eq!(
        registry.release_from_job(&id, Some(&job("j"))),
        Err(Error::NotFound(id))
    );
}
