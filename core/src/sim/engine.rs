//! [`Simulation`]: the discrete-event loop — workload, agents, host loop, manager ticks — on a
//! [`ManualClock`], with the invariants checked after every step.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::{Clock, ManualClock, Timestamp};
use crate::error::{Error, Result};
use crate::events::{EventKind, SubscribeOptions, Subscription};
use crate::filter::WorkerFilter;
use crate::ids::{JobId, ProviderId, WorkerId};
use crate::lifecycle::{
    Demand, Pool, TickReport, WorkerLifecycleConfig, WorkerLifecycleManager, WorkerProvider,
    POOL_LABEL,
};
use crate::registry::{InMemoryWorkerRegistry, WorkerRegistry};
use crate::state::WorkerState;
use crate::worker::{TerminationReason, WorkerSpec};

use super::check::{Checker, Rule, StepView, Violation};
use super::cloud::{AgentJob, Cloud, SimProvider, Told};
use super::report::{percentile, SimReport};
use super::rng::SimRng;
use super::scenario::{parse_trace, secs_to_ms, JobClass, Scenario, SimPool, Variant, Workload};
use super::timeline::{sample_interval_ms, wait_window_ms, Interval, Sample, Timeline};

/// The registry clock reads this at the start of every run.
pub const SIM_EPOCH_MS: Timestamp = 1_700_000_000_000;

const STREAM_WORKLOAD: u64 = 0x10AD;
const STREAM_WORKER_ID: u64 = 0x1D5;
const STREAM_CLASS: u64 = 0xC1A55;
const STREAM_POOL_CLOUD: u64 = 0x9001;

/// Most jobs one run may have (a bound on the memory of the pre-drawn workload).
pub const MAX_JOBS: usize = 10_000_000;

/// Replaces a part of the simulated system, to show that the checker catches a broken one
/// (tests), or to drive another registry implementation through the same faults.
#[derive(Default)]
pub struct Hooks {
    /// Wraps the registry (the manager, the host and the checker all use the wrapper).
    #[allow(clippy::type_complexity)]
    pub wrap_registry: Option<Box<dyn FnOnce(Arc<dyn WorkerRegistry>) -> Arc<dyn WorkerRegistry>>>,
    /// Wraps the simulated provider before it is registered with the manager.
    #[allow(clippy::type_complexity)]
    pub wrap_provider: Option<Box<dyn FnOnce(Arc<dyn WorkerProvider>) -> Arc<dyn WorkerProvider>>>,
    /// A deliberately broken host: it forgets lost jobs instead of requeuing them.
    pub drop_lost_jobs: bool,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("wrap_registry", &self.wrap_registry.is_some())
            .field("wrap_provider", &self.wrap_provider.is_some())
            .field("drop_lost_jobs", &self.drop_lost_jobs)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct JobRecord {
    id: JobId,
    arrival: u64,
    duration: u64,
    done: Option<u64>,
    /// Wait (ms) from arrival to the start of the attempt that completed.
    started: Option<u64>,
    /// The host tried to place it at least once.
    seen: bool,
    /// Its index in the scenario's job classes (0 without classes).
    class: usize,
}

#[derive(Debug, Default, Clone)]
struct Metrics {
    worker_ms: u128,
    peak_workers: usize,
    cold_starts: u64,
    scale_flaps: u64,
    last_scale: Option<(bool, u64)>,
    unhealthy: u64,
    lost_jobs: u64,
    requeued: u64,
    provisioned: u64,
    provision_failures: u64,
    destroy_failures: u64,
    stall_graces: u64,
    mass_expiry_holds: u64,
    reconcile_vanished: u64,
    reconcile_orphans: u64,
    ticks: u64,
}

/// A running hash of the run's trace: 64-bit words folded through SplitMix64 (cheap even in a
/// debug build, no dependency, the same value on every platform).
#[derive(Debug, Clone, Copy)]
struct TraceHash(u64);

impl TraceHash {
    fn new() -> Self {
        TraceHash(0x243F_6A88_85A3_08D3)
    }

    fn word(&mut self, x: u64) {
        let mut s = self.0 ^ x;
        self.0 = super::rng::splitmix64(&mut s);
    }

    fn id(&mut self, id: &WorkerId) {
        let b = id.as_bytes();
        let (lo, hi) = b.split_at(8);
        self.word(u64::from_le_bytes(lo.try_into().unwrap_or([0; 8])));
        self.word(u64::from_le_bytes(hi.try_into().unwrap_or([0; 8])));
    }

    /// Folds in what a tick decided: times, counts, and the ids it touched, in report order.
    fn tick(&mut self, r: &TickReport) {
        for x in [
            r.at,
            r.pending_jobs as u64,
            r.stall_grace.unwrap_or(u64::MAX),
            u64::from(r.health_checked),
            r.actions as u64,
            u64::from(r.capped),
            u64::from(r.skipped),
            r.decisions.len() as u64,
        ] {
            self.word(x);
        }
        for u in &r.unhealthy {
            self.id(&u.worker_id);
            self.word(u.reason as u64);
        }
        for l in &r.lost_jobs {
            self.id(&l.worker_id);
        }
        for t in &r.terminated {
            self.id(&t.worker_id);
            self.word(t.reason as u64);
        }
        for f in &r.failed {
            self.id(&f.worker_id);
            self.word(u64::from(f.attempts));
            self.word(f.next_retry_at);
        }
        for d in &r.drained {
            self.id(d);
        }
        for p in &r.provisioned {
            self.id(&p.worker_id);
        }
        for f in &r.provision_failures {
            self.word(u64::from(f.consecutive_failures));
            self.word(f.backoff_until);
        }
        if let Some(h) = &r.mass_expiry_held {
            self.word(h.would_expire as u64);
            self.word(h.live as u64);
        }
        if let Some(p) = &r.scaling {
            for x in [
                p.ready,
                p.busy,
                p.starting,
                p.in_flight,
                p.total,
                p.wanted,
                p.provision,
            ] {
                self.word(x as u64);
            }
            for id in &p.scale_down {
                self.id(id);
            }
        }
    }
}

/// One simulated run: a fresh [`InMemoryWorkerRegistry`] on a [`ManualClock`], a
/// [`WorkerLifecycleManager`] with the configuration under test, the simulated provider and
/// agents, the workload and the host loop. Every step advances the clock by
/// [`Scenario::step_secs`] and ends with the [`Checker`].
///
/// Same scenario and seed ⇒ the same run, step for step ([`SimReport::trace_hash`] covers
/// every tick report).
///
/// ```
/// use hodei_workers::sim::{Scenario, Simulation};
/// let mut scenario = Scenario::builtin("partition", 3).unwrap();
/// scenario.duration_secs = 300.0;
/// let report = Simulation::new(&scenario, None).unwrap().run();
/// assert!(report.violations.is_empty(), "{report}");
/// assert_eq!(report, Simulation::new(&scenario, None).unwrap().run());
/// ```
pub struct Simulation {
    scenario: Scenario,
    label: String,
    clock: Arc<ManualClock>,
    registry: Arc<dyn WorkerRegistry>,
    manager: WorkerLifecycleManager,
    /// One cloud per pool (or the one cloud of the single target).
    clouds: Vec<Arc<Mutex<Cloud>>>,
    /// The pools of a multi-pool run (parallel to `clouds`); empty otherwise.
    pools: Vec<SimPool>,
    classes: Vec<JobClass>,
    /// Interruption waves already sent: `(pool, wave)`.
    waves_sent: HashSet<(usize, usize)>,
    step_ms: u64,
    end_ms: u64,
    t: u64,
    step: u64,
    tick_ms: u64,
    reconcile_ms: u64,
    flap_ms: u64,
    arrivals: Vec<(u64, u64)>,
    next_arrival: usize,
    jobs: Vec<JobRecord>,
    pending: BTreeSet<u64>,
    pending_ids: HashSet<JobId>,
    running: std::collections::HashMap<u64, WorkerId>,
    host_events: Subscription,
    lazy: Option<Subscription>,
    next_tick: u64,
    next_reconcile: u64,
    checker: Checker,
    drop_lost_jobs: bool,
    metrics: Metrics,
    hash: TraceHash,
    timeline: Timeline,
    interval: Interval,
    sample_ms: u64,
    wait_window_ms: u64,
    next_sample: u64,
}

impl fmt::Debug for Simulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulation")
            .field("scenario", &self.scenario.name)
            .field("label", &self.label)
            .field("seed", &self.scenario.seed)
            .field("t_ms", &self.t)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

fn job_id(seq: u64) -> JobId {
    // Always valid: short, no NUL.
    JobId::new(format!("job-{seq:06}")).unwrap_or_else(|_| unreachable!("job ids are valid"))
}

fn job_seq(id: &JobId) -> Option<u64> {
    id.as_str().strip_prefix("job-")?.parse().ok()
}

/// The workload as `(arrival_ms, duration_ms)`, sorted by arrival, up to `end_ms`. Drawn from
/// its own stream: the same for every configuration compared on one seed.
fn arrivals(scenario: &Scenario, end_ms: u64) -> Result<Vec<(u64, u64)>> {
    let mut out = match &scenario.workload {
        Workload::Poisson {
            rate_per_minute,
            duration,
            bursts,
        } => {
            let mut rng = SimRng::keyed(scenario.seed, STREAM_WORKLOAD, 0);
            let rate_at = |t: u64| -> f64 {
                bursts
                    .iter()
                    .rev()
                    .find(|b| t >= secs_to_ms(b.start_secs) && t < secs_to_ms(b.end_secs))
                    .map_or(*rate_per_minute, |b| b.rate_per_minute)
            };
            // Thinning (Lewis & Shedler): candidates at the peak rate, each kept with
            // probability rate(t) / peak.
            let peak = bursts
                .iter()
                .map(|b| b.rate_per_minute)
                .fold(*rate_per_minute, f64::max);
            let mut out = Vec::new();
            if peak > 0.0 {
                let mean_gap_secs = 60.0 / peak;
                let mut t = 0.0f64;
                loop {
                    t += rng.exponential(mean_gap_secs);
                    let at = secs_to_ms(t);
                    if at >= end_ms {
                        break;
                    }
                    let keep = rng.uniform() * peak < rate_at(at);
                    let dur = duration.sample_ms(&mut rng);
                    if keep {
                        out.push((at, dur));
                    }
                    if out.len() > MAX_JOBS {
                        return Err(Error::invalid(format!(
                            "workload: more than {MAX_JOBS} jobs; shorten duration_secs or lower the rate"
                        )));
                    }
                }
            }
            out
        }
        Workload::Trace { jobs } => jobs
            .iter()
            .map(|[a, d]| (secs_to_ms(*a), secs_to_ms(*d)))
            .filter(|(a, _)| *a < end_ms)
            .collect(),
        Workload::TraceFile { path } => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::invalid(format!("workload: cannot read trace file {path:?}: {e}"))
            })?;
            parse_trace(&text)?
                .iter()
                .map(|[a, d]| (secs_to_ms(*a), secs_to_ms(*d)))
                .filter(|(a, _)| *a < end_ms)
                .collect()
        }
    };
    out.sort_by_key(|(a, _)| *a);
    Ok(out)
}

impl Simulation {
    /// A run of `scenario` with its own configuration, or with `variant`'s (same workload,
    /// faults and seed).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an invalid scenario, configuration, spec, or an
    /// unreadable trace file.
    pub fn new(scenario: &Scenario, variant: Option<&Variant>) -> Result<Self> {
        Self::with_hooks(scenario, variant, Hooks::default())
    }

    /// Like [`new`](Self::new), with parts replaced by `hooks`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_hooks(
        scenario: &Scenario,
        variant: Option<&Variant>,
        hooks: Hooks,
    ) -> Result<Self> {
        scenario.validate()?;
        let (label, config, spec): (String, WorkerLifecycleConfig, WorkerSpec) = match variant {
            Some(v) => (
                v.label.clone(),
                v.lifecycle.clone(),
                v.worker.clone().unwrap_or_else(|| scenario.worker.clone()),
            ),
            None => (
                scenario.label.clone(),
                scenario.lifecycle.clone(),
                scenario.worker.clone(),
            ),
        };
        config.validate()?;
        spec.validate()?;
        let step_ms = secs_to_ms(scenario.step_secs).max(1);
        let end_ms = secs_to_ms(scenario.duration_secs);
        let arrivals = arrivals(scenario, end_ms)?;

        let clock = Arc::new(ManualClock::new(SIM_EPOCH_MS));
        let inner: Arc<dyn WorkerRegistry> =
            Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
        let registry = match hooks.wrap_registry {
            Some(wrap) => wrap(inner),
            None => inner,
        };
        let lazy_capacity = scenario.faults.lazy_subscriber_capacity;
        let lazy = if lazy_capacity > 0 {
            Some(registry.subscribe(SubscribeOptions::default().capacity(lazy_capacity))?)
        } else {
            None
        };
        // Enough for every event of a tick interval of a large fleet; the host drains it each pass.
        let host_events = registry
            .subscribe(SubscribeOptions::default().capacity(4096.max(config.max_workers * 16)))?;
        let checker = Checker::new(Arc::clone(&registry), &config, &spec, lazy_capacity)?;
        let manager = WorkerLifecycleManager::new(Arc::clone(&registry), config)?;
        // Worker ids from the seed: a run is the same run, id for id.
        let seed = scenario.seed;
        let mut made = 0u64;
        manager.set_worker_id_source(move || loop {
            let bytes = SimRng::keyed(seed, STREAM_WORKER_ID, made).bytes16();
            made += 1;
            // A nil id is not a worker id; a seeded draw is nil with probability 2^-128.
            if let Ok(id) = WorkerId::from_bytes(bytes) {
                return id;
            }
        });
        let pools: Vec<SimPool> = variant
            .and_then(|v| v.pools.clone())
            .unwrap_or_else(|| scenario.pools.clone());
        let mut clouds = Vec::new();
        let mut wrap_provider = hooks.wrap_provider;
        let mut register = |cloud: Cloud, provider_id: &ProviderId| -> Result<()> {
            let cloud = Arc::new(Mutex::new(cloud));
            let provider: Arc<dyn WorkerProvider> =
                Arc::new(SimProvider::new(Arc::clone(&cloud), provider_id.clone()));
            // The hook wraps the first provider (the only one of a single-target run).
            let provider = match wrap_provider.take() {
                Some(wrap) => wrap(provider),
                None => provider,
            };
            manager.register_provider(provider)?;
            clouds.push(cloud);
            Ok(())
        };
        if pools.is_empty() {
            let provider_id = ProviderId::new("sim-cloud")?;
            let cloud = Cloud::new(
                scenario.seed,
                provider_id.clone(),
                scenario.provider.clone(),
                scenario.agents.clone(),
                scenario.faults.provider_outages.clone(),
                clock.clone(),
            );
            register(cloud, &provider_id)?;
            manager.set_scaling_target(&provider_id, Arc::new(spec))?;
        } else {
            let mut manager_pools = Vec::new();
            for (k, p) in pools.iter().enumerate() {
                let provider_id = ProviderId::new(format!("sim-{}", p.name))?;
                let cloud = Cloud::new(
                    super::rng::mix(scenario.seed, STREAM_POOL_CLOUD, k as u64),
                    provider_id.clone(),
                    p.provider
                        .clone()
                        .unwrap_or_else(|| scenario.provider.clone()),
                    scenario.agents.clone(),
                    scenario.faults.provider_outages.clone(),
                    clock.clone(),
                )
                .for_pool(format!("{}/", p.name), p.no_capacity.clone());
                register(cloud, &provider_id)?;
                // Idle timeout and lifetime stay the scenario worker's: the checker judges
                // every worker by them.
                let mut template = spec.clone();
                template.labels.extend(p.labels.clone());
                template.capabilities.extend(p.capabilities.clone());
                template.resources = p.resources.clone();
                manager_pools.push(
                    Pool::new(p.name.clone(), provider_id, template)?
                        .with_priority(p.priority)
                        .with_min_ready(p.min_ready)
                        .with_max_workers(p.max_workers)
                        .with_scale_up_cooldown(std::time::Duration::from_secs_f64(
                            p.scale_up_cooldown_secs,
                        ))
                        .with_scale_down_cooldown(std::time::Duration::from_secs_f64(
                            p.scale_down_cooldown_secs,
                        )),
                );
            }
            manager.set_pools(manager_pools)?;
        }

        Ok(Simulation {
            scenario: scenario.clone(),
            clock,
            registry,
            manager,
            clouds,
            pools,
            classes: scenario.job_classes.clone(),
            waves_sent: HashSet::new(),
            step_ms,
            end_ms,
            t: 0,
            step: 0,
            tick_ms: secs_to_ms(scenario.host.tick_interval_secs).max(1),
            reconcile_ms: secs_to_ms(scenario.host.reconcile_interval_secs),
            flap_ms: secs_to_ms(scenario.host.flap_window_secs),
            arrivals,
            next_arrival: 0,
            jobs: Vec::new(),
            pending: BTreeSet::new(),
            pending_ids: HashSet::new(),
            running: std::collections::HashMap::new(),
            host_events,
            lazy,
            next_tick: 0,
            next_reconcile: secs_to_ms(scenario.host.reconcile_interval_secs),
            checker,
            drop_lost_jobs: hooks.drop_lost_jobs,
            metrics: Metrics::default(),
            hash: TraceHash::new(),
            timeline: Timeline::new(scenario, &label, step_ms, end_ms),
            interval: Interval::default(),
            sample_ms: sample_interval_ms(step_ms, end_ms),
            next_sample: sample_interval_ms(step_ms, end_ms),
            wait_window_ms: wait_window_ms(step_ms, end_ms),
            label,
        })
    }

    /// The registry the run drives (the wrapper, when a hook wrapped it).
    pub fn registry(&self) -> &Arc<dyn WorkerRegistry> {
        &self.registry
    }

    /// The manager under test.
    pub fn manager(&self) -> &WorkerLifecycleManager {
        &self.manager
    }

    /// Simulated time since the start, milliseconds.
    pub fn elapsed_ms(&self) -> u64 {
        self.t
    }

    /// Violations found so far (the first 100).
    pub fn violations(&self) -> &[Violation] {
        self.checker.violations()
    }

    /// Whether the run reached its end.
    pub fn finished(&self) -> bool {
        self.t >= self.end_ms
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> SimReport {
        while self.step() {}
        self.report()
    }

    /// Runs to the end and reports, with the run over time (for [`plot_svg`](super::plot_svg)).
    /// The same run as [`run`](Self::run): sampling only reads.
    pub fn run_recorded(mut self) -> (SimReport, Timeline) {
        while self.step() {}
        (self.report(), self.timeline)
    }

    /// The run over time so far: one [`Sample`] per sampling interval (at most
    /// [`MAX_SAMPLES`](super::MAX_SAMPLES) a run; the last one at the run's end).
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    fn host_down(&self) -> bool {
        self.scenario
            .faults
            .host_stalls
            .iter()
            .any(|w| w.contains_ms(self.t))
    }

    fn partition_fraction(&self) -> f64 {
        self.scenario
            .faults
            .partitions
            .iter()
            .filter(|p| p.window().contains_ms(self.t))
            .map(|p| p.fraction)
            .fold(0.0, f64::max)
    }

    /// Advances one step: clock, arrivals, agents, host loop, checks. Returns `false` once
    /// the run is over (and does nothing then).
    pub fn step(&mut self) -> bool {
        if self.t >= self.end_ms {
            return false;
        }
        self.t = (self.t + self.step_ms).min(self.end_ms);
        self.step += 1;
        let clock_stalled = self
            .scenario
            .faults
            .clock_stalls
            .iter()
            .any(|w| w.contains_ms(self.t));
        if !clock_stalled {
            // After a stall this jumps forward by the whole stall at once.
            self.clock.set(SIM_EPOCH_MS + self.t);
        }

        self.arrive();
        self.interrupt();
        self.run_agents();
        if !self.host_down() && self.t >= self.next_tick {
            self.next_tick = self.t + self.tick_ms;
            self.host_pass();
        }
        self.account();
        self.check();
        if self.t >= self.next_sample || self.t >= self.end_ms {
            self.next_sample = self.t + self.sample_ms;
            self.sample();
        }
        self.t < self.end_ms
    }

    fn arrive(&mut self) {
        while let Some(&(at, duration)) = self.arrivals.get(self.next_arrival) {
            if at > self.t {
                break;
            }
            self.next_arrival += 1;
            let seq = self.jobs.len() as u64;
            let id = job_id(seq);
            let class = self.draw_class(seq);
            self.jobs.push(JobRecord {
                id: id.clone(),
                arrival: at,
                duration,
                done: None,
                started: None,
                seen: false,
                class,
            });
            self.checker.job_arrived(id.clone());
            self.pending.insert(seq);
            self.pending_ids.insert(id);
        }
    }

    /// Instances vanish, agents crash, boot, report in, heartbeat, finish jobs.
    fn run_agents(&mut self) {
        let t = self.t;
        let step_hours = self.step_ms as f64 / 3_600_000.0;
        let host_down = self.host_down();
        let cut_off = self.partition_fraction();
        let now = self.clock.now();
        let mut finished_jobs = Vec::new();
        for cloud in self.clouds.clone() {
            let mut guard = cloud.lock();
            self.run_cloud(
                &mut guard,
                t,
                now,
                step_hours,
                host_down,
                cut_off,
                &mut finished_jobs,
            );
        }
        for (seq, worker) in finished_jobs {
            if self.running.get(&seq) == Some(&worker) {
                self.running.remove(&seq);
            }
            if let Some(job) = self.jobs.get_mut(seq as usize) {
                job.done = Some(t);
            }
        }
    }

    /// One cloud's part of [`run_agents`](Self::run_agents).
    #[allow(clippy::too_many_arguments)]
    fn run_cloud(
        &mut self,
        cloud: &mut Cloud,
        t: u64,
        now: Timestamp,
        step_hours: f64,
        host_down: bool,
        cut_off: f64,
        finished_jobs: &mut Vec<(u64, WorkerId)>,
    ) {
        cloud.t = t;
        let vanish_p = cloud.model.vanish_per_hour * step_hours;
        let crash_p = cloud.agents.crash_per_hour * step_hours;
        let agents = cloud.agents.clone();
        let keys: Vec<String> = cloud.instances.keys().cloned().collect();
        for key in keys {
            let (vanished, reclaimed) = match cloud.instances.get_mut(&key) {
                Some(inst) => (
                    inst.rng.bernoulli(vanish_p),
                    inst.reclaim_at.is_some_and(|at| t >= at),
                ),
                None => continue,
            };
            if reclaimed {
                cloud.remove(&key);
                cloud.stats.reclaimed += 1;
                continue;
            }
            if vanished {
                cloud.remove(&key);
                cloud.stats.vanished += 1;
                continue;
            }
            let Some(inst) = cloud.instances.get_mut(&key) else {
                continue;
            };
            if !inst.crashed && inst.rng.bernoulli(crash_p) {
                inst.crashed = true;
                cloud.stats.crashes += 1;
                continue;
            }
            if inst.crashed || inst.agent_gone {
                continue;
            }
            let id = inst.worker_id;
            let reachable = !host_down && inst.partition_key >= cut_off;
            if inst.told == Told::Nothing && t >= inst.boot_at && reachable {
                match self.registry.update_state(&id, WorkerState::Connecting) {
                    Ok(_) => {
                        inst.told = Told::Connecting;
                        inst.ready_at = inst.ready_at.max(t);
                        inst.next_heartbeat = t;
                    }
                    Err(_) => inst.agent_gone = true,
                }
            }
            if inst.told == Told::Connecting && t >= inst.ready_at && reachable {
                match self.registry.update_state(&id, WorkerState::Ready) {
                    Ok(_) => inst.told = Told::Ready,
                    Err(_) => inst.agent_gone = true,
                }
            }
            if inst.told != Told::Nothing && !inst.agent_gone && t >= inst.next_heartbeat {
                inst.next_heartbeat = Cloud::next_heartbeat(&agents, &mut inst.rng, t);
                let lost = inst.rng.bernoulli(agents.heartbeat_loss_probability);
                if reachable && !lost {
                    match self.manager.process_heartbeat(&id) {
                        Ok(()) => self.checker.heartbeat_delivered(id, now),
                        Err(_) => inst.agent_gone = true,
                    }
                }
            }
            if inst.job.as_ref().is_some_and(|j| t >= j.ends_at) {
                inst.finished = inst.job.take();
            }
            if reachable {
                if let Some(done) = inst.finished.take() {
                    self.checker.agent_finished(id, done.job.clone());
                    match self.registry.release_from_job(&id, Some(&done.job)) {
                        Ok(_) => finished_jobs.push((done.seq, id)),
                        Err(_) => self.checker.agent_release_refused(id, done.job),
                    }
                }
            }
        }
    }

    /// The host: requeue lost jobs, hand out pending ones, reconcile when due, tick.
    fn host_pass(&mut self) {
        self.read_host_events();
        self.claim_pending();
        if self.reconcile_ms > 0 && self.t >= self.next_reconcile {
            self.next_reconcile = self.t + self.reconcile_ms;
            if let Ok(r) = self.manager.reconcile() {
                self.metrics.reconcile_vanished += r.vanished.len() as u64;
                self.metrics.reconcile_orphans += r.orphans.len() as u64;
                let mut lost: Vec<_> = r
                    .lost_jobs
                    .into_iter()
                    .map(|l| (l.worker_id, l.job_id))
                    .collect();
                lost.sort();
                for (w, j) in lost {
                    self.job_lost(w, &j);
                }
            }
        }
        let report = self.manager.tick(self.demand());
        self.absorb_tick(&report);
        self.read_host_events();
    }

    fn read_host_events(&mut self) {
        let mut lost: Vec<(WorkerId, JobId)> = self
            .host_events
            .drain()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::JobLost { worker_id, job_id } => Some((worker_id, job_id)),
                _ => None,
            })
            .collect();
        // Events of one call may come in registry-internal order: sort, so that requeue order
        // (and so the whole run) depends on the seed only.
        lost.sort();
        for (w, j) in lost {
            self.job_lost(w, &j);
        }
    }

    /// A job held by `worker` was lost: requeue it (the pending queue is ordered by arrival,
    /// so it goes back near the front). Reported twice (event and tick report): handled once.
    fn job_lost(&mut self, worker: WorkerId, job: &JobId) {
        let Some(seq) = job_seq(job) else { return };
        if self.running.get(&seq) != Some(&worker) {
            return;
        }
        self.running.remove(&seq);
        self.metrics.lost_jobs += 1;
        if self.drop_lost_jobs {
            return;
        }
        self.metrics.requeued += 1;
        self.pending.insert(seq);
        self.pending_ids.insert(job.clone());
        // The agent, if it still runs, works for nothing now.
        for cloud in &self.clouds {
            let mut cloud = cloud.lock();
            if let Some(inst) = cloud.instance_of(&worker) {
                if inst.job.as_ref().is_some_and(|j| j.seq == seq) {
                    inst.job = None;
                }
            }
        }
    }

    fn claim_pending(&mut self) {
        let filters: Vec<WorkerFilter> = if self.classes.is_empty() {
            vec![WorkerFilter::new()]
        } else {
            self.classes
                .iter()
                .map(|c| c.requirement.filter())
                .collect()
        };
        // Classes that found no idle worker in this pass: their later jobs wait too.
        let mut exhausted = vec![false; filters.len()];
        let queue: Vec<u64> = self.pending.iter().copied().collect();
        for seq in queue {
            let class = self.jobs[seq as usize].class;
            if exhausted[class] {
                self.cold_start(seq);
                continue;
            }
            let id = self.jobs[seq as usize].id.clone();
            match self.registry.claim(&filters[class], id.clone()) {
                Ok(Some(worker)) => {
                    if !self.classes.is_empty()
                        && !filters[class].matches_static(&worker.handle, &worker.spec)
                    {
                        self.checker.note(
                            Rule::PoolFit,
                            format!(
                                "job {id} (needs {}) was handed worker {} of pool {:?}",
                                self.classes[class].requirement,
                                worker.id,
                                worker.spec.labels.get(POOL_LABEL)
                            ),
                        );
                    }
                    self.pending.remove(&seq);
                    self.pending_ids.remove(&id);
                    self.running.insert(seq, worker.id);
                    let job = &mut self.jobs[seq as usize];
                    job.seen = true;
                    let wait = self.t.saturating_sub(job.arrival);
                    job.started = Some(wait);
                    self.interval.recent.push_back((self.t, wait));
                    let ends_at = self.t + job.duration;
                    for cloud in &self.clouds {
                        let mut cloud = cloud.lock();
                        if let Some(inst) = cloud.instance_of(&worker.id) {
                            inst.job = Some(AgentJob {
                                seq,
                                job: id.clone(),
                                ends_at,
                            });
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    // No idle worker for this class: its jobs wait; those never tried before
                    // are cold starts (they wait for capacity to boot).
                    exhausted[class] = true;
                    self.cold_start(seq);
                }
            }
        }
    }

    fn cold_start(&mut self, seq: u64) {
        let job = &mut self.jobs[seq as usize];
        if !job.seen {
            job.seen = true;
            self.metrics.cold_starts += 1;
        }
    }

    /// The job class of arrival `seq`: a weighted draw from its own stream (the same for every
    /// configuration compared on one seed).
    fn draw_class(&self, seq: u64) -> usize {
        if self.classes.len() <= 1 {
            return 0;
        }
        let total: f64 = self.classes.iter().map(|c| c.weight).sum();
        let mut x = SimRng::keyed(self.scenario.seed, STREAM_CLASS, seq).uniform() * total;
        for (k, c) in self.classes.iter().enumerate() {
            if x < c.weight {
                return k;
            }
            x -= c.weight;
        }
        self.classes.len() - 1
    }

    /// The pending jobs as the manager's demand: by class (a plain count without classes).
    fn demand(&self) -> Demand {
        if self.classes.is_empty() {
            return Demand::from(self.pending.len());
        }
        let mut counts = vec![0usize; self.classes.len()];
        for seq in &self.pending {
            counts[self.jobs[*seq as usize].class] += 1;
        }
        let mut demand = Demand::new();
        for (class, n) in self.classes.iter().zip(counts) {
            if n > 0 {
                let mut r = class.requirement.clone();
                r.count = n;
                demand.push(r);
            }
        }
        demand
    }

    /// Sends the interruption waves that are due: the chosen instances' workers get a notice
    /// from the manager, and the instances disappear when it runs out.
    fn interrupt(&mut self) {
        for k in 0..self.pools.len() {
            for (w, wave) in self.pools[k].interruptions.clone().into_iter().enumerate() {
                if self.t < secs_to_ms(wave.at_secs) || !self.waves_sent.insert((k, w)) {
                    continue;
                }
                let notice = secs_to_ms(wave.notice_secs);
                // A seeded choice: the instances with the lowest keys of this wave.
                let mut candidates: Vec<(u64, String, WorkerId)> = self.clouds[k]
                    .lock()
                    .instances
                    .values()
                    .filter(|i| i.reclaim_at.is_none())
                    .map(|i| {
                        let key = super::rng::mix(self.scenario.seed, w as u64, i.index);
                        (key, i.resource_id.clone(), i.worker_id)
                    })
                    .collect();
                candidates.sort();
                let n = (wave.fraction * candidates.len() as f64).ceil() as usize;
                for (_, rid, worker) in candidates.into_iter().take(n) {
                    let deadline = self.clock.now() + notice;
                    // Without the cloud's lock: the manager may call the provider.
                    if self.manager.notify_interruption(&worker, deadline).is_ok() {
                        if let Some(inst) = self.clouds[k].lock().instances.get_mut(&rid) {
                            inst.reclaim_at = Some(self.t + notice);
                        }
                        self.hash.word(u64::from_le_bytes(
                            worker.as_bytes()[..8].try_into().unwrap_or_default(),
                        ));
                    }
                }
            }
        }
    }

    /// Multi-pool runs: no pool above its `max_workers` (workers under a notice aside).
    fn check_pools(&mut self) {
        if self.pools.is_empty() {
            return;
        }
        let interrupted: HashSet<WorkerId> = self
            .manager
            .interruptions()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for p in &self.pools {
            let n = self
                .registry
                .find(&WorkerFilter::new().label(POOL_LABEL, p.name.as_str()))
                .map(|ws| ws.iter().filter(|w| !interrupted.contains(&w.id)).count())
                .unwrap_or(0);
            if n > p.max_workers {
                self.checker.note(
                    Rule::PoolMax,
                    format!(
                        "pool {} has {n} workers, above its max_workers {}",
                        p.name, p.max_workers
                    ),
                );
            }
        }
    }

    fn absorb_tick(&mut self, report: &TickReport) {
        let i = &mut self.interval;
        i.provisioned += report.provisioned.len() as u64;
        i.terminated += report.terminated.len() as u64;
        i.unhealthy += report.unhealthy.len() as u64;
        i.provision_failures += report.provision_failures.len() as u64;
        let m = &mut self.metrics;
        m.ticks += 1;
        m.unhealthy += report.unhealthy.len() as u64;
        m.provisioned += report.provisioned.len() as u64;
        m.provision_failures += report.provision_failures.len() as u64;
        m.destroy_failures += report.failed.len() as u64;
        if report.mass_expiry_held.is_some() {
            m.mass_expiry_holds += 1;
        }
        if report.stall_grace.is_some() {
            m.stall_graces += 1;
            self.checker.grace_granted(report.at);
        }
        let up = !report.provisioned.is_empty();
        let down = report
            .terminated
            .iter()
            .any(|t| t.reason == TerminationReason::ScaledDown)
            || report
                .scaling
                .as_ref()
                .is_some_and(|p| !p.scale_down.is_empty());
        for (is_up, happened) in [(true, up), (false, down)] {
            if !happened {
                continue;
            }
            if let Some((last_up, at)) = m.last_scale {
                if last_up != is_up && self.t.saturating_sub(at) <= self.flap_ms {
                    m.scale_flaps += 1;
                }
            }
            m.last_scale = Some((is_up, self.t));
        }
        let mut lost: Vec<_> = report
            .lost_jobs
            .iter()
            .map(|l| (l.worker_id, l.job_id.clone()))
            .collect();
        lost.sort();
        for (w, j) in lost {
            self.job_lost(w, &j);
        }
        self.hash.tick(report);
    }

    fn account(&mut self) {
        let live: usize = self.clouds.iter().map(|c| c.lock().instances.len()).sum();
        self.metrics.worker_ms += live as u128 * u128::from(self.step_ms);
        let registered = self.registry.count().unwrap_or(0);
        self.metrics.peak_workers = self.metrics.peak_workers.max(registered);
        for x in [
            self.t,
            self.clock.now(),
            self.pending.len() as u64,
            self.running.len() as u64,
            registered as u64,
            live as u64,
            self.checker.total(),
        ] {
            self.hash.word(x);
        }
    }

    /// Appends a sample: the registry's O(1) counts, the host's queues, the interval's events.
    fn sample(&mut self) {
        let by_state = self
            .registry
            .stats()
            .map(|s| s.by_state)
            .unwrap_or_default();
        let oldest_pending_secs = self
            .pending
            .first()
            .and_then(|seq| self.jobs.get(*seq as usize))
            .map_or(0.0, |j| self.t.saturating_sub(j.arrival) as f64 / 1000.0);
        let mut sample = Sample {
            t_secs: self.t as f64 / 1000.0,
            pending_jobs: self.pending.len(),
            running_jobs: self.running.len(),
            starting: by_state.starting(),
            ready: by_state.ready,
            busy: by_state.busy,
            draining: by_state.draining,
            terminating: by_state.terminating,
            oldest_pending_secs,
            ..Sample::default()
        };
        self.interval.take(&mut sample, self.t, self.wait_window_ms);
        self.timeline.samples.push(sample);
    }

    fn check(&mut self) {
        self.check_pools();
        let instances: Vec<_> = self.clouds.iter().flat_map(|c| c.lock().live()).collect();
        let pending_destroys: HashSet<WorkerId> = self
            .manager
            .pending_destroys()
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        let in_flight = self.manager.stats().map(|s| s.in_flight).unwrap_or(0);
        let view = StepView {
            step: self.step,
            t_ms: self.t,
            now: self.clock.now(),
            in_flight,
            pending_destroys: &pending_destroys,
            instances: &instances,
            pending_jobs: &self.pending_ids,
            lazy_queued: self.lazy.as_ref().map(Subscription::len),
        };
        self.checker.check(&view);
    }

    /// The report of the run so far.
    pub fn report(&self) -> SimReport {
        let mut waits: Vec<u64> = self
            .jobs
            .iter()
            .filter(|j| j.done.is_some())
            .filter_map(|j| j.started)
            .collect();
        waits.sort_unstable();
        let mut cloud = super::cloud::CloudStats::default();
        for c in &self.clouds {
            let stats = &c.lock().stats;
            cloud.panics += stats.panics;
            cloud.vanished += stats.vanished + stats.reclaimed;
            cloud.crashes += stats.crashes;
        }
        let m = &self.metrics;
        SimReport {
            scenario: self.scenario.name.clone(),
            label: self.label.clone(),
            seed: self.scenario.seed,
            simulated_secs: self.t as f64 / 1000.0,
            steps: self.step,
            jobs_arrived: self.jobs.len() as u64,
            jobs_done: self.jobs.iter().filter(|j| j.done.is_some()).count() as u64,
            jobs_running: self.running.len() as u64,
            jobs_pending: self.pending.len() as u64,
            wait_p50_secs: percentile(&waits, 0.50),
            wait_p95_secs: percentile(&waits, 0.95),
            wait_p99_secs: percentile(&waits, 0.99),
            wait_max_secs: waits.last().map_or(0.0, |w| *w as f64 / 1000.0),
            worker_seconds: (m.worker_ms / 1000) as u64,
            peak_workers: m.peak_workers,
            cold_starts: m.cold_starts,
            scale_flaps: m.scale_flaps,
            unhealthy_detections: m.unhealthy,
            lost_jobs: m.lost_jobs,
            requeued_jobs: m.requeued,
            provisioned: m.provisioned,
            provision_failures: m.provision_failures,
            destroy_failures: m.destroy_failures,
            provider_panics: cloud.panics,
            vanished_instances: cloud.vanished,
            agent_crashes: cloud.crashes,
            stall_graces: m.stall_graces,
            mass_expiry_holds: m.mass_expiry_holds,
            reconcile_vanished: m.reconcile_vanished,
            lazy_subscriber_dropped: self.lazy.as_ref().map_or(0, Subscription::dropped),
            violations_total: self.checker.total(),
            violations: self.checker.violations().to_vec(),
            trace_hash: format!("{:016x}", self.hash.0),
        }
    }
}
