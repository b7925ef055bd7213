//! Real faults, no mock connection:
//! - the server crashes and restarts (`pg_ctl restart -m immediate`) in the middle of a run:
//!   calls fail with `Error::Backend` meanwhile, every change that was acknowledged survives,
//!   nothing is half-applied, and the registry works again once the server is back;
//! - the server is down: every call is `Error::Backend` (never a panic), and nothing changes;
//! - the connection of a call is killed (`pg_terminate_backend`) inside its transaction, after
//!   it wrote: the call is `Error::Backend` and none of its writes remain; a claim's, killed
//!   while it waits for a locked candidate, asks whether it applied and runs once more; cut by
//!   a crash while the server stays down, it answers `Backend` for the claim;
//! - the server crashes and restarts while the registry is idle: once it is back, no call fails
//!   (the pools' idle connections and the lease's, broken by the crash, are replaced before
//!   anything is sent on them);
//! - the server crashes and restarts after a subscription was made while a writer was in
//!   flight: the writer's event reaches it when the writer committed before the crash, and
//!   nothing of it when the crash aborted it; the subscription goes on either way.
//!
//! The restart tests own a throwaway server (`scripts/pg-tmp.sh start`, as `make test` does);
//! the killed connection runs on `HODEI_PG_URL`.

#[path = "../../core/tests/support/invariants.rs"]
mod invariants;
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;

const T0: Timestamp = 1_700_000_000_000;
/// Bounds every wait: a hang guard, far beyond what the test needs.
const PATIENCE: Duration = Duration::from_secs(60);

/// A throwaway server of this test's own, removed on drop.
struct Server {
    dir: PathBuf,
    url: String,
}

fn pg_tmp(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-tmp.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .expect("run scripts/pg-tmp.sh");
    assert!(
        out.status.success(),
        "scripts/pg-tmp.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Server {
    fn start(tag: &str) -> Server {
        let dir = PathBuf::from(format!("/tmp/hw-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let url = pg_tmp(&["start", dir.to_str().unwrap()]);
        Server { dir, url }
    }

    fn cmd(&self, what: &str) {
        pg_tmp(&[what, self.dir.to_str().unwrap()]);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-tmp.sh"))
            .args(["stop", self.dir.to_str().unwrap()])
            .status();
    }
}

fn pid(name: &str) -> ProviderId {
    ProviderId::new(name).unwrap()
}

fn job(name: &str) -> JobId {
    JobId::new(name).unwrap()
}

fn ready(registry: &dyn WorkerRegistry) -> WorkerId {
    let handle = WorkerHandle::new(pid("docker-local"), ProviderType::Docker, "c");
    let id = registry
        .register(handle, Arc::new(WorkerSpec::new("img")))
        .unwrap()
        .id;
    registry.update_state(&id, WorkerState::Ready).unwrap();
    id
}

/// The invariants of DESIGN.md §3 and `stats()` against a recount (the conformance suite's
/// checker); the workers sorted by id.
fn assert_consistent(registry: &dyn WorkerRegistry) -> Vec<Worker> {
    let mut all = invariants::assert_invariants(registry);
    all.sort_by_key(|w| w.id);
    all
}

fn is_backend<T: std::fmt::Debug>(result: &Result<T>) -> bool {
    match result {
        Err(Error::Backend(message)) => {
            assert!(!message.is_empty(), "a Backend error says why");
            true
        }
        _ => false,
    }
}

#[test]
fn while_the_server_is_down_every_call_is_a_backend_error_and_nothing_changes() {
    let server = Server::start("down");
    let clock = Arc::new(ManualClock::new(T0));
    let registry = PostgresWorkerRegistry::connect_with_clock(&server.url, "faults", clock.clone())
        .expect("connect");
    let idle = ready(&registry);
    let busy = ready(&registry);
    registry.assign_to_job(&busy, job("j1")).unwrap();
    let before = assert_consistent(&registry);

    server.cmd("pause");
    let r: &dyn WorkerRegistry = &registry;
    let handle = WorkerHandle::new(pid("docker-local"), ProviderType::Docker, "new");
    let guard = TransitionGuard {
        states: vec![WorkerState::Ready],
        ..TransitionGuard::default()
    };
    let outcomes: Vec<(&str, bool)> = vec![
        ("get", is_backend(&r.get(&idle))),
        ("find", is_backend(&r.find(&WorkerFilter::new()))),
        ("find_available", is_backend(&r.find_available())),
        (
            "register",
            is_backend(&r.register(handle, Arc::new(WorkerSpec::new("i")))),
        ),
        (
            "update_state",
            is_backend(&r.update_state(&idle, WorkerState::Draining)),
        ),
        ("heartbeat", is_backend(&r.heartbeat(&idle))),
        (
            "heartbeat_many",
            is_backend(&r.heartbeat_many(&[idle, busy])),
        ),
        (
            "assign_to_job",
            is_backend(&r.assign_to_job(&idle, job("j2"))),
        ),
        (
            "release_from_job",
            is_backend(&r.release_from_job(&busy, None)),
        ),
        (
            "claim",
            is_backend(&r.claim(&WorkerFilter::new(), job("j3"))),
        ),
        (
            "unregister",
            is_backend(&r.unregister(&idle, TerminationReason::Requested)),
        ),
        (
            "find_unhealthy",
            is_backend(&r.find_unhealthy(Duration::ZERO)),
        ),
        (
            "find_startup_expired",
            is_backend(&r.find_startup_expired(Duration::ZERO)),
        ),
        (
            "find_for_termination",
            is_backend(&r.find_for_termination()),
        ),
        ("grant_grace", is_backend(&r.grant_grace(T0))),
        ("stats", is_backend(&r.stats())),
        ("count", is_backend(&r.count())),
        ("snapshot", is_backend(&r.snapshot())),
        (
            "publish",
            is_backend(&r.publish(EventKind::ProvisionRequested {
                provider_id: pid("p"),
            })),
        ),
        (
            "transition_if",
            is_backend(&r.transition_if(&idle, &guard, WorkerState::Draining)),
        ),
        ("longest_idle", is_backend(&r.longest_idle(3))),
    ];
    let not_backend: Vec<&str> = outcomes
        .iter()
        .filter(|(_, b)| !b)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        not_backend.is_empty(),
        "not Error::Backend with the server down: {not_backend:?}"
    );
    // Subscribing may fail or succeed (reading later); either way no panic.
    let sub = registry.subscribe(SubscribeOptions::default());
    assert!(sub.is_ok() || is_backend(&sub), "{sub:?}");
    drop(sub);

    server.cmd("resume");
    let after = wait_until_ok(|| registry.find(&WorkerFilter::new()));
    let mut after = after;
    after.sort_by_key(|w| w.id);
    assert_eq!(after, before, "nothing changed while the server was down");
    assert_consistent(&registry);
    // And it works again.
    let got = registry.claim(&WorkerFilter::new(), job("j4")).unwrap();
    assert_eq!(got.map(|w| w.id), Some(idle));
    assert_eq!(
        registry.release_from_job(&busy, Some(&job("j1"))),
        Ok(job("j1"))
    );
    assert_consistent(&registry);
}

/// Retries `f` until it succeeds (the pool reconnecting after the server came back).
fn wait_until_ok<T>(mut f: impl FnMut() -> Result<T>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(Error::Backend(m)) if start.elapsed() < PATIENCE => {
                let _ = m;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("the registry did not recover within {PATIENCE:?}: {e}"),
        }
    }
}

/// Connections that sat idle through a crash and restart still look open to the client until
/// it next uses them. Each pool (the main one, the heartbeats') holds several, and the lease
/// one: none of them may fail a call made once the server answers again (before, each was
/// handed out once and failed with "Broken pipe": 8 of 20 calls here).
#[test]
fn after_a_crash_restart_no_call_fails_once_the_server_is_back() {
    let server = Server::start("back");
    let clock = Arc::new(ManualClock::new(T0));
    let registry = Arc::new(
        PostgresWorkerRegistry::connect_with_clock(&server.url, "faults", clock.clone())
            .expect("connect"),
    );
    let lease = registry
        .leadership("a", Duration::from_secs(30))
        .expect("lease");
    let LeaseStatus::Held(info) = lease.acquire_or_renew(None).unwrap() else {
        panic!("a free lease")
    };
    let id = ready(&*registry);
    // Several connections in both pools, as under any concurrency; then all idle.
    std::thread::scope(|s| {
        for _ in 0..8 {
            let registry = Arc::clone(&registry);
            s.spawn(move || {
                for _ in 0..20 {
                    registry.get(&id).unwrap();
                    registry.stats().unwrap();
                    registry.heartbeat(&id).unwrap();
                }
            });
        }
    });
    server.cmd("restart");
    // The server answers again.
    let mut probe = postgres::Client::connect(&server.url, postgres::NoTls).unwrap();
    probe.simple_query("SELECT 1").unwrap();

    let mut failures = Vec::new();
    for i in 0..20 {
        if let Err(e) = registry.get(&id) {
            failures.push(format!("get {i}: {e}"));
        }
        if let Err(e) = registry.heartbeat(&id) {
            failures.push(format!("heartbeat {i}: {e}"));
        }
    }
    match lease.acquire_or_renew(Some(info.term)) {
        Ok(LeaseStatus::Held(renewed)) => assert_eq!(renewed.term, info.term),
        other => failures.push(format!("renewal: {other:?}")),
    }
    assert!(
        failures.is_empty(),
        "{} calls made after the server was back failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_consistent(&*registry);
}

/// What the op thread knows of a worker: the last snapshot a call acknowledged with no call of
/// uncertain outcome since, or nothing.
#[derive(Debug, Clone, PartialEq)]
enum Known {
    Is(Worker),
    Unknown,
}

#[test]
fn a_crash_restart_mid_run_keeps_every_acknowledged_change_and_the_registry_recovers() {
    let server = Server::start("restart");
    let clock = Arc::new(ManualClock::new(T0));
    let registry = Arc::new(
        PostgresWorkerRegistry::connect_with_clock(&server.url, "faults", clock.clone())
            .expect("connect"),
    );
    let workers: Vec<WorkerId> = (0..12).map(|_| ready(&*registry)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(AtomicUsize::new(0));

    let op_thread = {
        let registry = Arc::clone(&registry);
        let stop = Arc::clone(&stop);
        let successes = Arc::clone(&successes);
        // The clock stands still: a heartbeat then changes nothing a snapshot shows, so every
        // acknowledged snapshot stays the truth until the next call on that worker.
        std::thread::spawn(move || {
            let mut known: HashMap<WorkerId, Known> = workers
                .iter()
                .map(|id| (*id, Known::Is(registry.get(id).unwrap().unwrap())))
                .collect();
            let mut held: Vec<(WorkerId, JobId)> = Vec::new();
            // Claims that failed with Backend: each may have committed (the server applied it
            // and died before the reply), on a worker we cannot name.
            let mut uncertain_claims: Vec<JobId> = Vec::new();
            let mut backend_errors = 0usize;
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let ids: Vec<WorkerId> = known.keys().copied().collect();
                let some = ids[n * 7 % ids.len()];
                // (touched worker, outcome)
                let (touched, outcome): (Option<WorkerId>, Result<Known>) = match n % 6 {
                    0 | 1 => {
                        let j = job(&format!("job-{n}"));
                        match registry.claim(&WorkerFilter::new(), j.clone()) {
                            Ok(Some(w)) => {
                                held.push((w.id, j));
                                (Some(w.id), Ok(Known::Is(w)))
                            }
                            Ok(None) => (None, Ok(Known::Unknown)),
                            Err(e) => {
                                if matches!(e, Error::Backend(_)) {
                                    uncertain_claims.push(j);
                                }
                                (None, Err(e))
                            }
                        }
                    }
                    2 | 3 => match held.pop() {
                        Some((w, j)) => match registry.release_from_job(&w, Some(&j)) {
                            Ok(_) => match registry.get(&w) {
                                Ok(Some(now)) => (Some(w), Ok(Known::Is(now))),
                                Ok(None) => panic!("{w} vanished"),
                                Err(e) => (Some(w), Err(e)),
                            },
                            Err(e) => {
                                // Unknown outcome: it may be committed; release it later.
                                if matches!(e, Error::Backend(_)) {
                                    held.push((w, j));
                                }
                                (Some(w), Err(e))
                            }
                        },
                        None => (None, Ok(Known::Unknown)),
                    },
                    4 => (
                        Some(some),
                        registry.heartbeat(&some).map(|()| Known::Unknown),
                    ),
                    _ => {
                        let handle =
                            WorkerHandle::new(pid("docker-local"), ProviderType::Docker, "n");
                        let id = handle.worker_id;
                        match registry.register(handle, Arc::new(WorkerSpec::new("img"))) {
                            Ok(w) => (Some(id), Ok(Known::Is(w))),
                            Err(e) => (Some(id), Err(e)),
                        }
                    }
                };
                match outcome {
                    Ok(k) => {
                        successes.fetch_add(1, Ordering::SeqCst);
                        if let (Some(id), Known::Is(_)) = (touched, &k) {
                            known.insert(id, k);
                        }
                    }
                    Err(Error::Backend(_)) => {
                        backend_errors += 1;
                        if let Some(id) = touched {
                            known.insert(id, Known::Unknown);
                        }
                    }
                    // A release of a job that an uncertain earlier release did free.
                    Err(Error::NotBusy { .. }) => {}
                    // A worker whose registration failed with Backend (not committed after all).
                    Err(Error::NotFound(_))
                        if touched.is_some_and(|id| known.get(&id) == Some(&Known::Unknown)) => {}
                    Err(e) => panic!("op {n}: {e}"),
                }
            }
            (known, backend_errors, uncertain_claims)
        })
    };

    let wait_for = |count: usize| {
        let start = Instant::now();
        while successes.load(Ordering::SeqCst) < count {
            assert!(
                start.elapsed() < PATIENCE,
                "no progress: {} successes",
                successes.load(Ordering::SeqCst)
            );
            assert!(!op_thread.is_finished(), "the op thread died");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(100);
    server.cmd("restart");
    // The registry works again: many successes after the restart.
    let after_restart = successes.load(Ordering::SeqCst);
    wait_for(after_restart + 100);
    stop.store(true, Ordering::Relaxed);
    let (known, backend_errors, uncertain_claims) = op_thread.join().expect("the op thread");
    eprintln!("{backend_errors} calls failed with Backend across the restart");

    // Every acknowledged change survived the crash; nothing is half-applied.
    let all = assert_consistent(&*registry);
    let by_id: HashMap<WorkerId, &Worker> = all.iter().map(|w| (w.id, w)).collect();
    let mut checked = 0;
    for (id, k) in &known {
        // A worker holding the job of a claim whose outcome we could not know: that claim did
        // commit, and took this worker after we last saw it.
        let claimed_unknowingly = by_id
            .get(id)
            .and_then(|w| w.current_job.as_ref())
            .is_some_and(|job| uncertain_claims.contains(job));
        match k {
            Known::Is(_) if claimed_unknowingly => {}
            Known::Is(w) => {
                assert_eq!(
                    by_id.get(id).copied(),
                    Some(w),
                    "acknowledged state of {id}"
                );
                checked += 1;
            }
            Known::Unknown => {}
        }
    }
    assert!(checked > 0);
}

/// The backend pid of a connection of `schema`'s registry waiting for a lock inside a
/// transaction that has written (has a transaction id), within [`PATIENCE`].
fn blocked_writer(admin: &mut postgres::Client) -> i32 {
    let start = Instant::now();
    loop {
        let rows = admin
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND backend_xid IS NOT NULL \
                   AND pid <> pg_backend_pid() AND datname = current_database()",
                &[],
            )
            .unwrap();
        if let Some(row) = rows.first() {
            return row.get(0);
        }
        assert!(start.elapsed() < PATIENCE, "no blocked writer appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_connection_killed_inside_a_transaction_applies_nothing() {
    let guard = support::SchemaGuard::new("kill");
    let clock = Arc::new(ManualClock::new(T0));
    let registry = Arc::new(support::connect(&guard.name, clock));
    let busy = ready(&*registry);
    registry.assign_to_job(&busy, job("held")).unwrap();
    let before = assert_consistent(&*registry);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();

    // Block the registry's writes at the event outbox, which a change writes after the record:
    // a call then waits inside its transaction with the record already updated.
    let mut admin =
        postgres::Client::connect(&guard.url, postgres::NoTls).expect("admin connection");
    let tables: Vec<String> = admin
        .query(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) \
             FROM information_schema.tables WHERE table_schema = $1 \
               AND (table_name LIKE '%event%' OR table_name LIKE '%outbox%')",
            &[&guard.name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !tables.is_empty(),
        "found the outbox table of schema {}",
        guard.name
    );
    let mut tx = admin.transaction().unwrap();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        tables.join(", ")
    ))
    .unwrap();

    let call = {
        let registry = Arc::clone(&registry);
        // Then, at once, a read: the killed session's connection, used a moment ago (so not
        // probed), must not be handed out again.
        std::thread::spawn(move || {
            let result = registry.unregister(&busy, TerminationReason::Requested);
            (result, registry.find(&WorkerFilter::new()))
        })
    };
    let mut killer = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let victim = blocked_writer(&mut killer);
    let killed: bool = killer
        .query_one("SELECT pg_terminate_backend($1)", &[&victim])
        .unwrap()
        .get(0);
    assert!(killed);
    tx.rollback().unwrap();

    let (result, after) = call.join().expect("the call returns, never panics");
    assert!(
        is_backend(&result),
        "a killed connection is Error::Backend: {result:?}"
    );

    // Nothing of the unregister remains: the record, the counters, the events.
    let mut after = after.expect("the read right after the killed call");
    after.sort_by_key(|w| w.id);
    assert_eq!(after, before, "the killed transaction applied nothing");
    assert_consistent(&*registry);
    assert!(
        events.drain().is_empty(),
        "no event of the killed transaction"
    );
    // And the registry works again on a fresh connection.
    registry
        .unregister(&busy, TerminationReason::Requested)
        .unwrap();
    let kinds: Vec<EventKind> = events.drain().into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::JobLost {
                worker_id: busy,
                job_id: job("held")
            },
            EventKind::Unregistered {
                worker_id: busy,
                reason: TerminationReason::Requested
            }
        ]
    );
    assert_consistent(&*registry);
}

/// A registry on a fresh schema named after `prefix`, with one `Ready` worker.
fn fresh(prefix: &str) -> (support::SchemaGuard, Arc<PostgresWorkerRegistry>, WorkerId) {
    let guard = support::SchemaGuard::new(prefix);
    let clock = Arc::new(ManualClock::new(T0));
    let registry = Arc::new(support::connect(&guard.name, clock));
    let worker = ready(&*registry);
    (guard, registry, worker)
}

/// A transaction on `admin` holding `worker`'s row of schema `schema` locked, as a claim
/// elsewhere would: a claim of it waits until the transaction ends.
fn lock_worker<'a>(
    admin: &'a mut postgres::Client,
    schema: &str,
    worker: WorkerId,
) -> postgres::Transaction<'a> {
    let mut tx = admin.transaction().unwrap();
    tx.execute(
        &format!("SELECT 1 FROM \"{schema}\".workers WHERE id = $1 FOR UPDATE"),
        &[worker.as_uuid()],
    )
    .unwrap();
    tx
}

/// `registry.claim` of any worker for job `name`, on a thread of its own.
fn claim_on_a_thread(
    registry: &Arc<PostgresWorkerRegistry>,
    name: &'static str,
) -> std::thread::JoinHandle<Result<Option<Worker>>> {
    let registry = Arc::clone(registry);
    std::thread::spawn(move || registry.claim(&WorkerFilter::new(), job(name)))
}

/// The backend pid of a registry connection (`application_name` hodei-workers) waiting for a
/// lock, within [`PATIENCE`].
fn waiting_on_a_lock(admin: &mut postgres::Client) -> i32 {
    let start = Instant::now();
    loop {
        let rows = admin
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND application_name = 'hodei-workers' \
                   AND pid <> pg_backend_pid() AND datname = current_database()",
                &[],
            )
            .unwrap();
        if let Some(row) = rows.first() {
            return row.get(0);
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no registry call waits on a lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A claim whose session the server ends under it (`pg_terminate_backend`, as an
/// administrator or a server-side timeout does) while it waits for the one candidate, which
/// another transaction holds locked: its statement was sent, so it cannot know by itself
/// whether it applied. It asks (is its job held?) once the session is gone, finds it did not
/// apply, and runs once more: it takes the worker. Before, it answered `Backend` whether or
/// not it had applied (DESIGN.md §10, "Lost replies").
#[test]
fn a_claim_whose_session_is_killed_while_it_waits_asks_and_runs_once_more() {
    let (guard, registry, worker) = fresh("kill_claim");
    let mut admin =
        postgres::Client::connect(&guard.url, postgres::NoTls).expect("admin connection");
    let tx = lock_worker(&mut admin, &guard.name, worker);
    let call = claim_on_a_thread(&registry, "j-killed");
    let mut killer = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let victim = waiting_on_a_lock(&mut killer);
    let killed: bool = killer
        .query_one("SELECT pg_terminate_backend($1)", &[&victim])
        .unwrap()
        .get(0);
    assert!(killed);
    // The lock goes once the claim's asking is under way or done: it runs again either way.
    std::thread::sleep(Duration::from_millis(100));
    tx.rollback().unwrap();
    let result = call.join().expect("the claim returns, never panics");
    assert_eq!(
        result.map(|w| w.map(|w| (w.id, w.current_job))),
        Ok(Some((worker, Some(job("j-killed"))))),
        "the claim, made once more, took the worker"
    );
    let all = assert_consistent(&*registry);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].current_job, Some(job("j-killed")));
}

/// A claim cut by a crash of the server (`pg_ctl stop -m immediate`) while it waits for a
/// locked candidate, the server staying down: it cannot ask whether it applied, so it answers
/// `Backend`, and for the claim ("claiming a worker: …"), not for the connection it could not
/// open to ask. Once the server is back, nothing was applied and the claim made again takes
/// the worker.
#[test]
fn a_claim_cut_by_a_crash_while_the_server_stays_down_answers_backend_for_the_claim() {
    let server = Server::start("claimcrash");
    let clock = Arc::new(ManualClock::new(T0));
    let registry = Arc::new(
        PostgresWorkerRegistry::connect_with_clock(&server.url, "faults", clock.clone())
            .expect("connect"),
    );
    let worker = ready(&*registry);
    let mut admin = postgres::Client::connect(&server.url, postgres::NoTls).unwrap();
    let tx = lock_worker(&mut admin, "faults", worker);
    let call = claim_on_a_thread(&registry, "j-crash");
    let mut watcher = postgres::Client::connect(&server.url, postgres::NoTls).unwrap();
    waiting_on_a_lock(&mut watcher);
    server.cmd("pause");
    let result = call.join().expect("the claim returns, never panics");
    drop(tx);
    assert!(
        matches!(&result, Err(Error::Backend(m)) if m.starts_with("claiming a worker")),
        "{result:?}"
    );
    server.cmd("resume");
    let now = wait_until_ok(|| registry.get(&worker)).unwrap();
    assert_eq!((now.state, now.current_job), (WorkerState::Ready, None));
    let got = registry
        .claim(&WorkerFilter::new(), job("j-crash"))
        .unwrap();
    assert_eq!(got.map(|w| w.id), Some(worker));
    assert_consistent(&*registry);
}

/// The claim runs once more only once: killed again while it waits the second time, it
/// answers `Backend` (settled: nothing applied, the worker still `Ready` without a job).
#[test]
fn a_claim_killed_twice_answers_backend_and_applies_nothing() {
    let (guard, registry, worker) = fresh("kill_claim_twice");
    let mut admin =
        postgres::Client::connect(&guard.url, postgres::NoTls).expect("admin connection");
    let tx = lock_worker(&mut admin, &guard.name, worker);
    let call = claim_on_a_thread(&registry, "j-killed");
    let mut killer = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let first = waiting_on_a_lock(&mut killer);
    killer
        .execute("SELECT pg_terminate_backend($1)", &[&first])
        .unwrap();
    // Its run once more waits on a new session.
    let start = Instant::now();
    let second = loop {
        let pid = waiting_on_a_lock(&mut killer);
        if pid != first {
            break pid;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the claim did not run once more"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    killer
        .execute("SELECT pg_terminate_backend($1)", &[&second])
        .unwrap();
    let result = call.join().expect("the claim returns, never panics");
    tx.rollback().unwrap();
    assert!(is_backend(&result), "{result:?}");
    let now = registry.get(&worker).unwrap().unwrap();
    assert_eq!((now.state, now.current_job), (WorkerState::Ready, None));
    assert_consistent(&*registry);
}

/// A subscription made while a writer holds a seq below where it starts waits for that writer
/// (DESIGN.md §10, "Where a subscription starts"), across the reader's new connection after
/// a crash: a commit acknowledged before the crash is delivered (first, in seq order), a
/// writer the crash aborted delivers nothing, and the events after the restart come in both
/// cases (the sequence moves on past what it had logged: a gap).
#[test]
fn a_subscription_made_while_a_writer_was_in_flight_gets_its_event_only_if_it_survived_a_crash() {
    let server = Server::start("early");
    let registry = PostgresWorkerRegistry::connect_with_clock(
        &server.url,
        "faults",
        Arc::new(ManualClock::new(T0)),
    )
    .expect("connect");
    let publish = || {
        registry
            .publish(EventKind::ProvisionRequested {
                provider_id: pid("p"),
            })
            .map(|_| ())
    };
    let outbox = |client: &mut postgres::Client| -> Vec<u64> {
        client
            .query("SELECT seq FROM faults.outbox ORDER BY seq", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64) ^ (1 << 63))
            .collect()
    };
    for commit_before_the_crash in [true, false] {
        let what = format!("committed before the crash: {commit_before_the_crash}");
        publish().unwrap();
        let mut writer = postgres::Client::connect(&server.url, postgres::NoTls).unwrap();
        // Its xid before its seq, as the registry's writers (an INSERT's VALUES are evaluated
        // in the table's column order: `seq` first).
        writer
            .batch_execute("BEGIN; SELECT pg_current_xact_id()")
            .unwrap();
        let early: i64 = writer
            .query_one(
                "INSERT INTO faults.outbox (xid, seq, at, worker_id, heartbeat, kind) \
                 VALUES (pg_current_xact_id(), nextval('faults.event_seq'), 0, NULL, false, \
                 '{\"type\":\"provision_requested\",\"provider_id\":\"early\"}') \
                 RETURNING seq",
                &[],
            )
            .unwrap()
            .get(0);
        let early = (early as u64) ^ (1 << 63);
        publish().unwrap(); // above the writer's seq: where the subscription starts
        let events = registry.subscribe(SubscribeOptions::default()).unwrap();
        assert_eq!(
            events.try_recv(),
            None,
            "{what}: nothing before the writer ends"
        );
        if commit_before_the_crash {
            writer.batch_execute("COMMIT").unwrap();
        }
        server.cmd("restart");
        wait_until_ok(publish);
        publish().unwrap();
        let mut admin = postgres::Client::connect(&server.url, postgres::NoTls).unwrap();
        let stored = outbox(&mut admin);
        let last = *stored.last().unwrap();
        let mut got = Vec::new();
        while got.last().is_none_or(|seq| *seq < last) {
            match events.recv(Some(Duration::from_secs(10))) {
                Some(e) => got.push(e.seq),
                None => break,
            }
        }
        let after: Vec<u64> = stored.iter().copied().filter(|s| *s > early + 1).collect();
        let want: Vec<u64> = if commit_before_the_crash {
            std::iter::once(early).chain(after).collect()
        } else {
            after
        };
        assert_eq!(got, want, "{what}: the outbox holds {stored:?}");
        assert_eq!(stored.contains(&early), commit_before_the_crash, "{what}");
    }
}
