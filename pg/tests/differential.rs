//! Differential test: the PostgreSQL registry against the in-memory one, step by step.
//!
//! DESIGN §10 says "one behavioural test suite runs against every backend" (tests/conformance.rs
//! runs core/tests/registry here). That suite checks each backend against what its tests
//! expect; this one checks the two backends against each other, where no test wrote the
//! expectation down. An [`InMemoryWorkerRegistry`] and a [`PostgresWorkerRegistry`] (in a
//! schema of its own) share one [`ManualClock`] and get the same random sequence of operations
//! (register, unregister, state changes, guarded transitions, claims, assignments, releases,
//! heartbeats, grace). After every step the test compares:
//! - the step's own answer (value or error text);
//! - every record (`find` with an empty filter), `count`, `stats`;
//! - random `find` filters, `find_for_termination`, `longest_idle`, `find_startup_expired`,
//!   `find_unhealthy`, `count_unhealthy`;
//!
//! - the events the step published (seq, at, kind);
//! - from half-way on, the events of a second subscriber on each backend, made then, that opts
//!   in to `HeartbeatReceived` and holds 3 events, read every 9th step only: the same events
//!   (heartbeats of one `heartbeat_many` in the call's order) and the same `dropped()`;
//!
//! and at the end of a sequence a snapshot of each, restored into a fresh registry of its
//! backend. Two smaller tests compare restores of extreme records and
//! the errors of refused calls; a third, claims by `unhealthy_for` on fleets of 300 workers,
//! where the answer is often past the first 64 candidates (found by the pass over heartbeats).
//!
//! Everything is deterministic (fixed seeds, worker ids drawn from the seed, the manual clock):
//! every assertion names the seed and step, and `HODEI_DIFF_SEEDS=0x…[,0x…]` replays chosen
//! seeds (`HODEI_DIFF_STEPS` sets the steps a sequence). Needs `HODEI_PG_URL`.

mod common;
#[path = "../../core/tests/support/rng.rs"]
mod rng;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;
use rng::Rng;

/// The sequences run by default. Each costs ~1-2 s on PostgreSQL (a dozen statements a step).
const SEEDS: [u64; 4] = [
    0x9e37_79b9_7f4a_7c15,
    0x3c6e_f372_fe94_f82a,
    0xdaa6_6d2c_7ddf_7440,
    0x78dd_e6e5_fd29_f055,
];

/// Steps of one sequence.
const STEPS: usize = 200;

/// The in-memory and the PostgreSQL registry on one clock, and where the run is (for messages).
struct Pair {
    clock: Arc<ManualClock>,
    memory: InMemoryWorkerRegistry,
    postgres: PostgresWorkerRegistry,
    _schema: SchemaGuard,
    /// Which run this is, for messages: the seed and how to replay it.
    run: String,
    step: usize,
}

impl Pair {
    fn new(run: String, clock: Arc<ManualClock>) -> Pair {
        let schema = SchemaGuard::new("diff");
        Pair {
            memory: InMemoryWorkerRegistry::with_clock(clock.clone()),
            postgres: common::support::connect(&schema.name, clock.clone()),
            clock,
            _schema: schema,
            run,
            step: 0,
        }
    }

    /// Asks both registries `f` and asserts that they answer alike (compared as `Debug` text).
    fn same<T: Debug>(&self, what: &str, f: impl Fn(&dyn WorkerRegistry) -> T) {
        let memory = format!("{:?}", f(&self.memory));
        let postgres = format!("{:?}", f(&self.postgres));
        if memory != postgres {
            self.fail(what, &memory, &postgres);
        }
    }

    /// Asserts that both registries hold the same records, naming the first that differs.
    fn same_records(&self, what: &str) {
        let memory = all_records(&self.memory);
        let postgres = all_records(&self.postgres);
        let ids =
            |workers: &[Worker]| format!("{:?}", workers.iter().map(|w| w.id).collect::<Vec<_>>());
        if ids(&memory) != ids(&postgres) {
            self.fail(&format!("{what} (ids)"), &ids(&memory), &ids(&postgres));
        }
        for (m, p) in memory.iter().zip(&postgres) {
            let (m_text, p_text) = (format!("{m:?}"), format!("{p:?}"));
            if m_text != p_text {
                self.fail(&format!("{what}: worker {}", m.id), &m_text, &p_text);
            }
        }
    }

    /// Fails the test with the seed and step, where the two answers part, and both answers.
    fn fail(&self, what: &str, memory: &str, postgres: &str) -> ! {
        let (m, p): (Vec<char>, Vec<char>) = (memory.chars().collect(), postgres.chars().collect());
        let at = m.iter().zip(&p).take_while(|(a, b)| a == b).count();
        let near = |text: &[char]| -> String {
            text[at.saturating_sub(50)..text.len().min(at + 50)]
                .iter()
                .collect()
        };
        panic!(
            "{run}, step {step}: {what} differs\n\
             first difference, at char {at}:\n  in-memory:  …{}…\n  PostgreSQL: …{}…\n\
             whole answers:\n  in-memory:  {memory}\n  PostgreSQL: {postgres}",
            near(&m),
            near(&p),
            run = self.run,
            step = self.step,
        );
    }
}

/// What this test draws besides `Rng`'s own picks.
impl Rng {
    fn millis(&mut self, below: u64) -> Duration {
        Duration::from_millis(self.below(below))
    }

    /// A UUID v4 drawn from the sequence, so that a replay registers the same ids.
    fn worker_id(&mut self) -> WorkerId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        WorkerId::from_bytes(bytes).unwrap()
    }
}

fn provider_types() -> [ProviderType; 3] {
    [
        ProviderType::Docker,
        ProviderType::Kubernetes,
        ProviderType::custom("nomad").unwrap(),
    ]
}

/// Four specs that differ in everything a filter or a deadline looks at.
fn specs() -> Vec<Arc<WorkerSpec>> {
    let shapes = [
        (1.0, 1u64 << 30, 0u32, None, Architecture::Amd64),
        (4.0, 8 << 30, 1, Some("a100"), Architecture::Amd64),
        (2.5, 4 << 30, 2, Some("h100"), Architecture::Arm64),
        (0.5, 0, 0, None, Architecture::Arm),
    ];
    let mut out = Vec::new();
    for (i, (cpu, mem, gpus, gpu_type, arch)) in shapes.into_iter().enumerate() {
        let mut s = WorkerSpec::new("img");
        s.resources = ResourceRequirements {
            cpu_cores: cpu,
            memory_bytes: mem,
            disk_bytes: (i as u64) * 1000,
            gpu_count: gpus,
            gpu_type: gpu_type.map(str::to_owned),
        };
        s.architecture = arch;
        if i % 2 == 0 {
            s = s.with_label("pool", "a").with_capability("gpu");
        }
        if i >= 2 {
            s = s.with_label("zone", "z").with_capability("docker");
        }
        if i == 3 {
            s = s.with_label(POOL_LABEL, "p").with_max_jobs(2);
        }
        s = s.with_idle_timeout(Duration::from_secs(5 + i as u64));
        if i == 1 {
            s = s
                .with_max_lifetime(Duration::from_secs(40))
                .with_max_jobs(1);
        }
        out.push(Arc::new(s));
    }
    out
}

/// A random filter: each criterion present or not, values that match some workers and not
/// others.
fn random_filter(rng: &mut Rng) -> WorkerFilter {
    let mut f = WorkerFilter::new();
    if rng.index(3) == 0 {
        for _ in 0..1 + rng.index(3) {
            f = f.state(rng.one_of(&WorkerState::ALL));
        }
    }
    if rng.index(5) == 0 {
        f = f.provider_id(provider(rng.one_of(&["p1", "p2", "p3"])));
    }
    if rng.index(5) == 0 {
        f = f.provider_type(rng.one_of(&provider_types()));
    }
    if rng.index(5) == 0 {
        f = f.accepting_jobs(rng.index(2) == 0);
    }
    if rng.index(5) == 0 {
        f = f.idle_for(rng.millis(4000));
    }
    if rng.index(5) == 0 {
        f = f.unhealthy_for(rng.millis(4000));
    }
    if rng.index(4) == 0 {
        f = f.label(
            rng.one_of(&["pool", "zone", POOL_LABEL]),
            rng.one_of(&["a", "z", "p"]),
        );
    }
    if rng.index(4) == 0 {
        f = f.capability(rng.one_of(&["gpu", "docker", "x"]));
    }
    if rng.index(4) == 0 {
        f = f.fits(ResourceRequirements {
            cpu_cores: rng.one_of(&[0.0, 0.5, 1.0, 2.5, 3.0]),
            memory_bytes: rng.one_of(&[0, 1 << 30, 5 << 30]),
            disk_bytes: rng.one_of(&[0, 1000, 2500]),
            gpu_count: rng.index(3) as u32,
            gpu_type: rng.one_of(&[None, Some("a100".to_owned()), Some("h100".to_owned())]),
        });
    }
    if rng.index(5) == 0 {
        f = f.architecture(rng.one_of(&[
            Architecture::Amd64,
            Architecture::Arm64,
            Architecture::Arm,
        ]));
    }
    f
}

/// An error as text (the message is part of the contract).
fn text<T>(r: Result<T>) -> std::result::Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn ids_of(workers: Vec<Worker>) -> Vec<WorkerId> {
    workers.into_iter().map(|w| w.id).collect()
}

fn id_set(workers: Result<Vec<Worker>>) -> BTreeSet<WorkerId> {
    workers.unwrap().into_iter().map(|w| w.id).collect()
}

/// Every record, by id.
fn all_records(r: &dyn WorkerRegistry) -> Vec<Worker> {
    let mut all = r.find(&WorkerFilter::new()).unwrap();
    all.sort_by_key(|w| w.id);
    all
}

/// The sequences' state beside the registries: the ids registered so far, jobs handed out.
struct Sequence {
    rng: Rng,
    specs: Vec<Arc<WorkerSpec>>,
    ids: Vec<WorkerId>,
    jobs: usize,
}

impl Sequence {
    fn known_id(&mut self) -> Option<WorkerId> {
        (!self.ids.is_empty()).then(|| self.ids[self.rng.index(self.ids.len())])
    }

    fn next_job(&mut self) -> JobId {
        self.jobs += 1;
        job(&format!("j{}", self.jobs % 7))
    }
}

/// Advances the clock a little (now and then a lot), then makes one random write on both
/// registries and compares the answers.
/// Registers a worker of a random provider, provider type and spec under a random id, on
/// both backends alike, and remembers its id.
fn register_random(pair: &Pair, seq: &mut Sequence) -> WorkerId {
    let p = provider(seq.rng.one_of(&["p1", "p2", "p3"]));
    let mut h = WorkerHandle::new(p, seq.rng.one_of(&provider_types()), "r");
    h.worker_id = seq.rng.worker_id();
    let spec = seq.rng.one_of(&seq.specs);
    pair.same("register", |r| {
        text(r.register(h.clone(), spec.clone()).map(|w| w.id))
    });
    seq.ids.push(h.worker_id);
    h.worker_id
}

fn random_write(pair: &Pair, seq: &mut Sequence) {
    pair.clock.advance(seq.rng.millis(700));
    if seq.rng.index(20) == 0 {
        pair.clock
            .advance(Duration::from_secs(seq.rng.index(30) as u64));
    }
    let op = seq.rng.index(14);
    if op <= 1 {
        register_random(pair, seq);
        return;
    }
    if op == 5 || op == 6 {
        let f = random_filter(&mut seq.rng);
        let j = seq.next_job();
        pair.same(&format!("claim({f:?}, {j})"), |r| {
            text(r.claim(&f, j.clone()).map(|w| w.map(|w| w.id)))
        });
        return;
    }
    if op == 12 {
        let ids: Vec<WorkerId> = (0..3)
            .map(|_| match seq.known_id() {
                Some(id) if seq.rng.index(4) != 0 => id,
                _ => seq.rng.worker_id(),
            })
            .collect();
        pair.same("heartbeat_many", |r| {
            r.heartbeat_many(&ids)
                .unwrap()
                .into_iter()
                .map(text)
                .collect::<Vec<_>>()
        });
        return;
    }
    if op == 13 {
        if seq.rng.index(5) == 0 {
            let now = pair.clock.now();
            pair.same("grant_grace", |r| text(r.grant_grace(now)));
        }
        return;
    }
    let Some(id) = seq.known_id() else { return };
    match op {
        2 | 3 => {
            let s = target_state(pair, seq, &id);
            pair.same(&format!("update_state({id}, {s:?})"), |r| {
                text(
                    r.update_state(&id, s)
                        .map(|w| (w.state, w.current_job, w.idle_since, w.jobs_executed)),
                )
            });
        }
        4 => {
            pair.same("heartbeat", |r| text(r.heartbeat(&id)));
        }
        7 => {
            pair.same("release_from_job(any)", |r| {
                text(r.release_from_job(&id, None))
            });
        }
        8 if seq.rng.index(4) == 0 => {
            pair.same("unregister", |r| {
                text(
                    r.unregister(&id, TerminationReason::Requested)
                        .map(|w| w.id),
                )
            });
        }
        9 => {
            let j = seq.next_job();
            pair.same(&format!("assign_to_job({id}, {j})"), |r| {
                text(r.assign_to_job(&id, j.clone()).map(|w| w.id))
            });
        }
        10 => {
            let j = job(&format!("j{}", seq.rng.index(7)));
            pair.same(&format!("release_from_job({id}, {j})"), |r| {
                text(r.release_from_job(&id, Some(&j)))
            });
        }
        11 => {
            let to = target_state(pair, seq, &id);
            let guard = random_guard(pair, seq, &id);
            pair.same(&format!("transition_if({id}, {guard:?}, {to:?})"), |r| {
                text(
                    r.transition_if(&id, &guard, to)
                        .map(|t| t.map(|t| (t.from, t.lost_job, t.worker.state))),
                )
            });
        }
        _ => {}
    }
}

/// A state to move worker `id` to: mostly one its state may move to (so that the workers go
/// through their lives; `Ready` when it may, half the time, so that claims find some), else
/// any (a refusal, or a no-op).
fn target_state(pair: &Pair, seq: &mut Sequence, id: &WorkerId) -> WorkerState {
    let any = seq.rng.one_of(&WorkerState::ALL);
    let Some(worker) = pair.memory.get(id).unwrap() else {
        return any;
    };
    let legal: Vec<WorkerState> = WorkerState::ALL
        .into_iter()
        .filter(|&s| worker.state.can_update_to(s))
        .collect();
    if legal.is_empty() || seq.rng.index(4) == 0 {
        any
    } else if legal.contains(&WorkerState::Ready) && seq.rng.index(2) == 0 {
        WorkerState::Ready
    } else {
        seq.rng.one_of(&legal)
    }
}

/// A guard on some of: the state, no job, the worker's idle_since as it is now (so that it
/// sometimes holds).
fn random_guard(pair: &Pair, seq: &mut Sequence, id: &WorkerId) -> TransitionGuard {
    let mut g = TransitionGuard::new();
    if seq.rng.index(2) == 0 {
        g = g.in_state(seq.rng.one_of(&WorkerState::ALL));
    }
    if seq.rng.index(2) == 0 {
        g = g.without_job();
    }
    if seq.rng.index(3) == 0 {
        pair.same("get", |r| r.get(id).unwrap());
        let record = pair.memory.get(id).unwrap();
        g = g.idle_since(record.and_then(|w| w.idle_since).unwrap_or(0));
    }
    g
}

/// Compares every record and what the read calls answer now.
fn compare_reads(pair: &Pair, seq: &mut Sequence) {
    pair.same_records("records");
    pair.same("count", |r| r.count().unwrap());
    pair.same("stats", |r| r.stats().unwrap());
    for _ in 0..3 {
        let f = random_filter(&mut seq.rng);
        pair.same(&format!("find({f:?})"), |r| id_set(r.find(&f)));
    }
    pair.same("find_for_termination", |r| {
        let found = r.find_for_termination().unwrap();
        found
            .into_iter()
            .map(|(w, why)| (w.id, why))
            .collect::<Vec<_>>()
    });
    pair.same("longest_idle(3)", |r| ids_of(r.longest_idle(3).unwrap()));
    let startup = Duration::from_millis(2500);
    pair.same("find_startup_expired(2.5 s)", |r| {
        id_set(r.find_startup_expired(startup))
    });
    let timeout = Duration::from_millis(1500);
    pair.same("count_unhealthy(1.5 s)", |r| {
        text(r.count_unhealthy(timeout))
    });
    pair.same("find_unhealthy(1.5 s)", |r| {
        id_set(r.find_unhealthy(timeout))
    });
}

/// A subscriber on each registry, made with the same options, and how many events of each
/// have been compared.
struct Events {
    memory: Subscription,
    postgres: Subscription,
    compared: usize,
}

impl Events {
    fn subscribe(pair: &Pair) -> Events {
        Events::subscribe_with(pair, SubscribeOptions::default())
    }

    fn subscribe_with(pair: &Pair, options: SubscribeOptions) -> Events {
        Events {
            memory: pair.memory.subscribe(options).unwrap(),
            postgres: pair.postgres.subscribe(options).unwrap(),
            compared: 0,
        }
    }

    /// Compares everything each subscription holds now, and its `dropped()`: for a subscriber
    /// that reads now and then, whose queue may have overflowed meanwhile. PostgreSQL's reader
    /// moves what committed into the queue at this call (one read, no wait: every step's call
    /// returned after its commit), dropping what its queue cannot hold, as the in-memory
    /// registry dropped it at each publish.
    fn compare_held(&mut self, pair: &Pair) {
        let show = |events: Vec<WorkerLifecycleEvent>, dropped: u64| {
            let events: Vec<_> = events.into_iter().map(|e| (e.seq, e.at, e.kind)).collect();
            format!("{events:?}, dropped {dropped}")
        };
        let memory = show(self.memory.drain(), self.memory.dropped());
        let postgres = show(self.postgres.drain(), self.postgres.dropped());
        if memory != postgres {
            pair.fail(
                &format!("events held after #{}", self.compared),
                &memory,
                &postgres,
            );
        }
        self.compared += 1;
    }

    /// Compares the events of the last step: as many from PostgreSQL as the in-memory registry
    /// published, in order (seq, at, kind). PostgreSQL delivers them through its outbox reader,
    /// a moment after the call returned: `recv` waits for them.
    fn compare_new(&mut self, pair: &Pair) {
        for expected in self.memory.drain() {
            let n = self.compared;
            self.compared += 1;
            let expected = format!("{:?}", (expected.seq, expected.at, expected.kind));
            let got = match self.postgres.recv(Some(Duration::from_secs(5))) {
                Some(e) => format!("{:?}", (e.seq, e.at, e.kind)),
                None => "no event within 5 s".to_owned(),
            };
            if expected != got {
                pair.fail(&format!("event #{n} (seq, at, kind)"), &expected, &got);
            }
        }
    }

    /// At the end: PostgreSQL has no event the in-memory registry did not publish.
    fn compare_rest(&mut self, pair: &Pair) {
        self.compare_new(pair);
        if let Some(e) = self.postgres.recv(Some(Duration::from_millis(200))) {
            let extra = format!("{:?}", (e.seq, e.at, e.kind));
            pair.fail("events after the last", "none", &extra);
        }
    }
}

/// Snapshots both registries, restores each snapshot into a fresh registry of its backend a
/// second later, and compares the restored records and what reads them.
fn compare_restored(pair: &Pair) {
    pair.same("snapshot's workers", |r| {
        let mut workers = r.snapshot().unwrap().workers;
        workers.sort_by_key(|w| w.id);
        workers
    });
    let memory = pair.memory.snapshot().unwrap();
    let postgres = pair.postgres.snapshot().unwrap();
    pair.clock.advance(Duration::from_secs(1));
    let mut restored = Pair::new(pair.run.clone(), pair.clock.clone());
    restored.step = pair.step;
    restored.memory.restore(memory).unwrap();
    restored
        .postgres
        .restore(postgres)
        .unwrap_or_else(|e| panic!("{}: restore on PostgreSQL: {e}", pair.run));
    restored.same_records("records after restore");
    restored.same("stats after restore", |r| r.stats().unwrap());
    restored.same("find_for_termination after restore", |r| {
        let found = r.find_for_termination().unwrap();
        found
            .into_iter()
            .map(|(w, why)| (w.id, why))
            .collect::<Vec<_>>()
    });
    restored.same("longest_idle after restore", |r| {
        ids_of(r.longest_idle(100).unwrap())
    });
}

/// One sequence: `steps` random writes, each followed by the reads; then events and restore.
fn run_sequence(seed: u64, steps: usize) {
    let run = format!("seed {seed:#018x} (replay: HODEI_DIFF_SEEDS={seed:#x})");
    let mut pair = Pair::new(run, Arc::new(ManualClock::new(T0)));
    let mut events = Events::subscribe(&pair);
    // From half-way: heartbeats become events on both backends (on PostgreSQL another write
    // path), and a subscriber that takes them and reads seldom sees its queue overflow.
    let mut lagging: Option<Events> = None;
    let mut seq = Sequence {
        rng: Rng(seed),
        specs: specs(),
        ids: Vec::new(),
        jobs: 0,
    };
    for step in 0..steps {
        pair.step = step;
        if step == steps / 2 {
            let options = SubscribeOptions::default().heartbeats(true).capacity(3);
            lagging = Some(Events::subscribe_with(&pair, options));
        }
        random_write(&pair, &mut seq);
        compare_reads(&pair, &mut seq);
        events.compare_new(&pair);
        if let Some(lagging) = lagging.as_mut().filter(|_| step % 9 == 8) {
            lagging.compare_held(&pair);
        }
    }
    events.compare_rest(&pair);
    if let Some(lagging) = lagging.as_mut() {
        lagging.compare_held(&pair);
    }
    compare_restored(&pair);
}

/// `HODEI_DIFF_SEEDS` (comma-separated, `0x` hex or decimal), else [`SEEDS`].
fn seeds() -> Vec<u64> {
    match std::env::var("HODEI_DIFF_SEEDS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| {
                let s = s.trim();
                match s.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
                    None => s.parse(),
                }
                .unwrap_or_else(|e| panic!("HODEI_DIFF_SEEDS: {s:?}: {e}"))
            })
            .collect(),
        _ => SEEDS.to_vec(),
    }
}

#[test]
fn random_sequences_answer_alike_on_both_backends() {
    let steps = std::env::var("HODEI_DIFF_STEPS")
        .ok()
        .map(|s| s.parse().expect("HODEI_DIFF_STEPS: a number"))
        .unwrap_or(STEPS);
    for seed in seeds() {
        run_sequence(seed, steps);
    }
}

/// Records at the edges of the ranges (timestamps 0 and now, `u64::MAX` jobs, the longest and
/// shortest deadlines, every state) restored into both backends, then read and moved, across
/// decades of the manual clock.
#[test]
fn extreme_records_restore_and_age_alike() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut pair = Pair::new("extreme records".to_owned(), clock.clone());
    let snapshot = extreme_snapshot(&clock);
    pair.same("restore", |r| text(r.restore(snapshot.clone())));
    let ids: Vec<WorkerId> = all_records(&pair.memory)
        .into_iter()
        .map(|w| w.id)
        .collect();
    for step in 0..6 {
        pair.step = step;
        pair.same_records("records");
        pair.same("stats", |r| r.stats().unwrap());
        pair.same("find_for_termination", |r| {
            let found = r.find_for_termination().unwrap();
            found
                .into_iter()
                .map(|(w, why)| (w.id, why))
                .collect::<Vec<_>>()
        });
        let minute = Duration::from_secs(60);
        pair.same("find_unhealthy(60 s)", |r| id_set(r.find_unhealthy(minute)));
        pair.same("find_startup_expired(60 s)", |r| {
            id_set(r.find_startup_expired(minute))
        });
        let ten = Duration::from_secs(10);
        pair.same("find(idle_for 10 s)", |r| {
            id_set(r.find(&WorkerFilter::new().idle_for(ten)))
        });
        pair.same("find(unhealthy_for 10 s)", |r| {
            id_set(r.find(&WorkerFilter::new().unhealthy_for(ten)))
        });
        pair.same("longest_idle(100)", |r| {
            ids_of(r.longest_idle(100).unwrap())
        });
        for id in &ids {
            pair.same(&format!("release_from_job({id})"), |r| {
                text(r.release_from_job(id, None))
            });
            pair.same(&format!("update_state({id}, Ready)"), |r| {
                text(
                    r.update_state(id, WorkerState::Ready)
                        .map(|w| (w.state, w.jobs_executed, w.idle_since)),
                )
            });
        }
        let j = job(&format!("c{step}"));
        pair.same("claim", |r| {
            text(
                r.claim(&WorkerFilter::new(), j.clone())
                    .map(|w| w.map(|w| w.id)),
            )
        });
        clock.advance(Duration::from_secs(
            3600 * 24 * 365 * 10 * (step as u64 + 1),
        ));
    }
}

/// A snapshot (taken from an in-memory registry, then edited) with two workers in every state,
/// one with 1 ms deadlines, one with the longest, and times and counters at their extremes.
fn extreme_snapshot(clock: &Arc<ManualClock>) -> Snapshot {
    let source = InMemoryWorkerRegistry::with_clock(clock.clone());
    let tiny = Arc::new(
        WorkerSpec::new("img")
            .with_idle_timeout(Duration::from_millis(1))
            .with_max_lifetime(Duration::from_millis(1))
            .with_max_jobs(u32::MAX),
    );
    let huge = Arc::new(
        WorkerSpec::new("img")
            .with_idle_timeout(MAX_SPEC_DURATION)
            .with_max_lifetime(MAX_SPEC_DURATION),
    );
    let mut rng = Rng(0x5eed);
    let mut states = Vec::new();
    for state in WorkerState::ALL {
        for spec in [&tiny, &huge] {
            let mut h = handle();
            h.worker_id = rng.worker_id();
            source.register(h.clone(), spec.clone()).unwrap();
            states.push((h.worker_id, state));
        }
    }
    let mut snapshot = source.snapshot().unwrap();
    for (n, w) in snapshot.workers.iter_mut().enumerate() {
        let state = states.iter().find(|(id, _)| *id == w.id).unwrap().1;
        w.state = state;
        let t = [0u64, 1, T0, T0 - 1][n % 4];
        w.created_at = t;
        w.updated_at = t;
        w.state_changed_at = t;
        w.last_heartbeat = [0u64, T0, 5, T0 - 3_600_000][n % 4];
        w.jobs_executed = [0u64, u64::MAX, 1 << 63, (1 << 63) - 1][n % 4];
        w.idle_since = (state == WorkerState::Ready).then_some([0u64, T0, 7, 1][n % 4]);
        if matches!(state, WorkerState::Busy | WorkerState::Draining) {
            w.current_job = Some(job(&format!("j{n}")));
        }
        if state == WorkerState::Ready && w.spec.max_jobs.is_some() {
            w.jobs_executed = 0;
        }
    }
    snapshot
}

/// Refused calls fail alike on both backends, with the same error text.
#[test]
fn refused_calls_fail_alike() {
    let clock = Arc::new(ManualClock::new(T0));
    let pair = Pair::new("refusals".to_owned(), clock);
    let memory = refusals(&pair.memory);
    let postgres = refusals(&pair.postgres);
    for (step, ((what, m), (_, p))) in memory.iter().zip(&postgres).enumerate() {
        assert_eq!(
            m, p,
            "call {step}, {what} (left: in-memory, right: PostgreSQL)"
        );
    }
    assert_eq!(memory.len(), postgres.len());
}

/// Each call of a fixed script that refuses something, with its answer as text.
fn refusals(r: &dyn WorkerRegistry) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let mut note = |what, answer: &dyn Debug| out.push((what, format!("{answer:?}")));
    let id = WorkerId::parse("11111111-1111-4111-8111-111111111111").unwrap();
    let mut h = handle();
    h.worker_id = id;
    let mut nan = WorkerSpec::new("img");
    nan.resources.cpu_cores = f64::NAN;
    let register = |h: WorkerHandle, spec| text(r.register(h, spec).map(|w| w.id));
    note("register(NaN cpu)", &register(h.clone(), Arc::new(nan)));
    let mut colon = h.clone();
    colon.provider_type = ProviderType::Custom("a:b".into());
    note("register(custom type a:b)", &register(colon, spec()));
    let mut nul = h.clone();
    nul.resource_id = "x\0".into();
    note("register(NUL resource id)", &register(nul, spec()));
    note("register", &register(h.clone(), spec()));
    note("register again", &register(h.clone(), spec()));
    let move_to = |s| text(r.update_state(&id, s).map(|w| w.id));
    note("Creating -> Busy", &move_to(WorkerState::Busy));
    note("Creating -> Ready", &move_to(WorkerState::Ready));
    note(
        "release idle",
        &text(r.release_from_job(&id, Some(&job("z")))),
    );
    note(
        "assign",
        &text(r.assign_to_job(&id, job("a")).map(|w| w.id)),
    );
    note(
        "assign again",
        &text(r.assign_to_job(&id, job("a")).map(|w| w.id)),
    );
    note(
        "release other job",
        &text(r.release_from_job(&id, Some(&job("z")))),
    );
    note("Busy -> Ready", &move_to(WorkerState::Ready));
    note("Busy -> Creating", &move_to(WorkerState::Creating));
    let zero = SubscribeOptions {
        capacity: 0,
        ..Default::default()
    };
    note(
        "subscribe(capacity 0)",
        &text(r.subscribe(zero).map(|_| ())),
    );
    let snapshot = r.snapshot().unwrap();
    note("restore into non-empty", &text(r.restore(snapshot.clone())));
    let unregister = || {
        text(
            r.unregister(&id, TerminationReason::Requested)
                .map(|w| w.id),
        )
    };
    note("unregister", &unregister());
    note("unregister again", &unregister());
    note("register retired id", &register(h.clone(), spec()));
    note("heartbeat retired", &text(r.heartbeat(&id)));
    note("release retired", &text(r.release_from_job(&id, None)));
    // A kind `publish` takes (a `JobLost` is the registry's own, refused for its kind first).
    let unhealthy = EventKind::UnhealthyDetected {
        worker_id: id,
        last_heartbeat: 0,
    };
    note("publish about retired", &text(r.publish(unhealthy)));
    let lost = EventKind::JobLost {
        worker_id: id,
        job_id: job("q"),
    };
    note("publish a registry change", &text(r.publish(lost)));
    let guard = TransitionGuard::new();
    note(
        "transition_if retired",
        &text(r.transition_if(&id, &guard, WorkerState::Ready)),
    );
    let mut future = snapshot.clone();
    future.taken_at = T0 + 7_200_000;
    note("restore future snapshot", &text(r.restore(future)));
    let mut unknown = snapshot;
    unknown.format = "x".into();
    note("restore unknown format", &text(r.restore(unknown)));
    note("longest_idle(0)", &text(r.longest_idle(0).map(|v| v.len())));
    out
}

/// A claim with `unhealthy_for` checks at most 64 candidates one by one, in memory and on
/// PostgreSQL, and past them finds its answer by a pass over the heartbeats (DESIGN §4 and §10
/// clarifications): on fleets of a few hundred ready workers where few are silent, most such
/// claims go past the first 64, and both backends must still take the same worker (the most
/// recently idle match), with the rest of the filter random.
#[test]
fn claims_by_unhealthy_for_past_the_first_64_answer_alike() {
    for seed in seeds() {
        let run = format!(
            "seed {seed:#018x}, claims by unhealthy_for (replay: HODEI_DIFF_SEEDS={seed:#x})"
        );
        let mut pair = Pair::new(run, Arc::new(ManualClock::new(T0)));
        let mut seq = Sequence {
            rng: Rng(seed),
            specs: specs(),
            ids: Vec::new(),
            jobs: 0,
        };
        for _ in 0..300 {
            // Several workers become ready in the same millisecond: ties broken by id.
            if seq.rng.index(3) == 0 {
                pair.clock.advance(seq.rng.millis(50));
            }
            let id = register_random(&pair, &mut seq);
            if seq.rng.index(10) != 0 {
                pair.same("ready", |r| {
                    text(r.update_state(&id, WorkerState::Ready).map(|w| w.id))
                });
            }
        }
        let mut held: Vec<(WorkerId, JobId)> = Vec::new();
        let (mut near, mut past, mut jobs) = (0, 0, 0);
        for round in 0..12 {
            pair.step = round;
            // Every worker but a few heartbeats, then some time passes: the few are silent
            // for longer than the rest.
            pair.clock.advance(Duration::from_secs(10));
            let mut beating = Vec::new();
            for i in 0..seq.ids.len() {
                if seq.rng.index(150) != 0 {
                    beating.push(seq.ids[i]);
                }
            }
            pair.same("heartbeat_many", |r| {
                r.heartbeat_many(&beating)
                    .unwrap()
                    .into_iter()
                    .map(text)
                    .collect::<Vec<_>>()
            });
            pair.clock.advance(seq.rng.millis(3000));
            for _ in 0..8 {
                // Half the time no other criterion: more matches than the first 64.
                let rest = if seq.rng.index(2) == 0 {
                    random_filter(&mut seq.rng)
                } else {
                    WorkerFilter::new()
                };
                let mut f = rest.unhealthy_for(seq.rng.one_of(&[
                    Duration::from_secs(5),
                    Duration::from_secs(12),
                    Duration::from_secs(25),
                    Duration::from_secs(5),
                    Duration::ZERO,
                ]));
                // Mostly no states filter: one that leaves Ready out claims nothing.
                if seq.rng.index(2) == 0 {
                    f.states.clear();
                }
                jobs += 1;
                let j = job(&format!("u{jobs}"));
                // The ready workers the rest of the filter matches, in claim order: where the
                // answer stands among them (64 and past: found by the pass).
                let statics = WorkerFilter {
                    unhealthy_for: None,
                    limit: None,
                    ..f.clone()
                };
                let mut order = pair
                    .memory
                    .find(&statics.clone().accepting_jobs(true))
                    .unwrap();
                order.sort_by_key(|w| std::cmp::Reverse((w.idle_since, w.id)));
                let in_memory = text(pair.memory.claim(&f, j.clone()).map(|w| w.map(|w| w.id)));
                let on_pg = text(pair.postgres.claim(&f, j.clone()).map(|w| w.map(|w| w.id)));
                if in_memory != on_pg {
                    let what = format!("claim({f:?}, {j})");
                    pair.fail(&what, &format!("{in_memory:?}"), &format!("{on_pg:?}"));
                }
                if let Ok(Some(id)) = in_memory {
                    match order.iter().position(|w| w.id == id) {
                        Some(at) if at >= 64 => past += 1,
                        Some(_) => near += 1,
                        None => panic!("{}: claimed {id}, not a ready match", pair.run),
                    }
                    held.push((id, j));
                }
            }
            // Some jobs end: those workers are ready again, the most recently idle.
            for _ in 0..held.len() / 2 {
                let (id, j) = held.remove(seq.rng.index(held.len()));
                pair.same("release_from_job", |r| {
                    text(r.release_from_job(&id, Some(&j)))
                });
            }
            pair.same_records("records");
        }
        // The sequence reached both ways of answering.
        assert!(
            near > 0 && past > 0,
            "{}: {near} near, {past} past the first 64",
            pair.run
        );
        eprintln!(
            "{}: {near} claims answered among the first 64, {past} past them",
            pair.run
        );
    }
}
