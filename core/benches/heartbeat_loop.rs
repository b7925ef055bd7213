//! The Rust twin of `bench/c/heartbeat.c`: the same fleet, the same visiting order, the same
//! best-of-5 loop of 2,000,000 heartbeats, on the same 3 fleets built one after the other
//! (the best of them counts: at 1M a fleet's time depends on where its tables landed and when
//! it ran; see the C program), so that the C ABI's overhead is the difference of the two. Writes
//! `$HODEI_BENCH_OUT/rust_loop.json`. Sizes from `HODEI_BENCH_SIZES`; `HODEI_HB_OPS`,
//! `HODEI_HB_REPS` and `HODEI_HB_FLEETS` override the loop's length, count and the number of
//! fleets, as in the C program.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use common::{handles, shared_spec, size_label, sizes, T0};
use hodei_workers::{
    InMemoryWorkerRegistry, ManualClock, WorkerId, WorkerRegistry, WorkerSpec, WorkerState,
};

const STRIDE: u64 = common::STRIDE as u64;
const OPS: u64 = 2_000_000;
const REPS: u64 = 5;
const FLEETS: u64 = 3;

/// The call as C makes it: through a function the loop cannot inline (the registry behind a
/// reference, the id by value), so that the loop's iterations overlap no more than C's do.
#[inline(never)]
fn call(registry: &InMemoryWorkerRegistry, id: &WorkerId) -> hodei_workers::Result<()> {
    WorkerRegistry::heartbeat(registry, std::hint::black_box(id))
}

/// A positive count from the environment variable `name`, or `fallback` (as the C program).
fn env_count(name: &str, fallback: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(fallback)
}

/// The best ns per heartbeat over `HODEI_HB_FLEETS` fleets of `n`, and each fleet's.
fn best_of_fleets(n: usize) -> (f64, Vec<f64>) {
    let each: Vec<f64> = (0..env_count("HODEI_HB_FLEETS", FLEETS))
        .map(|_| run(n))
        .collect();
    (each.iter().copied().fold(f64::INFINITY, f64::min), each)
}

/// Best ns per heartbeat over the loops on one new fleet of `n`.
fn run(n: usize) -> f64 {
    let (ops, reps) = (
        env_count("HODEI_HB_OPS", OPS),
        env_count("HODEI_HB_REPS", REPS),
    );
    let clock = Arc::new(ManualClock::new(T0));
    let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
    // A spec `Arc` per worker, as a caller that builds its specs one by one would: the
    // registry interns equal specs, so the fleet shares one either way (as the C fleet,
    // whose `hw_worker_spec` is one `Arc`).
    let spec = shared_spec();
    let ids: Vec<_> = handles(n)
        .into_iter()
        .map(|handle| {
            let id = handle.worker_id;
            let copy = Arc::new(WorkerSpec::clone(&spec));
            registry.register(handle, copy).expect("register");
            registry
                .update_state(&id, WorkerState::Ready)
                .expect("ready");
            id
        })
        .collect();
    let mut best = f64::INFINITY;
    for rep in 0..reps {
        let k0 = rep * ops;
        let started = Instant::now();
        for k in 0..ops {
            let i = ((k0 + k) * STRIDE % n as u64) as usize;
            if call(&registry, &ids[i]).is_err() {
                panic!("heartbeat failed");
            }
        }
        best = best.min(started.elapsed().as_nanos() as f64 / ops as f64);
    }
    best
}

fn main() {
    // Under `cargo test --benches` (no `--bench`): one small run, nothing written.
    if !std::env::args().any(|a| a == "--bench") {
        println!("Rust heartbeat loop, 1k workers: {:.1} ns", run(1_000));
        return;
    }
    let rows: Vec<String> = sizes()
        .into_iter()
        .map(|n| {
            let (ns, each) = best_of_fleets(n);
            let each: Vec<String> = each.iter().map(|v| format!("{v:.1}")).collect();
            println!(
                "Rust heartbeat loop, {} workers: {ns:.1} ns (each fleet: {})",
                size_label(n),
                each.join(" ")
            );
            format!("{{\"size\":\"{}\",\"ns\":{ns:.2}}}", size_label(n))
        })
        .collect();
    let dir = std::env::var_os("HODEI_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../target/bench-extra"));
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            dir.join("rust_loop.json"),
            format!("[{}]\n", rows.join(",")),
        )
    });
    if let Err(e) = written {
        eprintln!("could not write {}: {e}", dir.display());
    }
}
