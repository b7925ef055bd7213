//! A replica that stops in the middle of a write: its process frozen (`SIGSTOP`, a paused VM)
//! or its network gone dark after it sent `BEGIN` and locked a worker, before its `COMMIT`.
//! Neither side closes the connection, so the server keeps the transaction open and, with it,
//! the worker's row lock and the outbox's lock. Every other replica's change of that worker
//! waits for it, and so does every subscriber (a reader waits out the stalled transaction's
//! seq before it hands out later events). A leader's fenced write also holds the lease row
//! (`FOR SHARE`), which a takeover must update: no other replica could become leader.
//!
//! The registry's sessions bound that: the server ends a session idle inside a transaction for
//! longer than [`STALL_BOUND`] (`idle_in_transaction_session_timeout`), which rolls the
//! transaction back and releases its locks. The stalled call answers `Backend` once it hears
//! of it, and its change is not applied.
//!
//! The stall is made by a proxy ([`Cut::Stall`]) that stops forwarding one connection's
//! requests at its `COMMIT`, keeping both ends open: what a frozen client looks like to the
//! server. No mock: the transaction really holds its locks on the real server.

mod support;

#[path = "../../core/tests/support/invariants.rs"]
mod invariants;
#[path = "support/proxy.rs"]
mod proxy;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;

use proxy::{Cut, Proxy};
use support::{bounded, counter_slot, SchemaGuard};

const T0: Timestamp = 1_700_000_000_000;
/// The bound the registry's sessions set (`pg/src/pool.rs`, `STALLED_TRANSACTION`).
const STALL_BOUND: Duration = Duration::from_secs(10);
/// What a call waiting behind the stalled transaction may take: the bound and a margin for a
/// loaded machine (the server checks the timeout on its own schedule).
const PATIENCE: Duration = Duration::from_secs(40);
/// Longer than the pool's `PROBE_AFTER` (100 ms): the reference call and the stalled one both
/// start with the pool's probe of an idle connection, so their requests count the same.
const IDLE: Duration = Duration::from_millis(120);

fn handle() -> WorkerHandle {
    WorkerHandle::new(
        ProviderId::new("docker-local").unwrap(),
        ProviderType::Docker,
        "res",
    )
}

fn ready(r: &dyn WorkerRegistry) -> WorkerId {
    let w = r
        .register(handle(), Arc::new(WorkerSpec::new("img")))
        .unwrap();
    r.update_state(&w.id, WorkerState::Ready).unwrap();
    w.id
}

/// Waits until `done()` holds, at most `patience`.
fn wait_for(what: &str, patience: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < patience,
            "{what}: not within {patience:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_write_stalled_before_its_commit_holds_the_fleet_up_for_a_bounded_time() {
    stalled_write(Proxy::start);
}

/// The same over TCP (the other tests reach the server on a Unix socket): the server cannot
/// tell the stalled client from a live one there either, since the client's kernel still
/// acknowledges and answers keepalives.
#[test]
fn over_tcp_too() {
    stalled_write(Proxy::start_tcp);
}

/// Replica A reaches the server through a proxy that `start` starts; see the module docs.
fn stalled_write(start: fn(&str) -> Proxy) {
    // The schema is dropped after the proxy closes its connections: a stalled transaction
    // would hold the drop up.
    let guard = SchemaGuard::new("stall");
    let proxy = start(&support::url());
    let clock = Arc::new(ManualClock::new(T0));
    // Replica A reaches the server through the proxy; replica B directly.
    let a = Arc::new(
        PostgresWorkerRegistry::connect_with_clock(proxy.url(), &guard.name, clock.clone())
            .expect("connect through the proxy"),
    );
    let b = Arc::new(support::connect(&guard.name, clock.clone()));
    let (x, y, warm) = (ready(&*b), ready(&*b), ready(&*b));
    // Z in another counter slot than X: a change of a worker of X's slot waits for A too.
    let z = loop {
        let z = ready(&*b);
        if counter_slot(&guard.name, &z) != counter_slot(&guard.name, &x) {
            break z;
        }
    };

    // A reference call of the same shape counts the requests of A's write: its last is the
    // `COMMIT`. A first call prepares the statements, which the later ones reuse.
    a.update_state(&warm, WorkerState::Draining).unwrap();
    std::thread::sleep(IDLE);
    proxy.arm(None);
    a.update_state(&y, WorkerState::Draining).unwrap();
    let commit = proxy.requests();

    // A's write locks X, writes its change and its event, and stalls before its `COMMIT`.
    let events = b.subscribe(SubscribeOptions::default()).unwrap();
    std::thread::sleep(IDLE);
    proxy.arm_cut(Some(commit), Cut::Stall);
    let stalled = {
        let a = Arc::clone(&a);
        // Then, at once, a read: the connection's session ended with the stall, so it must
        // not be handed out again (used a moment ago, the pool would not probe it first).
        std::thread::spawn(move || (a.update_state(&x, WorkerState::Draining), a.get(&x)))
    };
    wait_for("the stall", PATIENCE, || proxy.cut());
    let stalled_at = Instant::now();

    // B's writes: to a worker of another counter slot (the outbox and the heartbeat statement
    // are shared by all), which do not wait for A; then to X itself, which waits for A's locks.
    let b2 = Arc::clone(&b);
    let others = bounded("B's writes to another worker", PATIENCE, move || {
        let start = Instant::now();
        b2.update_state(&z, WorkerState::Draining).unwrap();
        b2.heartbeat(&z).unwrap();
        assert!(b2.heartbeat_many(&[z]).unwrap().iter().all(Result::is_ok));
        start.elapsed()
    });
    assert!(
        others < STALL_BOUND / 2,
        "B's writes to another worker waited {others:?}, as if for A's stalled transaction"
    );
    let b2 = Arc::clone(&b);
    bounded("B's heartbeat of the stalled worker", PATIENCE, move || {
        b2.heartbeat(&x).unwrap()
    });
    let b2 = Arc::clone(&b);
    let moved = bounded("B's change of the stalled worker", PATIENCE, move || {
        b2.update_state(&x, WorkerState::Terminating)
    });
    let waited = stalled_at.elapsed();
    let moved = moved.expect("B's change applies once A's transaction is ended");
    assert_eq!(
        moved.state,
        WorkerState::Terminating,
        "from Ready: A's change was not applied"
    );
    assert!(
        waited >= STALL_BOUND - Duration::from_secs(1),
        "B waited {waited:?} for the stalled transaction: the stall was not made (the test \
         proves nothing)"
    );

    // A's call answers, and its change is not applied; A's next call works.
    let (answer, read) = bounded("A's stalled call", PATIENCE, move || {
        stalled.join().unwrap()
    });
    assert!(
        matches!(answer, Err(Error::Backend(_))),
        "the stalled write answers Backend, not {answer:?}"
    );
    let read = read
        .expect("A's read right after, on a new connection")
        .expect("X is registered");
    assert!(
        matches!(read.state, WorkerState::Ready | WorkerState::Terminating),
        "A's change was not applied: {:?}",
        read.state
    );

    // B's subscriber gets B's events: the reader waited out A's seq, which never commits.
    let mut seen = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < 2 && Instant::now() < deadline {
        if let Some(e) = events.recv(Some(Duration::from_millis(200))) {
            if let EventKind::StateChanged { worker_id, to, .. } = e.kind {
                seen.push((worker_id, to));
            }
        }
    }
    assert_eq!(
        seen,
        vec![(z, WorkerState::Draining), (x, WorkerState::Terminating)],
        "B's subscriber sees B's changes, and nothing of A's stalled one"
    );

    a.update_state(&y, WorkerState::Terminating).unwrap();
    let workers = invariants::assert_invariants(&*b);
    let state = |id| workers.iter().find(|w| w.id == id).unwrap().state;
    assert_eq!(state(x), WorkerState::Terminating);
    assert_eq!(state(y), WorkerState::Terminating);
    assert_eq!(state(z), WorkerState::Draining);
    assert_eq!(b.stats().unwrap().by_state.terminating, 2);
    drop((a, b));
}

/// A leader stalled inside a fenced write: the write reads the lease row `FOR SHARE` (its
/// term is checked in the store), so the stalled transaction also holds the row a takeover
/// must update. Once its lease expired, another replica takes the lease over when the server
/// ends the stalled session, not never (before the bound, every takeover attempt waited for the
/// stalled leader until its own statement timeout, again and again: no replica could lead).
#[test]
fn a_leader_stalled_inside_a_fenced_write_keeps_nobody_from_taking_over() {
    const TTL: Duration = Duration::from_secs(60);
    let guard = SchemaGuard::new("stall_lead");
    let proxy = Proxy::start(&support::url());
    let clock = Arc::new(ManualClock::new(T0));
    let a = PostgresWorkerRegistry::connect_with_clock(proxy.url(), &guard.name, clock.clone())
        .expect("connect through the proxy");
    let b = Arc::new(support::connect(&guard.name, clock.clone()));
    let (x, y, warm) = (ready(&*b), ready(&*b), ready(&*b));
    let lease_a = a.leadership("a", TTL).unwrap();
    let LeaseStatus::Held(held) = lease_a.acquire_or_renew(None).unwrap() else {
        panic!("a free lease")
    };
    let fenced = a.fenced(&lease_a, held.term).unwrap();

    // As in the test above: count the fenced write's requests, then stall one at its COMMIT.
    fenced.update_state(&warm, WorkerState::Draining).unwrap();
    std::thread::sleep(IDLE);
    proxy.arm(None);
    fenced.update_state(&y, WorkerState::Draining).unwrap();
    let commit = proxy.requests();
    std::thread::sleep(IDLE);
    proxy.arm_cut(Some(commit), Cut::Stall);
    let stalled = {
        let fenced = Arc::clone(&fenced);
        std::thread::spawn(move || fenced.update_state(&x, WorkerState::Draining))
    };
    wait_for("the stall", PATIENCE, || proxy.cut());
    let stalled_at = Instant::now();

    // A's lease expires; B takes it over.
    clock.advance(TTL + Duration::from_secs(1));
    let b2 = Arc::clone(&b);
    let info = bounded("B's takeover", PATIENCE, move || {
        let lease_b = b2.leadership("b", TTL).unwrap();
        loop {
            match lease_b.acquire_or_renew(None) {
                Ok(LeaseStatus::Held(info)) => return info,
                Ok(LeaseStatus::Follower(_)) | Err(Error::Backend(_)) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("B's lease: {e}"),
            }
        }
    });
    let waited = stalled_at.elapsed();
    assert_eq!((info.holder.as_str(), info.term), ("b", held.term + 1));
    assert!(
        waited >= STALL_BOUND - Duration::from_secs(1),
        "B took over after {waited:?}: the stalled write held nothing (the test proves nothing)"
    );

    // The stalled write is not applied; A is no leader.
    let answer = bounded("A's stalled write", PATIENCE, move || {
        stalled.join().unwrap()
    });
    assert!(
        matches!(answer, Err(Error::Backend(_))),
        "the stalled write answers Backend, not {answer:?}"
    );
    assert_eq!(
        b.get(&x).unwrap().unwrap().state,
        WorkerState::Ready,
        "the stalled write was not applied"
    );
    assert!(matches!(
        fenced.update_state(&x, WorkerState::Draining),
        Err(Error::NotLeader(_))
    ));
    invariants::assert_invariants(&*b);
}
