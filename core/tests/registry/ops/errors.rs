//! Every error kind the registry produces, and the events of the calls after a refused one.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::common::*;
use hodei_workers::*;

/// Every error kind the registry itself can produce, produced, each message naming the worker.
/// (`ProviderNotFound`, `Provider` and `CapacityExceeded` belong to the manager, `Backend` to
/// shared-database backends.)
#[test]
fn every_registry_error_kind_is_produced() {
    let (_, registry) = registry();
    let busy = in_state(&registry, WorkerState::Busy, Some("j"));
    let creating = register(&registry, spec());
    let missing = WorkerId::new();
    let snapshot = registry.snapshot().unwrap();
    let mut foreign = snapshot.clone();
    foreign.format = "someone-else/1".into();

    let errors = vec![
        registry.heartbeat(&missing).unwrap_err(),
        registry
            .register(
                (*registry.get(&busy).unwrap().unwrap().handle).clone(),
                spec(),
            )
            .unwrap_err(),
        registry
            .update_state(&creating, WorkerState::Busy)
            .unwrap_err(),
        registry.assign_to_job(&creating, job("k")).unwrap_err(),
        registry.release_from_job(&creating, None).unwrap_err(),
        registry.claim(&WorkerFilter::new(), job("j")).unwrap_err(),
        registry
            .register(
                docker_handle(),
                Arc::new(WorkerSpec::new("i").with_max_jobs(0)),
            )
            .unwrap_err(),
        registry.restore(snapshot).unwrap_err(),
        crate::common::registry().1.restore(foreign).unwrap_err(),
    ];
    let produced: BTreeSet<&str> = errors.iter().map(Error::kind_name).collect();
    let expected: BTreeSet<&str> = [
        "not_found",
        "already_exists",
        "invalid_transition",
        "not_available",
        "not_busy",
        "job_already_assigned",
        "invalid_argument",
        "snapshot",
    ]
    .into();
    assert_eq!(produced, expected);
    for (err, id) in [
        (&errors[0], missing),
        (&errors[1], busy),
        (&errors[2], creating),
        (&errors[3], creating),
        (&errors[4], creating),
        (&errors[5], busy),
    ] {
        assert!(err.to_string().contains(&id.to_string()), "{err}");
    }
    assert!(
        errors[2].to_string().contains("creating -> busy"),
        "{}",
        errors[2]
    );
}

#[test]
fn events_after_refused_calls_arrive_at_once() {
    // A refused call publishes nothing, and leaves nothing that holds back the events of the
    // calls after it: each is queued by the time its call returns.
    let (_, registry) = registry();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let busy = ready(&registry, spec());
    registry.assign_to_job(&busy, job("j")).unwrap();
    events.drain();
    let refused = [
        registry.claim(&WorkerFilter::new(), job("j")).unwrap_err(),
        registry.assign_to_job(&busy, job("k")).unwrap_err(),
        registry
            .release_from_job(&busy, Some(&job("k")))
            .unwrap_err(),
        registry
            .register(
                (*registry.get(&busy).unwrap().unwrap().handle).clone(),
                spec(),
            )
            .unwrap_err(),
        registry
            .update_state(&busy, WorkerState::Creating)
            .unwrap_err(),
    ];
    assert_eq!(refused.len(), 5);
    assert!(events.is_empty(), "a refused call publishes nothing");
    for expected in ["released_from_job", "registered"] {
        match expected {
            "released_from_job" => {
                registry.release_from_job(&busy, Some(&job("j"))).unwrap();
            }
            _ => {
                register(&registry, spec());
            }
        }
        let got: Vec<&str> = events.drain().iter().map(|e| e.kind.name()).collect();
        assert!(
            got.contains(&expected),
            "{expected} queued when its call returned: {got:?}"
        );
    }
}
