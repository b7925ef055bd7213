//! Across processes: several OS processes, each with its own `PostgresWorkerRegistry` (its own
//! connection pool), work one registry on one database at the same time: claiming, releasing,
//! heartbeating (one by one and in bulk), registering and unregistering. Afterwards:
//! - no job was ever held by two workers: the job events of the outbox, replayed in `seq`
//!   order, never assign a held job nor release one that its worker did not hold;
//! - `stats()` equals a recount of the records, and the invariants of DESIGN.md §3 hold;
//! - every subscriber (the parent's and one in each child process, all subscribed before the
//!   first operation) saw exactly the same events, in strictly increasing `seq` order;
//! - the retired ids stay bounded while every process forgets the oldest (a limit of
//!   [`RETIRED_KEPT`], pruned by the children as they go) and re-registers ids it retired
//!   (again and again while refused): a remembered one is `AlreadyExists`, a live one is never
//!   forgotten, and a forgotten one comes back (also once more after the run, where the
//!   interleaving cannot decide whether one was forgotten).
//!
//! The children are this very binary run again with `--child` (a test without the libtest
//! harness: `harness = false` in Cargo.toml), so the test needs nothing but itself and the
//! server (`HODEI_PG_URL`).

#[path = "../../core/tests/registry/ledger.rs"]
mod ledger;
#[path = "../../core/tests/support/rng.rs"]
mod rng;
mod support;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;
use ledger::replay_job_ledger;
use rng::Rng;

const CHILDREN: usize = 3;
const OPS_PER_CHILD: usize = 400;
const WORKERS: usize = 12;
const JOBS: usize = 16;
/// Retired ids each process remembers (`with_retired_id_limit`): small, so that the children's
/// prunes forget ids while others retire and re-register them.
const RETIRED_KEPT: usize = 4;
/// Bounds the waits of the protocol: far beyond what the test takes, a hang guard only.
const PATIENCE: Duration = Duration::from_secs(120);
/// The event the parent publishes once every child has subscribed: where the compared streams
/// start.
const START_MARKER: &str = "start-of-test";
/// The event the parent publishes once every child is done: the end of every stream.
const END_MARKER: &str = "end-of-test";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let name = &args[2];
        let index: u64 = args[3].parse().expect("child index");
        child(name, index);
        return;
    }
    // `cargo test -- --list` and filters: this binary is one test.
    if args.iter().any(|a| a == "--list") {
        println!("processes_share_one_fleet: test");
        return;
    }
    print!("test processes_share_one_fleet ... ");
    let started = std::time::Instant::now();
    parent();
    println!("ok ({:.1} s)", started.elapsed().as_secs_f64());
}

fn job(i: usize) -> JobId {
    JobId::new(format!("job-{i}")).unwrap()
}

fn spec() -> Arc<WorkerSpec> {
    Arc::new(WorkerSpec::new("img"))
}

fn handle(tag: &str) -> WorkerHandle {
    WorkerHandle::new(
        ProviderId::new("docker-local").unwrap(),
        ProviderType::Docker,
        tag,
    )
}

fn register_ready(registry: &dyn WorkerRegistry, tag: &str) -> WorkerId {
    let id = registry.register(handle(tag), spec()).expect("register").id;
    registry
        .update_state(&id, WorkerState::Ready)
        .expect("to ready");
    id
}

fn parent() {
    let guard = support::SchemaGuard::new("procs");
    let registry = PostgresWorkerRegistry::connect(&guard.url, &guard.name)
        .expect("connect")
        .with_retired_id_limit(RETIRED_KEPT);
    let events = registry
        .subscribe(SubscribeOptions::default().capacity(1 << 20))
        .expect("subscribe");
    for i in 0..WORKERS {
        register_ready(&registry, &format!("c-{i}"));
    }

    // Start the children; each connects, subscribes and says READY.
    let exe = std::env::current_exe().expect("own path");
    let mut children: Vec<(Child, ChildStdin, BufReader<std::process::ChildStdout>)> = (0
        ..CHILDREN)
        .map(|i| {
            let mut child = Command::new(&exe)
                .args(["--child", &guard.name, &i.to_string()])
                .env("HODEI_PG_URL", &guard.url)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn a child process");
            let stdin = child.stdin.take().unwrap();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            (child, stdin, stdout)
        })
        .collect();
    for (i, (_, _, out)) in children.iter_mut().enumerate() {
        expect_line(out, "READY", i);
    }
    // Everyone subscribed: the start marker, then go, all at once.
    registry
        .publish(marker(START_MARKER))
        .expect("publish the start marker");
    for (_, stdin, _) in children.iter_mut() {
        writeln!(stdin, "GO")
            .and_then(|()| stdin.flush())
            .expect("tell a child to go");
    }
    for (i, (_, _, out)) in children.iter_mut().enumerate() {
        expect_line(out, "DONE", i);
    }
    // Every child is done: the end marker closes every stream.
    registry
        .publish(marker(END_MARKER))
        .expect("publish the end marker");
    let parent_events = read_until_marker(&events);
    let all = &parent_events;

    let mut streams = vec![("parent".to_owned(), from_start_marker(&parent_events))];
    for (i, (mut child, stdin, mut out)) in children.into_iter().enumerate() {
        drop(stdin);
        let mut line = String::new();
        out.read_line(&mut line).expect("a child's events");
        let got: Vec<WorkerLifecycleEvent> =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("child {i}: {e}: {line}"));
        let got = from_start_marker(&got);
        let status = child.wait().expect("wait for a child");
        assert!(status.success(), "child {i} failed: {status}");
        streams.push((format!("child {i}"), got));
    }

    // Every subscriber: strictly increasing seq, and the very same events as the parent.
    for (who, stream) in &streams {
        for pair in stream.windows(2) {
            assert!(
                pair[0].seq < pair[1].seq,
                "{who}: seq {} then {}",
                pair[0].seq,
                pair[1].seq
            );
        }
        let seqs = |s: &[WorkerLifecycleEvent]| s.iter().map(|e| e.seq).collect::<BTreeSet<u64>>();
        let (mine, parents) = (seqs(stream), seqs(&streams[0].1));
        assert!(
            mine == parents,
            "{who} saw {} events, the parent {}; only the parent saw seq {:?}, only {who} {:?}",
            stream.len(),
            streams[0].1.len(),
            parents.difference(&mine).collect::<Vec<_>>(),
            mine.difference(&parents).collect::<Vec<_>>()
        );
        assert!(
            stream == &streams[0].1,
            "{who} saw other events than the parent"
        );
    }

    // No job ever held twice, replayed in seq order; the ledger ends where the records are.
    let held = replay_job_ledger(all);
    let records = registry.find(&WorkerFilter::new()).expect("find");
    let held_now: HashMap<JobId, WorkerId> = records
        .iter()
        .filter_map(|w| w.current_job.clone().map(|j| (j, w.id)))
        .collect();
    assert_eq!(held, held_now, "the outbox's ledger and the records agree");
    assert_eq!(
        registry.stats().expect("stats"),
        WorkerRegistryStats::recount(&records),
        "stats() equals a recount"
    );
    assert_eq!(registry.count().expect("count"), records.len());
    let mut jobs = BTreeSet::new();
    for w in &records {
        match &w.current_job {
            Some(j) => {
                assert!(
                    matches!(w.state, WorkerState::Busy | WorkerState::Draining),
                    "{w:?}"
                );
                assert!(jobs.insert(j.clone()), "{j} held twice");
            }
            None => assert_ne!(w.state, WorkerState::Busy, "{w:?}"),
        }
    }
    // The run did what it is for: hand-outs by several processes, refused double hand-outs.
    let assigned = all
        .iter()
        .filter(|e| matches!(e.kind, EventKind::AssignedToJob { .. }))
        .count();
    assert!(assigned > OPS_PER_CHILD / 4, "only {assigned} hand-outs");
    let registrations = all
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Registered { .. }))
        .count();
    assert!(
        registrations > WORKERS,
        "the children registered workers too"
    );
    // Retired ids: bounded once pruned (at most the limit: a retirement whose transaction
    // failed after taking its number leaves a gap), each of them retired and refused, and no
    // live worker's id ever forgotten.
    let retired_ids: BTreeSet<WorkerId> = all
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Unregistered { worker_id, .. } => Some(worker_id),
            _ => None,
        })
        .collect();
    registry.prune_retired_ids().expect("prune");
    let remembered = registry.snapshot().expect("snapshot").retired_ids;
    assert!(remembered.len() <= RETIRED_KEPT, "{remembered:?}");
    assert_eq!(retired_ids.is_empty(), remembered.is_empty());
    let live: BTreeSet<WorkerId> = records.iter().map(|w| w.id).collect();
    for id in &remembered {
        assert!(retired_ids.contains(id) && !live.contains(id), "{id}");
    }
    for id in remembered.iter().chain(&live) {
        let again = WorkerHandle {
            worker_id: *id,
            ..handle("again")
        };
        assert_eq!(
            registry.register(again, spec()).map(|w| w.id),
            Err(Error::AlreadyExists(*id)),
            "a live or remembered id is never reused"
        );
    }
    // A forgotten id comes back. How many came back during the run depends on how the
    // processes interleaved (none, now and then), so the assertion is made here, where it
    // cannot miss: every retired id that is neither remembered nor live was forgotten.
    let forgotten = retired_ids
        .iter()
        .find(|id| !remembered.contains(id) && !live.contains(id))
        .expect("more ids retired than the limit remembers");
    let back = WorkerHandle {
        worker_id: *forgotten,
        ..handle("back-at-the-end")
    };
    assert_eq!(
        registry.register(back, spec()).map(|w| w.id),
        Ok(*forgotten),
        "a forgotten id comes back"
    );
    let mut seen = BTreeSet::new();
    let returned = all
        .iter()
        .filter(|e| match e.kind {
            EventKind::Registered { worker_id, .. } => !seen.insert(worker_id),
            _ => false,
        })
        .count();
    eprintln!(
        "{} events, {assigned} hand-outs, {} workers left, {} ids retired, {returned} back \
         after being forgotten",
        all.len(),
        records.len(),
        retired_ids.len()
    );
}

fn marker(name: &str) -> EventKind {
    EventKind::ProvisionRequested {
        provider_id: ProviderId::new(name).unwrap(),
    }
}

fn is_marker(event: &WorkerLifecycleEvent, name: &str) -> bool {
    event.kind == marker(name)
}

/// The events from the start marker on (it must be there: the subscriber was subscribed
/// before it was published).
fn from_start_marker(events: &[WorkerLifecycleEvent]) -> Vec<WorkerLifecycleEvent> {
    let start = events
        .iter()
        .position(|e| is_marker(e, START_MARKER))
        .expect("every subscriber sees the start marker");
    events[start..].to_vec()
}

fn expect_line(out: &mut impl BufRead, want: &str, child: usize) {
    let mut line = String::new();
    out.read_line(&mut line).expect("read a child's stdout");
    assert_eq!(
        line.trim(),
        want,
        "child {child} said {line:?}, expected {want}"
    );
}

/// The subscription's events up to and including the end marker.
fn read_until_marker(sub: &Subscription) -> Vec<WorkerLifecycleEvent> {
    let mut got = Vec::new();
    loop {
        let event = sub
            .recv(Some(PATIENCE))
            .expect("the end marker within PATIENCE");
        let end = is_marker(&event, END_MARKER);
        got.push(event);
        if end {
            assert_eq!(sub.dropped(), 0, "a subscriber with room dropped events");
            return got;
        }
    }
}

/// A child process: its own registry (pool) on the parent's registry name.
fn child(name: &str, index: u64) {
    let url = support::url();
    let registry = PostgresWorkerRegistry::connect(&url, name)
        .expect("child connect")
        .with_retired_id_limit(RETIRED_KEPT);
    let events = registry
        .subscribe(SubscribeOptions::default().capacity(1 << 20))
        .expect("child subscribe");
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    println!("READY");
    let mut line = String::new();
    input.read_line(&mut line).expect("wait for GO");
    assert_eq!(line.trim(), "GO");

    let seed = std::process::id() as u64 ^ (index << 32);
    eprintln!("processes child {index}: seed {seed}");
    let mut rng = Rng(seed);
    let mut mine: Vec<(WorkerId, JobId)> = Vec::new();
    // Ids this process unregistered: it tries to register them again.
    let mut retired: Vec<WorkerId> = Vec::new();
    let mut known: Vec<WorkerId> = registry
        .find(&WorkerFilter::new())
        .expect("find")
        .into_iter()
        .map(|w| w.id)
        .collect();
    for n in 0..OPS_PER_CHILD {
        let some_worker = known[rng.index(known.len())];
        match rng.index(100) {
            0..=34 => match registry.claim(&WorkerFilter::new(), job(rng.index(JOBS))) {
                Ok(Some(w)) => {
                    assert_eq!(w.state, WorkerState::Busy);
                    mine.push((
                        w.id,
                        w.current_job
                            .clone()
                            .expect("a claimed worker holds its job"),
                    ));
                }
                Ok(None) | Err(Error::JobAlreadyAssigned { .. }) => {}
                Err(e) => panic!("claim: {e}"),
            },
            35..=64 => {
                if mine.is_empty() {
                    continue;
                }
                let (w, j) = mine.swap_remove(rng.index(mine.len()));
                match registry.release_from_job(&w, Some(&j)) {
                    // NotBusy / NotFound: another process unregistered it meanwhile.
                    Ok(_) | Err(Error::NotBusy { .. } | Error::NotFound(_)) => {}
                    Err(e) => panic!("release: {e}"),
                }
            }
            65..=79 => match registry.heartbeat(&some_worker) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => panic!("heartbeat: {e}"),
            },
            80..=87 => {
                let ids: Vec<WorkerId> = (0..4).map(|_| known[rng.index(known.len())]).collect();
                let answers = registry.heartbeat_many(&ids).expect("heartbeat_many");
                assert_eq!(answers.len(), ids.len());
                for a in answers {
                    assert!(matches!(a, Ok(()) | Err(Error::NotFound(_))), "{a:?}");
                }
            }
            88..=91 => match registry.unregister(&some_worker, TerminationReason::Requested) {
                Ok(_) => retired.push(some_worker),
                Err(Error::NotFound(_)) => {}
                Err(e) => panic!("unregister: {e}"),
            },
            92..=93 => {
                if retired.is_empty() {
                    continue;
                }
                // Back if forgotten (any process's prune), refused while remembered.
                let id = retired.swap_remove(rng.index(retired.len()));
                let again = WorkerHandle {
                    worker_id: id,
                    ..handle(&format!("back-{index}-{n}"))
                };
                match registry.register(again, spec()) {
                    Ok(w) => {
                        // Another process may unregister it meanwhile (its id was known).
                        match registry.update_state(&w.id, WorkerState::Ready) {
                            Ok(_) | Err(Error::NotFound(_)) => {}
                            Err(e) => panic!("ready again: {e}"),
                        }
                        known.push(w.id);
                    }
                    // Still remembered: tried again later, once some prune forgot it.
                    Err(Error::AlreadyExists(refused)) => {
                        assert_eq!(refused, id);
                        retired.push(id);
                    }
                    Err(e) => panic!("register of a retired id: {e}"),
                }
            }
            94 => {
                registry.prune_retired_ids().expect("prune retired ids");
            }
            _ => known.push(register_ready(&registry, &format!("p{index}-{n}"))),
        }
    }
    println!("DONE");
    let got = read_until_marker(&events);
    println!("{}", serde_json::to_string(&got).expect("events to JSON"));
}
