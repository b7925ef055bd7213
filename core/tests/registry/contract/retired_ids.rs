//! Item 20: ids are never reused, across unregister and restore.

use super::{get, job, new_registry, ready, register, setup, spec};
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
