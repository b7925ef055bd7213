//! How a subscription's `recv` waits when nothing new is there: on `LISTEN` (polling the
//! outbox once a second at most), not by reading the outbox over and over.
//!
//! Every commit that writes events while a reader listens sends it a notification. The reader
//! reads what committed in batches, so after a burst it has read everything while the burst's
//! notifications still sit in its connection. Before, a `recv` that then waited woke once for
//! each of them and read the outbox twice per wake-up: 200 stale notifications made a quiet
//! 1.5 s `recv` send about 400 requests instead of a handful. The reader's requests are counted
//! by the proxy its registry connects through (`support/proxy.rs`); a second registry on the
//! direct URL makes the changes.

mod support;

#[path = "support/proxy.rs"]
mod proxy;

use std::sync::Arc;
use std::time::Duration;

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;

use proxy::Proxy;
use support::SchemaGuard;

#[test]
fn a_quiet_recv_after_a_burst_waits_instead_of_reading_again_for_each_stale_notification() {
    let proxy = Proxy::start(&support::url());
    let guard = SchemaGuard::new("subwait");
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let through_proxy =
        PostgresWorkerRegistry::connect_with_clock(proxy.url(), &guard.name, clock.clone())
            .expect("connect through the proxy");
    let writer = Arc::new(support::connect(&guard.name, clock));
    let sub = through_proxy
        .subscribe(SubscribeOptions::default())
        .unwrap();
    let kind = EventKind::ProvisionRequested {
        provider_id: ProviderId::new("p").unwrap(),
    };
    // A burst: 200 commits, each notifying the reader.
    for _ in 0..200 {
        writer.publish(kind.clone()).unwrap();
    }
    let mut got = sub.drain().len();
    while got < 200 {
        assert!(
            sub.recv(Some(Duration::from_secs(10))).is_some(),
            "the burst arrives"
        );
        got += 1;
    }
    // Nothing new: the wait sleeps on LISTEN, waking (and reading) at most once a second.
    proxy.arm(None);
    assert_eq!(sub.recv(Some(Duration::from_millis(1500))), None);
    let requests = proxy.requests();
    proxy.disarm();
    assert!(
        requests <= 12,
        "a quiet 1.5 s recv sent {requests} requests through the reader's connection"
    );
    // And a commit made while it waits still wakes it.
    let change = {
        let (writer, kind) = (Arc::clone(&writer), kind.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            writer.publish(kind).unwrap();
        })
    };
    let woken = sub.recv(Some(Duration::from_secs(30)));
    change.join().unwrap();
    assert_eq!(woken.map(|e| e.kind), Some(kind));
    drop(sub);
    drop(through_proxy);
}
