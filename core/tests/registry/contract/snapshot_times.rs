//! Item 18: a snapshot's times may not lie after its own `taken_at`.

use super::{ready, secs, setup, T0};
use hodei_workers::*;

#[test]
fn a_snapshot_with_times_after_its_taken_at_is_refused() {
    let (clock, source) = setup();
    let id = ready(&*source);
    clock.advance(secs(5));
    let good = source.snapshot().unwrap();
    type Edit = fn(&mut Worker);
    let edits: [(&str, Edit); 5] = [
        ("last_heartbeat", |w| w.last_heartbeat = u64::MAX),
        ("created_at", |w| w.created_at += 10_000),
        ("updated_at", |w| w.updated_at += 10_000),
        ("state_changed_at", |w| w.state_changed_at += 10_000),
        ("idle_since", |w| w.idle_since = Some(T0 + 10_000)),
    ];
    for (what, edit) in edits {
        let mut bad = good.clone();
        edit(&mut bad.workers[0]);
        let (_clock, target) = setup();
        assert!(
            matches!(target.restore(bad.clone()), Err(Error::Snapshot(_))),
            "{what}"
        );
        assert!(
            matches!(
                Snapshot::from_json(&bad.to_json().unwrap()),
                Err(Error::Snapshot(_))
            ),
            "{what}"
        );
    }
    // Times equal to taken_at are fine.
    let mut edge = good.clone();
    edge.workers[0].last_heartbeat = edge.taken_at;
    let (_clock, target) = setup();
    target.restore(edge).unwrap();
    assert!(target.get(&id).unwrap().is_some());
}
