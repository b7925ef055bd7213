//! Item 20: ids are never reused, across unregister and restore, within the retired-id limit.

use std::sync::Arc;

use super::{get, handle, job, new_registry, ready, register, setup, spec, T0};
use hodei_workers::*;

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

/// Whether `register` of a worker named `id` is refused because the id is known.
fn refused(registry: &dyn WorkerRegistry, id: WorkerId) -> bool {
    let again = WorkerHandle {
        worker_id: id,
        ..handle()
    };
    match registry.register(again, spec()) {
        Err(Error::AlreadyExists(known)) => known == id,
        Ok(_) => false,
        Err(other) => panic!("register of {id}: {other}"),
    }
}

#[test]
fn past_the_retired_id_limit_the_oldest_are_forgotten_and_a_live_id_never() {
    let clock = Arc::new(ManualClock::new(T0));
    let (registry, forget) = crate::backend::new_registry_remembering(clock, 3);
    let live = ready(&*registry);
    let retired: Vec<WorkerId> = (0..5)
        .map(|_| {
            let id = register(&*registry);
            registry
                .unregister(&id, TerminationReason::Requested)
                .unwrap();
            id
        })
        .collect();
    forget();
    // The last 3 retirements, oldest first, as snapshots carry them.
    assert_eq!(registry.snapshot().unwrap().retired_ids, retired[2..]);
    for &id in &retired[2..] {
        assert!(refused(&*registry, id), "{id} is remembered");
    }
    assert!(refused(&*registry, live), "a live id is known");
    // Forgotten: it may come back, and retiring it again makes it the newest retirement.
    assert!(!refused(&*registry, retired[0]));
    registry
        .unregister(&retired[0], TerminationReason::Requested)
        .unwrap();
    forget();
    assert_eq!(
        registry.snapshot().unwrap().retired_ids,
        [retired[3], retired[4], retired[0]]
    );
    assert!(refused(&*registry, retired[0]));
    assert!(!refused(&*registry, retired[2]));
}

#[test]
fn a_restore_that_repeats_remembered_retired_ids_keeps_the_last_retirements_within_the_limit() {
    // The snapshot's retired ids join the registry's, each id once (one remembered already
    // keeps its place), and the limit keeps the last retirements of that list, as for any
    // unregister. Before, PostgreSQL numbered every id of the snapshot's list, also those it
    // remembered already (the numbers of the repeats went unused), so the limit counted the
    // gaps and forgot remembered ids it should have kept.
    let clock = Arc::new(ManualClock::new(T0));
    let ids: Vec<WorkerId> = (0..4).map(|_| WorkerId::new()).collect();
    let retire = |registry: &dyn WorkerRegistry, which: &[WorkerId]| {
        for &id in which {
            let h = WorkerHandle {
                worker_id: id,
                ..handle()
            };
            registry.register(h, spec()).unwrap();
            registry
                .unregister(&id, TerminationReason::Requested)
                .unwrap();
        }
    };
    let source = new_registry(clock.clone());
    retire(&*source, &ids);
    let snapshot = source.snapshot().unwrap();
    assert_eq!(snapshot.retired_ids, ids);
    let (target, forget) = crate::backend::new_registry_remembering(clock, 3);
    retire(&*target, &ids[..2]);
    target.restore(snapshot).unwrap();
    forget();
    assert_eq!(target.snapshot().unwrap().retired_ids, ids[1..]);
    assert!(refused(&*target, ids[1]), "{} is remembered", ids[1]);
    assert!(!refused(&*target, ids[0]), "{} is forgotten", ids[0]);
}
