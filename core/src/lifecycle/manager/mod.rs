//! [`WorkerLifecycleManager`]: the tick-driven engine on top of a registry.
//!
//! One file per concern; this one holds the struct, its shared bookkeeping and [`tick`]
//! (which calls into the others in order):
//! - `providers`: the registered providers and their create back-off;
//! - `provisioning`: `provision_worker` and the ledger of provisions in flight;
//! - `health`: heartbeats and the health check;
//! - `brake`: the mass-expiry brake, as a pure decision;
//! - `retire`: cleanup, drain and terminate (taking workers out of service);
//! - `destroy_queue`: the `Terminating` workers whose instance must still be destroyed;
//! - `autoscale`: the scaling target, plan and its execution;
//! - `pools`: the pool set (set, add, remove: a removed pool drains);
//! - `pool_tick`: the pools' scaling step of `tick` (plan from the registry's per-pool counts,
//!   execution, takebacks) and the single-target path;
//! - `interruptions`: interruption notices and their deadlines;
//! - `reconcile`: the registry against what the providers really have;
//! - `orphans`: orphan instances whose destroy failed (or that a fenced create left), destroyed
//!   again by the leader's ticks;
//! - `leader`: the leadership lease as the manager uses it (takeover, follower, fence).
//!
//! [`tick`]: WorkerLifecycleManager::tick

mod autoscale;
mod brake;
mod destroy_queue;
mod health;
mod interruptions;
mod leader;
mod orphans;
mod pool_tick;
mod pools;
mod providers;
mod provisioning;
mod reconcile;
mod retire;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::clock::{millis, SystemClock, Timestamp};
use crate::error::Result;
use crate::ids::ProviderId;
use crate::registry::WorkerRegistry;

use super::config::WorkerLifecycleConfig;
use super::lease::{AlwaysLeader, LeaseKeeper, Term};
use super::pools::Demand;
use super::report::{
    CleanupResult, HealthCheckResult, LifecycleStats, ProviderBackoff, ReconcileHoldKind,
    TickReport,
};
use crate::metrics::{ManagerView, Metrics, PoolGauges};

use autoscale::ScalingTarget;
use brake::Brake;
use destroy_queue::DestroyQueue;
use orphans::Orphans;
use pools::{PoolDrains, PoolSet};
use providers::{Backoff, ProviderEntry};
use provisioning::Ledger;

/// When things last happened (the tick's and the autoscaler's cooldowns).
#[derive(Debug, Default)]
struct Schedule {
    last_tick: Option<Timestamp>,
    last_health_check: Option<Timestamp>,
    /// The action cap cut the last health check short: run it again next tick.
    health_check_again: bool,
    /// The fleet is owed a grace period that could not be granted (the registry failed the
    /// write): this leader's takeover's (which is then incomplete), or a host stall's. The
    /// ticks run no health check and retire no worker by scale-down until one of them grants
    /// it (each leader tick retries first, see `retry_grace`). Without the grace, the workers
    /// whose heartbeats went to the dead leader, or were not seen during the stall, would be
    /// expired.
    grace_owed: bool,
    last_scale_up: Option<Timestamp>,
    last_scale_action: Option<Timestamp>,
    /// The last look-up of the terminal records (`adopt_terminal`).
    last_terminal_sweep: Option<Timestamp>,
    /// When a tick runs `reconcile` next (see `reconcile_if_due`): `reconcile_interval` after
    /// the last complete reconcile (a takeover's, a periodic one, a host's call), or after a
    /// back-off (see `reconcile_retry_delay`) when the ticks' last one could not look at every
    /// provider's instances. `None`: none is due (a zero `reconcile_interval`, or not leading).
    next_reconcile: Option<Timestamp>,
    /// The ticks' last reconcile was incomplete: its name, so that the report calls its next
    /// run a run "again".
    reconcile_retry: Option<&'static str>,
    /// The ticks' reconciles that were incomplete in a row since the last complete reconcile:
    /// the exponent of the back-off before the next run.
    reconcile_failures: u32,
}

/// Lifetime totals reported by [`WorkerLifecycleManager::stats`].
#[derive(Debug, Default)]
struct Counters {
    provisioned: AtomicU64,
    provision_failures: AtomicU64,
    terminated: AtomicU64,
    destroy_failures: AtomicU64,
    unhealthy: AtomicU64,
    lost_jobs: AtomicU64,
    holds: AtomicU64,
    /// The ticks' reconciles whose brake held a provider's listing, per provider and side
    /// (`hodei_workers_reconcile_holds_total`). Bounded: one entry per provider id and kind.
    reconcile_holds: Mutex<BTreeMap<(ProviderId, ReconcileHoldKind), u64>>,
}

fn bump(counter: &AtomicU64, by: usize) {
    counter.fetch_add(by as u64, Ordering::Relaxed);
}

/// How many actions the current call may still take (`tick` caps them; direct calls do not).
#[derive(Debug)]
struct Budget {
    left: usize,
    used: usize,
    capped: bool,
    /// Whether to note when the first action starts (for a tick or health check the metrics
    /// did not time: see `metrics::Timer::Untimed`).
    note_first_action: bool,
    first_action: Option<std::time::Instant>,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Budget {
            left: limit,
            used: 0,
            capped: false,
            note_first_action: false,
            first_action: None,
        }
    }

    fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Whether no action is left; records the cap then (the caller leaves the rest for the
    /// next ticks).
    fn exhausted(&mut self) -> bool {
        if self.left == 0 {
            self.capped = true;
        }
        self.left == 0
    }

    /// Takes one action if any is left; records the cap otherwise.
    fn take(&mut self) -> bool {
        if self.left == 0 {
            self.capped = true;
            return false;
        }
        self.left -= 1;
        self.used += 1;
        if self.note_first_action && self.first_action.is_none() {
            self.first_action = Some(std::time::Instant::now());
        }
        true
    }
}

/// Resets the "a tick is running" flag when the tick ends (also by unwinding).
struct TickGuard<'a>(&'a AtomicBool);

impl Drop for TickGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What a tick's health check, cleanup and pool drains have done so far. They write into it
/// as they act, each worker right after its action, and the tick moves it into its report once
/// the phase ended — or once it panicked: it lives outside the unwind, so that what the phase
/// did before a panic is reported too (a job it took out of the registry, above all). The
/// other phases write straight into the report.
#[derive(Debug, Default)]
struct Partial {
    health: HealthCheckResult,
    cleanup: CleanupResult,
    drains: PoolDrains,
}

impl Partial {
    /// Moves the lists into `report`, after what it holds (a takeover's reconcile may have
    /// reported lost jobs before the health check), and starts afresh.
    fn report_into(&mut self, report: &mut TickReport) {
        let Partial {
            health,
            cleanup,
            drains,
        } = std::mem::take(self);
        report.unhealthy.extend(health.unhealthy);
        report.lost_jobs.extend(health.lost_jobs);
        report.terminated.extend(health.terminated);
        report.failed.extend(health.failed);
        report.terminated.extend(cleanup.terminated);
        report.failed.extend(cleanup.failed);
        report.drained.extend(cleanup.drained);
        report.lost_jobs.extend(cleanup.lost_jobs);
        report.drained.extend(drains.drained);
        report.terminated.extend(drains.destroyed.terminated);
        report.failed.extend(drains.destroyed.failed);
    }
}

/// The lifecycle engine: providers, provisioning, health checks, cleanup, autoscaling —
/// driven by [`tick`](Self::tick), on the registry's clock.
///
/// Synchronous and runtime-agnostic: nothing happens between calls. The host calls `tick`
/// regularly (every second, say) and everything due happens inside it; each operation can also
/// be called on its own.
///
/// # Promises
/// - **No provider call runs under a lock**: neither a registry lock nor one of the manager's
///   (its ledger, destroy queue, back-off and schedule sit behind `parking_lot` mutexes held for
///   a few instructions). A panicking provider is caught and becomes a provider error.
/// - **No leaked instances**: a worker's record leaves the registry only after its provider
///   confirmed the destroy (or on an explicit `unregister` by the host); a failed destroy
///   leaves the worker `Terminating` and is retried with exponential back-off. Every
///   `Terminating`/`Terminated` record — whoever put it there, restored ones too — is destroyed
///   from the next tick on.
/// - **Decisions on the record as it is now**: cleanup, health check, scale-down and
///   `terminate_worker` act through conditional transitions
///   ([`WorkerRegistry::transition_if`]), so a worker claimed or reported in meanwhile is never
///   hit by a decision taken on an older view.
/// - **Never above `max_workers`**: registered workers plus provisions in flight, even with
///   `provision_worker` called from many threads at once.
/// - **No job silently dropped**: a job held by a worker taken out of service is reported
///   (in the result of the call that took it, and by the registry's `JobLost` event) so the
///   host can requeue it.
/// - **No mass expiry**: after a pause of the host longer than `heartbeat_timeout` every
///   worker gets a fresh grace period; and a health check that would declare more than
///   `max_unhealthy_fraction` of the fleet unhealthy declares none.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use hodei_workers::*;
///
/// #[derive(Debug)]
/// struct Local;
/// impl WorkerProvider for Local {
///     fn provider_id(&self) -> ProviderId { ProviderId::new("local").unwrap() }
///     fn provider_type(&self) -> ProviderType { ProviderType::BareMetal }
///     fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
///         // Starts the agent with `id` (e.g. HODEI_WORKER_ID=<id>); it reports in with it.
///         let handle = WorkerHandle::new(self.provider_id(), self.provider_type(), "proc-1");
///         Ok(WorkerHandle { worker_id: id, ..handle })
///     }
///     fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> { Ok(()) }
/// }
///
/// let clock = Arc::new(ManualClock::new(1_700_000_000_000));
/// let registry: Arc<dyn WorkerRegistry> =
///     Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
/// let manager = WorkerLifecycleManager::new(registry.clone(), WorkerLifecycleConfig::default())?;
/// manager.register_provider(Arc::new(Local))?;
/// manager.set_scaling_target(&ProviderId::new("local")?, Arc::new(WorkerSpec::new("img")))?;
///
/// // Two jobs wait and no worker exists: the tick provisions (2 jobs + 1 warm).
/// let report = manager.tick(2);
/// assert_eq!(report.provisioned.len(), 3);
/// assert!(report.decisions[0].starts_with("+3: pending 2"));
///
/// // The workers report in...
/// for p in &report.provisioned {
///     registry.update_state(&p.worker_id, WorkerState::Ready)?;
/// }
/// // ...and one goes silent for two minutes while the others heartbeat.
/// clock.advance(Duration::from_secs(120));
/// for p in &report.provisioned[1..] {
///     manager.process_heartbeat(&p.worker_id)?;
/// }
/// let health = manager.run_health_check()?;
/// assert_eq!(health.unhealthy[0].worker_id, report.provisioned[0].worker_id);
/// assert_eq!(health.terminated.len(), 1);
/// # Ok::<(), hodei_workers::Error>(())
/// ```
pub struct WorkerLifecycleManager {
    registry: Arc<dyn WorkerRegistry>,
    config: WorkerLifecycleConfig,
    // The bookkeeping `stats()` reads sits behind `Arc`s shared with the metrics collector,
    // which reads it at scrape time (it may outlive the manager).
    providers: Arc<RwLock<BTreeMap<ProviderId, ProviderEntry>>>,
    ledger: Arc<Mutex<Ledger>>,
    destroys: Arc<Mutex<DestroyQueue>>,
    /// Orphan instances whose destroy failed: retried by the ticks.
    orphans: Mutex<Orphans>,
    /// Instance destroys the providers confirmed (records' and orphans'), ever: `reconcile`
    /// does not take an instance its listing showed for an orphan when a destroy was
    /// confirmed since the listing began (that instance may be a record's, destroyed and
    /// unregistered meanwhile).
    destroys_confirmed: AtomicU64,
    backoff: Arc<Mutex<BackoffMap>>,
    schedule: Mutex<Schedule>,
    target: Mutex<Option<ScalingTarget>>,
    /// Pools and interruption notices (see `pools`).
    pools: Mutex<PoolSet>,
    /// Per pool, the counts the last pools tick built its plan from (shared with the metrics
    /// collector, which reads them at scrape time instead of scanning the registry).
    pool_gauges: Arc<Mutex<BTreeMap<String, PoolGauges>>>,
    counters: Arc<Counters>,
    metrics: Arc<Metrics>,
    ticking: AtomicBool,
    /// The mass-expiry brake's state across health checks.
    brake: Mutex<Brake>,
    /// The leadership lease: the term this manager acts under, and its trust window (shared
    /// with the metrics view).
    lease: Arc<LeaseKeeper>,
    /// The store-fenced view of the registry for the term held, made once per term.
    writes: Mutex<Option<(Term, FencedView)>>,
    /// Where new worker ids come from (random by default; a simulation seeds it).
    worker_ids: Mutex<Option<provisioning::IdSource>>,
}

/// [`WorkerRegistry::fenced`] for a term: `None` when the store cannot fence (the writes go to
/// the registry itself).
type FencedView = Option<Arc<dyn WorkerRegistry>>;

impl fmt::Debug for WorkerLifecycleManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerLifecycleManager")
            .field("registry", &self.registry)
            .field("config", &self.config)
            .field(
                "providers",
                &self.providers.read().keys().cloned().collect::<Vec<_>>(),
            )
            .field("in_flight", &self.ledger.lock().in_flight.len())
            .field("pending_destroys", &self.destroys.lock().len())
            .finish_non_exhaustive()
    }
}

impl WorkerLifecycleManager {
    /// A manager on `registry` (and its clock) with `config`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when `config` fails [`WorkerLifecycleConfig::validate`].
    pub fn new(registry: Arc<dyn WorkerRegistry>, config: WorkerLifecycleConfig) -> Result<Self> {
        let since = registry.now();
        let manager = Self::build(
            registry,
            config,
            LeaseKeeper::new(
                Arc::new(AlwaysLeader::new(since)),
                Arc::new(SystemClock::new()),
            ),
        )?;
        // The single-process lease is held from the start: direct calls work before any tick,
        // and the first tick does not "take over" (today's behaviour).
        manager.lease.renew();
        Ok(manager)
    }

    fn build(
        registry: Arc<dyn WorkerRegistry>,
        config: WorkerLifecycleConfig,
        lease: LeaseKeeper,
    ) -> Result<Self> {
        config.validate()?;
        let now = registry.now();
        let next_reconcile = periodic_reconcile_after(&config, now);
        let providers = Arc::new(RwLock::new(BTreeMap::new()));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let destroys = Arc::new(Mutex::new(DestroyQueue::default()));
        let backoff = Arc::new(Mutex::new(BackoffMap::new()));
        let counters = Arc::new(Counters::default());
        let pool_gauges: Arc<Mutex<BTreeMap<String, PoolGauges>>> = Arc::default();
        let lease = Arc::new(lease);
        let metrics = {
            let lease = Arc::clone(&lease);
            let metrics_registry = Arc::clone(&registry);
            let (registry, providers, ledger, destroys, backoff, counters, pool_gauges) = (
                Arc::clone(&registry),
                Arc::clone(&providers),
                Arc::clone(&ledger),
                Arc::clone(&destroys),
                Arc::clone(&backoff),
                Arc::clone(&counters),
                Arc::clone(&pool_gauges),
            );
            let view = move || -> ManagerView {
                // The manager's own numbers read whatever the registry says: only the
                // families of its counts are left out when it cannot answer.
                let own = own_stats_of(&providers, &ledger, &destroys, &counters);
                let (stats, counted) = match registry.stats() {
                    Ok(registry) => (LifecycleStats { registry, ..own }, true),
                    Err(_) => (own, false),
                };
                let requested = {
                    // Lock order: providers, then the rest (as `unregister_provider`).
                    let providers = providers.read();
                    let ledger = ledger.lock();
                    providers
                        .keys()
                        .map(|p| (p.clone(), ledger.started.get(p).copied().unwrap_or(0)))
                        .collect()
                };
                let now = registry.now();
                let leading = lease.fence().is_ok();
                ManagerView {
                    stats,
                    counted,
                    requested,
                    backoff: backoff_of(&backoff, now),
                    now,
                    // The leader's numbers: a replica that does not lead now (its trust
                    // window closed without a tick to forget them) shows none.
                    pools: if leading {
                        pool_gauges
                            .lock()
                            .iter()
                            .map(|(name, g)| (name.clone(), *g))
                            .collect()
                    } else {
                        Vec::new()
                    },
                    leader: (leading, lease.leader().map_or(0, |l| l.term)),
                    reconcile_holds: counters
                        .reconcile_holds
                        .lock()
                        .iter()
                        .map(|((p, k), n)| (p.clone(), *k, *n))
                        .collect(),
                }
            };
            Arc::new(Metrics::new(Arc::clone(&metrics_registry), Box::new(view)))
        };
        Ok(WorkerLifecycleManager {
            registry,
            config,
            providers,
            ledger,
            destroys,
            orphans: Mutex::new(Orphans::default()),
            destroys_confirmed: AtomicU64::new(0),
            backoff,
            // The manager starts watching now: a first tick long after this is a stall too.
            schedule: Mutex::new(Schedule {
                last_tick: Some(now),
                // The first periodic reconcile of a manager that leads from the start (a
                // replicated one reconciles when it takes the lease, and schedules from there).
                next_reconcile,
                ..Schedule::default()
            }),
            target: Mutex::new(None),
            pools: Mutex::new(PoolSet::default()),
            pool_gauges,
            counters,
            metrics,
            ticking: AtomicBool::new(false),
            brake: Mutex::new(Brake::default()),
            lease,
            writes: Mutex::new(None),
            worker_ids: Mutex::new(None),
        })
    }

    /// The registry the manager drives.
    pub fn registry(&self) -> &Arc<dyn WorkerRegistry> {
        &self.registry
    }

    /// The configuration.
    pub fn config(&self) -> &WorkerLifecycleConfig {
        &self.config
    }

    // ----- tick ------------------------------------------------------------------------------

    /// Does whatever is due, in one call, and explains it:
    /// 1. after a pause longer than `heartbeat_timeout` since the previous tick, grants every
    ///    worker a fresh grace period (`stall_grace`);
    /// 2. the health check, every `health_check_interval`;
    /// 3. cleanup (idle, lifetime, drained) and destroy retries that are due;
    /// 4. [`reconcile`](Self::reconcile), every `reconcile_interval` after the last complete
    ///    one (and, while the ticks' last one was incomplete, again after a back-off:
    ///    `destroy_retry_initial` doubling up to `reconcile_interval`), so that an orphan
    ///    instance that appeared since is destroyed on a host that only ticks; reported as a
    ///    takeover's reconcile is (`decisions`, `lost_jobs`). Its orphan destroys spend the
    ///    tick's actions; the orphans over the cap are destroyed by the next ticks. It is
    ///    braked as the health check is: a provider whose listing would expire more of its
    ///    workers (`Terminating` ones included) as vanished than `max_unhealthy_fraction` (and
    ///    `unhealthy_floor`)
    ///    allows has none of them expired (`listing of P would expire N of M workers: held by
    ///    the brake`), and one whose listing shows more instances no record knows than the
    ///    same rule allows against the provider's records has none of them destroyed
    ///    (`listing of P shows N instances no record knows (of M records): held by the
    ///    brake`: another tenant's or region's instances, a misconfigured listing; after
    ///    losing its registry, the host calls [`reconcile`](Self::reconcile), which is not
    ///    braked); either way the run is incomplete, the hold is in `reconcile_held` and
    ///    counted in `hodei_workers_reconcile_holds_total{provider, kind}`;
    /// 5. interruption deadlines ([`notify_interruption`](Self::notify_interruption)): a job
    ///    still running on an interrupted worker at its deadline is reported lost;
    /// 6. scaling toward `demand`: over the pools when any is set
    ///    ([`set_pools`](Self::set_pools), see [`plan_pools`](Self::plan_pools)), otherwise toward
    ///    the target set by [`set_scaling_target`](Self::set_scaling_target) — a number of
    ///    pending jobs (`tick(5)`) is a demand of jobs that need nothing in particular. The
    ///    target counts and retires only its own workers, never those of pools (set on
    ///    another replica, or not yet on this one), which count against `max_workers` all the
    ///    same.
    ///    Demand that no pool (or the target's spec) satisfies is listed in `unschedulable`.
    ///    Before it, the workers of pools that a [`set_pools`](Self::set_pools) or
    ///    [`remove_pool`](Self::remove_pool) removed or reshaped but did not drain (called on
    ///    a follower, or cut short by a registry error or a lost lease) are drained, reported
    ///    in `drained` (`terminated` for those still starting).
    ///
    /// At most `max_actions_per_tick` actions are taken; the rest waits for the next ticks
    /// (`capped`). A call while another thread ticks returns at once with `skipped`.
    /// Errors of the registry are reported in `decisions`, never panicked on.
    ///
    /// # Panics
    /// A panic in a phase (a bug of a host's own [`WorkerRegistry`], [`Clock`](crate::Clock)
    /// or [`Leadership`](crate::Leadership) implementation, or of the library; a provider's
    /// panic is a failed provider call already) does not unwind out of `tick` (since
    /// 2026-12-07; it did before, and the report went with it): the tick returns the report of
    /// what it did until then — the jobs lost by the phases that ended and, since 2026-12-08,
    /// by the phase that panicked before its panic, to requeue —
    /// with [`TickReport::panicked`] set to the panic's message and a line of `decisions`
    /// naming the phase; the rest of the tick is not done, and the next tick does what is
    /// still due. Such a tick counts as a tick (`hodei_workers_ticks_total`) and in
    /// `hodei_workers_tick_panics_total`. Only a panic before the phases (the registry's
    /// clock read that dates the report) still unwinds to the caller.
    pub fn tick(&self, demand: impl Into<Demand>) -> TickReport {
        self.tick_with(Some(&demand.into()))
    }

    /// A tick whose demand is not known (the ticker's demand callback has not answered once):
    /// every phase but scaling, which plans neither provisions nor retirements on a demand
    /// made up (0 would retire the idle workers). Interruption deadlines are still acted on.
    pub(crate) fn tick_without_demand(&self) -> TickReport {
        self.tick_with(None)
    }

    /// [`tick`](Self::tick), or [`tick_without_demand`](Self::tick_without_demand) for `None`.
    fn tick_with(&self, demand: Option<&Demand>) -> TickReport {
        let mut report = TickReport {
            at: self.registry.now(),
            pending_jobs: demand.map_or(0, Demand::total),
            ..TickReport::default()
        };
        if self.ticking.swap(true, Ordering::AcqRel) {
            report.skipped = true;
            report
                .decisions
                .push("skipped: another thread is ticking".to_owned());
            return report;
        }
        let _guard = TickGuard(&self.ticking);
        let timer = self.metrics.start_tick();
        crate::trace::span!(
            "tick",
            pending_jobs = report.pending_jobs,
            requirements = demand.map_or(0, |d| d.requirements.len())
        );
        let mut budget = Budget::new(self.config.max_actions_per_tick);
        budget.note_first_action = timer.wants_first_action();
        let mut phase = "lease";
        // A panic of a phase (a host's own registry, clock or lease with a bug: a provider's
        // panic is caught around each provider call already) must not take the report with
        // it: the phases before it may have taken workers out of service, whose jobs are in
        // `lost_jobs` and nowhere else the host requeues from. So the report built so far is
        // returned, with the panic said.
        //
        // Unwind safety (`AssertUnwindSafe`): what the closure mutates is the budget, the
        // phase, `partial` and the report, which hold only what was done (each entry pushed
        // after its action), and the manager's own state, which a phase changes only under its
        // `parking_lot` locks (released on unwind, never poisoned), with no lock held across a
        // call out to the host's code, except for `writes` around `WorkerRegistry::fenced`,
        // whose slot is written only once the call returned. What a phase holds across such a
        // call is released by a guard: the tick flag (`TickGuard`, above), a provision's
        // ledger ticket and the instance it created (`Ticket`, `OrphanOnUnwind`), the destroys
        // it picked (`ReleaseOnUnwind`), its claim on an orphan's destroy (`OrphanClaim`), the
        // brake's release (`Settle`), the pools it drains (`DrainsOnUnwind`), a destroy entry
        // the reconcile withdrew (`PutBackOnUnwind`); a takeover's grace period and reconcile
        // stay owed until done (`take_over`). The health check, the cleanup and the pool
        // drains write what they do into `partial` as they go, outside the unwind too: what the
        // phase that panicked did before the panic is reported with the rest (the other phases
        // write straight into the report).
        let mut partial = Partial::default();
        let phases = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.tick_phases(demand, &mut budget, &mut report, &mut phase, &mut partial);
        }));
        let panicked = phases.is_err();
        if let Err(payload) = phases {
            partial.report_into(&mut report);
            let message = super::panic_message(payload.as_ref());
            report.decisions.push(format!(
                "tick panicked in the {phase} phase: {message}; the rest of the tick was not \
                 done (the next tick does what is still due)"
            ));
            report.panicked = Some(message);
        }
        // Every tick that ran, also one that stopped early (a follower's, one that lost the
        // lease midway): its actions reported, counted in the duration histogram, traced.
        report.actions = budget.used;
        report.capped = budget.capped;
        if budget.capped {
            report.decisions.push(format!(
                "action cap max_actions_per_tick {} reached: the rest is left for the next ticks",
                self.config.max_actions_per_tick
            ));
        }
        // A tick that panicked ran all the same: counted and timed as a tick, and in
        // `hodei_workers_tick_panics_total` too.
        self.metrics.tick_done(timer, budget.first_action, panicked);
        crate::trace::tick_report(&report);
        report
    }

    /// The phases of a tick (see [`tick`](Self::tick)), each while the lease is still trusted;
    /// returns early when it is not. `phase` names the phase running (what a panic's line in
    /// the report says); the health check, the cleanup and the pool drains work in `partial`,
    /// moved into the report once each phase ended.
    fn tick_phases(
        &self,
        demand: Option<&Demand>,
        budget: &mut Budget,
        report: &mut TickReport,
        phase: &mut &'static str,
        partial: &mut Partial,
    ) {
        let now = report.at;
        // A follower only tries to take or keep the lease; a new leader takes over first.
        if !self.lead(budget, report) {
            return;
        }

        *phase = "stall check";
        let (stall, health_due) = {
            let mut s = self.schedule.lock();
            let stall = s
                .last_tick
                .map(|last| now.saturating_sub(last))
                .filter(|gap| *gap > millis(self.config.heartbeat_timeout));
            s.last_tick = Some(now);
            let interval = millis(self.config.health_check_interval);
            let health_due = s.health_check_again
                || s.last_health_check
                    .is_none_or(|last| now.saturating_sub(last) >= interval);
            (stall, health_due)
        };
        if let Some(gap) = stall {
            match self.write(|r| r.grant_grace(now)) {
                Ok(()) => {
                    self.schedule.lock().grace_owed = false;
                    report.stall_grace = Some(gap);
                    report.decisions.push(format!(
                        "host stall: no tick for {:.1} s (> heartbeat_timeout {:.1} s); every \
                         worker gets a fresh grace period",
                        gap as f64 / 1000.0,
                        self.config.heartbeat_timeout.as_secs_f64()
                    ));
                }
                Err(e) => {
                    // The next tick is no stall: it would expire the workers whose heartbeats
                    // were not seen during this one. The grace is owed until a tick grants it.
                    self.schedule.lock().grace_owed = true;
                    report.decisions.push(format!(
                        "host stall: no tick for {:.1} s, and grant_grace failed: {e}; no \
                         health check and no scale-down until a tick grants the grace period",
                        gap as f64 / 1000.0
                    ));
                }
            }
        }
        // While the fleet is owed a grace period (a takeover's or a stall's grant failed), no
        // worker is checked, nor retired by scale-down: the cooldown restarts at each such
        // tick, as at a takeover, so it runs out only once the grace is granted.
        let health_due = if self.schedule.lock().grace_owed {
            self.restart_scale_down_cooldowns(now);
            false
        } else {
            health_due
        };

        // Each phase starts only while the lease is still trusted (a tick can be long).
        *phase = "health check";
        if !self.still_leading(report) {
            return;
        }
        if health_due {
            match self.health_check_inner(budget, &mut partial.health) {
                Ok(()) => {
                    let hc = &partial.health;
                    report.health_checked = true;
                    {
                        let mut s = self.schedule.lock();
                        s.last_health_check = Some(now);
                        s.health_check_again = hc.deferred > 0;
                    }
                    if let Some(hold) = hc.held {
                        report.decisions.push(format!(
                            "mass-expiry brake held: {} of {} watched workers silent at once \
                             (more than {} allowed); none of the {} past the deadline declared \
                             unhealthy",
                            hold.suspect, hold.live, hold.allowed, hold.would_expire
                        ));
                    }
                    if hc.brake_released {
                        report.decisions.push(
                            "mass-expiry brake released: the silent workers are back; every \
                             worker gets a fresh grace period"
                                .to_owned(),
                        );
                    }
                    if let Some(gave_up) = hc.brake_gave_up {
                        report.decisions.push(format!(
                            "mass-expiry brake released after holding {:.0} s: {} of {} watched \
                             workers still silent (longer than max_mass_expiry_hold {:.0} s: not \
                             a partition); the {} past the deadline are declared unhealthy",
                            gave_up.held_for as f64 / 1000.0,
                            gave_up.hold.suspect,
                            gave_up.hold.live,
                            self.config.max_mass_expiry_hold.as_secs_f64(),
                            gave_up.hold.would_expire
                        ));
                    }
                    report.brake_released = hc.brake_released;
                    report.brake_gave_up = hc.brake_gave_up;
                    report.mass_expiry_held = hc.held;
                }
                Err(e) => report.decisions.push(format!("health check failed: {e}")),
            }
            partial.report_into(report);
        }

        *phase = "cleanup";
        if !self.still_leading(report) {
            return;
        }
        // Said here; the cleanup below looks again (O(1) once they are queued) and destroys them.
        match self.adopt_terminal(now) {
            Ok(adopted) if !adopted.is_empty() => report.decisions.push(format!(
                "{} Terminating/Terminated record(s) nobody was destroying (set by the host, or \
                 restored from a snapshot): queued for destruction",
                adopted.len()
            )),
            Ok(_) => {}
            Err(e) => report
                .decisions
                .push(format!("terminal records check failed: {e}")),
        }
        // What the cleanup did is reported even when an error cut it short.
        let error = self.cleanup_inner(budget, &mut partial.cleanup);
        partial.report_into(report);
        if let Some(e) = error {
            report.decisions.push(format!("cleanup failed: {e}"));
        }
        *phase = "orphan retries";
        self.retry_orphans(budget, report);
        *phase = "reconcile";
        self.reconcile_if_due(now, budget, report);

        *phase = "pool drains";
        if !self.still_leading(report) {
            return;
        }
        // Before the plan: a worker of a pool no longer configured so is no capacity.
        self.drain_undrained(budget, report, &mut partial.drains);
        partial.report_into(report);
        *phase = "scaling";
        self.scale_tick(demand, budget, report);
        // The report says whether this manager still leads at the end of the tick: a lease
        // lost during a provider call (a long pause) must not read as leading, even when the
        // pause escaped this replica's own clock (the store is asked).
        *phase = "lease check";
        self.still_leading_by_store(report);

        *phase = "provider back-off";
        report.provider_backoff = self.provider_backoff();
    }

    /// The manager's view: registry counts, provisions in flight, pending destroys, lifetime
    /// totals.
    ///
    /// # Errors
    /// Only when the registry fails to answer.
    pub fn stats(&self) -> Result<LifecycleStats> {
        stats_of(
            &*self.registry,
            &self.providers,
            &self.ledger,
            &self.destroys,
            &self.counters,
        )
    }

    /// The manager's metrics: a `prometheus_client` [`Collector`](prometheus_client::collector::Collector)
    /// to register with the host's own registry (`registry.register_collector(Box::new(m))`).
    /// Every call returns the same collector; it reads the manager's and the registry's
    /// numbers at each scrape (see [`crate::metrics`] for the list and the costs).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The metrics in the OpenMetrics text format (what a `/metrics` endpoint serves, with
    /// content type `application/openmetrics-text; version=1.0.0; charset=utf-8`).
    pub fn metrics_text(&self) -> String {
        self.metrics.encode_text()
    }
}

type BackoffMap = std::collections::HashMap<ProviderId, Backoff>;

/// When the periodic reconcile after a complete one at `at` is due: `None` when
/// `reconcile_interval` is zero (disabled).
fn periodic_reconcile_after(config: &WorkerLifecycleConfig, at: Timestamp) -> Option<Timestamp> {
    (!config.reconcile_interval.is_zero())
        .then(|| at.saturating_add(millis(config.reconcile_interval)))
}

/// What [`WorkerLifecycleManager::stats`] reports, from the shared bookkeeping (the metrics
/// collector calls it too, so both always agree).
fn stats_of(
    registry: &dyn WorkerRegistry,
    providers: &RwLock<BTreeMap<ProviderId, ProviderEntry>>,
    ledger: &Mutex<Ledger>,
    destroys: &Mutex<DestroyQueue>,
    c: &Counters,
) -> Result<LifecycleStats> {
    let own = own_stats_of(providers, ledger, destroys, c);
    Ok(LifecycleStats {
        registry: registry.stats()?,
        ..own
    })
}

/// The manager's own part of [`stats_of`] (the registry's counts left empty): what the metrics
/// still read when the registry cannot answer.
fn own_stats_of(
    providers: &RwLock<BTreeMap<ProviderId, ProviderEntry>>,
    ledger: &Mutex<Ledger>,
    destroys: &Mutex<DestroyQueue>,
    c: &Counters,
) -> LifecycleStats {
    // One lock at a time: a guard taken inside the struct literal below would live to the end
    // of the statement, and holding the ledger while taking `providers` inverts the lock order
    // of `unregister_provider` (providers, then the rest): a deadlock.
    let in_flight = ledger.lock().in_flight.len();
    let pending_destroys = destroys.lock().len();
    let provider_count = providers.read().len();
    LifecycleStats {
        registry: crate::registry::WorkerRegistryStats::default(),
        in_flight,
        pending_destroys,
        providers: provider_count,
        provisioned_total: c.provisioned.load(Ordering::Relaxed),
        provision_failures_total: c.provision_failures.load(Ordering::Relaxed),
        terminated_total: c.terminated.load(Ordering::Relaxed),
        destroy_failures_total: c.destroy_failures.load(Ordering::Relaxed),
        unhealthy_total: c.unhealthy.load(Ordering::Relaxed),
        lost_jobs_total: c.lost_jobs.load(Ordering::Relaxed),
        mass_expiry_holds_total: c.holds.load(Ordering::Relaxed),
    }
}

/// The providers backed off at `now`, by id.
fn backoff_of(backoff: &Mutex<BackoffMap>, now: Timestamp) -> Vec<ProviderBackoff> {
    let mut out: Vec<ProviderBackoff> = backoff
        .lock()
        .iter()
        .filter(|(_, b)| b.until > now)
        .map(|(p, b)| ProviderBackoff {
            provider_id: p.clone(),
            consecutive_failures: b.failures,
            until: b.until,
        })
        .collect();
    out.sort_by(|a, b| a.provider_id.cmp(&b.provider_id));
    out
}
