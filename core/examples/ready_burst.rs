//! Times making a fleet `Ready` while the clock stands still (every worker idle since the same
//! millisecond, so the ready set orders them by id alone), claiming them all, then draining
//! them and taking them back to `Ready` in another order than they registered (each re-enters
//! its class's lifetime queue at its old place, far from the queue's back).
//!
//! `cargo run --release -p hodei-workers --example ready_burst -- 100000`

use std::sync::Arc;
use std::time::Instant;

use hodei_workers::{
    InMemoryWorkerRegistry, JobId, ManualClock, ProviderId, ProviderType, WorkerFilter,
    WorkerHandle, WorkerRegistry, WorkerSpec, WorkerState,
};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let reg = InMemoryWorkerRegistry::with_clock(Arc::new(ManualClock::new(1_700_000_000_000)));
    let spec = Arc::new(WorkerSpec::new("img"));
    let provider = ProviderId::new("p").expect("provider id");
    let ids: Vec<_> = (0..n)
        .map(|i| {
            let h = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("c-{i}"));
            let w = reg.register(h, spec.clone()).expect("register");
            reg.update_state(&w.id, WorkerState::Connecting)
                .expect("connecting");
            w.id
        })
        .collect();
    let started = Instant::now();
    for id in &ids {
        reg.update_state(id, WorkerState::Ready).expect("ready");
    }
    let ready = started.elapsed();
    let started = Instant::now();
    for j in 0..n {
        let job = JobId::new(format!("j{j}")).expect("job id");
        reg.claim(&WorkerFilter::new(), job)
            .expect("claim")
            .expect("a ready worker");
    }
    let claimed = started.elapsed();
    let mut by_id = ids.clone();
    by_id.sort();
    for id in &by_id {
        reg.update_state(id, WorkerState::Draining)
            .expect("draining");
    }
    let started = Instant::now();
    for id in &by_id {
        reg.release_from_job(id, None).expect("release");
        reg.update_state(id, WorkerState::Ready)
            .expect("taken back");
    }
    let taken_back = started.elapsed();
    let per = |d: std::time::Duration| d.as_nanos() as f64 / n as f64;
    println!(
        "{n} workers made ready at one instant: {:.0} ns each; claimed: {:.0} ns each; \
         drained and taken back: {:.0} ns each",
        per(ready),
        per(claimed),
        per(taken_back)
    );
}
