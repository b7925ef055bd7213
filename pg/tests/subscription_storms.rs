//! Subscriptions through storms: several writers and several subscribers at once, while the
//! readers' server sessions are ended (`pg_terminate_backend`) and stopped (`SIGSTOP`, then
//! `SIGCONT`) again and again, and while the registry prunes the outbox under them.
//!
//! `subscription_cuts.rs` cuts one reader's conversation at every point, one change at a time;
//! here the faults fall wherever they fall while writers from other registry handles and raw
//! transactions run at once: transactions that take several seqs with pauses between them and
//! then commit or roll back (the gaps a reader waits out), subscriptions made while they are
//! in flight, subscribers that poll with `recv(Some(0))`, wait with a `recv` timeout or
//! `drain`. What must hold whatever the interleaving (DESIGN.md §10):
//! - every subscriber receives each event at most once, in strictly increasing `seq` order,
//!   and only events of the outbox;
//! - every event whose transaction committed after `subscribe` returned is received;
//! - for a subscription of the handle that prunes, every event committed after it was made
//!   (published, or written by raw transactions still in flight while prunes ran) is either
//!   received or counted in its `dropped()`, which never decreases.
//!
//! The runs are short (seconds) and paced by sleeps; no assertion is about time (a watchdog,
//! `support::bounded`, turns a hang into a failure).

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;
use parking_lot::Mutex;
use support::SchemaGuard;

/// How long each storm blows.
const STORM: Duration = Duration::from_secs(4);
/// Bounds the catching up after a storm: a hang guard, far beyond what it needs.
const PATIENCE: Duration = Duration::from_secs(60);

/// A raw writer's first statement: its xid, before any seq, as the registry's writers have it
/// (`publish` takes it the same way). A writer holding a seq and no xid is in no snapshot's
/// list and holds no transaction lock: a reader seeing the gap below a later seq cannot tell
/// it from an aborted one (the storm test lost such an event once in ~600 runs under load).
const XID: &str = "SELECT pg_current_xact_id()::text";

/// A raw writer's event, as a registry's `publish` stores one. Run after [`XID`]: an
/// `INSERT`'s `VALUES` are evaluated in the table's column order (`seq` before `xid`), not in
/// the order written, so this statement alone would take its seq before its xid.
const INSERT: &str = "INSERT INTO outbox (xid, seq, at, worker_id, heartbeat, kind) \
    VALUES (pg_current_xact_id(), nextval('event_seq'), 0, NULL, false, \
    '{\"type\":\"provision_requested\",\"provider_id\":\"raw\"}') RETURNING seq";

/// A connection in `schema`, retried while the server refuses (a test must not fail because
/// one connection attempt fell on a busy moment).
fn raw(schema: &str) -> postgres::Client {
    let mut last = None;
    for _ in 0..50 {
        match postgres::Client::connect(&support::url(), postgres::NoTls) {
            Ok(mut client) => {
                client
                    .batch_execute(&format!("SET search_path TO \"{schema}\""))
                    .unwrap();
                return client;
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no connection to the server: {last:?}");
}

/// A seq as the subscriber sees it (stored as `v - 2^63`).
fn seq(stored: i64) -> u64 {
    (stored as u64) ^ (1 << 63)
}

/// Every seq of the outbox, in order.
fn outbox(client: &mut postgres::Client) -> Vec<u64> {
    client
        .query("SELECT seq FROM outbox ORDER BY seq", &[])
        .unwrap()
        .iter()
        .map(|r| seq(r.get(0)))
        .collect()
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn publish(registry: &PostgresWorkerRegistry, provider: &str) {
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: ProviderId::new(provider).unwrap(),
        })
        .unwrap();
}

/// One transaction of a raw writer: a seq per pause (sleeping that long after taking it),
/// then a rollback or a commit. Returns the seqs of a commit that began once `subscribed` was
/// set: the subscribers must receive them.
fn transaction(
    client: &mut postgres::Client,
    pauses: &[u64],
    rollback: bool,
    subscribed: &AtomicBool,
) -> std::result::Result<Vec<u64>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.query_one(XID, &[])?;
    let mut seqs = Vec::new();
    for pause in pauses {
        seqs.push(seq(tx.query_one(INSERT, &[])?.get(0)));
        std::thread::sleep(Duration::from_millis(*pause));
    }
    if rollback {
        tx.rollback()?;
        return Ok(Vec::new());
    }
    let after = subscribed.load(Ordering::SeqCst);
    tx.commit()?;
    Ok(if after { seqs } else { Vec::new() })
}

/// Ends or stops (for up to 0.7 s, then continues) a random live reader session of the
/// registry in `schema`, every 50 to 350 ms, until `stop`. A stopped session is always
/// continued before the next fault.
fn storm(schema: String, seed: u64, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut admin = raw(&schema);
        let mut rng = Rng(seed);
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50 + rng.below(300)));
            let pids: Vec<i32> = admin
                .query(
                    "SELECT pid FROM listeners WHERE pid IN (SELECT pid FROM pg_stat_activity)",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            if pids.is_empty() {
                continue;
            }
            let pid = pids[rng.below(pids.len() as u64) as usize];
            if rng.below(3) == 0 {
                support::signal(pid, "-STOP");
                std::thread::sleep(Duration::from_millis(rng.below(700)));
                support::signal(pid, "-CONT");
            } else {
                admin
                    .execute("SELECT pg_terminate_backend($1)", &[&pid])
                    .unwrap();
            }
        }
    })
}

/// How a subscriber reads.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `recv(Some(0))` in a loop.
    Poll,
    /// `recv(Some(50 ms))`.
    Wait,
    /// `drain()` every few ms.
    Drain,
}

/// Reads `subscription` as `mode` until `stop`, appending the seqs to `got`; checks that its
/// `dropped()` never decreases.
fn subscriber(
    subscription: Arc<Subscription>,
    mode: Mode,
    got: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut dropped = 0;
        while !stop.load(Ordering::SeqCst) {
            match mode {
                Mode::Poll => got
                    .lock()
                    .extend(subscription.recv(Some(Duration::ZERO)).map(|e| e.seq)),
                Mode::Wait => got.lock().extend(
                    subscription
                        .recv(Some(Duration::from_millis(50)))
                        .map(|e| e.seq),
                ),
                Mode::Drain => {
                    got.lock()
                        .extend(subscription.drain().into_iter().map(|e| e.seq));
                    std::thread::sleep(Duration::from_millis(7));
                }
            }
            let now = subscription.dropped();
            assert!(
                now >= dropped,
                "{mode:?}: dropped() went from {dropped} to {now}"
            );
            dropped = now;
        }
    })
}

/// Receives from `subscription`, after what it received during the storm, until `done` says
/// it has all it should or nothing more comes within 3 s (then the caller's checks say what is
/// missing).
fn catch_up(
    subscription: &Arc<Subscription>,
    mut got: Vec<u64>,
    done: impl Fn(&[u64], &Subscription) -> bool + Send + 'static,
) -> Vec<u64> {
    let subscription = Arc::clone(subscription);
    support::bounded("catching up after the storm", PATIENCE, move || {
        while !done(&got, &subscription) {
            match subscription.recv(Some(Duration::from_secs(3))) {
                Some(e) => got.push(e.seq),
                None => break,
            }
        }
        got
    })
}

fn assert_in_order_once(what: &str, got: &[u64]) {
    if let Some(w) = got.windows(2).find(|w| w[0] >= w[1]) {
        panic!(
            "{what}: seq {} then {}: not strictly increasing",
            w[0], w[1]
        );
    }
}

#[test]
fn every_subscriber_gets_each_event_committed_after_it_once_in_order_through_a_storm() {
    let guard = SchemaGuard::new("storm_events");
    let name = guard.name.clone();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let writer = Arc::new(support::connect(&name, clock.clone()));
    let readers = support::connect(&name, clock);
    let stop = Arc::new(AtomicBool::new(false));
    let subscribed = Arc::new(AtomicBool::new(false));
    // The seqs of raw commits that began after every subscription was made.
    let committed_after: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let mut threads = Vec::new();
    for w in 0..3 {
        let (name, stop) = (name.clone(), Arc::clone(&stop));
        let (subscribed, committed_after) = (Arc::clone(&subscribed), committed_after.clone());
        threads.push(std::thread::spawn(move || {
            let mut client = raw(&name);
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1));
            while !stop.load(Ordering::SeqCst) {
                let pauses: Vec<u64> = (0..=rng.below(3)).map(|_| rng.below(40)).collect();
                let rollback = rng.below(5) == 0;
                match transaction(&mut client, &pauses, rollback, &subscribed) {
                    Ok(seqs) => committed_after.lock().extend(seqs),
                    Err(e) => panic!("a raw writer failed: {e}"),
                }
            }
        }));
    }
    for _ in 0..2 {
        let (writer, stop) = (Arc::clone(&writer), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                publish(&writer, "published");
                std::thread::sleep(Duration::from_millis(3));
            }
        }));
    }
    // The subscriptions are made while those writers are in flight.
    std::thread::sleep(Duration::from_millis(300));
    let modes = [Mode::Poll, Mode::Wait, Mode::Drain, Mode::Wait];
    let subscriptions: Vec<Arc<Subscription>> = modes
        .iter()
        .map(|_| {
            let options = SubscribeOptions::default().capacity(1 << 20);
            Arc::new(readers.subscribe(options).unwrap())
        })
        .collect();
    subscribed.store(true, Ordering::SeqCst);
    // Every seq after this one was taken after the subscriptions were made.
    publish(&writer, "mark");
    let got: Vec<Arc<Mutex<Vec<u64>>>> = modes.iter().map(|_| Arc::default()).collect();
    for ((subscription, mode), got) in subscriptions.iter().zip(modes).zip(&got) {
        let stop = Arc::clone(&stop);
        threads.push(subscriber(
            Arc::clone(subscription),
            mode,
            got.clone(),
            stop,
        ));
    }
    threads.push(storm(name.clone(), 0x5eed, Arc::clone(&stop)));
    let started = Instant::now();
    while started.elapsed() < STORM {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }

    publish(&writer, "end");
    let mut admin = raw(&name);
    let all = outbox(&mut admin);
    let end = *all.last().unwrap();
    let mark: i64 = admin
        .query_one("SELECT seq FROM outbox WHERE kind LIKE '%\"mark\"%'", &[])
        .unwrap()
        .get(0);
    let mark = seq(mark);
    let committed_after = committed_after.lock().clone();
    assert!(!committed_after.is_empty(), "raw writers committed");
    let stored: BTreeSet<u64> = all.iter().copied().collect();
    let expected: BTreeSet<u64> = stored
        .range(mark..)
        .chain(&committed_after)
        .copied()
        .collect();
    for ((subscription, mode), got) in subscriptions.iter().zip(modes).zip(&got) {
        let got = catch_up(subscription, got.lock().clone(), move |got, _| {
            got.last().is_some_and(|last| *last >= end)
        });
        let what = format!("{mode:?} subscriber");
        assert_in_order_once(&what, &got);
        let received: BTreeSet<u64> = got.iter().copied().collect();
        let foreign: Vec<u64> = got
            .iter()
            .filter(|s| !stored.contains(s))
            .copied()
            .collect();
        assert!(
            foreign.is_empty(),
            "{what}: seqs not in the outbox: {foreign:?}"
        );
        let missed: Vec<u64> = expected
            .iter()
            .filter(|s| !received.contains(s))
            .copied()
            .collect();
        assert!(
            missed.is_empty(),
            "{what}: events committed after it was made, never received: {missed:?}"
        );
        assert_eq!(subscription.dropped(), 0, "{what}: nothing dropped");
    }
}

#[test]
fn a_pruning_handles_subscribers_receive_or_count_every_event_through_a_storm() {
    let guard = SchemaGuard::new("storm_prune");
    let name = guard.name.clone();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let writer = Arc::new(support::connect(&name, clock.clone()));
    let pruner = Arc::new(support::connect(&name, clock.clone()));
    let other = support::connect(&name, clock.clone());
    // Two of the pruning handle (small queues, read slowly: they lag and overflow), one of
    // another handle (for it, what a prune deletes before it read it is a bare gap).
    let modes = [Mode::Wait, Mode::Drain, Mode::Poll];
    let subscriptions: Vec<Arc<Subscription>> = vec![
        Arc::new(
            pruner
                .subscribe(SubscribeOptions::default().capacity(64))
                .unwrap(),
        ),
        Arc::new(
            pruner
                .subscribe(SubscribeOptions::default().capacity(64))
                .unwrap(),
        ),
        Arc::new(
            other
                .subscribe(SubscribeOptions::default().capacity(1 << 20))
                .unwrap(),
        ),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    // Events committed after the subscriptions were made (all of them).
    let published = Arc::new(AtomicU64::new(0));
    let pruned = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let (writer, stop, published) = (writer.clone(), stop.clone(), published.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                publish(&writer, "published");
                published.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Raw writers whose transactions stay in flight while prunes run (their seqs are old
    // when they commit, and their events the oldest: `at` 0).
    let always = Arc::new(AtomicBool::new(true));
    for w in 0..2 {
        let (name, stop, published, always) = (
            name.clone(),
            stop.clone(),
            published.clone(),
            always.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut client = raw(&name);
            let mut rng = Rng(0x3c6e_f372_fe94_f82a ^ (w + 1));
            while !stop.load(Ordering::SeqCst) {
                let pauses: Vec<u64> = (0..=rng.below(2)).map(|_| rng.below(60)).collect();
                let rollback = rng.below(5) == 0;
                match transaction(&mut client, &pauses, rollback, &always) {
                    Ok(seqs) => published.fetch_add(seqs.len() as u64, Ordering::SeqCst),
                    Err(e) => panic!("a raw writer failed: {e}"),
                };
            }
        }));
    }
    {
        let (pruner, stop, pruned, clock) = (pruner.clone(), stop.clone(), pruned.clone(), clock);
        threads.push(std::thread::spawn(move || {
            // At least until a prune deleted something: on a loaded machine one prune may
            // take the whole storm (it waits for the readers, whose sessions stop).
            while !stop.load(Ordering::SeqCst) || pruned.load(Ordering::SeqCst) == 0 {
                clock.advance(Duration::from_millis(10));
                let n = pruner.prune_events(Duration::from_millis(5)).unwrap();
                pruned.fetch_add(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }
    let got: Vec<Arc<Mutex<Vec<u64>>>> = modes.iter().map(|_| Arc::default()).collect();
    for (i, (subscription, mode)) in subscriptions.iter().zip(modes).enumerate() {
        let (subscription, got, stop) = (Arc::clone(subscription), got[i].clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            // The pruning handle's subscribers fall behind now and then.
            let mut dropped = 0;
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                reads += 1;
                if i < 2 && reads % 40 == 0 {
                    std::thread::sleep(Duration::from_millis(150));
                }
                match mode {
                    Mode::Poll => got
                        .lock()
                        .extend(subscription.recv(Some(Duration::ZERO)).map(|e| e.seq)),
                    Mode::Wait => got.lock().extend(
                        subscription
                            .recv(Some(Duration::from_millis(30)))
                            .map(|e| e.seq),
                    ),
                    Mode::Drain => {
                        std::thread::sleep(Duration::from_millis(40));
                        got.lock()
                            .extend(subscription.drain().into_iter().map(|e| e.seq));
                    }
                }
                let now = subscription.dropped();
                assert!(
                    now >= dropped,
                    "{mode:?}: dropped() went from {dropped} to {now}"
                );
                dropped = now;
            }
        }));
    }
    threads.push(storm(name.clone(), 0xfeed, Arc::clone(&stop)));
    let started = Instant::now();
    while started.elapsed() < STORM {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(pruned.load(Ordering::SeqCst) > 0, "the storm pruned");

    publish(&writer, "end");
    let total = published.load(Ordering::SeqCst) + 1;
    let end = *outbox(&mut raw(&name)).last().unwrap();
    for (i, (subscription, mode)) in subscriptions.iter().zip(modes).enumerate() {
        let what = format!(
            "{mode:?} subscriber of the {} handle",
            ["pruning", "pruning", "other"][i]
        );
        // A full queue drops what comes next, "end" included: for the pruning handle's, until
        // every event is received or counted.
        let got = catch_up(
            subscription,
            got[i].lock().clone(),
            move |got, subscription| {
                got.last().is_some_and(|last| *last >= end)
                    || (i < 2 && got.len() as u64 + subscription.dropped() >= total)
            },
        );
        assert_in_order_once(&what, &got);
        if i < 2 {
            assert_eq!(
                got.len() as u64 + subscription.dropped(),
                total,
                "{what}: every event committed after it was made, received or counted dropped"
            );
        }
    }
}
