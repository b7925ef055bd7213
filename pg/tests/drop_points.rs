//! Every write of the PostgreSQL registry, its connection dropped at every point of its
//! conversation with the server: all or nothing, the registry consistent, and working again.
//!
//! A real fault, no mock: the registry talks to the real server through a proxy
//! (`support/proxy.rs`) that drops the server's `k`-th `ReadyForQuery` of the call and closes
//! both sockets. So the server has processed the `k`-th request whole and the client never
//! learns how: cut at the `ReadyForQuery` of the `COMMIT` (or of an autocommitted statement),
//! the change is durable and the call cannot know it.
//!
//! For each write (`register`, `update_state`, `transition_if`, `heartbeat` with and without a
//! `HeartbeatReceived` subscriber, `heartbeat_many`, `assign_to_job`, `claim`,
//! `release_from_job`, `unregister`, `grant_grace`, `publish`, `restore`; the fenced view's
//! `update_state`, `register` and `grant_grace`; the lease's `acquire_or_renew` and
//! `step_down`):
//! 1. a reference run through the unarmed proxy on a fresh schema counts the call's cut points
//!    `n` (the pool's probe of an idle connection, a new connection's startup, each statement,
//!    `BEGIN`, `COMMIT`) and its requests, and records the state before and after it, and after
//!    the call made again;
//! 2. on a fresh schema built the same way for each cut, the call is cut at each `k` in `1..=n`,
//!    then once right after its last answer ([`Cut::After`]), and once at its last request
//!    (the `COMMIT` reaches the server, the client's connection is gone: [`Cut::Request`]). It
//!    answers `Ok` (then its change is applied and its answer is the reference's) or
//!    `Error::Backend` (never a panic, never another kind); the state, read on a direct
//!    connection once the call answered, is exactly the one before or exactly the one after
//!    (every table of the schema in one snapshot: records, heartbeats, known ids, counters,
//!    pools, the lease, the grace floor, the events in order; `find` and `stats`), the
//!    invariants of DESIGN.md §3 hold (the conformance suite's checker), and the registry works
//!    again through the proxy: the call made again answers as the reference did when nothing
//!    was applied, and as DESIGN.md ("Lost replies", §10 clarifications) documents when it was.
//!    A heartbeat without a `HeartbeatReceived` subscriber is idempotent and runs once more on
//!    a new connection instead: cut anywhere once its connection is up, it answers `Ok`. So
//!    does a claim (and `assign_to_job`), which asks whether it applied (is its job held?)
//!    once the lost session is settled, and runs once more when it did not: no worker is left
//!    `Busy` with a job whose claim answered an error.
//!
//! And [`after_an_ambiguous_register_get_tells_for_good`]: a `COMMIT` that reaches the server
//! after the client gave up must not land after the `get` that `provision_worker` makes to learn
//! whether its registration applied. And the `a_lost_reply_…` tests: a claim or an assignment
//! whose reply was lost, and whose worker lost the job before the call settled (expired,
//! released, unregistered: [`Proxy::at_cut`] makes that change at the cut), applied once.
//!
//! Each test prints its row of the outcome table (run with `--nocapture` to see it;
//! `DROP_POINTS_VERBOSE=1` prints every cut). A row may differ from run to run at two places,
//! both allowed: the client library sends a statement's execute as soon as its prepare is
//! described, before the prepare's `ReadyForQuery`, so a cut there races with an execute already
//! on its way (an autocommitted write then applies, answered `Backend`); and a close right after
//! the last answer reaches the client with it or just after it (`Backend` or `Ok`).

mod support;

#[path = "support/backend.rs"]
mod backend;
#[path = "../../core/tests/support/invariants.rs"]
mod invariants;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "../../core/tests/registry/common.rs"]
mod registry_common;
#[path = "../../core/tests/support/test_registry.rs"]
mod test_registry;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hodei_workers::*;
use hodei_workers_postgres::{PostgresLeadership, PostgresWorkerRegistry};

use proxy::{Cut, Proxy};
use support::SchemaGuard;

const T0: Timestamp = 1_700_000_000_000;
/// Bounds every wait: a hang guard, far beyond what a call needs.
const PATIENCE: Duration = Duration::from_secs(30);
/// Longer than the pool's `PROBE_AFTER` (100 ms): the call's connection is always probed first
/// (an empty query, one more cut point), in the reference run as in every case.
const IDLE: Duration = Duration::from_millis(120);
const LEASE_TTL: Duration = Duration::from_secs(30);
/// Cuts of one write judged at once (each on its own schema, through its own proxy).
const CUTS_AT_ONCE: usize = 3;

/// Ids fixed across the schemas of a test, so that the states of different schemas compare.
fn wid(n: u8) -> WorkerId {
    let mut b = [0u8; 16];
    b[0] = 0xd0;
    b[6] = 0x40;
    b[8] = 0x80;
    b[15] = n;
    WorkerId::from_bytes(b).unwrap()
}

fn a() -> WorkerId {
    wid(1)
}
fn b() -> WorkerId {
    wid(2)
}
fn c() -> WorkerId {
    wid(3)
}
/// Registered by the `register` cases.
fn d() -> WorkerId {
    wid(4)
}

fn job(name: &str) -> JobId {
    JobId::new(name).unwrap()
}

fn provider() -> ProviderId {
    ProviderId::new("docker-local").unwrap()
}

/// In a pool, so that the pool counters are part of what must stay consistent.
fn spec() -> Arc<WorkerSpec> {
    let mut spec = WorkerSpec::new("img");
    spec.labels.insert(POOL_LABEL.to_owned(), "p1".to_owned());
    Arc::new(spec)
}

fn handle(id: WorkerId) -> WorkerHandle {
    let mut handle = WorkerHandle::new(provider(), ProviderType::Docker, format!("res-{id}"));
    handle.worker_id = id;
    handle
}

/// The fleet every case starts from: A `Ready`, B `Busy` with job "held", C `Creating`; then
/// the clock moves on, so that every change shows in the times it writes.
fn base(r: &dyn WorkerRegistry, clock: &ManualClock) {
    r.register(handle(a()), spec()).unwrap();
    r.update_state(&a(), WorkerState::Ready).unwrap();
    clock.advance(Duration::from_millis(10));
    r.register(handle(b()), spec()).unwrap();
    r.update_state(&b(), WorkerState::Ready).unwrap();
    r.assign_to_job(&b(), job("held")).unwrap();
    clock.advance(Duration::from_millis(10));
    r.register(handle(c()), spec()).unwrap();
    clock.advance(Duration::from_millis(1000));
}

/// One fresh schema: the registry through the proxy, a direct one on the real server, and a
/// raw connection reading the tables.
struct World {
    lease: Mutex<Option<(PostgresLeadership, Term)>>,
    /// A subscriber of the registry through the proxy, for the calls that write more events
    /// while there is one (`heartbeat`'s `HeartbeatReceived`).
    subscription: Mutex<Option<Subscription>>,
    registry: PostgresWorkerRegistry,
    direct: PostgresWorkerRegistry,
    clock: Arc<ManualClock>,
    /// Last: the schema is dropped once the registries' connections are closed.
    guard: SchemaGuard,
}

impl World {
    fn new(proxy: &Proxy) -> World {
        let guard = SchemaGuard::new("drop");
        let clock = Arc::new(ManualClock::new(T0));
        let registry =
            PostgresWorkerRegistry::connect_with_clock(proxy.url(), &guard.name, clock.clone())
                .expect("connect through the proxy");
        let direct = support::connect(&guard.name, clock.clone());
        World {
            lease: Mutex::new(None),
            subscription: Mutex::new(None),
            registry,
            direct,
            clock,
            guard,
        }
    }

    /// As [`new`](Self::new), both registries on the database's clock (`clock` unused).
    fn on_the_database_clock(proxy: &Proxy) -> World {
        let guard = SchemaGuard::new("drop");
        let registry = PostgresWorkerRegistry::connect(proxy.url(), &guard.name)
            .expect("connect through the proxy");
        let direct = PostgresWorkerRegistry::connect(&support::url(), &guard.name).unwrap();
        World {
            lease: Mutex::new(None),
            subscription: Mutex::new(None),
            registry,
            direct,
            clock: Arc::new(ManualClock::new(T0)),
            guard,
        }
    }

    /// The lease "a" (through the proxy), held.
    fn hold_lease(&self) {
        let lease = self.registry.leadership("a", LEASE_TTL).unwrap();
        let LeaseStatus::Held(info) = lease.acquire_or_renew(None).unwrap() else {
            panic!("a free lease")
        };
        *self.lease.lock().unwrap() = Some((lease, info.term));
    }

    /// The registry as the lease's leader writes through it.
    fn fenced(&self) -> Arc<dyn WorkerRegistry> {
        let lease = self.lease.lock().unwrap();
        let (lease, term) = lease.as_ref().expect("hold_lease first");
        self.registry
            .fenced(lease, *term)
            .expect("a lease of this store")
    }

    /// Everything of the registry, read on a direct connection: each table of its schema (the
    /// event seqs and retirement numbers left out: a failed transaction may have taken some,
    /// which leaves gaps), then `find` and `stats` as a caller sees them.
    fn state(&self) -> Vec<String> {
        let mut client = postgres::Client::connect(&support::url(), postgres::NoTls).unwrap();
        // One snapshot: a change committing meanwhile is seen whole or not at all.
        let mut client = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .unwrap();
        let s = &self.guard.name;
        let mut out = Vec::new();
        for table in [
            "workers",
            "heartbeats",
            "specs",
            "state_counts",
            "provider_counts",
            "pool_counts",
            "meta",
            "manager_leases",
        ] {
            // (The lease's name is the schema's.)
            for row in client
                .query(
                    &format!(
                        "SELECT (to_jsonb(t) - 'name')::text FROM \"{s}\".{table} t ORDER BY 1"
                    ),
                    &[],
                )
                .unwrap()
            {
                out.push(format!("{table}: {}", row.get::<_, String>(0)));
            }
        }
        for row in client
            .query(
                &format!(
                    "SELECT id::text || ' retired ' || (retired IS NOT NULL)::text \
                     FROM \"{s}\".known_ids ORDER BY 1"
                ),
                &[],
            )
            .unwrap()
        {
            out.push(format!("known_ids: {}", row.get::<_, String>(0)));
        }
        for row in client
            .query(
                &format!(
                    "SELECT json_build_array(at, worker_id, heartbeat, kind)::text \
                     FROM \"{s}\".outbox ORDER BY seq"
                ),
                &[],
            )
            .unwrap()
        {
            out.push(format!("outbox: {}", row.get::<_, String>(0)));
        }
        client.commit().unwrap();
        let mut all = self.direct.find(&WorkerFilter::new()).unwrap();
        all.sort_by_key(|w| w.id);
        out.push(format!("find: {all:?}"));
        out.push(format!("stats: {:?}", self.direct.stats().unwrap()));
        out
    }
}

/// A write under test.
struct Method {
    name: &'static str,
    /// Builds the state before the call (on the registry through the proxy, unarmed).
    setup: fn(&World),
    /// The call; its answer as text.
    call: fn(&World) -> Result<String>,
    /// Whether the answer of the call made again, after it was applied but answered
    /// `Backend`, is the one DESIGN.md documents; that retry must change nothing more, unless
    /// `retry_adds` (then it must equal the reference's state after the retry).
    retry_ok: fn(&Result<String>) -> bool,
    /// The documented answer, for the table.
    retry_doc: &'static str,
    /// What the call does when its connection is lost under it.
    lost: OnLoss,
}

/// What a write does when its connection is lost under it (DESIGN.md §10, "Lost replies").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnLoss {
    /// Its `Backend` answer comes once the server is done with the lost connection: every
    /// registry write but the heartbeats without events.
    Settles,
    /// It runs once more on a new connection (idempotent: a heartbeat without events), so a
    /// cut once its connection is up never answers `Backend`.
    Reruns,
    /// Its lost session settled, it reads whether it applied (a claim or an assignment: is
    /// its job held, by that worker?):
    /// applied, it answers as applied; not, it runs once more. So, as a rerun, a cut once its
    /// connection is up never answers `Backend`, and never leaves a worker `Busy` with a job
    /// whose claim answered an error.
    Asks,
    /// Neither (the lease): the test waits for the server to be done with the lost connection
    /// before it judges the state.
    Waits,
}

fn text<T: std::fmt::Debug>(r: Result<T>) -> Result<String> {
    r.map(|v| format!("{v:?}"))
}

fn base_setup(w: &World) {
    base(&w.registry, &w.clock);
}

fn fenced_setup(w: &World) {
    base(&w.registry, &w.clock);
    w.hold_lease();
}

/// What happened at one cut point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    NotApplied,
    AppliedOk,
    AppliedBackend,
}

/// Runs the call of `m` on `w`, through the proxy armed to cut at `k` as `how` (`None`: only
/// counting).
fn armed_call(
    proxy: &Arc<Proxy>,
    w: &Arc<World>,
    m: &Method,
    k: Option<u64>,
    how: Cut,
) -> Result<String> {
    std::thread::sleep(IDLE);
    proxy.arm_cut(k, how);
    let (world, call) = (Arc::clone(w), m.call);
    let result = support::bounded(m.name, PATIENCE, move || call(&world));
    proxy.disarm();
    result
}

/// Two states equal, or a failure that shows the lines that differ.
fn assert_same(got: &[String], want: &[String], what: &str) {
    if got != want {
        let extra: Vec<&String> = got.iter().filter(|l| !want.contains(l)).collect();
        let missing: Vec<&String> = want.iter().filter(|l| !got.contains(l)).collect();
        panic!("{what}: not the expected state\nunexpected: {extra:#?}\nmissing: {missing:#?}");
    }
}

fn is_backend(result: &Result<String>) -> bool {
    matches!(result, Err(Error::Backend(m)) if !m.is_empty())
}

/// What a call does without faults, from a reference run on a schema of its own.
struct Reference {
    /// `ReadyForQuery` messages and requests of the call.
    points: u64,
    requests: u64,
    before: Vec<String>,
    answer: String,
    after: Vec<String>,
    /// The state after the call made a second time.
    after_retry: Vec<String>,
}

fn reference(proxy: &Arc<Proxy>, m: &Method) -> Reference {
    let w = Arc::new(World::new(proxy));
    (m.setup)(&w);
    let before = w.state();
    let answer = armed_call(proxy, &w, m, None, Cut::Instead);
    let (points, requests) = (proxy.seen(), proxy.requests());
    let answer = answer.unwrap_or_else(|e| panic!("{}: the reference call failed: {e}", m.name));
    let after = w.state();
    assert_ne!(before, after, "{}: the call changes the registry", m.name);
    registry_common::assert_invariants(&w.direct);
    let retried = (m.call)(&w);
    assert!(
        (m.retry_ok)(&retried),
        "{}: made again after it applied, the call answers {retried:?}; documented: {}",
        m.name,
        m.retry_doc
    );
    let after_retry = w.state();
    assert!(
        points >= 2 && requests >= 1,
        "{}: {points} cut points",
        m.name
    );
    Reference {
        points,
        requests,
        before,
        answer,
        after,
        after_retry,
    }
}

/// One cut of the call on a fresh schema, judged (see the module docs).
fn one_cut(proxy: &Arc<Proxy>, m: &Method, r: &Reference, k: u64, how: Cut) -> Outcome {
    use Outcome::*;
    let what = format!("{} cut {how:?} at {k}", m.name);
    let w = Arc::new(World::new(proxy));
    (m.setup)(&w);
    assert_same(&w.state(), &r.before, &format!("{what}: the start"));
    let result = armed_call(proxy, &w, m, Some(k), how);
    assert!(proxy.cut(), "{what}: the proxy cut the call");
    assert!(
        result.is_ok() || is_backend(&result),
        "{what}: a dropped connection is Ok or Error::Backend, not {result:?}"
    );
    // Read once the call answered: what it did is decided by then (by the registry's word;
    // the lease's, once the server is done with the lost connection).
    if m.lost == OnLoss::Waits {
        if let Some(pid) = proxy.cut_pid() {
            wait_gone(pid);
        }
    }
    let now = w.state();
    let outcome = if now == r.before {
        NotApplied
    } else if now == r.after {
        if result.is_ok() {
            AppliedOk
        } else {
            AppliedBackend
        }
    } else {
        let neither: Vec<&String> = now
            .iter()
            .filter(|l| !r.before.contains(l) && !r.after.contains(l))
            .collect();
        let missing: Vec<&String> = r.after.iter().filter(|l| !now.contains(l)).collect();
        panic!(
            "{what}: half applied ({result:?}): neither the state before nor after; \
             lines of neither: {neither:#?}; lines of after missing: {missing:#?}"
        );
    };
    match (&result, outcome) {
        (Ok(v), AppliedOk) => assert_eq!(v, &r.answer, "{what}: the reference's answer"),
        (Ok(v), _) => panic!("{what}: answered {v} and applied nothing"),
        (Err(_), _) => {}
    }
    registry_common::assert_invariants(&w.direct);

    // The registry works again through the proxy: the call made again (a read, when it
    // applied and said so).
    let again = match outcome {
        AppliedOk => text(w.registry.get(&a())),
        _ => support::bounded(m.name, PATIENCE, {
            let (world, call) = (Arc::clone(&w), m.call);
            move || call(&world)
        }),
    };
    match outcome {
        NotApplied => {
            assert_eq!(
                again.as_ref().ok(),
                Some(&r.answer),
                "{what}: applied nothing, so made again it answers as the reference: {again:?}"
            );
            assert_same(&w.state(), &r.after, &format!("{what}: made again"));
        }
        AppliedOk => assert!(again.is_ok(), "{what}: the next call: {again:?}"),
        AppliedBackend => {
            assert!(
                (m.retry_ok)(&again),
                "{what}: applied but answered Backend; made again it answers {again:?}; \
                 documented: {}",
                m.retry_doc
            );
            assert_same(
                &w.state(),
                &r.after_retry,
                &format!("{what}: the retry after an applied call"),
            );
        }
    }
    registry_common::assert_invariants(&w.direct);
    if std::env::var("DROP_POINTS_VERBOSE").is_ok() {
        eprintln!("{what}: {outcome:?} {result:?} then {again:?}");
    }
    outcome
}

/// The whole exercise for one write: see the module docs.
fn drop_at_every_point(m: Method) {
    let started = Instant::now();
    let proxy = Arc::new(Proxy::start(&support::url()));
    let r = reference(&proxy, &m);
    let mut cuts: Vec<(u64, Cut)> = (1..=r.points).map(|k| (k, Cut::Instead)).collect();
    // The connection closed right after the call's last answer; and its last two requests
    // (the commit, and what came before it) received by the server while the client already
    // lost the connection.
    cuts.push((r.points, Cut::After));
    for k in r.requests.saturating_sub(1).max(1)..=r.requests {
        cuts.push((
            k,
            Cut::Request {
                delay: Duration::ZERO,
            },
        ));
    }
    // A few cuts at a time, each through a proxy of its own (a proxy counts every connection
    // through it): most of a cut's time is waiting (the probe's idle time, round trips).
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; cuts.len()]);
    std::thread::scope(|scope| {
        for _ in 0..CUTS_AT_ONCE {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((k, how)) = cuts.get(i) else { break };
                let proxy = Arc::new(Proxy::start(&support::url()));
                let outcome = one_cut(&proxy, &m, &r, *k, *how);
                outcomes.lock().unwrap()[i] = Some(outcome);
            });
        }
    });
    let outcomes: Vec<Outcome> = outcomes
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|o| o.expect("every cut judged"))
        .collect();

    let count = |o: Outcome| outcomes.iter().filter(|x| **x == o).count();
    let points: Vec<&str> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::NotApplied => "-",
            Outcome::AppliedOk => "ok",
            Outcome::AppliedBackend => "AMBIGUOUS",
        })
        .collect();
    eprintln!(
        "| {} | {} + {} | {} | {} | {} | {} | {:.1} s | {}",
        m.name,
        r.points,
        cuts.len() as u64 - r.points,
        count(Outcome::NotApplied),
        count(Outcome::AppliedOk),
        count(Outcome::AppliedBackend),
        m.retry_doc,
        started.elapsed().as_secs_f64(),
        points.join(" ")
    );
    if matches!(m.lost, OnLoss::Reruns | OnLoss::Asks) {
        // Run once more on a new connection, or asked whether it applied: a cut never leaves
        // the caller in doubt.
        assert_eq!(
            count(Outcome::AppliedBackend),
            0,
            "{}: answered Backend once applied (cuts: {})",
            m.name,
            points.join(" ")
        );
    } else {
        // The commit's (or the one statement's) reply is always a cut point: every other
        // write can answer Backend after its change committed (DESIGN.md says so).
        assert!(
            count(Outcome::AppliedBackend) >= 1,
            "{}: the cut at the commit's reply is ambiguous",
            m.name
        );
    }
}

fn ok(r: &Result<String>) -> bool {
    r.is_ok()
}

fn register_method() -> Method {
    Method {
        name: "register",
        setup: base_setup,
        call: |w| text(w.registry.register(handle(d()), spec())),
        retry_ok: |r| matches!(r, Err(Error::AlreadyExists(id)) if *id == d()),
        retry_doc: "AlreadyExists",
        lost: OnLoss::Settles,
    }
}

#[test]
fn register() {
    drop_at_every_point(register_method());
}

#[test]
fn update_state() {
    drop_at_every_point(Method {
        name: "update_state",
        setup: base_setup,
        call: |w| text(w.registry.update_state(&a(), WorkerState::Draining)),
        retry_ok: ok,
        retry_doc: "Ok (same state: no-op)",
        lost: OnLoss::Settles,
    });
}

#[test]
fn update_state_losing_a_job() {
    drop_at_every_point(Method {
        name: "update_state (job lost)",
        setup: base_setup,
        call: |w| text(w.registry.update_state(&b(), WorkerState::Terminating)),
        retry_ok: ok,
        retry_doc: "Ok (same state: no-op)",
        lost: OnLoss::Settles,
    });
}

#[test]
fn transition_if() {
    drop_at_every_point(Method {
        name: "transition_if",
        setup: base_setup,
        call: |w| {
            let guard = TransitionGuard::new()
                .in_state(WorkerState::Ready)
                .without_job();
            text(
                w.registry
                    .transition_if(&a(), &guard, WorkerState::Terminating),
            )
        },
        retry_ok: |r| matches!(r, Ok(v) if v == "None"),
        retry_doc: "Ok(None) (guard no longer holds)",
        lost: OnLoss::Settles,
    });
}

#[test]
fn heartbeat() {
    drop_at_every_point(Method {
        name: "heartbeat",
        setup: base_setup,
        call: |w| text(w.registry.heartbeat(&a())),
        retry_ok: ok,
        retry_doc: "Ok (idempotent)",
        lost: OnLoss::Reruns,
    });
}

#[test]
fn heartbeat_many() {
    drop_at_every_point(Method {
        name: "heartbeat_many",
        setup: base_setup,
        call: |w| text(w.registry.heartbeat_many(&[a(), b(), d()])),
        retry_ok: |r| matches!(r, Ok(v) if v.contains("NotFound")),
        retry_doc: "Ok (idempotent)",
        lost: OnLoss::Reruns,
    });
}

#[test]
fn assign_to_job() {
    drop_at_every_point(Method {
        name: "assign_to_job",
        setup: base_setup,
        call: |w| text(w.registry.assign_to_job(&a(), job("j2"))),
        retry_ok: |r| matches!(r, Err(Error::NotAvailable { worker_id, .. }) if *worker_id == a()),
        retry_doc: "NotAvailable (now Busy)",
        lost: OnLoss::Asks,
    });
}

#[test]
fn claim() {
    drop_at_every_point(Method {
        name: "claim",
        setup: base_setup,
        call: |w| text(w.registry.claim(&WorkerFilter::new(), job("j2"))),
        retry_ok: |r| matches!(r, Err(Error::JobAlreadyAssigned { worker_id, .. }) if *worker_id == a()),
        retry_doc: "JobAlreadyAssigned naming the holder",
        lost: OnLoss::Asks,
    });
}

#[test]
fn release_from_job() {
    drop_at_every_point(Method {
        name: "release_from_job",
        setup: base_setup,
        call: |w| text(w.registry.release_from_job(&b(), Some(&job("held")))),
        retry_ok: |r| matches!(r, Err(Error::NotBusy { worker_id, .. }) if *worker_id == b()),
        retry_doc: "NotBusy",
        lost: OnLoss::Settles,
    });
}

#[test]
fn release_from_job_naming_no_job() {
    drop_at_every_point(Method {
        name: "release_from_job (no job named)",
        setup: base_setup,
        call: |w| text(w.registry.release_from_job(&b(), None)),
        retry_ok: |r| matches!(r, Err(Error::NotBusy { worker_id, .. }) if *worker_id == b()),
        retry_doc: "NotBusy",
        lost: OnLoss::Settles,
    });
}

#[test]
fn unregister() {
    drop_at_every_point(Method {
        name: "unregister",
        setup: base_setup,
        call: |w| text(w.registry.unregister(&b(), TerminationReason::Requested)),
        retry_ok: |r| matches!(r, Err(Error::NotFound(id)) if *id == b()),
        retry_doc: "NotFound",
        lost: OnLoss::Settles,
    });
}

#[test]
fn grant_grace() {
    drop_at_every_point(Method {
        name: "grant_grace",
        setup: base_setup,
        call: |w| text(w.registry.grant_grace(w.clock.now())),
        retry_ok: ok,
        retry_doc: "Ok (idempotent)",
        lost: OnLoss::Settles,
    });
}

#[test]
fn publish() {
    drop_at_every_point(Method {
        name: "publish",
        setup: base_setup,
        call: |w| {
            text(w.registry.publish(EventKind::UnhealthyDetected {
                worker_id: a(),
                last_heartbeat: T0,
            }))
        },
        retry_ok: ok,
        retry_doc: "Ok, a second event",
        lost: OnLoss::Settles,
    });
}

#[test]
fn restore() {
    drop_at_every_point(Method {
        name: "restore",
        setup: |w| {
            w.clock.advance(Duration::from_millis(1020));
        },
        call: |w| {
            // The fleet of `base`, as the in-memory registry snapshots it.
            let clock = Arc::new(ManualClock::new(T0));
            let memory = InMemoryWorkerRegistry::with_clock(clock.clone());
            base(&memory, &clock);
            text(w.registry.restore(memory.snapshot().unwrap()))
        },
        retry_ok: |r| matches!(r, Err(Error::InvalidArgument(m)) if m.contains("empty")),
        retry_doc: "InvalidArgument (not empty)",
        lost: OnLoss::Settles,
    });
}

#[test]
fn fenced_update_state() {
    drop_at_every_point(Method {
        name: "fenced update_state",
        setup: fenced_setup,
        call: |w| text(w.fenced().update_state(&a(), WorkerState::Draining)),
        retry_ok: ok,
        retry_doc: "Ok (same state: no-op)",
        lost: OnLoss::Settles,
    });
}

#[test]
fn fenced_register() {
    drop_at_every_point(Method {
        name: "fenced register",
        setup: fenced_setup,
        call: |w| text(w.fenced().register(handle(d()), spec())),
        retry_ok: |r| matches!(r, Err(Error::AlreadyExists(id)) if *id == d()),
        retry_doc: "AlreadyExists",
        lost: OnLoss::Settles,
    });
}

#[test]
fn lease_acquire() {
    drop_at_every_point(Method {
        name: "lease acquire_or_renew",
        setup: |w| {
            base(&w.registry, &w.clock);
            *w.lease.lock().unwrap() = Some((w.registry.leadership("a", LEASE_TTL).unwrap(), 0));
        },
        call: |w| {
            let lease = w.lease.lock().unwrap();
            text(lease.as_ref().unwrap().0.acquire_or_renew(None))
        },
        // Applied but unanswered: the row names this holder under term 1, which it does not
        // know it holds; it follows until the lease expires (leadership.rs: a delay, never a
        // second leader).
        retry_ok: |r| matches!(r, Ok(v) if v.starts_with("Follower(Some(") && v.contains("holder: \"a\"")),
        retry_doc: "Follower naming itself until expiry",
        lost: OnLoss::Waits,
    });
}

#[test]
fn heartbeat_with_events() {
    drop_at_every_point(Method {
        name: "heartbeat (HeartbeatReceived subscriber)",
        setup: |w| {
            base(&w.registry, &w.clock);
            let options = SubscribeOptions {
                heartbeats: true,
                ..SubscribeOptions::default()
            };
            *w.subscription.lock().unwrap() = Some(w.registry.subscribe(options).unwrap());
        },
        call: |w| text(w.registry.heartbeat(&a())),
        // A second HeartbeatReceived event.
        retry_ok: ok,
        retry_doc: "Ok, a second event",
        lost: OnLoss::Settles,
    });
}

#[test]
fn fenced_grant_grace() {
    drop_at_every_point(Method {
        name: "fenced grant_grace",
        setup: fenced_setup,
        call: |w| text(w.fenced().grant_grace(w.clock.now())),
        retry_ok: ok,
        retry_doc: "Ok (idempotent)",
        lost: OnLoss::Settles,
    });
}

#[test]
fn lease_step_down() {
    drop_at_every_point(Method {
        name: "lease step_down",
        setup: fenced_setup,
        call: |w| {
            let lease = w.lease.lock().unwrap();
            let (lease, term) = lease.as_ref().unwrap();
            text(lease.step_down(*term))
        },
        retry_ok: ok,
        retry_doc: "Ok (idempotent)",
        lost: OnLoss::Waits,
    });
}

/// Waits until the server process `pid` is gone (the server is done with its session), within
/// [`PATIENCE`].
fn wait_gone(pid: i32) {
    let mut client = postgres::Client::connect(&support::url(), postgres::NoTls).unwrap();
    let start = Instant::now();
    while client
        .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .unwrap()
        .is_some()
    {
        assert!(
            start.elapsed() < PATIENCE,
            "server process {pid} still there"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `provision_worker`'s way out of an ambiguous registration (DESIGN.md §5): `register`
/// answered `Backend`, so it asks `get` whether the worker is registered, and destroys the
/// instance when it is not. That answer must be final. Here the connection is lost right after
/// the client sent its `COMMIT`, which reaches the server 300 ms later (a packet delayed in the
/// network, a reset racing the write): the server runs it then, unless the registry ended the
/// lost session first. Before the fix (`Pool::settle`), `get` said "not registered" and the
/// record appeared 300 ms later: a registered worker whose instance the manager destroys.
#[test]
fn after_an_ambiguous_register_get_tells_for_good() {
    let proxy = Arc::new(Proxy::start(&support::url()));
    let m = register_method();
    let r = reference(&proxy, &m);
    let delay = Duration::from_millis(300);
    let w = Arc::new(World::new(&proxy));
    (m.setup)(&w);
    let result = armed_call(&proxy, &w, &m, Some(r.requests), Cut::Request { delay });
    assert!(proxy.cut(), "cut at the COMMIT");
    assert!(is_backend(&result), "{result:?}");
    let said = w.registry.get(&d()).unwrap().is_some();
    // The late COMMIT has reached the server (or its closed session), and it is done with it.
    std::thread::sleep(delay + Duration::from_millis(100));
    wait_gone(
        proxy
            .cut_pid()
            .expect("the cut connection's server process"),
    );
    let is = w.direct.get(&d()).unwrap().is_some();
    assert_eq!(
        said, is,
        "get right after register answered Backend said registered: {said}; it is: {is}"
    );
    assert_same(
        &w.state(),
        if is { &r.after } else { &r.before },
        "after the late COMMIT",
    );
    registry_common::assert_invariants(&w.direct);
}

/// The server (or a network device) closes a connection between two calls: right after the
/// first had its answer. The pool does not probe a connection used less than `PROBE_AFTER`
/// (100 ms) ago, so it reads what arrived on it instead (no round trip): the next call, made
/// at once, runs on a new connection. Before, it answered `Backend` with nothing applied. A
/// heartbeat has no `BEGIN` to fail first (one autocommitted statement, on a pool of its own);
/// being idempotent, it runs once more on a new connection whatever it sent. Nor has a claim
/// (one statement): it asks whether it applied (is its job held?) and, finding it did not,
/// runs once more; before, it answered `Backend`. Nor a release naming its job (one
/// statement): it asks whether the worker still holds the job and, finding it does, runs once
/// more; before, it answered `Backend` and the worker stayed `Busy` until the caller retried.
#[test]
fn a_connection_closed_between_two_calls_is_not_handed_out_again() {
    let proxy = Proxy::start(&support::url());
    let w = World::new(&proxy);
    base(&w.direct, &w.clock);
    type Next = Box<dyn Fn(&World) -> Result<String>>;
    let nexts: [(&str, Next); 6] = [
        ("a read", Box::new(|w| text(w.registry.get(&a())))),
        (
            "a write",
            Box::new(|w| text(w.registry.update_state(&c(), WorkerState::Connecting))),
        ),
        (
            "a claim",
            Box::new(|w| text(w.registry.claim(&WorkerFilter::new(), job("j-closed")))),
        ),
        (
            "a release",
            Box::new(|w| text(w.registry.release_from_job(&b(), Some(&job("held"))))),
        ),
        (
            "a heartbeat",
            Box::new(|w| text(w.registry.heartbeat(&a()))),
        ),
        (
            "a heartbeat_many",
            Box::new(|w| text(w.registry.heartbeat_many(&[a(), b()]))),
        ),
    ];
    for (what, next) in nexts {
        // Each pool's connection used just now: the main pool's and the heartbeats'.
        w.registry.get(&a()).unwrap();
        w.registry.heartbeat(&b()).unwrap();
        proxy.close_all();
        // The close reaches the client's socket (loopback: at once; the pool reads without
        // waiting, so give it a moment far below the 100 ms after which it would probe).
        std::thread::sleep(Duration::from_millis(5));
        let result = next(&w);
        assert!(result.is_ok(), "{what} right after the close: {result:?}");
    }
    assert_eq!(
        w.direct.get(&c()).unwrap().unwrap().state,
        WorkerState::Connecting
    );
    // The claim gave its job to A, the one `Ready` worker, once; the release freed B, once.
    let a_now = w.direct.get(&a()).unwrap().unwrap();
    assert_eq!(
        (a_now.state, a_now.current_job),
        (WorkerState::Busy, Some(job("j-closed")))
    );
    let b_now = w.direct.get(&b()).unwrap().unwrap();
    assert_eq!(
        (b_now.state, b_now.current_job, b_now.jobs_executed),
        (WorkerState::Ready, None, 1)
    );
    // A's heartbeats were recorded (the base fleet's last heartbeat of A is a second older).
    let a_now = w.direct.get(&a()).unwrap().unwrap();
    assert_eq!(a_now.last_heartbeat, w.clock.now());
}

/// How the worker given the job of a claim or an assignment whose reply was lost loses that
/// job before the call settles ([`applied_then_lost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LostBy {
    /// The health check expired it: `Terminating`, its job reported lost (`JobLost`).
    Expiry,
    /// It ran the job and was released: `Ready` again.
    Release,
    /// It was unregistered, its job reported lost.
    Unregister,
}

/// A claim (`assign`: false) or an assignment to C (`assign`: true) of job "j-gone" whose
/// reply is lost once its change committed; at that moment (before the call learns that its
/// connection is lost, so before it settles), the worker that took the job loses it `how`.
/// Returns the call's answer, the worker that took the job, and the world. `db_clock`: the
/// registries on the database's clock (else a manual one).
fn applied_then_lost(
    assign: bool,
    how: LostBy,
    db_clock: bool,
) -> (Result<Option<Worker>>, WorkerId, Arc<World>) {
    let world = |proxy: &Proxy| {
        if db_clock {
            World::on_the_database_clock(proxy)
        } else {
            World::new(proxy)
        }
    };
    let proxy = Arc::new(Proxy::start(&support::url()));
    let call = move |w: &World| -> Result<Option<Worker>> {
        if assign {
            w.registry.assign_to_job(&c(), job("j-gone")).map(Some)
        } else {
            w.registry.claim(&WorkerFilter::new(), job("j-gone"))
        }
    };
    // Two `Ready` workers: A, and C (the most recently idle, which a claim takes first).
    let setup = |w: &World| {
        base(&w.registry, &w.clock);
        w.registry.update_state(&c(), WorkerState::Ready).unwrap();
    };
    // The call's cut points, counted on a world of its own: the last is its commit's reply.
    let points = {
        let w = world(&proxy);
        setup(&w);
        std::thread::sleep(IDLE);
        proxy.arm(None);
        call(&w).unwrap().expect("the reference call gives the job");
        proxy.disarm();
        proxy.seen()
    };
    let w = Arc::new(world(&proxy));
    setup(&w);
    let taker: Arc<Mutex<Option<WorkerId>>> = Arc::default();
    std::thread::sleep(IDLE);
    proxy.arm_cut(Some(points), Cut::Instead);
    proxy.at_cut({
        let (w, taker) = (Arc::clone(&w), Arc::clone(&taker));
        move || {
            let all = w.direct.find(&WorkerFilter::new()).unwrap();
            let holder = all
                .iter()
                .find(|x| x.current_job == Some(job("j-gone")))
                .expect("the call committed: a worker holds its job")
                .id;
            match how {
                LostBy::Expiry => {
                    w.direct
                        .update_state(&holder, WorkerState::Terminating)
                        .unwrap();
                }
                LostBy::Release => {
                    w.direct
                        .release_from_job(&holder, Some(&job("j-gone")))
                        .unwrap();
                }
                LostBy::Unregister => {
                    w.direct
                        .unregister(&holder, TerminationReason::Unhealthy)
                        .unwrap();
                }
            }
            *taker.lock().unwrap() = Some(holder);
        }
    });
    let result = support::bounded("the call", PATIENCE, {
        let w = Arc::clone(&w);
        move || call(&w)
    });
    proxy.disarm();
    assert!(proxy.cut(), "cut at the commit's reply");
    let taker = taker
        .lock()
        .unwrap()
        .expect("the worker lost the job at the cut");
    (result, taker, w)
}

/// The `AssignedToJob` events of job "j-gone", and the workers holding it now.
fn given_and_held(w: &World) -> (usize, Vec<WorkerId>) {
    let mut client = postgres::Client::connect(&support::url(), postgres::NoTls).unwrap();
    let events: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".outbox WHERE kind::jsonb->>'type' = \
                 'assigned_to_job' AND kind::jsonb->>'job_id' = 'j-gone'",
                w.guard.name
            ),
            &[],
        )
        .unwrap()
        .get(0);
    let held = w
        .direct
        .find(&WorkerFilter::new())
        .unwrap()
        .into_iter()
        .filter(|x| x.current_job == Some(job("j-gone")))
        .map(|x| x.id)
        .collect();
    (events as usize, held)
}

/// A claim or an assignment whose reply was lost settles by reading whether it applied; when
/// its worker lost the job between the commit and that read (the health check expired it, or
/// it ran the job and was released), the job is held by no one, yet the call applied: it
/// answers that worker as it is now, and the job is given once. Before, it ran once more: a
/// claim gave the job to a second worker (or to the same one, released) while it was reported
/// lost or had run, and an assignment gave it again to its worker, released, or answered
/// `NotAvailable` for the one expired.
fn answered_not_run_again(assign: bool, how: LostBy, db_clock: bool) {
    let (state, jobs) = match how {
        LostBy::Expiry => (WorkerState::Terminating, 0),
        LostBy::Release => (WorkerState::Ready, 1),
        LostBy::Unregister => unreachable!("a_lost_reply_whose_worker_was_unregistered_…"),
    };
    let what = format!("{} then {how:?}", if assign { "assign" } else { "claim" });
    let (result, taker, w) = applied_then_lost(assign, how, db_clock);
    let (events, held) = given_and_held(&w);
    assert_eq!(
        (events, held.as_slice()),
        (1, &[][..]),
        "{what}: the job given once ({result:?})"
    );
    let worker = result
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .unwrap_or_else(|| panic!("{what}: answered no worker"));
    assert_eq!(
        (
            worker.id,
            worker.state,
            worker.current_job,
            worker.jobs_executed
        ),
        (taker, state, None, jobs),
        "{what}: the worker that took the job, as it is now"
    );
    registry_common::assert_invariants(&w.direct);
}

#[test]
fn a_lost_reply_claim_whose_worker_expired_since_is_not_run_again() {
    answered_not_run_again(false, LostBy::Expiry, false);
}

#[test]
fn a_lost_reply_claim_whose_worker_was_released_since_is_not_run_again() {
    answered_not_run_again(false, LostBy::Release, false);
}

/// On the database's clock, the call's event is looked for from the database's time less the
/// time the call took.
#[test]
fn a_lost_reply_claim_on_the_database_clock_whose_worker_expired_since_is_not_run_again() {
    answered_not_run_again(false, LostBy::Expiry, true);
}

#[test]
fn a_lost_reply_assignment_on_the_database_clock_whose_worker_was_released_is_not_run_again() {
    answered_not_run_again(true, LostBy::Release, true);
}

#[test]
fn a_lost_reply_assignment_whose_worker_expired_since_is_not_run_again() {
    answered_not_run_again(true, LostBy::Expiry, false);
}

#[test]
fn a_lost_reply_assignment_whose_worker_was_released_since_is_not_run_again() {
    answered_not_run_again(true, LostBy::Release, false);
}

/// As above, the worker unregistered since: the call applied on a worker that is gone, which
/// it says (`Backend`, naming the worker), rather than give the job again.
fn says_applied_on_a_gone_worker(assign: bool) {
    let (result, taker, w) = applied_then_lost(assign, LostBy::Unregister, false);
    let (events, held) = given_and_held(&w);
    assert_eq!(
        (events, held.as_slice()),
        (1, &[][..]),
        "assign {assign}: the job given once ({result:?})"
    );
    match result {
        Err(Error::Backend(m)) if m.contains(&taker.to_string()) && m.contains("applied") => {}
        other => panic!("assign {assign}: {other:?}"),
    }
}

#[test]
fn a_lost_reply_claim_whose_worker_was_unregistered_since_says_so() {
    says_applied_on_a_gone_worker(false);
}

#[test]
fn a_lost_reply_assignment_whose_worker_was_unregistered_since_says_so() {
    says_applied_on_a_gone_worker(true);
}

/// The other side of [`answered_not_run_again`]: a job given before the call (and lost since)
/// is not the call's. A claim of job "j-gone", which worker C took and lost (expired) before,
/// is made again on a connection the server closed between two calls (so it did not apply):
/// it runs once more and gives the job to A, rather than answer C as if it had applied. On
/// the manual clock (advanced a millisecond since) and on the database's.
#[test]
fn a_lost_reply_claim_of_a_job_lost_before_it_runs_once_more() {
    for db_clock in [false, true] {
        let proxy = Proxy::start(&support::url());
        let w = if db_clock {
            World::on_the_database_clock(&proxy)
        } else {
            World::new(&proxy)
        };
        base(&w.registry, &w.clock);
        w.registry.update_state(&c(), WorkerState::Ready).unwrap();
        let first = w.registry.claim(&WorkerFilter::new(), job("j-gone"));
        assert_eq!(first.unwrap().map(|x| x.id), Some(c()));
        w.direct
            .update_state(&c(), WorkerState::Terminating)
            .unwrap();
        w.clock.advance(Duration::from_millis(1));
        if db_clock {
            std::thread::sleep(Duration::from_millis(100));
        }
        w.registry.get(&a()).unwrap();
        proxy.close_all();
        std::thread::sleep(Duration::from_millis(5));
        let again = w.registry.claim(&WorkerFilter::new(), job("j-gone"));
        let again = again.unwrap().expect("A is Ready");
        assert_eq!(
            (again.id, again.current_job),
            (a(), Some(job("j-gone"))),
            "db clock {db_clock}"
        );
        assert_eq!(given_and_held(&w), (2, vec![a()]), "db clock {db_clock}");
    }
}

/// A heartbeat with its `HeartbeatReceived` event (a subscriber wants them: one statement on
/// the main pool, not idempotent: a second run writes a second event) on a connection the
/// server closed between two calls: the close is seen before anything of the heartbeat is
/// sent, so it runs on a new connection and answers `Ok`, with one event. Before, it answered
/// `Backend` (a documented limitation), its heartbeat not recorded.
#[test]
fn a_heartbeat_with_events_on_a_connection_closed_between_two_calls_runs_on_a_new_one() {
    let proxy = Proxy::start(&support::url());
    let w = World::new(&proxy);
    base(&w.direct, &w.clock);
    let options = SubscribeOptions {
        heartbeats: true,
        ..SubscribeOptions::default()
    };
    let subscription = w.registry.subscribe(options).unwrap();
    for round in 0..3 {
        w.clock.advance(Duration::from_millis(1));
        // The main pool's connection used just now (heartbeats with events run there).
        w.registry.get(&a()).unwrap();
        proxy.close_all();
        std::thread::sleep(Duration::from_millis(5));
        let result = w.registry.heartbeat(&a());
        assert!(result.is_ok(), "round {round}: {result:?}");
        assert_eq!(
            w.direct.get(&a()).unwrap().unwrap().last_heartbeat,
            w.clock.now(),
            "round {round}: recorded"
        );
    }
    let mut client = postgres::Client::connect(&support::url(), postgres::NoTls).unwrap();
    let events: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".outbox WHERE heartbeat",
                w.guard.name
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(events, 3, "one HeartbeatReceived a heartbeat");
    drop(subscription);
}

/// A release naming no job (one statement; it cannot ask whether it applied: by then the
/// worker may hold a newer job, which a second run would release) on a connection the server
/// closed between two calls: the close is seen at its `BEGIN`, before anything of the release
/// is sent, so it runs on a new connection and answers the job. Before, it answered `Backend`
/// with nothing applied, and the worker stayed `Busy` until the caller retried.
#[test]
fn a_release_naming_no_job_on_a_connection_closed_between_two_calls_runs_on_a_new_one() {
    let proxy = Proxy::start(&support::url());
    let w = World::new(&proxy);
    base(&w.direct, &w.clock);
    w.registry.get(&a()).unwrap();
    proxy.close_all();
    std::thread::sleep(Duration::from_millis(5));
    let result = w.registry.release_from_job(&b(), None);
    assert_eq!(result.as_ref().ok(), Some(&job("held")), "{result:?}");
    let b_now = w.direct.get(&b()).unwrap().unwrap();
    assert_eq!(
        (b_now.state, b_now.current_job, b_now.jobs_executed),
        (WorkerState::Ready, None, 1)
    );
}
