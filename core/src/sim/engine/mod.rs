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

mod agents;
mod host;
mod measure;
mod replicas;
mod settle;
mod trace_hash;
mod workload;

use replicas::{ManagerSetup, Replicas, Target};

use trace_hash::TraceHash;
use workload::{arrivals, job_id, job_seq};

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
    /// Replicated runs, deliberately broken: every replica gets a lease of its own (split
    /// brain), so that they all lead at once.
    pub split_brain: bool,
    /// Replicated runs, deliberately broken: the registry does not fence the leader's writes
    /// in the store (no view from `WorkerRegistry::fenced`), so the manager's own fence is
    /// all there is.
    pub no_store_fencing: bool,
    /// Replicated runs, deliberately broken: the clouds do not check fencing tokens, so a
    /// deposed leader's call that reaches one after a pause (`before_create`,
    /// `before_destroy`) takes effect.
    pub no_provider_fencing: bool,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("wrap_registry", &self.wrap_registry.is_some())
            .field("wrap_provider", &self.wrap_provider.is_some())
            .field("drop_lost_jobs", &self.drop_lost_jobs)
            .field("split_brain", &self.split_brain)
            .field("no_store_fencing", &self.no_store_fencing)
            .field("no_provider_fencing", &self.no_provider_fencing)
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
    /// The manager, or the replicas of a replicated run.
    replicas: Replicas,
    /// Settling at the end of a replicated run (no samples then).
    settling: bool,
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
        let pools: Vec<SimPool> = variant
            .and_then(|v| v.pools.clone())
            .unwrap_or_else(|| scenario.pools.clone());
        let mut providers = Vec::new();
        let target = if pools.is_empty() {
            let provider_id = ProviderId::new("sim-cloud")?;
            let cloud = Cloud::new(
                scenario.seed,
                provider_id.clone(),
                scenario.provider.clone(),
                scenario.agents.clone(),
                scenario.faults.provider_outages.clone(),
                clock.clone(),
            );
            providers.push((provider_id.clone(), Arc::new(Mutex::new(cloud))));
            Target::Single(provider_id, Arc::new(spec))
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
                providers.push((provider_id.clone(), Arc::new(Mutex::new(cloud))));
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
            Target::Pools(manager_pools)
        };
        let clouds: Vec<Arc<Mutex<Cloud>>> = providers.iter().map(|(_, c)| c.clone()).collect();
        if scenario.replication.enabled() {
            // The clouds of a replicated run check fencing tokens, as a provider that fences
            // its calls does (a lone manager's tokens are all 1: nothing to check).
            for cloud in &clouds {
                cloud.lock().fencing = !hooks.no_provider_fencing;
            }
        }
        let setup = ManagerSetup {
            registry: Arc::clone(&registry),
            config,
            providers,
            target,
            seed: scenario.seed,
        };
        let tick_ms = secs_to_ms(scenario.host.tick_interval_secs).max(1);
        let replicas = Replicas::start(
            setup,
            &scenario.replication,
            &clock,
            tick_ms,
            hooks.wrap_provider,
            hooks.split_brain,
            hooks.no_store_fencing,
        )?;

        Ok(Simulation {
            scenario: scenario.clone(),
            clock,
            registry,
            replicas,
            settling: false,
            clouds,
            pools,
            classes: scenario.job_classes.clone(),
            waves_sent: HashSet::new(),
            step_ms,
            end_ms,
            t: 0,
            step: 0,
            tick_ms,
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

    /// The manager under test (in a replicated run: the leader's, else the first running
    /// replica's).
    pub fn manager(&self) -> &WorkerLifecycleManager {
        self.replicas.any()
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
    ///
    /// A replicated run then settles (see [`settle`](Self::settle)).
    pub fn run(mut self) -> SimReport {
        while self.step() {}
        self.settle();
        self.report()
    }

    /// Runs to the end and reports, with the run over time (for [`plot_svg`](super::plot_svg)).
    /// The same run as [`run`](Self::run): sampling only reads.
    pub fn run_recorded(mut self) -> (SimReport, Timeline) {
        while self.step() {}
        self.settle();
        (self.report(), self.timeline)
    }

    /// The run over time so far: one [`Sample`] per sampling interval (at most
    /// [`MAX_SAMPLES`](crate::sim::timeline::MAX_SAMPLES) a run; the last one at the run's end).
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The host is stalled, or (replicated runs) no replica runs to serve the agents.
    fn host_down(&self) -> bool {
        !self.replicas.serving()
            || self
                .scenario
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
        // A pause inside a call (replicated runs) may have let the world's time run ahead.
        self.t = (self.t + self.step_ms)
            .min(self.end_ms)
            .max(self.replicas.true_ms());
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
        self.replicas.set_time(self.t);
        if let Err(e) = self.replicas.faults(self.t) {
            self.checker
                .note(Rule::Settled, format!("a replica could not restart: {e}"));
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
        if !self.settling && (self.t >= self.next_sample || self.t >= self.end_ms) {
            self.next_sample = self.t + self.sample_ms;
            self.sample();
        }
        self.t < self.end_ms
    }
}
