//! A subscription whose reader's server backend stops answering, as a frozen server or a
//! network path gone dark would (here: `SIGSTOP` on that backend, `SIGCONT` after; on a Unix
//! socket no transport timeout can notice). `recv(Some(d))` returns within `d` plus the
//! reader's reply timeout (5 s), dropping a subscription and dropping its registry are bounded
//! too (DESIGN.md §10), and once the server answers again the subscription goes on: nothing
//! already handed out is lost or handed out twice. Before, each of them blocked for as long as
//! the backend was stopped; a watchdog (`support::bounded`) makes that a failure, not a hang.

mod support;

use std::sync::Arc;
use std::time::Duration;

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;
use support::{bounded, SchemaGuard};

/// Far more than any bound under test (a `recv` of 1 s plus the 5 s reply timeout, a drop's
/// 10 s): past it the call under test blocks on the stopped backend.
const PATIENCE: Duration = Duration::from_secs(30);

/// The server backend of the only subscription reader of registry `name`, stopped
/// (`SIGSTOP`) until this is dropped (`SIGCONT`, also when the test fails).
struct Stopped(i32);

impl Stopped {
    fn reader_of(name: &str) -> Stopped {
        let mut admin = postgres::Client::connect(&support::url(), postgres::NoTls).unwrap();
        let pids: Vec<i32> = admin
            .query(
                &format!(
                    "SELECT pid FROM \"{name}\".listeners \
                     WHERE pid IN (SELECT pid FROM pg_stat_activity)"
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(pids.len(), 1, "one reader");
        support::signal(pids[0], "-STOP");
        Stopped(pids[0])
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // No assertion here: this runs while a failed test unwinds too.
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// A registry named after `test` with one subscription that has read `n` published events
/// (seqs 1..=n): its reader's connection is the one to stop.
fn subscribed(
    test: &str,
    n: usize,
) -> (SchemaGuard, Arc<PostgresWorkerRegistry>, Arc<Subscription>) {
    let guard = SchemaGuard::new(test);
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry = Arc::new(support::connect(&guard.name, clock));
    let events = Arc::new(registry.subscribe(SubscribeOptions::default()).unwrap());
    for _ in 0..n {
        publish(&registry);
    }
    let got: Vec<u64> = std::iter::from_fn(|| events.recv(Some(Duration::from_secs(5))))
        .take(n)
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, (1..=n as u64).collect::<Vec<_>>());
    (guard, registry, events)
}

fn publish(registry: &PostgresWorkerRegistry) {
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: ProviderId::new("p").unwrap(),
        })
        .unwrap();
}

#[test]
fn a_recv_keeps_its_deadline_when_the_readers_backend_stops_answering() {
    let (guard, registry, events) = subscribed("frozen_recv", 1);
    let stopped = Stopped::reader_of(&guard.name);
    publish(&registry); // seq 2, committed while the reader's backend is stopped
    let during = bounded(
        "recv(1 s) while the reader's backend is stopped",
        PATIENCE,
        {
            let events = Arc::clone(&events);
            move || events.recv(Some(Duration::from_secs(1)))
        },
    );
    drop(stopped);
    publish(&registry); // seq 3
    let mut got: Vec<u64> = during.into_iter().map(|e| e.seq).collect();
    got.extend(bounded("recv once it answers again", PATIENCE, {
        let events = Arc::clone(&events);
        move || {
            std::iter::from_fn(|| events.recv(Some(Duration::from_secs(3))))
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    }));
    assert_eq!(got, [2, 3], "every event once, in order");
    assert_eq!(events.dropped(), 0);
}

#[test]
fn dropping_a_subscription_whose_readers_backend_stops_answering_is_bounded() {
    let (guard, registry, events) = subscribed("frozen_drop_sub", 1);
    let _stopped = Stopped::reader_of(&guard.name);
    let events = Arc::into_inner(events).expect("the only handle");
    bounded("dropping the subscription", PATIENCE, move || drop(events));
    // The registry goes on meanwhile: a new subscription gets what is published next.
    let next = registry.subscribe(SubscribeOptions::default()).unwrap();
    publish(&registry);
    assert_eq!(
        next.recv(Some(Duration::from_secs(5))).map(|e| e.seq),
        Some(2)
    );
}

#[test]
fn dropping_a_registry_whose_readers_backend_stops_answering_is_bounded() {
    let (guard, registry, events) = subscribed("frozen_drop_registry", 1);
    let _stopped = Stopped::reader_of(&guard.name);
    publish(&registry); // seq 2, committed before the drop
    let registry = Arc::into_inner(registry).expect("the only handle");
    bounded("dropping the registry", PATIENCE, move || drop(registry));
    // Its closing read, cut off on the stopped connection, runs once more on a new one.
    let got: Vec<u64> = bounded("recv after the drop", PATIENCE, move || {
        std::iter::from_fn(|| events.recv(Some(Duration::from_secs(3))))
            .map(|e| e.seq)
            .collect()
    });
    assert_eq!(
        got,
        [2],
        "what committed before the drop, once; then the stream ends"
    );
}
