//! `find_for_termination` (each reason) and `grant_grace`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ids, secs, set};
use crate::common::*;
use hodei_workers::*;

#[test]
fn find_for_termination_reports_each_reason() {
    let (clock, registry) = registry();
    let short = |idle: u64, life: u64| {
        Arc::new(
            WorkerSpec::new("img")
                .with_idle_timeout(secs(idle))
                .with_max_lifetime(secs(life)),
        )
    };
    let idle = ready(&registry, short(10, 1_000));
    let old_ready = ready(&registry, short(10, 20));
    let old_busy = ready(&registry, short(1_000, 20));
    registry.assign_to_job(&old_busy, job("long")).unwrap();
    let old_creating = register(&registry, short(10, 20));
    let drained = in_state(&registry, WorkerState::Draining, None);
    let one_shot = ready(&registry, Arc::new(WorkerSpec::new("img").with_max_jobs(1)));
    registry.assign_to_job(&one_shot, job("once")).unwrap();
    registry.release_from_job(&one_shot, None).unwrap();
    let draining_busy = in_state(&registry, WorkerState::Draining, Some("still"));
    let fresh = ready(&registry, spec());

    let reasons = || -> BTreeMap<WorkerId, TerminationReason> {
        let list = registry.find_for_termination().unwrap();
        let map: BTreeMap<_, _> = list
            .iter()
            .map(|(w, r)| {
                assert_eq!(Some(w), registry.get(&w.id).unwrap().as_ref());
                (w.id, *r)
            })
            .collect();
        assert_eq!(map.len(), list.len(), "each worker once");
        map
    };
    let sorted =
        |v: Vec<(WorkerId, TerminationReason)>| -> BTreeMap<_, _> { v.into_iter().collect() };
    assert_eq!(
        reasons(),
        sorted(vec![
            (drained, TerminationReason::Drained),
            (one_shot, TerminationReason::MaxJobs),
        ])
    );
    clock.advance(secs(11));
    assert_eq!(
        reasons(),
        sorted(vec![
            (idle, TerminationReason::Idle),
            (old_ready, TerminationReason::Idle),
            (drained, TerminationReason::Drained),
            (one_shot, TerminationReason::MaxJobs),
        ])
    );
    clock.advance(secs(10));
    assert_eq!(
        reasons(),
        sorted(vec![
            (idle, TerminationReason::Idle),
            // Lifetime wins over idle; a busy worker is reported so the manager drains it.
            (old_ready, TerminationReason::Lifetime),
            (old_busy, TerminationReason::Lifetime),
            (old_creating, TerminationReason::Lifetime),
            (drained, TerminationReason::Drained),
            (one_shot, TerminationReason::MaxJobs),
        ])
    );
    // The manager drains the busy one: it is no longer due until its job is done.
    registry
        .update_state(&old_busy, WorkerState::Draining)
        .unwrap();
    assert!(!reasons().contains_key(&old_busy));
    registry.release_from_job(&old_busy, None).unwrap();
    assert_eq!(reasons().get(&old_busy), Some(&TerminationReason::Drained));
    assert!(!reasons().contains_key(&draining_busy) && !reasons().contains_key(&fresh));
    // Retired workers leave the list.
    for id in reasons().into_keys() {
        registry
            .update_state(&id, WorkerState::Terminating)
            .unwrap();
    }
    assert_eq!(reasons(), BTreeMap::new());
    assert_invariants(&registry);
}

#[test]
fn grant_grace_holds_back_heartbeat_and_startup_expiry() {
    let (clock, registry) = registry();
    let silent = ready(&registry, spec());
    let starting = register(&registry, spec());
    clock.advance(secs(100));
    assert_eq!(
        ids(&registry.find_unhealthy(secs(60)).unwrap()),
        set([silent])
    );
    assert_eq!(
        ids(&registry.find_startup_expired(secs(60)).unwrap()),
        set([starting])
    );
    registry.grant_grace(clock.now()).unwrap();
    assert_eq!(registry.find_unhealthy(secs(60)), Ok(vec![]));
    assert_eq!(registry.find_startup_expired(secs(60)), Ok(vec![]));
    clock.advance(secs(61));
    assert_eq!(
        ids(&registry.find_unhealthy(secs(60)).unwrap()),
        set([silent])
    );
    assert_eq!(
        ids(&registry.find_startup_expired(secs(60)).unwrap()),
        set([starting])
    );
}
