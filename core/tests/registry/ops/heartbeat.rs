//! `heartbeat`: what it updates and who hears of it.

use super::{secs, worker};
use crate::common::*;
use hodei_workers::*;

#[test]
fn heartbeat_unknown_is_not_found() {
    let (_, registry) = registry();
    let id = WorkerId::new();
    assert_eq!(registry.heartbeat(&id), Err(Error::NotFound(id)));
}

#[test]
fn heartbeat_updates_last_heartbeat_only() {
    let (clock, registry) = registry();
    for state in WorkerState::ALL {
        let id = in_state(
            &registry,
            state,
            (state == WorkerState::Busy).then_some("j"),
        );
        let before = worker(&registry, &id);
        clock.advance(secs(2));
        registry.heartbeat(&id).unwrap();
        let after = worker(&registry, &id);
        assert_eq!(after.last_heartbeat, clock.now(), "{state}");
        assert_eq!(
            Worker {
                last_heartbeat: before.last_heartbeat,
                ..after
            },
            before,
            "{state}: nothing else moves"
        );
    }
    assert_invariants(&registry);
}

#[test]
fn heartbeat_events_only_for_subscribers_that_opt_in() {
    let (_, registry) = registry();
    let id = ready(&registry, spec());
    let plain = registry.subscribe(SubscribeOptions::default()).unwrap();
    let keen = registry
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    registry.heartbeat(&id).unwrap();
    registry.heartbeat(&id).unwrap();
    assert!(plain.is_empty());
    assert_eq!(
        kinds(&keen),
        vec![EventKind::HeartbeatReceived { worker_id: id }; 2]
    );
}
