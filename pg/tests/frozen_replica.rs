//! A replica process frozen (`SIGSTOP`) in the middle of a write, as a paused VM or a debugger
//! freezes one: the other replicas' changes of the worker it locked wait for it only as long
//! as the server lets a session sit idle inside a transaction (`STALLED_TRANSACTION`, 10 s:
//! `pg/src/pool.rs`), not for as long as it stays frozen. Once resumed, the frozen replica
//! goes on, and the §3 invariants hold.
//!
//! `stalled_write.rs` makes the same stall with a proxy, at an exact point; this test makes it
//! as it happens: a real process, stopped at whatever point it has reached, until the server
//! shows its session idle inside a transaction that holds the worker's lock.
//!
//! The child is this very binary run again with `--child` (no libtest harness: `harness =
//! false` in Cargo.toml); it assigns and releases one worker in a loop until it is killed.

mod support;

#[path = "../../core/tests/support/invariants.rs"]
mod invariants;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;
use support::{bounded, counter_slot, signal, SchemaGuard};

/// The bound the registry's sessions set (`pg/src/pool.rs`, `STALLED_TRANSACTION`).
const STALL_BOUND: Duration = Duration::from_secs(10);
/// Bounds every wait: the stall bound and a wide margin for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);
/// Freezes tried before one lands inside a transaction (each lands there about half the time).
const TRIES: usize = 200;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], args[3].parse().expect("a worker id"));
        return;
    }
    // `cargo test -- --list` and filters: this binary is one test.
    if args.iter().any(|a| a == "--list") {
        println!("a_frozen_replica_holds_the_others_up_for_a_bounded_time: test");
        return;
    }
    parent();
    println!("test a_frozen_replica_holds_the_others_up_for_a_bounded_time ... ok");
}

fn job(n: u64) -> JobId {
    JobId::new(format!("job-{n}")).unwrap()
}

/// Assigns and releases `worker` for ever; an answer other than `Ok` (a `Backend` for the
/// transaction the server ended, the worker taken out of `Ready` by the parent) is let be.
fn child(name: &str, worker: WorkerId) {
    let registry = PostgresWorkerRegistry::connect(&support::url(), name).expect("child connect");
    for n in 0.. {
        if registry.assign_to_job(&worker, job(n)).is_ok() {
            let _ = registry.release_from_job(&worker, Some(&job(n)));
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The child: resumed and killed when dropped, however the test ends.
struct Frozen(Child);

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0.id(), "-CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parent() {
    let guard = SchemaGuard::new("frozen");
    let registry =
        Arc::new(PostgresWorkerRegistry::connect(&support::url(), &guard.name).expect("connect"));
    let spec = Arc::new(WorkerSpec::new("img"));
    let provider = ProviderId::new("docker-local").unwrap();
    let register = |tag: &str| {
        let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, tag);
        let w = registry.register(handle, Arc::clone(&spec)).unwrap();
        registry.update_state(&w.id, WorkerState::Ready).unwrap();
        w.id
    };
    let worker = register("w");
    // In another counter slot: a change of a worker of the frozen one's slot waits too.
    let other = loop {
        let other = register("other");
        if counter_slot(&guard.name, &other) != counter_slot(&guard.name, &worker) {
            break other;
        }
    };

    let exe = std::env::current_exe().expect("own path");
    let child = Frozen(
        Command::new(exe)
            .args(["--child", &guard.name, &worker.to_string()])
            .env("HODEI_PG_URL", &guard.url)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the child"),
    );
    let started = Instant::now();
    while registry.get(&worker).unwrap().unwrap().jobs_executed < 20 {
        assert!(started.elapsed() < PATIENCE, "the child never got going");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Freeze the child until its session is seen idle inside a transaction holding a lock on
    // the workers table (of this test's schema).
    let mut admin = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let workers_table = format!("\"{}\".workers", guard.name.replace('"', "\"\""));
    let pid = child.0.id();
    let mut frozen_in_transaction = false;
    for attempt in 0..TRIES {
        signal(pid, "-STOP");
        // The server learns the state of the session from its own process: give it a moment.
        std::thread::sleep(Duration::from_millis(20));
        let rows = admin
            .query(
                "SELECT 1 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
                 WHERE a.state = 'idle in transaction' AND l.relation = $1::text::regclass",
                &[&workers_table],
            )
            .unwrap();
        if !rows.is_empty() {
            eprintln!("frozen inside a transaction at attempt {}", attempt + 1);
            frozen_in_transaction = true;
            break;
        }
        signal(pid, "-CONT");
        std::thread::sleep(Duration::from_millis(1 + attempt as u64 % 7));
    }
    assert!(
        frozen_in_transaction,
        "no freeze of {TRIES} landed inside a transaction"
    );
    let frozen_at = Instant::now();

    // A change of a worker of another counter slot does not wait for the frozen transaction.
    let r = Arc::clone(&registry);
    let quick = bounded("a change of another worker", PATIENCE, move || {
        let start = Instant::now();
        r.update_state(&other, WorkerState::Draining).unwrap();
        r.heartbeat(&other).unwrap();
        start.elapsed()
    });
    assert!(
        quick < STALL_BOUND / 2,
        "a change of another worker waited {quick:?}, as if for the frozen transaction"
    );
    // The frozen worker's change waits until the server ends the frozen session.
    let r = Arc::clone(&registry);
    let drained = bounded(
        "a change of the frozen replica's worker",
        PATIENCE,
        move || r.update_state(&worker, WorkerState::Draining),
    );
    let waited = frozen_at.elapsed();
    let drained = drained.expect("the change applies once the frozen transaction is ended");
    assert_eq!(drained.state, WorkerState::Draining);
    assert!(
        waited >= STALL_BOUND - Duration::from_secs(1),
        "waited {waited:?}: the frozen transaction held nothing (the test proves nothing)"
    );
    eprintln!("the change of the frozen replica's worker waited {waited:?}");

    // Resumed, the child goes on (its stalled call answers Backend; the worker is Draining
    // now, so its assigns are refused); the invariants hold.
    signal(pid, "-CONT");
    std::thread::sleep(Duration::from_millis(300));
    drop(child);
    let workers = invariants::assert_invariants(&*registry);
    let w = workers.iter().find(|w| w.id == worker).unwrap();
    assert_eq!(w.state, WorkerState::Draining, "{w:?}");
}
