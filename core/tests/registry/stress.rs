//! Multi-threaded stress: several threads claim, assign, release, heartbeat, change states,
//! register and unregister concurrently over a shared pool of job ids. A subscription with a
//! large capacity records every job event; replayed in `seq` order they must never show a job
//! held by two workers, nor a worker holding two jobs. At the end the invariants hold and
//! `stats()` equals a recount.
//!
//! The run is seeded: set `HODEI_STRESS_SEED` to replay one (thread interleavings still vary).

#[path = "ledger.rs"]
mod ledger;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::common::*;
use crate::rng::Rng;
use hodei_workers::*;
use ledger::replay_job_ledger;
use parking_lot::Mutex;

const THREADS: usize = 6;
const ITERATIONS: usize = 6_000;

const JOB_POOL: usize = 24;
/// Far more than the test can take: a hang here is a deadlock.
const WATCHDOG: Duration = Duration::from_secs(120);

fn seed() -> u64 {
    let seed = std::env::var("HODEI_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!(
        "registry_stress on {}: seed {seed} (replay with HODEI_STRESS_SEED={seed})",
        crate::backend::NAME
    );
    seed
}

/// Runs `f` on a thread and fails the test if it does not finish within [`WATCHDOG`].
fn with_watchdog(name: &str, f: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let handle = std::thread::spawn(move || {
        f();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(WATCHDOG) {
        Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
            panic!("{name}: no progress in {WATCHDOG:?}: deadlock suspected")
        }
    }
}

/// Checks that each worker's events, in `seq` order, start with `Registered` and that nothing
/// follows its `Unregistered` (no id is registered twice here).
fn check_worker_event_order(events: &[WorkerLifecycleEvent]) {
    let mut alive: HashMap<WorkerId, bool> = HashMap::new();
    for e in events {
        let Some(id) = e.kind.worker_id() else {
            continue;
        };
        match e.kind {
            EventKind::Registered { .. } => {
                assert!(
                    alive.insert(id, true).is_none(),
                    "seq {}: {id} registered twice",
                    e.seq
                )
            }
            EventKind::Unregistered { .. } => assert_eq!(
                alive.insert(id, false),
                Some(true),
                "seq {}: {id} unregistered while not registered",
                e.seq
            ),
            _ => assert_eq!(
                alive.get(&id),
                Some(&true),
                "seq {}: {} of {id} outside its registration",
                e.seq,
                e.kind.name()
            ),
        }
    }
}

#[derive(Default, Debug)]
struct Tally {
    claimed: AtomicUsize,
    assigned: AtomicUsize,
    released: AtomicUsize,
    stale_releases_refused: AtomicUsize,
    double_assign_refused: AtomicUsize,
    lost: AtomicUsize,
    registered: AtomicUsize,
    heartbeats: AtomicUsize,
    unregistered: AtomicUsize,
}

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn concurrent_operations_never_give_a_job_to_two_workers() {
    let seed = seed();
    let (clock, registry) = registry();
    let registry = Arc::new(registry);
    let iterations = scaled(ITERATIONS, 200);
    let events = registry
        .subscribe(
            SubscribeOptions::default()
                .capacity(1 << 22)
                .heartbeats(true),
        )
        .unwrap();
    let jobs: Arc<Vec<JobId>> = Arc::new((0..JOB_POOL).map(|i| job(&format!("job-{i}"))).collect());
    let workers: Arc<Mutex<Vec<WorkerId>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..12 {
        workers.lock().push(ready(
            &*registry,
            Arc::new(WorkerSpec::new("img").with_max_jobs(50)),
        ));
    }
    let tally = Arc::new(Tally::default());
    let start = Arc::new(Barrier::new(THREADS));

    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let registry = Arc::clone(&registry);
            let jobs = Arc::clone(&jobs);
            let workers = Arc::clone(&workers);
            let tally = Arc::clone(&tally);
            let start = Arc::clone(&start);
            let clock = Arc::clone(&clock);
            move || {
                let mut rng = Rng(seed ^ (t as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
                let labels = ["a", "b"];
                // What this thread handed out and may release (others may interfere).
                let mut mine: Vec<(WorkerId, JobId)> = Vec::new();
                start.wait();
                for _ in 0..iterations {
                    let job = jobs[rng.index(jobs.len())].clone();
                    let some_worker = {
                        let w = workers.lock();
                        w[rng.index(w.len())]
                    };
                    match rng.index(100) {
                        0..=24 => {
                            let filter = match rng.index(3) {
                                0 => WorkerFilter::new(),
                                1 => WorkerFilter::new().label("pool", labels[rng.index(2)]),
                                _ => WorkerFilter::new().idle_for(Duration::from_millis(2)),
                            };
                            match registry.claim(&filter, job.clone()) {
                                Ok(Some(w)) => {
                                    assert_eq!(w.state, WorkerState::Busy);
                                    mine.push((w.id, job));
                                    bump(&tally.claimed)
                                }
                                Ok(None) => {}
                                Err(Error::JobAlreadyAssigned { .. }) => {
                                    bump(&tally.double_assign_refused)
                                }
                                Err(e) => panic!("claim: {e}"),
                            }
                        }
                        25..=34 => match registry.assign_to_job(&some_worker, job.clone()) {
                            Ok(_) => {
                                mine.push((some_worker, job));
                                bump(&tally.assigned)
                            }
                            Err(Error::JobAlreadyAssigned { .. }) => {
                                bump(&tally.double_assign_refused)
                            }
                            Err(Error::NotAvailable { .. } | Error::NotFound(_)) => {}
                            Err(e) => panic!("assign: {e}"),
                        },
                        35..=59 => {
                            // Mostly the release of a job this thread handed out; else a
                            // late release of some job by some worker.
                            let (worker, expected) = if !mine.is_empty() && rng.index(5) > 0 {
                                let (w, j) = mine.swap_remove(rng.index(mine.len()));
                                (w, Some(j))
                            } else {
                                (some_worker, Some(job))
                            };
                            let expected = if rng.index(8) == 0 { None } else { expected };
                            match registry.release_from_job(&worker, expected.as_ref()) {
                                Ok(released) => {
                                    if let Some(e) = &expected {
                                        assert_eq!(&released, e);
                                    }
                                    bump(&tally.released)
                                }
                                Err(Error::NotBusy { .. }) => bump(&tally.stale_releases_refused),
                                Err(Error::NotFound(_)) => {}
                                Err(e) => panic!("release: {e}"),
                            }
                        }
                        60..=74 => match registry.heartbeat(&some_worker) {
                            Ok(()) => bump(&tally.heartbeats),
                            Err(Error::NotFound(_)) => {}
                            Err(e) => panic!("heartbeat: {e}"),
                        },
                        75..=84 => {
                            let to = WorkerState::ALL[rng.index(WorkerState::ALL.len())];
                            let before = registry.get(&some_worker).unwrap();
                            match registry.update_state(&some_worker, to) {
                                Ok(w) => {
                                    if before.is_some_and(|b| b.current_job.is_some())
                                        && w.current_job.is_none()
                                    {
                                        bump(&tally.lost)
                                    }
                                }
                                Err(Error::InvalidTransition { .. } | Error::NotFound(_)) => {}
                                Err(e) => panic!("update_state: {e}"),
                            }
                        }
                        85..=87 => {
                            let spec = Arc::new(
                                WorkerSpec::new("img")
                                    .with_label("pool", labels[rng.index(2)])
                                    .with_max_jobs(50),
                            );
                            let id = ready(&*registry, spec);
                            workers.lock().push(id);
                            bump(&tally.registered);
                        }
                        88..=93 => {
                            match registry.unregister(&some_worker, TerminationReason::Requested) {
                                Ok(_) => bump(&tally.unregistered),
                                Err(Error::NotFound(_)) => {}
                                Err(e) => panic!("unregister: {e}"),
                            }
                        }
                        94..=95 => {
                            clock.advance(Duration::from_millis(1));
                        }
                        96 => {
                            for w in registry.find_unhealthy(Duration::from_millis(5)).unwrap() {
                                assert!(w.state.heartbeat_monitored());
                            }
                        }
                        97 => {
                            for (w, _) in registry.find_for_termination().unwrap() {
                                assert!(w.current_job.is_none() || w.state == WorkerState::Busy);
                            }
                        }
                        98 => {
                            // Takes every shard lock at once: a deadlock would show here.
                            let snapshot = registry.snapshot().unwrap();
                            snapshot.validate().expect("a consistent snapshot");
                        }
                        _ => {
                            let stats = registry.stats().unwrap();
                            assert!(stats.by_state.busy <= JOB_POOL, "{stats:?}");
                        }
                    }
                }
            }
        })
        .collect();

    let handles: Vec<_> = threads.into_iter().map(std::thread::spawn).collect();
    let waiter = std::thread::spawn(move || {
        for h in handles {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    with_watchdog("stress threads", move || {
        if let Err(panic) = waiter.join() {
            std::panic::resume_unwind(panic);
        }
    });

    // Every event arrived, in seq order and without a gap.
    let all_events = events.drain();
    assert_eq!(events.dropped(), 0);
    for pair in all_events.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    let held = replay_job_ledger(&all_events);
    check_worker_event_order(&all_events);
    let heartbeat_events = all_events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::HeartbeatReceived { .. }))
        .count();
    assert_eq!(heartbeat_events, tally.heartbeats.load(Ordering::Relaxed));

    // The ledger agrees with the registry, and the invariants hold.
    let all = assert_invariants(&*registry);
    let held_now: HashMap<JobId, WorkerId> = all
        .iter()
        .filter_map(|w| w.current_job.clone().map(|j| (j, w.id)))
        .collect();
    assert_eq!(held, held_now);
    assert_eq!(
        registry.stats().unwrap(),
        WorkerRegistryStats::recount(&all)
    );

    eprintln!("{tally:?}");
    // The run did what it is for: many successful hand-outs and refused double hand-outs.
    assert!(
        tally.claimed.load(Ordering::Relaxed) > scaled(100, 10),
        "{tally:?}"
    );
    assert!(
        tally.released.load(Ordering::Relaxed) > scaled(100, 10),
        "{tally:?}"
    );
    assert!(
        tally.double_assign_refused.load(Ordering::Relaxed) > 0,
        "{tally:?}"
    );
    assert!(
        tally.stale_releases_refused.load(Ordering::Relaxed) > 0,
        "{tally:?}"
    );
}

#[test]
fn racing_claims_for_one_job_have_exactly_one_winner() {
    let (_, registry) = registry();
    let registry = Arc::new(registry);
    for _ in 0..THREADS * 2 {
        ready(&*registry, spec());
    }
    let rounds = scaled(300, 50);
    let barrier = Arc::new(Barrier::new(THREADS));
    let winners = Arc::new(Mutex::new(vec![0usize; rounds]));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let registry = Arc::clone(&registry);
            let barrier = Arc::clone(&barrier);
            let winners = Arc::clone(&winners);
            std::thread::spawn(move || {
                for round in 0..rounds {
                    let job = job(&format!("round-{round}"));
                    barrier.wait();
                    match registry.claim(&WorkerFilter::new(), job.clone()) {
                        Ok(Some(w)) => {
                            winners.lock()[round] += 1;
                            barrier.wait();
                            // Everyone has tried; give the worker back for the next round.
                            assert_eq!(registry.release_from_job(&w.id, Some(&job)), Ok(job));
                        }
                        Err(Error::JobAlreadyAssigned { .. }) => {
                            barrier.wait();
                        }
                        other => panic!("round {round}: {other:?}"),
                    }
                    barrier.wait();
                }
            })
        })
        .collect();
    let joiner = move || {
        for h in handles {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
    };
    with_watchdog("racing claims", joiner);
    assert!(
        winners.lock().iter().all(|&n| n == 1),
        "{:?}",
        winners.lock()
    );
    let all = assert_invariants(&*registry);
    assert!(all.iter().all(|w| w.state == WorkerState::Ready));
    assert_eq!(
        all.iter().map(|w| w.jobs_executed).sum::<u64>(),
        rounds as u64
    );
}

#[test]
fn racing_heartbeats_and_health_checks_lose_no_worker() {
    // Heartbeats (shared lock + atomic) race the lazy heartbeat index, which pops and
    // re-files entries: no monitored worker may fall out of the index, so after the race a
    // long silence finds every one of them.
    let (clock, registry) = registry();
    let registry = Arc::new(registry);
    let rounds = scaled(2_000, 200);
    let ids: Vec<WorkerId> = (0..64).map(|_| ready(&*registry, spec())).collect();
    let ids = Arc::new(ids);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let registry = Arc::clone(&registry);
            let ids = Arc::clone(&ids);
            let clock = Arc::clone(&clock);
            std::thread::spawn(move || {
                for i in 0..rounds {
                    match t {
                        0 => {
                            registry.find_unhealthy(Duration::from_millis(3)).unwrap();
                        }
                        1 => {
                            clock.advance(Duration::from_millis(1));
                            registry.heartbeat(&ids[i % ids.len()]).unwrap();
                        }
                        _ => registry.heartbeat(&ids[(i * 7 + t) % ids.len()]).unwrap(),
                    }
                }
            })
        })
        .collect();
    with_watchdog("heartbeat race", move || {
        for h in handles {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    let silence = Duration::from_secs(10);
    clock.advance(silence + Duration::from_millis(1));
    let unhealthy = registry.find_unhealthy(silence).unwrap();
    assert_eq!(id_set(&unhealthy), ids.iter().copied().collect());
    registry.heartbeat(&ids[0]).unwrap();
    assert_eq!(
        registry.find_unhealthy(silence).unwrap().len(),
        ids.len() - 1
    );
    assert_invariants(&*registry);
}
