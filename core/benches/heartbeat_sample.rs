//! The heartbeat-age sample of the in-memory registry (`heartbeat_age_histogram`, the part of
//! a `metrics_text()` scrape that reads the heartbeat columns) on three layouts of the shards'
//! slots (`make bench` only):
//!
//! - a full fleet of 1M: no free slot (the constant stride over each column);
//! - 900k with one free slot in every 64: 914,286 registered, every 64th unregistered in
//!   registration order (each shard's slots are filled in that order, so its free slots are
//!   scattered over its whole slab, about one a bitmap word);
//! - 1M cut to 10k: every 100th kept, spread over slabs that kept their length.
//!
//! Each figure is the median of `CALLS` single calls (a mean over back-to-back calls counts
//! the preemptions of the shared machine), the three fleets measured in turn, round after
//! round (`ROUNDS`), each round's medians printed: a change of the machine's load shows as a
//! change between rounds, not as a difference between fleets. For an A/B, run two builds of
//! this program alternately.
//!
//! With `HODEI_SAMPLE_PROFILE=full|scattered|cut` it builds that one fleet and calls the sample
//! 20,000 times, for a profiler (`perf record`), and prints the mean.
//!
//! Writes `heartbeat_sample.md` to `$HODEI_BENCH_OUT` (default `../target/bench-extra`).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use hodei_workers::*;

const CALLS: usize = 301;
const ROUNDS: usize = 3;

/// A registry of the workers of `registered` kept when `keep(i)` (the others unregistered,
/// after every registration), all Ready.
fn fleet(registered: usize, keep: impl Fn(usize) -> bool) -> InMemoryWorkerRegistry {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
    let provider = ProviderId::new("bench").expect("valid id");
    let spec = Arc::new(WorkerSpec::new("img"));
    let ids: Vec<WorkerId> = (0..registered)
        .map(|i| {
            let h = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("r{i}"));
            let w = registry.register(h, Arc::clone(&spec)).expect("register");
            registry
                .update_state(&w.id, WorkerState::Ready)
                .expect("ready");
            w.id
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        if !keep(i) {
            registry
                .unregister(id, TerminationReason::Requested)
                .expect("unregister");
        }
    }
    // Heartbeat ages spread over 10 s, as a live fleet's.
    clock.advance(std::time::Duration::from_secs(10));
    registry
}

fn median_us(registry: &InMemoryWorkerRegistry) -> (f64, u64) {
    let mut sampled = 0;
    let mut times: Vec<f64> = (0..CALLS)
        .map(|_| {
            let started = Instant::now();
            let ages = black_box(registry.heartbeat_age_histogram())
                .expect("ages")
                .expect("in memory");
            let ns = started.elapsed().as_nanos() as f64;
            sampled = ages.sampled;
            ns
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2] / 1e3, sampled)
}

fn main() {
    if let Ok(which) = std::env::var("HODEI_SAMPLE_PROFILE") {
        let registry = match which.as_str() {
            "full" => fleet(1_000_000, |_| true),
            "scattered" => fleet(914_286, |i| i % 64 != 63),
            _ => fleet(1_000_000, |i| i % 100 == 0),
        };
        eprintln!("built");
        let started = Instant::now();
        for _ in 0..20_000 {
            black_box(registry.heartbeat_age_histogram()).expect("ages");
        }
        eprintln!("{:?}", started.elapsed() / 20_000);
        return;
    }
    let fleets = [
        ("full 1M (no free slot)", fleet(1_000_000, |_| true)),
        (
            "900k, one free slot in every 64",
            fleet(914_286, |i| i % 64 != 63),
        ),
        (
            "1M cut to 10k (every 100th kept)",
            fleet(1_000_000, |i| i % 100 == 0),
        ),
    ];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut md = format!(
        "load at the start: {}\n\n| fleet | workers | sampled | round | median µs |\n| --- | --- | --- | --- | --- |\n",
        load.trim()
    );
    for round in 1..=ROUNDS {
        for (name, registry) in &fleets {
            let (us, sampled) = median_us(registry);
            let workers = registry.count().expect("count");
            let line = format!("| {name} | {workers} | {sampled} | {round} | {us:.1} |\n");
            eprint!("{line}");
            md.push_str(&line);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    md.push_str(&format!("\nload at the end: {}\n", load.trim()));
    let out = std::env::var("HODEI_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("../target/bench-extra"));
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("heartbeat_sample.md"), md);
    }
}
