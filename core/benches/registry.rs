//! The registry's hot paths at 10k and 1M workers, the library (`lib`) side by side with the
//! naive baseline (`naive`, see `common/mod.rs`) in the same run.
//!
//! `cargo bench -p hodei-workers --bench registry` (or `make bench`). Fleet sizes come from
//! `HODEI_BENCH_SIZES` (default `10k,1M`). Each fleet is built once and shared by every bench
//! of its size. Both registries run on their own `ManualClock`, so the clock costs nothing and
//! time moves only when a bench moves it.
//!
//! Besides criterion's output (`target/criterion/<group>/<lib|naive>/<size>/new/`), the heartbeat
//! latency under ticks is written to `$HODEI_BENCH_OUT/latency.json` (criterion has no
//! percentiles).

mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use criterion::{BatchSize, BenchmarkGroup, BenchmarkId, Criterion};
use hodei_workers::{
    Clock, InMemoryWorkerRegistry, JobId, ManualClock, ProviderType, WorkerFilter, WorkerHandle,
    WorkerId, WorkerLifecycleConfig, WorkerLifecycleManager, WorkerRegistry,
};

/// The heartbeat timeout of the expiry benches; agents heartbeat every `HEARTBEAT_EVERY` ticks
/// of one second each.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
const HEARTBEAT_EVERY: usize = 10;

/// One registry with its clock and the ids of its fleet.
struct Side<S> {
    reg: S,
    clock: Arc<ManualClock>,
    ids: Vec<WorkerId>,
    /// `ids[..busy]` hold a job.
    busy: usize,
    /// Every `silent_every`-th worker (by registration order) no longer heartbeats in
    /// [`Side::roll`]: spread over the fleet, as real failures are, so that their records are
    /// not neighbours in memory.
    silent_every: Option<usize>,
}

impl<S: Subject> Side<S> {
    fn at(&self, k: usize) -> &WorkerId {
        &self.ids[k.wrapping_mul(STRIDE) % self.ids.len()]
    }

    /// One simulated second: the clock moves and the agents whose turn it is heartbeat (each
    /// agent every `HEARTBEAT_EVERY` seconds, the silent ones never).
    fn roll(&self) {
        let now = self.clock.advance(Duration::from_secs(1));
        let phase = ((now - T0) / 1000) as usize % HEARTBEAT_EVERY;
        for i in (phase..self.ids.len()).step_by(HEARTBEAT_EVERY) {
            if !self.is_silent(i) {
                self.reg.heartbeat(&self.ids[i]).expect("heartbeat");
            }
        }
    }

    fn is_silent(&self, i: usize) -> bool {
        self.silent_every.is_some_and(|k| i % k == 0)
    }

    /// Number of silent workers.
    fn silent(&self) -> usize {
        self.silent_every.map_or(0, |k| self.ids.len().div_ceil(k))
    }

    /// Makes one worker in `every` stop heartbeating and rolls the clock until they and only
    /// they are past the deadline; checks it, so that the bench cannot measure nothing.
    fn set_silent(&mut self, every: Option<usize>) {
        self.silent_every = every;
        let silent = self.silent();
        let ticks = HEARTBEAT_TIMEOUT.as_secs() as usize + 2 * HEARTBEAT_EVERY;
        for _ in 0..ticks {
            self.roll();
            self.reg.find_unhealthy(HEARTBEAT_TIMEOUT).expect("scan");
        }
        let found = self
            .reg
            .find_unhealthy(HEARTBEAT_TIMEOUT)
            .expect("scan")
            .len();
        assert_eq!(
            found,
            silent,
            "expiry bench set-up: wrong number expired ({:?})",
            self.reg.stats().map(|s| s.by_state)
        );
    }

    /// Gives jobs to `ids[..busy]` (set-up, untimed).
    fn set_busy(&mut self, busy: usize) {
        for i in self.busy..busy {
            let job = JobId::new(format!("job-{i}")).expect("job id");
            self.reg.make_busy(&self.ids[i], job).expect("make busy");
        }
        self.busy = busy;
    }
}

struct Fixture {
    label: String,
    lib: Side<Arc<InMemoryWorkerRegistry>>,
    naive: Side<NaiveRegistry>,
}

impl Fixture {
    fn build(n: usize) -> Fixture {
        let started = Instant::now();
        let spec = shared_spec();
        let handles = handles(n);
        let spread = HEARTBEAT_TIMEOUT;
        let lib_clock = Arc::new(ManualClock::new(T0));
        let lib = Arc::new(InMemoryWorkerRegistry::with_clock(lib_clock.clone()));
        let ids = fill(&lib, &lib_clock, handles.iter().cloned(), &spec, spread);
        let naive_clock = Arc::new(ManualClock::new(T0));
        let naive = NaiveRegistry::with_clock(naive_clock.clone());
        let naive_ids = fill(&naive, &naive_clock, handles.iter().cloned(), &spec, spread);
        assert_eq!(ids, naive_ids);
        eprintln!(
            "fleet of {} built for lib and naive in {:.1?}",
            size_label(n),
            started.elapsed()
        );
        Fixture {
            label: size_label(n),
            lib: Side {
                reg: lib,
                clock: lib_clock,
                ids,
                busy: 0,
                silent_every: None,
            },
            naive: Side {
                reg: naive,
                clock: naive_clock,
                ids: naive_ids,
                busy: 0,
                silent_every: None,
            },
        }
    }

    fn is_large(&self) -> bool {
        self.lib.ids.len() >= 100_000
    }
}

/// Runs `$body` once for the library and once for the baseline, as `lib/<size>` and
/// `naive/<size>` of group `$g`.
macro_rules! both {
    ($g:expr, $fx:expr, |$b:ident, $side:ident| $body:expr) => {{
        let label = $fx.label.clone();
        $g.bench_function(BenchmarkId::new("lib", &label), |$b| {
            let $side = &$fx.lib;
            $body
        });
        $g.bench_function(BenchmarkId::new("naive", &label), |$b| {
            let $side = &$fx.naive;
            $body
        });
    }};
}

fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    fx: &Fixture,
) -> BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    if fx.is_large() {
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
    } else {
        g.sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
    }
    g
}

/// Aggregate time of `iters` heartbeats split over two threads on disjoint halves of the
/// fleet: the wall time from a common start to the slower thread's end.
fn two_thread_heartbeats<S: Subject>(side: &Side<S>, iters: u64, cursor: &mut usize) -> Duration {
    let n = side.ids.len();
    let half = n / 2;
    let barrier = Barrier::new(2);
    let per = [iters / 2, iters - iters / 2];
    let start_k = *cursor;
    *cursor = cursor.wrapping_add(iters as usize);
    let times: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let barrier = &barrier;
                let ops = per[t];
                s.spawn(move || {
                    let base = t * half;
                    barrier.wait();
                    let started = Instant::now();
                    for k in 0..ops as usize {
                        let i = base + (start_k + k).wrapping_mul(STRIDE) % half;
                        side.reg.heartbeat(&side.ids[i]).expect("heartbeat");
                    }
                    started.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    times.into_iter().max().unwrap_or_default()
}

/// `iters` simulated ticks; only `find_unhealthy` is timed (the heartbeats of the tick are
/// set-up).
fn timed_ticks<S: Subject>(side: &Side<S>, iters: u64, roll: bool) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if roll {
            side.roll();
        }
        let started = Instant::now();
        let found = side.reg.find_unhealthy(HEARTBEAT_TIMEOUT).expect("scan");
        total += started.elapsed();
        debug_assert_eq!(found.len(), side.silent());
        black_box(found);
    }
    total
}

/// `iters` health checks, each after the clock moved past the timeout and every worker
/// heartbeated (set-up, untimed): every heartbeat entry is due and re-filed, none expires.
fn timed_all_due<S: Subject>(side: &Side<S>, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        side.clock
            .advance(HEARTBEAT_TIMEOUT + Duration::from_secs(1));
        for id in &side.ids {
            side.reg.heartbeat(id).expect("heartbeat");
        }
        let started = Instant::now();
        let found = side.reg.find_unhealthy(HEARTBEAT_TIMEOUT).expect("scan");
        total += started.elapsed();
        assert!(
            found.is_empty(),
            "every worker heartbeated: none may expire"
        );
    }
    total
}

fn bench_size(c: &mut Criterion, fx: &mut Fixture, latency: &mut Vec<String>) {
    {
        let mut g = group(c, "heartbeat_1t", fx);
        both!(g, fx, |b, side| {
            let mut k = 0usize;
            b.iter(|| {
                k = k.wrapping_add(1);
                side.reg.heartbeat(side.at(k))
            })
        });
    }
    {
        let mut g = group(c, "heartbeat_2t", fx);
        both!(g, fx, |b, side| {
            let mut cursor = 0usize;
            b.iter_custom(|iters| two_thread_heartbeats(side, iters, &mut cursor))
        });
    }
    {
        let mut g = group(c, "get", fx);
        both!(g, fx, |b, side| {
            let mut k = 0usize;
            b.iter(|| {
                k = k.wrapping_add(1);
                side.reg.get(side.at(k))
            })
        });
    }
    {
        let mut g = group(c, "stats", fx);
        both!(g, fx, |b, side| b.iter(|| side.reg.stats()));
    }
    {
        // The orphan retries' look (the library alone: the baseline has no override): the
        // records of the fleet's one provider holding 3 resource ids (at the start, middle and
        // end of the fleet), against the read of every record of the provider it replaced.
        let side = &fx.lib;
        let n = side.ids.len();
        let held: Vec<Arc<WorkerHandle>> = [0, n / 2, n - 1]
            .iter()
            .map(|&k| side.reg.get(&side.ids[k]).unwrap().unwrap().handle)
            .collect();
        let provider = held[0].provider_id.clone();
        let asked: Vec<&str> = held.iter().map(|h| h.resource_id.as_str()).collect();
        assert_eq!(
            side.reg
                .find_by_resource_ids(&provider, &asked)
                .unwrap()
                .len(),
            3
        );
        let mut g = group(c, "orphan_look", fx);
        g.bench_function(BenchmarkId::new("find_by_resource_ids_3", &fx.label), |b| {
            b.iter(|| side.reg.find_by_resource_ids(&provider, &asked))
        });
        g.bench_function(BenchmarkId::new("find_by_provider", &fx.label), |b| {
            b.iter(|| side.reg.find_by_provider(&provider))
        });
    }

    // Expiry. "rolling": a live fleet, every agent heartbeats every 10 s, one tick per
    // simulated second; "quiet": the clock stands still between calls, so only the silent
    // workers are due (the cost that follows what is due, with nothing else in the way).
    for (every, tag) in [(None, "0pct"), (Some(1000), "0.1pct"), (Some(100), "1pct")] {
        fx.lib.set_silent(every);
        fx.naive.set_silent(every);
        {
            let mut g = group(c, &format!("expiry_rolling_{tag}"), fx);
            both!(g, fx, |b, side| b
                .iter_custom(|iters| timed_ticks(side, iters, true)));
        }
        {
            let mut g = group(c, &format!("expiry_quiet_{tag}"), fx);
            both!(g, fx, |b, side| b
                .iter_custom(|iters| timed_ticks(side, iters, false)));
        }
    }

    // Heartbeat latency while another thread runs ticks back to back (0.1% silent).
    fx.lib.set_silent(Some(1000));
    fx.naive.set_silent(Some(1000));
    latency.push(heartbeat_latency("lib", &fx.label, &fx.lib));
    latency.push(heartbeat_latency("naive", &fx.label, &fx.naive));
    fx.lib.silent_every = None;
    fx.naive.silent_every = None;

    // A claim no ready worker matches (issue 10 item 10), the whole fleet ready: the library
    // asks each class of workers (spec and provider) once: no worker is looked at.
    assert_eq!(
        (fx.lib.busy, fx.naive.busy),
        (0, 0),
        "the whole fleet is ready here"
    );
    {
        let mut g = group(c, "claim_unmatchable", fx);
        both!(g, fx, |b, side| {
            let filter = WorkerFilter::new().label("gpu", "true");
            let job = JobId::new("bench-gpu-job").expect("job id");
            b.iter(|| {
                let none = side.reg.claim(&filter, job.clone()).expect("claim");
                assert!(none.is_none(), "no worker has gpu=true");
            })
        });
    }
    // A claim whose static part every class matches but whose `unhealthy_for` no ready
    // worker meets (silent for longer than a day before the fleet was built): the library
    // walks its first candidates, then one pass over the heartbeat columns (before
    // 2026-12-07 it walked the whole ready set, one record read a worker).
    {
        let mut g = group(c, "claim_unhealthy_unmatched", fx);
        both!(g, fx, |b, side| {
            const DAY_MS: u64 = 86_400_000;
            let silent = Duration::from_millis(side.clock.now() - T0 + DAY_MS);
            let filter = WorkerFilter::new().unhealthy_for(silent);
            let job = JobId::new("bench-silent-job").expect("job id");
            b.iter(|| {
                let none = side.reg.claim(&filter, job.clone()).expect("claim");
                assert!(none.is_none(), "no worker is silent for that long");
            })
        });
    }

    let n = fx.lib.ids.len();
    for (busy_per_mille, tag) in [(500usize, "50pct"), (999, "99.9pct")] {
        let busy = n * busy_per_mille / 1000;
        fx.lib.set_busy(busy);
        fx.naive.set_busy(busy);
        let mut g = group(c, &format!("claim_release_{tag}"), fx);
        both!(g, fx, |b, side| {
            let filter = WorkerFilter::new().label("pool", "ci");
            let job = JobId::new("bench-job").expect("job id");
            b.iter(|| {
                let w = side
                    .reg
                    .claim(&filter, job.clone())
                    .expect("claim")
                    .expect("a ready worker");
                side.reg.release(&w.id, Some(&job)).expect("release")
            })
        });
    }

    // Held first, while the workers silent since the latency run are still silent. Then they
    // heartbeat again (rolled until none is past the deadline) before the tick_0pct manager
    // starts: otherwise its first ticks expire them, their destroys fail (the bench registers
    // no provider) and the row measures a tick carrying a backlog of failing destroys — 150 to
    // 200 of them at 1M depending on the latency run's ticks, more after the claim benches —
    // instead of a tick with nothing expiring.
    bench_tick_held(c, fx);
    fx.lib.set_silent(None);
    fx.naive.set_silent(None);
    bench_tick(c, fx);

    // Every entry due at once: what a health check every 30 s (the manager's default
    // interval) meets once the whole fleet heartbeated since the last one. After the tick:
    // its set-up heartbeats the whole fleet at one instant, which would synchronise every
    // deadline and turn the rolling ticks after it into bursts.
    fx.lib.set_silent(None);
    fx.naive.set_silent(None);
    {
        let mut g = group(c, "expiry_all_due", fx);
        both!(g, fx, |b, side| b
            .iter_custom(|iters| timed_all_due(side, iters)));
    }

    {
        let mut g = group(c, "register_unregister", fx);
        let spec = shared_spec();
        let provider = provider();
        both!(g, fx, |b, side| b.iter_batched(
            || WorkerHandle::new(provider.clone(), ProviderType::Docker, "c-bench"),
            |handle| {
                let w = side.reg.register(handle, spec.clone()).expect("register");
                side.reg.unregister(&w.id).expect("unregister")
            },
            BatchSize::SmallInput
        ));
    }
}

/// The manager's `tick` in a live fleet (rolling: one simulated second per tick, agents
/// heartbeating every 10 s as set-up), 0% expiring, health check on every tick. The baseline's
/// tick is what a manager over it does: its two scans (heartbeat deadlines, retirement).
///
/// Runs after the other deadline benches of its size (the manager's first tick may grant the
/// fleet a grace period, which moves the registry's grace floor), but before the every-entry-due
/// bench, whose set-up synchronises every deadline. Starts with every worker heartbeating, and
/// checks that its warm-up ticks left no terminal record and no queued destroy: the row is a
/// tick of a healthy fleet, not of a destroy backlog.
fn bench_tick(c: &mut Criterion, fx: &mut Fixture) {
    let n = fx.lib.ids.len();
    let config = WorkerLifecycleConfig {
        heartbeat_timeout: HEARTBEAT_TIMEOUT,
        health_check_interval: Duration::from_secs(1),
        // Nothing to scale: every worker counts as warm capacity, none may be added.
        min_ready_workers: n,
        max_workers: n,
        ..WorkerLifecycleConfig::default()
    };
    let registry: Arc<dyn WorkerRegistry> = fx.lib.reg.clone();
    let manager = WorkerLifecycleManager::new(registry, config).expect("valid config");
    // Past the grace period a first tick may grant, into the steady state.
    for _ in 0..(HEARTBEAT_TIMEOUT.as_secs() + 2 * HEARTBEAT_EVERY as u64) {
        fx.lib.roll();
        black_box(manager.tick(0));
    }
    // Nothing expired, nothing to destroy: what the row's name says.
    let by_state = fx.lib.reg.stats().expect("stats").by_state;
    assert_eq!(
        (
            by_state.terminating + by_state.terminated,
            manager.pending_destroys().len()
        ),
        (0, 0),
        "tick_0pct set-up: terminal records or queued destroys"
    );
    let mut g = group(c, "tick_0pct", fx);
    let label = fx.label.clone();
    let lib = &fx.lib;
    g.bench_function(BenchmarkId::new("lib", &label), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                lib.roll();
                let started = Instant::now();
                let report = manager.tick(0);
                total += started.elapsed();
                debug_assert!(report.unhealthy.is_empty());
                black_box(report);
            }
            total
        })
    });
    let naive = &fx.naive;
    g.bench_function(BenchmarkId::new("naive", &label), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                naive.roll();
                let started = Instant::now();
                black_box(naive.reg.find_unhealthy(HEARTBEAT_TIMEOUT).expect("scan"));
                black_box(naive.reg.find_for_termination());
                total += started.elapsed();
            }
            total
        })
    });
}

/// The manager's `tick` in a live fleet where 0.1% of the workers are silent past the
/// deadline on every tick and the brake holds them (its fraction set below 0.1%): each tick
/// runs the heartbeat query, the brake's count of workers silent for half the timeout, the
/// startup and retirement queries. Nothing is expired, so the fleet stays as it is for the
/// benches after it. The baseline's tick is the same queries as full scans.
fn bench_tick_held(c: &mut Criterion, fx: &mut Fixture) {
    let n = fx.lib.ids.len();
    fx.lib.set_silent(Some(1000));
    fx.naive.set_silent(Some(1000));
    let config = WorkerLifecycleConfig {
        heartbeat_timeout: HEARTBEAT_TIMEOUT,
        health_check_interval: Duration::from_secs(1),
        min_ready_workers: n,
        max_workers: n,
        // Holds for 0.1% silent (10 of 10k, 1000 of 1M), and never gives up during the bench.
        max_unhealthy_fraction: 0.0001,
        unhealthy_floor: 0,
        max_mass_expiry_hold: Duration::from_secs(10_000_000),
        ..WorkerLifecycleConfig::default()
    };
    let registry: Arc<dyn WorkerRegistry> = fx.lib.reg.clone();
    let manager = WorkerLifecycleManager::new(registry, config).expect("valid config");
    for _ in 0..(HEARTBEAT_TIMEOUT.as_secs() + 2 * HEARTBEAT_EVERY as u64) {
        fx.lib.roll();
        black_box(manager.tick(0));
    }
    let silent = fx.lib.silent();
    let mut g = group(c, "tick_0.1pct_held", fx);
    let label = fx.label.clone();
    let lib = &fx.lib;
    g.bench_function(BenchmarkId::new("lib", &label), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                lib.roll();
                let started = Instant::now();
                let report = manager.tick(0);
                total += started.elapsed();
                assert!(report.unhealthy.is_empty(), "the brake holds");
                black_box(report);
            }
            total
        })
    });
    let naive = &fx.naive;
    g.bench_function(BenchmarkId::new("naive", &label), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                naive.roll();
                let started = Instant::now();
                let due = naive.reg.find_unhealthy(HEARTBEAT_TIMEOUT).expect("scan");
                assert_eq!(due.len(), silent);
                black_box(
                    naive
                        .reg
                        .find_unhealthy(HEARTBEAT_TIMEOUT / 2)
                        .expect("scan"),
                );
                black_box(naive.reg.find_for_termination());
                total += started.elapsed();
            }
            total
        })
    });
}

/// Heartbeat latency on this thread while another runs ticks back to back (`roll` +
/// `find_unhealthy`).
///
/// Two figures: `service` times each call alone; `scheduled` issues heartbeats on a fixed
/// schedule (one every `PERIOD`) and measures each from its *scheduled* start, so a heartbeat
/// stuck behind a lock also charges the ones that could not start meanwhile (no coordinated
/// omission). On a loaded 2-core machine the scheduled figure also carries the preemptions of
/// this thread by the OS. Returns one JSON object.
fn heartbeat_latency<S: Subject>(name: &str, label: &str, side: &Side<S>) -> String {
    const PERIOD: Duration = Duration::from_micros(10);
    const RUN: Duration = Duration::from_secs(3);
    let stop = AtomicBool::new(false);
    let mut ticks = 0u64;
    let cap = (RUN.as_nanos() / PERIOD.as_nanos()) as usize + 1;
    let (mut scheduled_lat, mut service_lat) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
    std::thread::scope(|s| {
        let ticker = s.spawn(|| {
            let mut ticks = 0u64;
            while !stop.load(Ordering::Relaxed) {
                side.roll();
                black_box(side.reg.find_unhealthy(HEARTBEAT_TIMEOUT).expect("scan"));
                ticks += 1;
            }
            ticks
        });
        // Let the ticker get going.
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        for k in 0..cap - 1 {
            let scheduled = start + PERIOD * k as u32;
            while Instant::now() < scheduled {
                std::hint::spin_loop();
            }
            // Only workers that are not silent: keeps the expiry pattern the ticker expects.
            let mut i = k.wrapping_mul(STRIDE) % side.ids.len();
            if side.is_silent(i) {
                i = (i + 1) % side.ids.len();
            }
            let called = Instant::now();
            side.reg.heartbeat(&side.ids[i]).expect("heartbeat");
            let done = Instant::now();
            service_lat.push((done - called).as_nanos() as u64);
            scheduled_lat.push((done - scheduled).as_nanos() as u64);
        }
        stop.store(true, Ordering::Relaxed);
        ticks = ticker.join().expect("ticker");
    });
    let summary = |lat: &mut Vec<u64>| {
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        format!(
            "{{\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"max_ns\":{}}}",
            pct(0.50),
            pct(0.99),
            pct(0.999),
            lat[lat.len() - 1]
        )
    };
    let line = format!(
        "{{\"subject\":\"{name}\",\"size\":\"{label}\",\"samples\":{},\"ticks\":{ticks},\
         \"service\":{},\"scheduled\":{}}}",
        service_lat.len(),
        summary(&mut service_lat),
        summary(&mut scheduled_lat)
    );
    eprintln!("heartbeat latency under ticks: {line}");
    line
}

fn out_dir() -> PathBuf {
    std::env::var_os("HODEI_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../target/bench-extra"))
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut latency = Vec::new();
    {
        // The clock is excluded from the benches (a ManualClock read is one atomic load); this
        // is what SystemClock adds to every timed call in production.
        let mut g = c.benchmark_group("clock");
        g.sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        let system = hodei_workers::SystemClock::new();
        g.bench_function("system_now", |b| b.iter(|| system.now()));
    }
    for n in sizes() {
        let mut fx = Fixture::build(n);
        bench_size(&mut c, &mut fx, &mut latency);
    }
    c.final_summary();
    if !latency.is_empty() {
        let dir = out_dir();
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            std::fs::write(
                dir.join("latency.json"),
                format!("[\n{}\n]\n", latency.join(",\n")),
            )
        });
        if let Err(e) = written {
            eprintln!("could not write {}: {e}", dir.display());
        }
    }
}
