//! Store-side fencing across OS processes: several processes compete for one registry's lease
//! (a short ttl on the database's clock), each pausing now and then past it, and each keeps
//! writing through the fenced view of the last term it held — also after losing it, as a
//! leader that does not know yet would. Every write registers a worker whose provider id names
//! the term it was made under. Afterwards:
//! - in the event stream (`seq` order), the terms of the registrations never go down: no
//!   write of a term committed after a write of a later term (a takeover waits for the fenced
//!   writes in flight, and every later write sees the new term);
//! - each process's successful writes are exactly its registrations in the store, none lost,
//!   none extra;
//! - the run was a real contest: several terms, and refused writes.
//!
//! The children are this very binary run again with `--child` (no libtest harness:
//! `harness = false` in Cargo.toml).

#[path = "../../core/tests/support/rng.rs"]
mod rng;
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;
use rng::Rng;

const CHILDREN: usize = 3;
/// How long each child competes.
const RUN: Duration = Duration::from_millis(5000);
/// The lease's ttl: short, so that the children's pauses lose it (its renewals time out at a
/// third of it: a loaded machine may fail some, which the children take as no answer).
const TTL: Duration = Duration::from_millis(120);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], args[3].parse().expect("child index"));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("fenced_writes_across_processes_follow_the_terms: test");
        return;
    }
    print!("test fenced_writes_across_processes_follow_the_terms ... ");
    let started = Instant::now();
    let summary = parent();
    println!("ok ({:.1} s; {summary})", started.elapsed().as_secs_f64());
}

/// The provider id of a write made under `term` by child `index`.
fn tag(term: Term, index: usize) -> String {
    format!("t{term}-c{index}")
}

fn untag(provider: &str) -> (Term, usize) {
    let (term, child) = provider
        .strip_prefix('t')
        .and_then(|p| p.split_once("-c"))
        .unwrap_or_else(|| panic!("not a test provider id: {provider}"));
    (term.parse().unwrap(), child.parse().unwrap())
}

/// What a child reports: `(terms held, writes that succeeded, writes refused)`.
type Outcome = (u64, u64, u64);

/// Runs the contest and checks it; says what happened.
fn parent() -> String {
    let guard = support::SchemaGuard::new("fenceprocs");
    // Creates the schema before the children race to.
    drop(PostgresWorkerRegistry::connect(&guard.url, &guard.name).expect("connect"));
    let exe = std::env::current_exe().expect("own path");
    let children: Vec<_> = (0..CHILDREN)
        .map(|i| {
            Command::new(&exe)
                .args(["--child", &guard.name, &i.to_string()])
                .env("HODEI_PG_URL", &guard.url)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn a child process")
        })
        .collect();
    let outcomes: Vec<Outcome> = children
        .into_iter()
        .map(|mut c| {
            let mut line = String::new();
            BufReader::new(c.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(c.wait().unwrap().success(), "a child failed");
            let n: Vec<u64> = line
                .split_whitespace()
                .map(|t| t.parse().unwrap())
                .collect();
            (n[0], n[1], n[2])
        })
        .collect();

    // The registrations in the order of their events.
    let mut admin = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let rows = admin
        .query(
            &format!("SELECT kind FROM \"{}\".outbox ORDER BY seq", guard.name),
            &[],
        )
        .unwrap();
    let mut last_term = 0;
    let mut per_child: BTreeMap<usize, u64> = BTreeMap::new();
    let mut terms = std::collections::BTreeSet::new();
    for row in rows {
        let kind: String = row.get(0);
        let event: EventKind = serde_json::from_str(&kind).expect("an event");
        let EventKind::Registered { provider_id, .. } = event else {
            panic!("only registrations were written, got {event:?}");
        };
        let (term, child) = untag(provider_id.as_str());
        assert!(
            term >= last_term,
            "a write of term {term} committed after a write of term {last_term}"
        );
        last_term = term;
        terms.insert(term);
        *per_child.entry(child).or_default() += 1;
    }
    for (i, (_, written, _)) in outcomes.iter().enumerate() {
        assert_eq!(
            per_child.get(&i).copied().unwrap_or(0),
            *written,
            "child {i}'s successful writes are its registrations in the store"
        );
    }
    let refused: u64 = outcomes.iter().map(|o| o.2).sum();
    let held: u64 = outcomes.iter().map(|o| o.0).sum();
    assert!(
        held >= 3 && terms.len() >= 3 && refused > 0,
        "not a contest: {held} terms held, {} written under, {refused} writes refused",
        terms.len()
    );
    format!(
        "{} terms, {} writes committed, {refused} refused",
        terms.len(),
        per_child.values().sum::<u64>()
    )
}

fn child(name: &str, index: usize) {
    let registry = PostgresWorkerRegistry::connect(&support::url(), name).expect("child connect");
    let lease = registry
        .leadership(&format!("child-{index}"), TTL)
        .expect("lease");
    let spec = Arc::new(WorkerSpec::new("img"));
    // The term the last renewal said it holds, and the view of the last term it held.
    let mut held: Option<Term> = None;
    let mut view: Option<(Term, Arc<dyn WorkerRegistry>)> = None;
    let (mut terms, mut written, mut refused) = (0u64, 0u64, 0u64);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1));
    let end = Instant::now() + RUN;
    while Instant::now() < end {
        match lease.acquire_or_renew(held) {
            Ok(LeaseStatus::Held(info)) => {
                if held != Some(info.term) {
                    terms += 1;
                    let v = registry.fenced(&lease, info.term).expect("own store");
                    view = Some((info.term, v));
                }
                held = Some(info.term);
            }
            // Lost or never held: it keeps the view of its last term, as a leader that does not
            // know yet would, and writes through it.
            Ok(LeaseStatus::Follower(_)) => held = None,
            // No answer in time (a loaded machine): nothing known changed.
            Err(Error::Backend(_)) => {}
            Err(e) => panic!("lease: {e}"),
        }
        if let Some((term, v)) = &view {
            for _ in 0..4 {
                let provider = ProviderId::new(tag(*term, index)).unwrap();
                let handle = WorkerHandle::new(provider, ProviderType::Docker, "c");
                match v.register(handle, spec.clone()) {
                    Ok(_) => written += 1,
                    Err(Error::NotLeader(_)) => refused += 1,
                    Err(e) => panic!("register: {e}"),
                }
            }
        }
        // Now and then a pause past the ttl (deterministic per child).
        if rng.below(6) == 0 {
            std::thread::sleep(TTL + Duration::from_millis(rng.below(40)));
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(5)));
        }
    }
    println!("{terms} {written} {refused}");
}
