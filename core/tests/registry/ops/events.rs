//! `subscribe` and `publish`: order, times, full and dropped subscribers, host events.

use super::{secs, MS};
use crate::common::*;
use hodei_workers::*;

#[test]
fn event_seq_strictly_increases_and_at_is_the_clock() {
    let (clock, registry) = registry();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let id = register(&registry, spec());
    clock.advance(secs(1));
    registry.update_state(&id, WorkerState::Ready).unwrap();
    registry.claim(&WorkerFilter::new(), job("j")).unwrap();
    clock.advance(secs(1));
    registry.release_from_job(&id, None).unwrap();
    registry.unregister(&id, TerminationReason::Idle).unwrap();
    let got = events.drain();
    assert_eq!(got.len(), 7);
    for pair in got.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "no gap without drops");
        assert!(pair[1].at >= pair[0].at);
    }
    assert_eq!(got[0].at, T0);
    assert_eq!(got[6].at, T0 + 2_000);
    assert_eq!(events.dropped(), 0);
}

#[test]
fn a_full_subscriber_loses_events_without_blocking_anyone() {
    let (_, registry) = registry();
    let small = registry
        .subscribe(SubscribeOptions::default().capacity(2))
        .unwrap();
    let big = registry.subscribe(SubscribeOptions::default()).unwrap();
    // Capacity 0 is refused (issue 10 item 22; it used to mean 1).
    assert!(matches!(
        registry.subscribe(SubscribeOptions::default().capacity(0)),
        Err(Error::InvalidArgument(_))
    ));
    for _ in 0..5 {
        register(&registry, spec()); // would hang here if a full channel blocked
    }
    assert_eq!(small.len(), 2);
    assert_eq!(small.dropped(), 3);
    assert_eq!(big.dropped(), 0);
    let all = big.drain();
    assert_eq!(all.len(), 5);
    // The small subscriber kept the first two; the seq gap after them shows the loss.
    let kept = small.drain();
    assert_eq!(kept, all[..2].to_vec());
    assert!(small.is_empty());
    register(&registry, spec());
    let next = small.try_recv().unwrap();
    assert_eq!(
        next.seq,
        all[4].seq + 1,
        "after draining, events flow again"
    );
    assert_eq!(small.dropped(), 3);
}

#[test]
fn any_capacity_is_safe_to_ask_for() {
    // Capacities come from C and Python callers: a huge one must neither abort the process
    // (allocating it up front) nor panic.
    let (_, registry) = registry();
    let huge = registry
        .subscribe(SubscribeOptions::default().capacity(usize::MAX))
        .unwrap();
    let large = registry
        .subscribe(SubscribeOptions::default().capacity(1 << 40))
        .unwrap();
    let n = scaled(10_000, 300);
    for _ in 0..n {
        register(&registry, spec());
    }
    assert_eq!((huge.len(), huge.dropped()), (n, 0));
    assert_eq!((large.len(), large.dropped()), (n, 0));
}

#[test]
fn dropping_a_subscription_unsubscribes() {
    let (_, registry) = registry();
    let id = ready(&registry, spec());
    let plain = registry.subscribe(SubscribeOptions::default()).unwrap();
    let keen = registry
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    registry.heartbeat(&id).unwrap();
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: provider("p"),
        })
        .unwrap();
    let first = plain.drain();
    assert_eq!(keen.drain().len(), 2);
    drop(keen);
    // With the only heartbeat subscriber gone, heartbeats publish nothing (no seq is spent).
    registry.heartbeat(&id).unwrap();
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: provider("p"),
        })
        .unwrap();
    let second = plain.drain();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].seq, first[0].seq + 1);
}

#[test]
fn a_subscription_outliving_its_registry_ends() {
    let (_, registry) = registry();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    register(&registry, spec());
    drop(registry);
    assert!(
        events.recv(None).is_some(),
        "queued events are still delivered"
    );
    assert_eq!(
        events.recv(None),
        None,
        "then the stream ends instead of hanging"
    );
    assert_eq!(events.recv(Some(MS)), None);
}

/// A subscriber that never read, its registry dropped with more events pending than its
/// capacity: it receives the oldest that fit, then the end of the stream, and the rest are
/// counted as dropped, whatever the backend (PostgreSQL reads its backlog when the registry is
/// dropped and keeps no more than the capacity of it).
#[test]
fn a_subscription_outliving_its_registry_keeps_its_capacity_and_counts_the_rest() {
    let (_, registry) = registry();
    let small = registry
        .subscribe(SubscribeOptions::default().capacity(2))
        .unwrap();
    let ids: Vec<WorkerId> = (0..5).map(|_| register(&registry, spec())).collect();
    drop(registry);
    let got: Vec<Option<WorkerId>> = std::iter::from_fn(|| small.recv(None))
        .map(|e| e.kind.worker_id())
        .collect();
    assert_eq!(
        got,
        [Some(ids[0]), Some(ids[1])],
        "the oldest, then the end"
    );
    assert_eq!(small.dropped(), 3);
}

#[test]
fn publish_puts_host_events_on_the_stream() {
    let (clock, registry) = registry();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    register(&registry, spec());
    clock.advance(secs(3));
    let kind = EventKind::ProvisionFailed {
        provider_id: provider("docker-local"),
        error: "quota".into(),
    };
    registry.publish(kind.clone()).unwrap();
    let got = events.drain();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].kind, kind);
    assert_eq!(got[1].seq, got[0].seq + 1);
    assert_eq!(got[1].at, T0 + 3_000);
}
