//! A snapshot dated after the restoring registry's clock (another host's clock ahead): its
//! times are clamped to now, so that no worker escapes its deadlines; beyond
//! `MAX_SNAPSHOT_CLOCK_SKEW` (an hour) it is refused and the registry left untouched.

use std::sync::Arc;

use super::{get, job, new_registry, ready, secs, T0};
use hodei_workers::*;

/// A registry on a clock `ahead_ms` after `T0` holding a busy worker (heartbeat at its now),
/// its snapshot, and the worker.
fn snapshot_ahead(ahead_ms: u64) -> (Snapshot, WorkerId) {
    let clock = Arc::new(ManualClock::new(T0 + ahead_ms));
    let source = new_registry(clock);
    let busy = ready(&*source);
    source.assign_to_job(&busy, job("job-1")).unwrap();
    source.heartbeat(&busy).unwrap();
    (source.snapshot().unwrap(), busy)
}

#[test]
fn a_snapshot_a_little_ahead_is_clamped_to_now_and_its_silent_worker_expires() {
    let (snapshot, busy) = snapshot_ahead(30_000);
    assert_eq!(snapshot.taken_at, T0 + 30_000);
    let clock = Arc::new(ManualClock::new(T0));
    let copy = new_registry(clock.clone());
    copy.restore(snapshot).unwrap();
    let w = get(&*copy, &busy);
    assert_eq!(w.current_job, Some(job("job-1")));
    for (what, t) in [
        ("created_at", w.created_at),
        ("updated_at", w.updated_at),
        ("state_changed_at", w.state_changed_at),
        ("last_heartbeat", w.last_heartbeat),
    ] {
        assert!(
            t <= T0,
            "{what} {t} is after the restoring clock's now {T0}"
        );
    }
    // Its heartbeat deadline runs from the restore (grace), not from the other clock's time.
    clock.set(T0 + 60_000);
    assert!(copy.find_unhealthy(secs(60)).unwrap().is_empty());
    clock.set(T0 + 60_001);
    let silent: Vec<WorkerId> = copy
        .find_unhealthy(secs(60))
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(silent, vec![busy]);
    // And a snapshot of the copy is consistent again.
    let again = copy.snapshot().unwrap();
    again.validate().unwrap();
}

#[test]
fn a_snapshot_dated_beyond_the_skew_bound_is_refused_untouched() {
    let skew = MAX_SNAPSHOT_CLOCK_SKEW.as_millis() as u64;
    // At the bound: clamped.
    let (at_bound, _) = snapshot_ahead(skew);
    let copy = new_registry(Arc::new(ManualClock::new(T0)));
    copy.restore(at_bound).unwrap();
    assert_eq!(copy.count().unwrap(), 1);

    // One millisecond, a year beyond: refused, nothing applied.
    for ahead in [skew + 1, 365 * 24 * 3_600_000] {
        let (snapshot, busy) = snapshot_ahead(ahead);
        let copy = new_registry(Arc::new(ManualClock::new(T0)));
        let err = copy.restore(snapshot).unwrap_err();
        assert!(matches!(err, Error::Snapshot(_)), "{ahead} ms: {err}");
        assert!(
            err.to_string().contains("after this registry's clock"),
            "{err}"
        );
        assert_eq!(copy.count().unwrap(), 0);
        assert!(copy.get(&busy).unwrap().is_none());
        assert!(copy.snapshot().unwrap().workers.is_empty());
    }

    // Times at the end of the clock: refused too.
    let (mut snapshot, _) = snapshot_ahead(0);
    snapshot.taken_at = u64::MAX;
    let w = &mut snapshot.workers[0];
    (
        w.created_at,
        w.updated_at,
        w.state_changed_at,
        w.last_heartbeat,
    ) = (u64::MAX, u64::MAX, u64::MAX, u64::MAX);
    snapshot.validate().unwrap();
    let copy = new_registry(Arc::new(ManualClock::new(T0)));
    assert!(matches!(copy.restore(snapshot), Err(Error::Snapshot(_))));
    assert_eq!(copy.count().unwrap(), 0);
}
