//! Metrics on vs off, in one run (`make bench` only; fleets from `HODEI_BENCH_SIZES`, default
//! `10k,1M`): heartbeat, claim+release and a live-fleet tick on one fleet, with the manager's
//! metrics off (duration timing off, never scraped) and
//! on (timing on, and scraped with `metrics_text()` every `SCRAPE_EVERY` heartbeats or claims
//! and every `TICKS_PER_SCRAPE` ticks, outside the timed region: a scrape is served apart, but
//! the shard locks and counters it read are then in the state the next operations meet).
//! Target: on/off <= 1.05 for each. The scrape's own cost is a row of its own.
//!
//! On and off alternate in the order on, off, off, on — batches of 1,000 heartbeats or 250
//! claims over 401 rounds, ticks one by one — and the medians of the batches (of the single
//! ticks) are compared: a change of the shared machine's load hits both alike, and short
//! batches mostly run between two preemptions. (Criterion's one-after-the-other groups gave
//! ratios of 0.8 and 1.5 for a heartbeat that runs no metrics code at all; 41 rounds of
//! 20,000-heartbeat batches still gave 1.27 under load 13, 60-tick batches swung by ±8 %.)
//!
//! Writes `metrics_overhead.md` to `$HODEI_BENCH_OUT` (default `../target/bench-extra`).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hodei_workers::*;

/// Heartbeats or claims per scrape (Prometheus' default 15 s for a 10k fleet heartbeating
/// every 10 s is 15,000).
const SCRAPE_EVERY: u64 = 10_000;
/// Ticks per scrape (a tick a second, a scrape every 15 s).
const TICKS_PER_SCRAPE: u64 = 15;

fn sizes() -> Vec<(usize, String)> {
    let text = std::env::var("HODEI_BENCH_SIZES").unwrap_or_else(|_| "10k,1M".to_owned());
    text.split(',')
        .filter_map(|s| {
            let s = s.trim();
            let (digits, mult) = if let Some(d) = s.strip_suffix(['M', 'm']) {
                (d, 1_000_000)
            } else if let Some(d) = s.strip_suffix(['k', 'K']) {
                (d, 1_000)
            } else {
                (s, 1)
            };
            digits
                .parse::<usize>()
                .ok()
                .map(|v| (v * mult, s.to_owned()))
        })
        .filter(|(n, _)| *n > 0)
        .collect()
}

struct Fleet {
    clock: Arc<ManualClock>,
    registry: Arc<InMemoryWorkerRegistry>,
    manager: WorkerLifecycleManager,
    ids: Vec<WorkerId>,
}

impl Fleet {
    fn build(n: usize) -> Fleet {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let registry = Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
        let provider = ProviderId::new("bench").expect("valid id");
        // Nothing retires during the run (under 2 simulated hours; idle and lifetime limits are
        // days away), so every tick, off or on, meets the same live fleet.
        let spec = Arc::new(
            WorkerSpec::new("img")
                .with_idle_timeout(Duration::from_secs(86_400))
                .with_max_lifetime(Duration::from_secs(7 * 86_400)),
        );
        let ids = (0..n)
            .map(|i| {
                let h = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("r{i}"));
                let w = registry.register(h, Arc::clone(&spec)).expect("register");
                registry
                    .update_state(&w.id, WorkerState::Ready)
                    .expect("ready");
                w.id
            })
            .collect();
        let config = WorkerLifecycleConfig {
            // A quiet fleet: nothing expires, nothing to scale.
            // A live fleet: every agent heartbeats every 10 s (see `roll`), nothing expires.
            heartbeat_timeout: Duration::from_secs(60),
            startup_timeout: Duration::from_secs(86_400),
            // A health check in every tick, as the registry bench's live-fleet tick.
            health_check_interval: Duration::from_secs(1),
            min_ready_workers: n,
            max_workers: n,
            ..WorkerLifecycleConfig::default()
        };
        let shared: Arc<dyn WorkerRegistry> = registry.clone();
        let manager = WorkerLifecycleManager::new(shared, config).expect("valid config");
        Fleet {
            clock,
            registry,
            manager,
            ids,
        }
    }

    fn set_metrics(&self, on: bool) {
        self.manager.metrics().set_timing(on);
    }

    /// One simulated second of a live fleet, untimed: the clock advances 1 s and a tenth of
    /// the agents heartbeat (each every 10 s).
    fn roll(&self, second: u64) {
        self.clock.advance(Duration::from_secs(1));
        let n = self.ids.len() as u64;
        let slice = (second % 10) * n / 10..((second % 10) + 1) * n / 10;
        for i in slice {
            let _ = self.manager.process_heartbeat(&self.ids[i as usize]);
        }
    }

    /// Times `ticks` ticks one by one (each after an untimed `roll`), metrics on and off
    /// interleaved tick by tick in the pattern on, off, off, on (so that both meet every phase
    /// of the ten-second heartbeat roll and any change of the machine's load alike); with
    /// metrics on, a scrape before every `every`-th on tick, untimed (its aftermath in the
    /// caches lands on that on tick). Returns the off and the on tick times, in ns.
    fn tick_samples(&self, ticks: u64, every: u64, second: &mut u64) -> (Vec<f64>, Vec<f64>) {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        let mut on_ticks = 0;
        for i in 0..ticks {
            let metrics = matches!(i % 4, 0 | 3);
            self.set_metrics(metrics);
            *second += 1;
            self.roll(*second);
            if metrics {
                on_ticks += 1;
                if on_ticks % every == 0 {
                    black_box(self.manager.metrics_text());
                }
            }
            let started = Instant::now();
            black_box(self.manager.tick(0));
            let ns = started.elapsed().as_nanos() as f64;
            if metrics {
                on.push(ns)
            } else {
                off.push(ns)
            }
        }
        (off, on)
    }
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// One row: `ROUNDS` rounds of a batch of `ops` calls each way, in the order on, off, off, on,
/// so that a change of the machine's load hits both alike; batches short enough (tens to
/// hundreds of µs) that most run between two preemptions of the loaded machine. With metrics
/// on, a scrape before the on batch that reaches `scrape_every` calls since the last one,
/// untimed (its aftermath in the caches lands on that batch). Medians of the batches, ns per
/// call.
fn compare(fleet: &Fleet, ops: u64, scrape_every: u64, op: &mut dyn FnMut(u64)) -> (f64, f64) {
    const ROUNDS: u64 = 401;
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let mut since_scrape = 0;
    let mut i = 0;
    for b in 0..2 * ROUNDS + 4 {
        let metrics = matches!(b % 4, 0 | 3);
        fleet.set_metrics(metrics);
        if metrics {
            since_scrape += ops;
            if since_scrape >= scrape_every {
                black_box(fleet.manager.metrics_text());
                since_scrape = 0;
            }
        }
        let started = Instant::now();
        for _ in 0..ops {
            op(i);
            i += 1;
        }
        let ns = started.elapsed().as_nanos() as f64 / ops as f64;
        // The first four batches warm up.
        if b >= 4 {
            if metrics {
                on.push(ns)
            } else {
                off.push(ns)
            }
        }
    }
    (median(&mut off), median(&mut on))
}

fn bench(n: usize, label: &str, md: &mut String) {
    let fleet = Fleet::build(n);
    let job_ids: Vec<JobId> = (0..1024)
        .map(|i| JobId::new(format!("job-{i}")).expect("valid id"))
        .collect();
    let filter = WorkerFilter::new();
    let mut heartbeat = |i: u64| {
        let id = &fleet.ids[(i as usize * 7919) % fleet.ids.len()];
        black_box(fleet.manager.process_heartbeat(id)).expect("heartbeat");
    };
    let (off, on) = compare(&fleet, 1_000, SCRAPE_EVERY, &mut heartbeat);
    row(md, "heartbeat", label, off, on);
    let mut claim = |i: u64| {
        let job = job_ids[(i % 1024) as usize].clone();
        let w = fleet
            .registry
            .claim(&filter, job.clone())
            .expect("claim")
            .expect("a ready worker");
        fleet
            .registry
            .release_from_job(&w.id, Some(&job))
            .expect("release");
    };
    let (off, on) = compare(&fleet, 250, SCRAPE_EVERY, &mut claim);
    row(md, "claim + release", label, off, on);
    // Past the grace period a first tick may grant, into the steady state.
    let mut second = 0;
    fleet.tick_samples(72, TICKS_PER_SCRAPE, &mut second);
    let (mut off, mut on) = fleet.tick_samples(4_920, TICKS_PER_SCRAPE, &mut second);
    row(
        md,
        "tick (live fleet: a tenth heartbeats each second, health check every tick)",
        label,
        median(&mut off),
        median(&mut on),
    );
    // Single scrapes, the median: a mean over back-to-back scrapes counts the preemptions of
    // the loaded machine (a mean of 250 µs at 10k under load 10, 35 µs under load 4).
    let mut scrapes: Vec<f64> = (0..201)
        .map(|_| {
            let started = Instant::now();
            black_box(fleet.manager.metrics_text());
            started.elapsed().as_nanos() as f64
        })
        .collect();
    md.push_str(&format!(
        "| scrape (`metrics_text`, median) | {label} | | {:.1} µs | |\n",
        median(&mut scrapes) / 1e3
    ));
}

fn row(md: &mut String, what: &str, label: &str, off: f64, on: f64) {
    let line = format!(
        "| {what} | {label} | {off:.0} ns | {on:.0} ns | {:.3} |\n",
        on / off
    );
    eprint!("{line}");
    md.push_str(&line);
}

fn main() {
    let mut md = String::from(
        "| operation | fleet | metrics off | metrics on | on/off |\n| --- | --- | --- | --- | --- |\n",
    );
    for (n, label) in sizes() {
        bench(n, &label, &mut md);
    }
    println!("\nmetrics overhead (medians of 401 alternating rounds of batches, of 2,460 single ticks each way; target on/off <= 1.05)\n{md}");
    let dir = std::env::var_os("HODEI_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../target/bench-extra"));
    if let Err(e) = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("metrics_overhead.md"), &md))
    {
        eprintln!("could not write {}: {e}", dir.display());
    }
}
