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

/// A `HeartbeatReceived` the host publishes is a heartbeat event like the registry's own: it
/// reaches only the subscribers that opted in, and while none did it is not an event at all
/// (no `seq` spent), exactly as `heartbeat` publishes nothing then. Before, the in-memory
/// registry numbered it and sent it to nobody: a plain subscriber saw a `seq` gap that neither
/// its `dropped()` nor a heartbeat subscriber explained.
#[test]
fn a_published_heartbeat_event_reaches_only_heartbeat_subscribers_and_is_not_numbered_unheard() {
    let (_, registry) = registry();
    let id = ready(&registry, spec());
    let plain = registry.subscribe(SubscribeOptions::default()).unwrap();
    let provision = || EventKind::ProvisionRequested {
        provider_id: provider("p"),
    };
    let beat = EventKind::HeartbeatReceived { worker_id: id };

    registry.publish(provision()).unwrap();
    registry.publish(beat.clone()).unwrap();
    registry.publish(provision()).unwrap();
    let got = plain.drain();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[1].seq,
        got[0].seq + 1,
        "a heartbeat event nobody opted in to left a seq gap (dropped: {}): {got:?}",
        plain.dropped()
    );

    // With a heartbeat subscriber, it is numbered and heard by that one only.
    let keen = registry
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    registry.publish(beat.clone()).unwrap();
    registry.publish(provision()).unwrap();
    let heard = keen.drain();
    let of =
        |events: &[WorkerLifecycleEvent]| events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>();
    assert_eq!(of(&heard), vec![beat.clone(), provision()]);
    assert_eq!(heard[1].seq, heard[0].seq + 1);
    let plain_got = plain.drain();
    assert_eq!(of(&plain_got), vec![provision()], "{plain_got:?}");
    assert_eq!(plain_got[0].seq, heard[1].seq);

    // An unknown worker's is refused, heard or not.
    let unknown = WorkerId::new();
    assert_eq!(
        registry.publish(EventKind::HeartbeatReceived { worker_id: unknown }),
        Err(Error::NotFound(unknown))
    );
    drop(keen);
    assert_eq!(
        registry.publish(EventKind::HeartbeatReceived { worker_id: unknown }),
        Err(Error::NotFound(unknown))
    );
}
