//! A loop of register + unregister over a ready fleet, for `perf record` (the
//! `register_unregister` row of core/benches/registry.rs without criterion around it).
//!
//! `cargo build --release -p hodei-workers --example pair_profile`, then
//! `perf record -g target/release/examples/pair_profile 10000 5` (fleet size, seconds;
//! an optional third argument sets the retired-id limit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hodei_workers::{
    Clock, InMemoryWorkerRegistry, ManualClock, ProviderId, ProviderType, TerminationReason,
    WorkerHandle, WorkerRegistry, WorkerSpec, WorkerState,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut reg = InMemoryWorkerRegistry::with_clock(clock.clone());
    if let Some(limit) = args.get(3).and_then(|s| s.parse().ok()) {
        reg = reg.with_retired_id_limit(limit);
    }
    let spec = Arc::new(
        WorkerSpec::new("ghcr.io/acme/ci-runner:2024.11")
            .with_label("pool", "ci")
            .with_idle_timeout(Duration::from_secs(30 * 24 * 3600))
            .with_max_lifetime(Duration::from_secs(365 * 24 * 3600)),
    );
    let provider = ProviderId::new("docker-local").unwrap();
    let t0 = clock.now();
    for i in 0..n {
        // Spread over 60 s of simulated time, as the bench's fleet.
        clock.set(t0 + 60_000 * i as u64 / n as u64);
        let h = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("c-{i:08x}"));
        let w = reg.register(h, spec.clone()).unwrap();
        reg.update_state(&w.id, WorkerState::Ready).unwrap();
    }
    eprintln!("fleet ready");
    let started = Instant::now();
    let mut timed = Duration::ZERO;
    let mut pairs = 0u64;
    let mut out = Vec::with_capacity(1024);
    while started.elapsed() < Duration::from_secs(secs) {
        let handles: Vec<WorkerHandle> = (0..1024)
            .map(|_| WorkerHandle::new(provider.clone(), ProviderType::Docker, "c-bench"))
            .collect();
        let t = Instant::now();
        for h in handles {
            let w = reg.register(h, spec.clone()).unwrap();
            out.push(reg.unregister(&w.id, TerminationReason::Requested).unwrap());
        }
        timed += t.elapsed();
        pairs += 1024;
        out.clear();
    }
    eprintln!(
        "{n} workers: {pairs} pairs, {:.1} ns a pair",
        timed.as_nanos() as f64 / pairs as f64
    );
}
