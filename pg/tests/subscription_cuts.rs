//! A subscription's reader, its connection cut at every point of its conversation with the
//! server: the subscriber still receives every committed event exactly once, in `seq` order.
//!
//! What the code promises (`EventSource::fill`, `pg/src/events.rs`): errors of the backend are
//! the source's to retry on its next call, a subscriber never sees them; the reader keeps its
//! cursor and its pending gap across a new connection. So a lost reader connection shows
//! nowhere in the stream: no error, no marker, no event lost or repeated, and a `seq` missing
//! only for the documented reasons (here: a transaction that took a seq and rolled back).
//!
//! A real fault, no mock: the subscriptions of a registry connected through the proxy
//! (`support/proxy.rs`) read the outbox through it, while a second registry on the direct URL
//! makes the changes and a raw connection plays a writer whose transaction is still open when
//! the reader sees its seq missing. The reader opens its connection from the registry's own
//! configuration, so the registry through the proxy makes no change: only its readers talk
//! through the proxy while a run is armed.
//!
//! One run (`run`), on a fresh subscription: two changes, read; a change, a writer in flight,
//! a change, read twice (the first change handed out, the gap waited for), the writer commits,
//! read (its event handed out in its place); the same with a rollback (a gap for good); then
//! `recv` until every event of the outbox after the subscription's start has arrived, and one
//! more read that must find nothing. The reads of the script are `drain`s (one read each, never
//! waiting), so the reader's conversation is the same from run to run: a reference run through
//! the unarmed proxy counts its `ReadyForQuery` messages `n` and its requests `r`; then the run
//! is made cut at each `k` in `1..=n` ([`Cut::Instead`] and [`Cut::After`]) and at each request
//! in `1..=r` ([`Cut::Request`]). Each run must receive exactly the outbox's events after its
//! start, in `seq` order, the same kinds as the reference run, nothing dropped. All of it
//! twice: as is, and with the reader's connection ended by the server before the run (so that
//! the cuts also fall on the new connection's startup, its session settings and its `LISTEN`,
//! and between the `LISTEN` and the read).

mod support;

#[path = "support/proxy.rs"]
mod proxy;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;

use proxy::{Cut, Proxy};
use support::SchemaGuard;

/// Bounds every run: a hang guard, far beyond what a run needs.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long a run waits for the events it has not received yet (then judges what it has): a
/// reader polls every second at worst, and waits 100 ms after a lost connection.
const CATCH_UP: Duration = Duration::from_secs(5);

/// What a run received: each event's seq, its kind's name, and whether it is about the run's
/// worker (its id is fresh in each run).
type Received = Vec<(u64, &'static str, bool)>;

struct World {
    /// Its subscriptions read through the proxy; it makes no change itself.
    through_proxy: PostgresWorkerRegistry,
    /// Makes the changes, on the direct URL.
    writer: PostgresWorkerRegistry,
    /// Last: the schema is dropped once the registries' connections are closed.
    guard: SchemaGuard,
}

fn raw(schema: &str) -> postgres::Client {
    let mut client = postgres::Client::connect(&support::url(), postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .unwrap();
    client
}

/// A writer in flight: a transaction that took the next seq (holding the outbox's lock, as
/// every writer does) and has not ended. Its row repeats the newest event.
const IN_FLIGHT: &str = "BEGIN; INSERT INTO outbox (seq, xid, at, worker_id, heartbeat, kind) \
    SELECT nextval('event_seq'), pg_current_xact_id(), at, worker_id, heartbeat, kind \
    FROM outbox ORDER BY seq DESC LIMIT 1";

/// The seqs of the events after `after` (as stored), in order, as the subscriber sees them.
fn outbox_after(client: &mut postgres::Client, after: i64) -> Vec<u64> {
    client
        .query(
            "SELECT seq FROM outbox WHERE seq > $1 AND NOT heartbeat ORDER BY seq",
            &[&after],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64) ^ (1 << 63))
        .collect()
}

fn take(got: &mut Received, events: Vec<WorkerLifecycleEvent>, id: WorkerId) {
    for e in events {
        got.push((e.seq, e.kind.name(), e.kind.worker_id() == Some(id)));
    }
}

/// One run on a fresh subscription, the proxy armed as `cut` (`None`: only counting); with
/// `reconnect`, the server ends the reader's connection first (so the cuts fall on its new
/// connection's startup, session settings and `LISTEN` too). Returns
/// what the subscriber received, the seqs the outbox holds after its start, and the
/// `ReadyForQuery` messages and requests the proxy saw (before the subscription is dropped).
fn run(
    world: &World,
    proxy: &Proxy,
    reconnect: bool,
    cut: Option<(u64, Cut)>,
) -> (Received, Vec<u64>, u64, u64) {
    let w = &world.writer;
    let mut raw = raw(&world.guard.name);
    let start: i64 = raw
        .query_one(
            "SELECT coalesce(max(seq), -9223372036854775807 - 1) FROM outbox",
            &[],
        )
        .unwrap()
        .get(0);
    let sub = world
        .through_proxy
        .subscribe(SubscribeOptions::default())
        .unwrap();
    if reconnect {
        // The reader's backend: the only live one among the schema's listeners.
        support::end_the_only_reader_session(&mut raw);
    }
    match cut {
        Some((k, how)) => proxy.arm_cut(Some(k), how),
        None => proxy.arm(None),
    }
    let mut got = Received::new();
    let id = WorkerId::new();
    let mut handle = WorkerHandle::new(
        ProviderId::new("docker-local").unwrap(),
        ProviderType::Docker,
        format!("res-{id}"),
    );
    handle.worker_id = id;
    w.register(handle, Arc::new(WorkerSpec::new("img")))
        .unwrap();
    w.update_state(&id, WorkerState::Ready).unwrap();
    take(&mut got, sub.drain(), id);

    // A gap that a later commit fills, after events to hand out in the same read: the reader
    // hands those out, waits for the gap's writer, then hands its event out in place.
    w.assign_to_job(&id, JobId::new("j").unwrap()).unwrap();
    raw.batch_execute(IN_FLIGHT).unwrap();
    w.release_from_job(&id, None).unwrap();
    take(&mut got, sub.drain(), id);
    take(&mut got, sub.drain(), id);
    raw.batch_execute("COMMIT").unwrap();
    take(&mut got, sub.drain(), id);

    // A gap for good (a writer that took its seq and rolled back), the same way.
    w.update_state(&id, WorkerState::Draining).unwrap();
    raw.batch_execute(IN_FLIGHT).unwrap();
    w.unregister(&id, TerminationReason::Drained).unwrap();
    take(&mut got, sub.drain(), id);
    take(&mut got, sub.drain(), id);
    raw.batch_execute("ROLLBACK").unwrap();
    take(&mut got, sub.drain(), id);

    let want = outbox_after(&mut raw, start);
    let deadline = Instant::now() + CATCH_UP;
    while got.len() < want.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Some(e) = sub.recv(Some(left)) {
            take(&mut got, vec![e], id);
        }
    }
    // Nothing more, nothing repeated.
    take(&mut got, sub.drain(), id);
    assert_eq!(sub.dropped(), 0, "nothing dropped (the queue never fills)");
    let (seen, requests) = (proxy.seen(), proxy.requests());
    proxy.disarm();
    drop(sub);
    (got, want, seen, requests)
}

#[test]
fn a_cut_reader_loses_and_repeats_no_event() {
    let started = Instant::now();
    let proxy = Arc::new(Proxy::start(&support::url()));
    let guard = SchemaGuard::new("subcut");
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let through_proxy =
        PostgresWorkerRegistry::connect_with_clock(proxy.url(), &guard.name, clock.clone())
            .expect("connect through the proxy");
    let writer = support::connect(&guard.name, clock);
    let world = Arc::new(World {
        through_proxy,
        writer,
        guard,
    });

    let judged = |what: String, reconnect: bool, cut: Option<(u64, Cut)>| {
        let (w, p) = (Arc::clone(&world), Arc::clone(&proxy));
        let (got, want, seen, requests) =
            support::bounded(&what, PATIENCE, move || run(&w, &p, reconnect, cut));
        let seqs: Vec<u64> = got.iter().map(|e| e.0).collect();
        assert_eq!(
            seqs, want,
            "{what}: the subscriber must receive every committed event once, in seq order"
        );
        (got, seen, requests)
    };

    let mut cuts = 0;
    for reconnect in [false, true] {
        let (reference, n, requests) = judged(
            format!("reconnect {reconnect}: the reference run"),
            reconnect,
            None,
        );
        eprintln!("reconnect {reconnect}: {n} ReadyForQuery, {requests} requests: {reference:?}");
        assert!(n >= 10, "the reader's conversation: {n} ReadyForQuery");
        let kinds = |r: &Received| r.iter().map(|e| (e.1, e.2)).collect::<Vec<_>>();
        let plan = (1..=n)
            .flat_map(|k| [(k, Cut::Instead), (k, Cut::After)])
            .chain((1..=requests).map(|k| {
                (
                    k,
                    Cut::Request {
                        delay: Duration::ZERO,
                    },
                )
            }));
        for (k, how) in plan {
            let what = format!("reconnect {reconnect}: cut {how:?} at {k}");
            let (got, _, _) = judged(what.clone(), reconnect, Some((k, how)));
            assert!(proxy.cut(), "{what}: the run reached its cut point");
            assert_eq!(kinds(&got), kinds(&reference), "{what}: the same events");
            cuts += 1;
        }
    }
    eprintln!(
        "{cuts} cuts of a reader, every event once and in order, in {:?}",
        started.elapsed()
    );
}
