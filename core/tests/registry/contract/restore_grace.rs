//! Item 6: restore grants grace from now.

use std::collections::BTreeSet;

use super::{job, new_registry, ready, register, secs, setup};
use hodei_workers::*;

#[test]
fn restore_grants_grace_from_now() {
    let (clock, original) = setup();
    let starting = register(&*original);
    let connecting = register(&*original);
    original
        .update_state(&connecting, WorkerState::Connecting)
        .unwrap();
    let idle = ready(&*original);
    let busy = ready(&*original);
    original.assign_to_job(&busy, job("j")).unwrap();
    clock.advance(secs(10));
    let snapshot = original.snapshot().unwrap();

    // The host was down for two minutes: every deadline passed on the old clock.
    clock.advance(secs(120));
    let copy = new_registry(clock.clone());
    copy.restore(snapshot).unwrap();
    let restored_at = clock.now();
    assert!(copy.find_unhealthy(secs(60)).unwrap().is_empty());
    assert!(copy.find_startup_expired(secs(60)).unwrap().is_empty());

    // The grace lasts one timeout from the restore, not longer.
    clock.set(restored_at + 60_000);
    assert!(copy.find_unhealthy(secs(60)).unwrap().is_empty());
    clock.set(restored_at + 60_001);
    let silent: BTreeSet<WorkerId> = copy
        .find_unhealthy(secs(60))
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(silent, BTreeSet::from([connecting, idle, busy]));
    let late: BTreeSet<WorkerId> = copy
        .find_startup_expired(secs(60))
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(late, BTreeSet::from([starting, connecting]));
}
