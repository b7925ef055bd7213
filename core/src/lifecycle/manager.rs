//! [`WorkerLifecycleManager`]: the tick-driven engine on top of a registry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::clock::{millis, Timestamp};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::filter::WorkerFilter;
use crate::ids::{JobId, ProviderId, WorkerId};
use crate::registry::WorkerRegistry;
use crate::state::WorkerState;
use crate::worker::{ProviderType, TerminationReason, Worker, WorkerHandle, WorkerSpec};

use super::config::{backoff_delay, WorkerLifecycleConfig};
use super::provider::{guarded, ProviderError, WorkerProvider};
use super::report::{
    CleanupResult, DestroyFailure, HealthCheckResult, LifecycleStats, LostJob, MassExpiryGiveUp,
    MassExpiryHold, OrphanInstance, ProviderBackoff, ProvisionFailure, ProvisionedWorker,
    ReconcileReport, ScalingPlan, TerminatedWorker, TickReport, UnhealthyWorker,
};
use super::scaling::{decide, ScalingInputs};

/// A registered provider and what it said about itself at registration.
#[derive(Clone)]
struct ProviderEntry {
    provider: Arc<dyn WorkerProvider>,
    provider_type: ProviderType,
}

/// Provisions in flight: recorded before the provider is called, removed after the worker is
/// registered (or the call failed). Counted against `max_workers` and against demand.
#[derive(Debug, Default)]
struct Ledger {
    next: u64,
    in_flight: HashMap<u64, ProviderId>,
    /// Provisions ever started per provider (reconcile uses it to see one start under it).
    started: HashMap<ProviderId, u64>,
}

impl Ledger {
    fn in_flight_for(&self, provider: &ProviderId) -> usize {
        self.in_flight.values().filter(|p| *p == provider).count()
    }
}

/// A `Terminating` worker whose instance still has to be destroyed.
#[derive(Debug, Clone)]
struct DestroyEntry {
    handle: Arc<WorkerHandle>,
    reason: TerminationReason,
    /// Failed attempts so far.
    attempts: u32,
    next_at: Timestamp,
    /// A thread is calling the provider for it right now.
    in_progress: bool,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Timestamp,
}

#[derive(Debug, Default)]
struct Schedule {
    last_tick: Option<Timestamp>,
    last_health_check: Option<Timestamp>,
    /// The action cap cut the last health check short: run it again next tick.
    health_check_again: bool,
    last_scale_up: Option<Timestamp>,
    last_scale_action: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct ScalingTarget {
    provider_id: ProviderId,
    spec: Arc<WorkerSpec>,
}

#[derive(Debug, Default)]
struct Counters {
    provisioned: AtomicU64,
    provision_failures: AtomicU64,
    terminated: AtomicU64,
    destroy_failures: AtomicU64,
    unhealthy: AtomicU64,
    lost_jobs: AtomicU64,
    holds: AtomicU64,
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
}

impl Budget {
    fn new(limit: usize) -> Self {
        Budget {
            left: limit,
            used: 0,
            capped: false,
        }
    }

    fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Takes one action if any is left; records the cap otherwise.
    fn take(&mut self) -> bool {
        if self.left == 0 {
            self.capped = true;
            return false;
        }
        self.left -= 1;
        self.used += 1;
        true
    }
}

/// Outcome of destroying queued workers.
#[derive(Debug, Default)]
struct Destroyed {
    terminated: Vec<TerminatedWorker>,
    failed: Vec<DestroyFailure>,
    deferred: usize,
}

/// Removes a provision from the ledger when dropped, whatever happened.
struct Ticket<'a> {
    ledger: &'a Mutex<Ledger>,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.ledger.lock().in_flight.remove(&self.id);
    }
}

/// Resets the "a tick is running" flag when the tick ends (also by unwinding).
struct TickGuard<'a>(&'a AtomicBool);

impl Drop for TickGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
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
///   leaves the worker `Terminating` and is retried with exponential back-off.
/// - **Never above `max_workers`**: registered workers plus provisions in flight, even with
///   `provision_worker` called from many threads at once.
/// - **No job silently dropped**: a job held by a worker taken out of service is reported
///   (in the result and by the registry's `JobLost` event) so the host can requeue it.
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
///     fn create_worker(&self, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
///         Ok(WorkerHandle::new(self.provider_id(), self.provider_type(), "proc-1"))
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
    providers: RwLock<BTreeMap<ProviderId, ProviderEntry>>,
    ledger: Mutex<Ledger>,
    destroys: Mutex<HashMap<WorkerId, DestroyEntry>>,
    backoff: Mutex<HashMap<ProviderId, Backoff>>,
    schedule: Mutex<Schedule>,
    target: Mutex<Option<ScalingTarget>>,
    counters: Counters,
    ticking: AtomicBool,
    /// The mass-expiry brake's state across health checks.
    brake: Mutex<Brake>,
}

/// The mass-expiry brake's memory between health checks.
#[derive(Debug, Default)]
struct Brake {
    /// The first check of the current hold, while the brake holds (it held at the last check).
    held_since: Option<Timestamp>,
    /// The brake gave up on the current episode (held longer than `max_mass_expiry_hold`): no
    /// new hold starts until a check finds the fleet back under the limit, or the survivors of
    /// a real mass death would be held again right after the dead were expired.
    spent: bool,
}

/// What the brake does in one health check.
enum BrakeVerdict {
    /// Hold back the heartbeat expiries.
    Hold,
    /// Held for longer than `max_mass_expiry_hold` (ms): expire them after all.
    GiveUp(u64),
    /// It held at the last check and the fleet is back under the limit: grace for everyone.
    Release,
    /// Nothing to do with the brake: expire normally.
    Normal,
}

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
    /// [`Error::InvalidArgument`] when `config` fails [`WorkerLifecycleConfig::validate`].
    pub fn new(registry: Arc<dyn WorkerRegistry>, config: WorkerLifecycleConfig) -> Result<Self> {
        config.validate()?;
        let now = registry.now();
        Ok(WorkerLifecycleManager {
            registry,
            config,
            providers: RwLock::new(BTreeMap::new()),
            ledger: Mutex::new(Ledger::default()),
            destroys: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            // The manager starts watching now: a first tick long after this is a stall too.
            schedule: Mutex::new(Schedule {
                last_tick: Some(now),
                ..Schedule::default()
            }),
            target: Mutex::new(None),
            counters: Counters::default(),
            ticking: AtomicBool::new(false),
            brake: Mutex::new(Brake::default()),
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

    // ----- providers -------------------------------------------------------------------------

    /// Adds a provider under its [`provider_id`](WorkerProvider::provider_id).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a provider with that id is registered already or asking
    /// the provider its id panicked; [`Error::Provider`] when asking its type panicked.
    pub fn register_provider(&self, provider: Arc<dyn WorkerProvider>) -> Result<()> {
        // Asked outside any lock: this is user code.
        let id = guarded("provider_id", || Ok(provider.provider_id()))
            .map_err(|e| Error::invalid(format!("cannot register provider: {e}")))?;
        let provider_type =
            guarded("provider_type", || Ok(provider.provider_type())).map_err(|e| {
                Error::Provider {
                    provider_id: id.clone(),
                    message: e.to_string(),
                }
            })?;
        let mut providers = self.providers.write();
        if providers.contains_key(&id) {
            return Err(Error::invalid(format!(
                "provider {id} is already registered"
            )));
        }
        providers.insert(
            id,
            ProviderEntry {
                provider,
                provider_type,
            },
        );
        Ok(())
    }

    /// Removes a provider. Its workers stay registered; destroys for them fail (and are
    /// retried) until a provider with that id is registered again; a scaling target on it is
    /// cleared.
    ///
    /// # Errors
    /// [`Error::ProviderNotFound`].
    pub fn unregister_provider(&self, provider_id: &ProviderId) -> Result<()> {
        let removed = self.providers.write().remove(provider_id);
        match removed {
            Some(_entry) => {
                let mut target = self.target.lock();
                if target
                    .as_ref()
                    .is_some_and(|t| &t.provider_id == provider_id)
                {
                    *target = None;
                }
                drop(target);
                self.backoff.lock().remove(provider_id);
                // `_entry` (perhaps the last reference to user code) drops here, lock-free.
                Ok(())
            }
            None => Err(Error::ProviderNotFound(provider_id.clone())),
        }
    }

    /// Ids of the registered providers, sorted.
    pub fn providers(&self) -> Vec<ProviderId> {
        self.providers.read().keys().cloned().collect()
    }

    fn provider(&self, id: &ProviderId) -> Option<ProviderEntry> {
        self.providers.read().get(id).cloned()
    }

    // ----- provisioning ----------------------------------------------------------------------

    /// Asks `provider_id` for a worker with `spec` and registers it (in `Creating`; the host
    /// moves it on when its agent reports in).
    ///
    /// The intent is recorded in the provisioning ledger **before** the provider is called, so
    /// concurrent calls never exceed `max_workers`. Emits `ProvisionRequested`, and
    /// `ProvisionFailed` on failure; consecutive failures back the provider off for automatic
    /// scaling (a direct call is always attempted).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an invalid spec; [`Error::ProviderNotFound`];
    /// [`Error::CapacityExceeded`] at `max_workers`; [`Error::Provider`] when the provider
    /// failed or panicked; a registry error when the handle could not be registered (the new
    /// instance is then destroyed, so nothing leaks).
    pub fn provision_worker(
        &self,
        provider_id: &ProviderId,
        spec: Arc<WorkerSpec>,
    ) -> Result<Worker> {
        self.provision_inner(provider_id, spec)
            .map_err(|(error, _failure)| error)
    }

    fn provision_inner(
        &self,
        provider_id: &ProviderId,
        spec: Arc<WorkerSpec>,
    ) -> std::result::Result<Worker, (Error, Option<ProvisionFailure>)> {
        spec.validate().map_err(|e| (e, None))?;
        let entry = self
            .provider(provider_id)
            .ok_or_else(|| (Error::ProviderNotFound(provider_id.clone()), None))?;
        let ticket = self.reserve(provider_id).map_err(|e| (e, None))?;
        let _ = self.registry.publish(EventKind::ProvisionRequested {
            provider_id: provider_id.clone(),
        });

        let created = guarded("create_worker", || entry.provider.create_worker(&spec));
        let mut handle = match created {
            Ok(handle) => handle,
            Err(e) => {
                drop(ticket);
                let failure = self.record_create_failure(provider_id, &e);
                return Err((
                    Error::Provider {
                        provider_id: provider_id.clone(),
                        message: format!("create_worker failed: {e}"),
                    },
                    Some(failure),
                ));
            }
        };
        // The worker belongs to the provider that was asked, whatever the handle says: destroys
        // are routed by it.
        handle.provider_id = provider_id.clone();
        handle.provider_type = entry.provider_type.clone();
        match self.registry.register(handle.clone(), spec) {
            Ok(worker) => {
                // Registered first, ledger entry removed second: the count never dips.
                drop(ticket);
                self.backoff.lock().remove(provider_id);
                bump(&self.counters.provisioned, 1);
                Ok(worker)
            }
            Err(e) => {
                drop(ticket);
                // The instance exists but cannot be recorded: destroy it rather than leak it.
                // (Should that fail too, `reconcile` finds it as an orphan.)
                let _ = guarded("destroy_worker", || entry.provider.destroy_worker(&handle));
                Err((e, None))
            }
        }
    }

    /// Records a provision in flight if there is room under `max_workers`.
    fn reserve(&self, provider_id: &ProviderId) -> Result<Ticket<'_>> {
        let mut ledger = self.ledger.lock();
        // The registry never calls back into the manager or user code: reading its count under
        // the ledger lock is what makes concurrent reservations exact.
        let registered = self.registry.count()?;
        let in_flight = ledger.in_flight.len();
        if registered + in_flight >= self.config.max_workers {
            return Err(Error::CapacityExceeded(format!(
                "max_workers {} reached ({registered} registered, {in_flight} being provisioned); \
                 not asking provider {provider_id}",
                self.config.max_workers
            )));
        }
        let id = ledger.next;
        ledger.next += 1;
        ledger.in_flight.insert(id, provider_id.clone());
        *ledger.started.entry(provider_id.clone()).or_default() += 1;
        Ok(Ticket {
            ledger: &self.ledger,
            id,
        })
    }

    fn record_create_failure(
        &self,
        provider_id: &ProviderId,
        e: &ProviderError,
    ) -> ProvisionFailure {
        let now = self.registry.now();
        let state = {
            let mut backoff = self.backoff.lock();
            let entry = backoff.entry(provider_id.clone()).or_insert(Backoff {
                failures: 0,
                until: now,
            });
            entry.failures = entry.failures.saturating_add(1);
            entry.until = now.saturating_add(millis(backoff_delay(
                self.config.provider_backoff_initial,
                self.config.provider_backoff_max,
                entry.failures,
            )));
            *entry
        };
        bump(&self.counters.provision_failures, 1);
        let _ = self.registry.publish(EventKind::ProvisionFailed {
            provider_id: provider_id.clone(),
            error: e.to_string(),
        });
        ProvisionFailure {
            provider_id: provider_id.clone(),
            kind: e.kind,
            error: e.to_string(),
            consecutive_failures: state.failures,
            backoff_until: state.until,
        }
    }

    /// Providers backing off now (after consecutive create failures).
    pub fn provider_backoff(&self) -> Vec<ProviderBackoff> {
        let now = self.registry.now();
        let mut out: Vec<ProviderBackoff> = self
            .backoff
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

    // ----- heartbeats and health -------------------------------------------------------------

    /// Records a heartbeat of `id` (the registry's `heartbeat`: the heartbeat deadline moves,
    /// nothing else changes — the idle deadline does not).
    ///
    /// # Errors
    /// [`Error::NotFound`]: the agent should register again.
    pub fn process_heartbeat(&self, id: &WorkerId) -> Result<()> {
        self.registry.heartbeat(id)
    }

    /// Finds the workers past their heartbeat deadline (`heartbeat_timeout`) or startup
    /// deadline (`startup_timeout`), emits `UnhealthyDetected` for each, moves them to
    /// `Terminating` (a job they held is reported lost), then destroys and unregisters them.
    ///
    /// Unless the brake holds: when more than `max(unhealthy_floor,
    /// max_unhealthy_fraction × watched)` of the workers under heartbeat watch are silent —
    /// counting every worker silent for more than half `heartbeat_timeout`, so that a
    /// partition is seen whole even though its victims cross their deadline over several
    /// checks — no worker is declared unhealthy for its heartbeat, `MassExpiryHeld` is
    /// emitted and [`HealthCheckResult::held`] says so; they are found again next time.
    /// (Agents should heartbeat more often than every `heartbeat_timeout / 2`.) The first
    /// check after the brake held that finds the fleet under the limit releases it and gives
    /// every worker a fresh grace period ([`HealthCheckResult::brake_released`]), so that the
    /// agents still coming back from the partition are not expired in a last batch. Startup
    /// expiries (workers that never reported in) are not held back: a broken provider must not
    /// pin the fleet at `max_workers`.
    ///
    /// The brake is bounded: a check that finds it has held continuously for longer than
    /// `max_mass_expiry_hold` (since the first check that held) lets go *without* a grace
    /// period — most of the fleet really died — and declares the silent workers unhealthy as
    /// usual ([`HealthCheckResult::brake_gave_up`]). No new hold starts until a check finds
    /// the fleet back under the limit.
    ///
    /// # Errors
    /// Only when the registry fails to answer the deadline queries.
    pub fn run_health_check(&self) -> Result<HealthCheckResult> {
        self.health_check_inner(&mut Budget::unlimited())
    }

    fn health_check_inner(&self, budget: &mut Budget) -> Result<HealthCheckResult> {
        let now = self.registry.now();
        let mut result = HealthCheckResult {
            checked_at: now,
            ..HealthCheckResult::default()
        };
        let silent = self
            .registry
            .find_unhealthy(self.config.heartbeat_timeout)?;
        let never_ready = self
            .registry
            .find_startup_expired(self.config.startup_timeout)?;
        // Ids only: each worker is looked at afresh before anything is done to it.
        let mut due: BTreeMap<WorkerId, TerminationReason> = BTreeMap::new();
        for w in never_ready {
            due.insert(w.id, TerminationReason::StartupTimeout);
        }
        for w in silent {
            due.insert(w.id, TerminationReason::Unhealthy);
        }
        if due.is_empty() {
            let was_held = {
                let mut brake = self.brake.lock();
                brake.spent = false;
                brake.held_since.take().is_some()
            };
            if was_held {
                // Everyone is back in time: release the brake with a grace period anyway, for
                // the stragglers already more than half a timeout silent.
                self.registry.grant_grace(now)?;
                result.brake_released = true;
            }
            return Ok(result);
        }

        // The brake looks at heartbeat expiries only: a partition on the host's side silences
        // running workers, and those are the ones not to kill. Workers that never reported in
        // are expired regardless, or a broken provider would pin the fleet at max_workers.
        let silent = due
            .values()
            .filter(|reason| **reason == TerminationReason::Unhealthy)
            .count();
        let hold = match silent {
            0 => None,
            _ => self.mass_expiry_hold(silent)?,
        };
        // Decided under the brake's lock, acted upon after it (no registry call under it).
        let verdict = {
            let mut brake = self.brake.lock();
            match (hold, brake.held_since) {
                // Gave up on this episode: the silent ones are dead, expire them.
                (Some(_), _) if brake.spent => BrakeVerdict::Normal,
                (Some(_), None) => {
                    brake.held_since = Some(now);
                    BrakeVerdict::Hold
                }
                (Some(_), Some(since))
                    if now.saturating_sub(since) > millis(self.config.max_mass_expiry_hold) =>
                {
                    brake.held_since = None;
                    brake.spent = true;
                    BrakeVerdict::GiveUp(now.saturating_sub(since))
                }
                (Some(_), Some(_)) => BrakeVerdict::Hold,
                (None, held_since) => {
                    brake.spent = false;
                    brake.held_since = None;
                    if held_since.is_some() {
                        BrakeVerdict::Release
                    } else {
                        BrakeVerdict::Normal
                    }
                }
            }
        };
        match (verdict, hold) {
            (BrakeVerdict::Hold, Some(hold)) => {
                bump(&self.counters.holds, 1);
                let _ = self.registry.publish(EventKind::MassExpiryHeld {
                    would_expire: hold.would_expire,
                    live: hold.live,
                });
                result.held = Some(hold);
                due.retain(|_, reason| *reason != TerminationReason::Unhealthy);
            }
            (BrakeVerdict::GiveUp(held_for), Some(hold)) => {
                // Held for longer than a partition is allowed to last: most of the fleet
                // really died. No grace period: the silent workers are expired below, their
                // jobs reported lost, their instances destroyed.
                result.brake_gave_up = Some(MassExpiryGiveUp { held_for, hold });
            }
            (BrakeVerdict::Release, _) => {
                // The partition heals: its victims come back one by one over a heartbeat
                // interval. Those not heard from yet are not expired in a last batch: everyone
                // gets a fresh grace period, as after a host stall. A worker that really died
                // meanwhile is expired one heartbeat_timeout later.
                self.registry.grant_grace(now)?;
                result.brake_released = true;
                due.retain(|_, reason| *reason != TerminationReason::Unhealthy);
            }
            _ => {}
        }

        let total = due.len();
        for (i, (id, reason)) in due.into_iter().enumerate() {
            if !budget.take() {
                result.deferred = total - i;
                break;
            }
            // A fresh look: the worker may have recovered, left or changed since the index
            // was read.
            let Some(fresh) = self.registry.get(&id).ok().flatten() else {
                continue;
            };
            if fresh.state.is_terminal() {
                continue;
            }
            let still_due = match reason {
                TerminationReason::StartupTimeout => fresh.state.is_starting(),
                _ => fresh.heartbeat_age(now) > millis(self.config.heartbeat_timeout),
            };
            if !still_due {
                continue;
            }
            let _ = self.registry.publish(EventKind::UnhealthyDetected {
                worker_id: id,
                last_heartbeat: fresh.last_heartbeat,
            });
            let lost = match self.take_out_of_service(&fresh) {
                Ok(lost) => lost,
                // It moved on its own (e.g. another thread terminated it): nothing to do.
                Err(Error::NotFound(_) | Error::InvalidTransition { .. }) => continue,
                Err(e) => return Err(e),
            };
            if let Some(job) = lost {
                result.lost_jobs.push(LostJob {
                    worker_id: id,
                    job_id: job,
                });
            }
            result.unhealthy.push(UnhealthyWorker {
                worker_id: id,
                provider_id: fresh.provider_id().clone(),
                state: fresh.state,
                reason,
                last_heartbeat: fresh.last_heartbeat,
            });
            self.queue_destroy(&fresh, reason, now);
            let destroyed = self.destroy_due(Some(&[id]), budget);
            result.terminated.extend(destroyed.terminated);
            result.failed.extend(destroyed.failed);
        }
        bump(&self.counters.unhealthy, result.unhealthy.len());
        bump(&self.counters.lost_jobs, result.lost_jobs.len());

        Ok(result)
    }

    /// Whether the brake holds, with `silent` workers past their heartbeat deadline now.
    ///
    /// Silenced agents do not all cross their deadline in the same health check: their last
    /// heartbeats are spread over one heartbeat interval, so a partition would expire the
    /// fleet in batches, each under the limit. The brake therefore counts the *suspects*:
    /// workers silent for more than half the heartbeat timeout (agents heartbeat more often
    /// than that), which a partition makes of the whole fleet at once. It compares them with
    /// the workers under heartbeat watch (`Connecting`, `Ready`, `Busy`, `Draining`):
    /// replacements still `Creating` cannot go silent and do not dilute the count.
    fn mass_expiry_hold(&self, silent: usize) -> Result<Option<MassExpiryHold>> {
        let suspect = self
            .registry
            .find_unhealthy(self.config.heartbeat_timeout / 2)?
            .len()
            .max(silent);
        let s = self.registry.stats()?.by_state;
        let watched = s.connecting + s.ready + s.busy + s.draining;
        let allowed = self
            .config
            .unhealthy_floor
            .max((self.config.max_unhealthy_fraction * watched as f64).floor() as usize);
        Ok((suspect > allowed).then_some(MassExpiryHold {
            would_expire: silent,
            suspect,
            live: watched,
            allowed,
        }))
    }

    // ----- cleanup and termination -----------------------------------------------------------

    /// Retires what is due: idle workers (`Ready` past `spec.idle_timeout` since their last
    /// release — heartbeats do not reset it) and workers past `spec.max_lifetime` go
    /// `Terminating` → destroy → unregister; a *busy* worker past its lifetime is moved to
    /// `Draining` instead (its job finishes first); `Draining` workers without a job (drained,
    /// or done with `max_jobs`) are terminated. Destroys due for a retry are retried.
    ///
    /// # Errors
    /// Only when the registry fails to answer what is due.
    pub fn cleanup_workers(&self) -> Result<CleanupResult> {
        self.cleanup_inner(&mut Budget::unlimited())
    }

    fn cleanup_inner(&self, budget: &mut Budget) -> Result<CleanupResult> {
        let now = self.registry.now();
        let mut result = CleanupResult::default();
        // Retries first: destroys already under way finish before new work starts, so a
        // capped tick still makes progress.
        let retried = self.destroy_due(None, budget);
        result.terminated.extend(retried.terminated);
        result.failed.extend(retried.failed);
        result.deferred += retried.deferred;
        let due = self.registry.find_for_termination()?;
        let total = due.len();
        for (i, (worker, reason)) in due.into_iter().enumerate() {
            if !budget.take() {
                result.deferred += total - i;
                break;
            }
            if self.retire(&worker, reason, now, &mut result) {
                let destroyed = self.destroy_due(Some(&[worker.id]), budget);
                result.terminated.extend(destroyed.terminated);
                result.failed.extend(destroyed.failed);
            }
        }
        Ok(result)
    }

    /// Takes a worker out of service without losing its job: a worker that may hold (or be
    /// about to get) a job is drained, never terminated.
    fn retire(
        &self,
        w: &Worker,
        reason: TerminationReason,
        now: Timestamp,
        out: &mut CleanupResult,
    ) -> bool {
        let terminating = match w.state {
            WorkerState::Creating | WorkerState::Connecting => self
                .registry
                .update_state(&w.id, WorkerState::Terminating)
                .is_ok(),
            WorkerState::Ready => {
                // Ready -> Draining first: a `claim` racing with us either lost (the worker
                // takes no job any more) or won (the worker drains after its job). Going to
                // Terminating directly could kill a job claimed a moment ago.
                match self.registry.update_state(&w.id, WorkerState::Draining) {
                    Ok(drained) if drained.current_job.is_none() => self
                        .registry
                        .update_state(&w.id, WorkerState::Terminating)
                        .is_ok(),
                    Ok(_) => {
                        out.drained.push(w.id);
                        false
                    }
                    Err(_) => false,
                }
            }
            WorkerState::Busy => {
                if self
                    .registry
                    .update_state(&w.id, WorkerState::Draining)
                    .is_ok()
                {
                    out.drained.push(w.id);
                }
                false
            }
            // A draining worker never gains a job, so "no job" seen once stays true.
            WorkerState::Draining => {
                w.current_job.is_none()
                    && self
                        .registry
                        .update_state(&w.id, WorkerState::Terminating)
                        .is_ok()
            }
            WorkerState::Terminating | WorkerState::Terminated => true,
        };
        if terminating {
            self.queue_destroy(w, reason, now);
        }
        terminating
    }

    /// Moves `w` to `Terminating` and says exactly which job it lost, if any.
    ///
    /// A worker that may hold a job goes through `Draining` first: from there it can gain no job
    /// (no claim picks it), only lose one by a release, which counts in `jobs_executed`. So the
    /// job seen on entering `Draining` was lost by the move to `Terminating` unless a release
    /// came in between — exactly the job the registry reports with `JobLost`, with no window
    /// for a claim or a release to slip through unreported. (`Creating`/`Connecting` workers
    /// hold no job and move directly.)
    fn take_out_of_service(&self, w: &Worker) -> Result<Option<JobId>> {
        if w.state.is_starting() {
            self.registry
                .update_state(&w.id, WorkerState::Terminating)?;
            return Ok(None);
        }
        let draining = self.registry.update_state(&w.id, WorkerState::Draining)?;
        let terminating = self
            .registry
            .update_state(&w.id, WorkerState::Terminating)?;
        Ok(draining
            .current_job
            .filter(|_| terminating.jobs_executed == draining.jobs_executed))
    }

    /// Moves a worker to `Draining`: it takes no new job, finishes the one it holds, and is
    /// then terminated by the cleanup (reason `Drained`).
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidTransition`] from `Creating`, `Connecting` or a
    /// terminal state.
    pub fn drain_worker(&self, id: &WorkerId) -> Result<Worker> {
        self.registry.update_state(id, WorkerState::Draining)
    }

    /// Terminates a worker now, whatever it is doing: `Terminating` (a job it holds is
    /// reported lost), provider destroy, unregister with `reason`. A failed destroy leaves it
    /// `Terminating`, retried by later ticks. Use [`drain_worker`](Self::drain_worker) to let
    /// a job finish first.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn terminate_worker(
        &self,
        id: &WorkerId,
        reason: TerminationReason,
    ) -> Result<CleanupResult> {
        let now = self.registry.now();
        let worker = self.registry.get(id)?.ok_or(Error::NotFound(*id))?;
        let mut result = CleanupResult::default();
        if !worker.state.is_terminal() {
            match self.take_out_of_service(&worker) {
                Ok(Some(job)) => {
                    bump(&self.counters.lost_jobs, 1);
                    result.lost_jobs.push(LostJob {
                        worker_id: *id,
                        job_id: job,
                    });
                }
                Ok(None) | Err(Error::InvalidTransition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.queue_destroy(&worker, reason, now);
        // Due now, whatever an earlier failure scheduled: the host asked for it.
        if let Some(entry) = self.destroys.lock().get_mut(id) {
            entry.next_at = now;
        }
        let destroyed = self.destroy_due(Some(&[*id]), &mut Budget::unlimited());
        result.terminated = destroyed.terminated;
        result.failed = destroyed.failed;
        Ok(result)
    }

    /// Queues a `Terminating` worker for destruction (keeps an existing entry and its count).
    fn queue_destroy(&self, w: &Worker, reason: TerminationReason, now: Timestamp) {
        self.destroys
            .lock()
            .entry(w.id)
            .or_insert_with(|| DestroyEntry {
                handle: Arc::clone(&w.handle),
                reason,
                attempts: 0,
                next_at: now,
                in_progress: false,
            });
    }

    /// Destroys the queued workers that are due (only those in `only`, when given): provider
    /// destroy outside every lock, then unregister; a failure schedules the next attempt.
    fn destroy_due(&self, only: Option<&[WorkerId]>, budget: &mut Budget) -> Destroyed {
        let now = self.registry.now();
        let mut out = Destroyed::default();
        let picked: Vec<(WorkerId, DestroyEntry)> = {
            let mut destroys = self.destroys.lock();
            let mut due: Vec<(WorkerId, Timestamp)> = match only {
                Some(ids) => ids
                    .iter()
                    .filter_map(|id| destroys.get(id).map(|e| (*id, e.next_at)))
                    .collect(),
                None => destroys.iter().map(|(id, e)| (*id, e.next_at)).collect(),
            };
            due.retain(|(id, next_at)| {
                *next_at <= now && destroys.get(id).is_some_and(|e| !e.in_progress)
            });
            due.sort_by_key(|(id, at)| (*at, *id));
            let mut picked = Vec::with_capacity(due.len());
            for (i, (id, _)) in due.iter().enumerate() {
                if !budget.take() {
                    out.deferred = due.len() - i;
                    break;
                }
                if let Some(e) = destroys.get_mut(id) {
                    e.in_progress = true;
                    picked.push((*id, e.clone()));
                }
            }
            picked
        };
        for (id, entry) in picked {
            self.destroy_one(id, entry, &mut out);
        }
        out
    }

    fn destroy_one(&self, id: WorkerId, entry: DestroyEntry, out: &mut Destroyed) {
        match self.registry.get(&id) {
            Ok(Some(_)) => {}
            // Explicitly unregistered by the host meanwhile: it took the instance over.
            Ok(None) => {
                self.destroys.lock().remove(&id);
                return;
            }
            // The registry cannot tell (a shared backend failing): try again later rather
            // than forget an instance.
            Err(_) => {
                self.postpone(id);
                return;
            }
        }
        let handle = &entry.handle;
        let provider = self.provider(&handle.provider_id);
        let outcome = match &provider {
            Some(p) => guarded("destroy_worker", || p.provider.destroy_worker(handle)),
            None => Err(ProviderError::new(format!(
                "provider {} is not registered",
                handle.provider_id
            ))),
        };
        drop(provider);
        match outcome {
            Ok(()) => self.finish_destroy(id, &entry, out),
            Err(e) if e.is_not_found() => self.finish_destroy(id, &entry, out),
            Err(e) => {
                let now = self.registry.now();
                let (attempts, next_at) = {
                    let mut destroys = self.destroys.lock();
                    match destroys.get_mut(&id) {
                        Some(live) => {
                            live.attempts = live.attempts.saturating_add(1);
                            live.next_at = now.saturating_add(millis(backoff_delay(
                                self.config.destroy_retry_initial,
                                self.config.destroy_retry_max,
                                live.attempts,
                            )));
                            live.in_progress = false;
                            (live.attempts, live.next_at)
                        }
                        None => (entry.attempts + 1, now),
                    }
                };
                bump(&self.counters.destroy_failures, 1);
                let _ = self.registry.publish(EventKind::DestroyFailed {
                    worker_id: id,
                    provider_id: handle.provider_id.clone(),
                    error: e.to_string(),
                    attempts,
                });
                out.failed.push(DestroyFailure {
                    worker_id: id,
                    provider_id: handle.provider_id.clone(),
                    resource_id: handle.resource_id.clone(),
                    error: e.to_string(),
                    attempts,
                    next_retry_at: next_at,
                });
            }
        }
    }

    fn finish_destroy(&self, id: WorkerId, entry: &DestroyEntry, out: &mut Destroyed) {
        match self.registry.unregister(&id, entry.reason) {
            // NotFound: the host unregistered it during the destroy; the instance is gone
            // either way.
            Ok(_) | Err(Error::NotFound(_)) => {}
            // The record could not be removed (a failing backend): keep the entry, so that a
            // later attempt (the provider answers NotFound by then) removes it.
            Err(_) => {
                self.postpone(id);
                return;
            }
        }
        self.destroys.lock().remove(&id);
        bump(&self.counters.terminated, 1);
        out.terminated.push(TerminatedWorker {
            worker_id: id,
            provider_id: entry.handle.provider_id.clone(),
            resource_id: entry.handle.resource_id.clone(),
            reason: entry.reason,
        });
    }

    /// Releases an entry picked for destruction without counting a failed attempt: it is due
    /// again after the initial retry delay.
    fn postpone(&self, id: WorkerId) {
        let next_at = self
            .registry
            .now()
            .saturating_add(millis(self.config.destroy_retry_initial));
        if let Some(entry) = self.destroys.lock().get_mut(&id) {
            entry.in_progress = false;
            entry.next_at = next_at;
        }
    }

    /// Workers `Terminating` whose destroy is queued or being retried, with their failed
    /// attempts and next attempt time: `(worker, attempts, next_at)`.
    pub fn pending_destroys(&self) -> Vec<(WorkerId, u32, Timestamp)> {
        let mut out: Vec<_> = self
            .destroys
            .lock()
            .iter()
            .map(|(id, e)| (*id, e.attempts, e.next_at))
            .collect();
        out.sort_by_key(|(id, _, at)| (*at, *id));
        out
    }

    // ----- autoscaling -----------------------------------------------------------------------

    /// The seed's predicate: no `Ready` worker and jobs pending, or more than
    /// `scale_up_threshold` jobs pending and room under `max_workers` (provisions in flight
    /// count).
    pub fn should_scale_up(&self, pending_jobs: usize) -> bool {
        let Ok(stats) = self.registry.stats() else {
            return false;
        };
        let total = stats.total + self.ledger.lock().in_flight.len();
        (stats.by_state.ready == 0 && pending_jobs > 0)
            || (pending_jobs > self.config.scale_up_threshold && total < self.config.max_workers)
    }

    /// The seed's predicate: more than `scale_down_threshold` idle `Ready` workers, and more
    /// than `min_ready_workers`.
    pub fn should_scale_down(&self) -> bool {
        let Ok(stats) = self.registry.stats() else {
            return false;
        };
        let ready = stats.by_state.ready;
        ready > self.config.scale_down_threshold && ready > self.config.min_ready_workers
    }

    /// Sets what the autoscaler provisions in `tick`: workers of `provider_id` made from
    /// `spec`. Without a target `tick` neither provisions nor scales down (it still checks
    /// health and cleans up).
    ///
    /// # Errors
    /// [`Error::ProviderNotFound`]; [`Error::InvalidArgument`] for an invalid spec.
    pub fn set_scaling_target(
        &self,
        provider_id: &ProviderId,
        spec: Arc<WorkerSpec>,
    ) -> Result<()> {
        spec.validate()?;
        if !self.providers.read().contains_key(provider_id) {
            return Err(Error::ProviderNotFound(provider_id.clone()));
        }
        *self.target.lock() = Some(ScalingTarget {
            provider_id: provider_id.clone(),
            spec,
        });
        Ok(())
    }

    /// Removes the scaling target: `tick` stops provisioning and scaling down.
    pub fn clear_scaling_target(&self) {
        *self.target.lock() = None;
    }

    /// The scaling target, if one is set: `(provider, spec)`.
    pub fn scaling_target(&self) -> Option<(ProviderId, Arc<WorkerSpec>)> {
        self.target
            .lock()
            .as_ref()
            .map(|t| (t.provider_id.clone(), Arc::clone(&t.spec)))
    }

    /// The full scaling policy for `pending_jobs`, without acting on it:
    /// - wanted = `pending + min_ready_workers − ready − starting − in flight` (workers still
    ///   `Creating`/`Connecting` and provisions in flight are capacity on its way: a slow
    ///   provider is not asked twice);
    /// - provision = wanted, capped by the room under `max_workers` (every registered worker
    ///   and every provision in flight counts), by `max_provision_per_tick`, and zero during
    ///   the scale-up cooldown, while the target provider backs off, or without a target;
    /// - when nothing is wanted, idle `Ready` workers beyond the pending jobs and
    ///   `min_ready_workers` are retired, longest idle first, never a busy one, honouring the
    ///   scale-down cooldown (counted from the last automatic scaling action).
    ///
    /// [`ScalingPlan::explanation`] says it in one line with its inputs.
    ///
    /// # Errors
    /// Only when the registry fails to answer.
    pub fn plan_scaling(&self, pending_jobs: usize) -> Result<ScalingPlan> {
        let target = self.target.lock().clone();
        self.plan_inner(pending_jobs, target.as_ref())
    }

    fn plan_inner(&self, pending: usize, target: Option<&ScalingTarget>) -> Result<ScalingPlan> {
        let now = self.registry.now();
        let stats = self.registry.stats()?;
        let in_flight = self.ledger.lock().in_flight.len();
        let (last_scale_up, last_scale_action) = {
            let s = self.schedule.lock();
            (s.last_scale_up, s.last_scale_action)
        };
        let backoff = target.and_then(|t| {
            self.backoff
                .lock()
                .get(&t.provider_id)
                .filter(|b| b.until > now)
                .map(|b| (t.provider_id.clone(), b.failures, b.until))
        });
        let inputs = ScalingInputs {
            now,
            pending,
            ready: stats.by_state.ready,
            busy: stats.by_state.busy,
            starting: stats.by_state.starting(),
            in_flight,
            registered: stats.total,
            last_scale_up,
            last_scale_action,
            backoff,
            has_target: target.is_some(),
        };
        let (mut plan, retire) = decide(&self.config, &inputs);
        if retire > 0 {
            // A scan of the ready workers, only when retiring: not a per-tick cost.
            let mut ready = self
                .registry
                .find(&WorkerFilter::new().state(WorkerState::Ready))?;
            ready.retain(|w| w.current_job.is_none());
            ready.sort_by_key(|w| (w.idle_since.unwrap_or(0), w.id));
            plan.scale_down = ready.into_iter().take(retire).map(|w| w.id).collect();
        }
        Ok(plan)
    }

    // ----- reconcile -------------------------------------------------------------------------

    /// Compares the registry with what each provider that supports
    /// [`list_workers`](WorkerProvider::list_workers) really has:
    /// - instances the registry does not know (orphans of a host crash) are destroyed — unless
    ///   a provision for that provider was in flight meanwhile (its new instance cannot be told
    ///   from an orphan; checked again next time);
    /// - records whose instance vanished are unregistered with reason `Vanished` (a job they
    ///   held is reported lost);
    /// - `Terminating` records the manager was not destroying yet (e.g. after a restore) are
    ///   queued for destruction.
    ///
    /// # Errors
    /// Only when the registry fails to answer.
    pub fn reconcile(&self) -> Result<ReconcileReport> {
        let now = self.registry.now();
        let mut report = ReconcileReport {
            at: now,
            ..ReconcileReport::default()
        };
        let providers: Vec<(ProviderId, ProviderEntry)> = self
            .providers
            .read()
            .iter()
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect();
        for (pid, entry) in providers {
            let (in_flight_before, started_before) = {
                let l = self.ledger.lock();
                (
                    l.in_flight_for(&pid),
                    l.started.get(&pid).copied().unwrap_or(0),
                )
            };
            let listed_at = self.registry.now();
            let listed = match guarded("list_workers", || entry.provider.list_workers()) {
                Ok(listed) => listed,
                Err(e) if e.is_unsupported() => {
                    report.unsupported.push(pid);
                    continue;
                }
                Err(e) => {
                    report.errors.push((pid, e.to_string()));
                    continue;
                }
            };
            report.checked.push(pid.clone());
            let records = self.registry.find_by_provider(&pid)?;
            let started_after = self.ledger.lock().started.get(&pid).copied().unwrap_or(0);

            let known_resources: HashSet<&str> = records
                .iter()
                .map(|w| w.handle.resource_id.as_str())
                .collect();
            let known_ids: HashSet<WorkerId> = records.iter().map(|w| w.id).collect();
            let listed_resources: HashSet<&str> =
                listed.iter().map(|h| h.resource_id.as_str()).collect();
            let listed_ids: HashSet<WorkerId> = listed.iter().map(|h| h.worker_id).collect();

            let orphans: Vec<&WorkerHandle> = listed
                .iter()
                .filter(|h| {
                    !known_resources.contains(h.resource_id.as_str())
                        && !known_ids.contains(&h.worker_id)
                })
                .collect();
            if !orphans.is_empty() {
                if in_flight_before == 0 && started_after == started_before {
                    for handle in orphans {
                        let error =
                            guarded("destroy_worker", || entry.provider.destroy_worker(handle))
                                .err()
                                .filter(|e| !e.is_not_found())
                                .map(|e| e.to_string());
                        report.orphans.push(OrphanInstance {
                            provider_id: pid.clone(),
                            resource_id: handle.resource_id.clone(),
                            error,
                        });
                    }
                } else {
                    report.orphan_check_skipped.push(pid.clone());
                }
            }

            for w in &records {
                let present = listed_resources.contains(w.handle.resource_id.as_str())
                    || listed_ids.contains(&w.id);
                // Registered after the listing began: the list may not show it yet.
                if present || w.created_at >= listed_at {
                    continue;
                }
                // A Terminating one too: its instance is gone, so its destroy is moot.
                self.destroys.lock().remove(&w.id);
                if let Ok(last) = self.registry.unregister(&w.id, TerminationReason::Vanished) {
                    if let Some(job) = last.current_job {
                        bump(&self.counters.lost_jobs, 1);
                        report.lost_jobs.push(LostJob {
                            worker_id: w.id,
                            job_id: job,
                        });
                    }
                    report.vanished.push(w.id);
                }
            }
        }

        let terminating = self.registry.find(
            &WorkerFilter::new().states([WorkerState::Terminating, WorkerState::Terminated]),
        )?;
        for w in terminating {
            let mut destroys = self.destroys.lock();
            if let std::collections::hash_map::Entry::Vacant(slot) = destroys.entry(w.id) {
                slot.insert(DestroyEntry {
                    handle: Arc::clone(&w.handle),
                    reason: TerminationReason::Requested,
                    attempts: 0,
                    next_at: now,
                    in_progress: false,
                });
                report.adopted_terminating.push(w.id);
            }
        }
        Ok(report)
    }

    // ----- tick ------------------------------------------------------------------------------

    /// Does whatever is due, in one call, and explains it:
    /// 1. after a pause longer than `heartbeat_timeout` since the previous tick, grants every
    ///    worker a fresh grace period (`stall_grace`);
    /// 2. the health check, every `health_check_interval`;
    /// 3. cleanup (idle, lifetime, drained) and destroy retries that are due;
    /// 4. scaling toward the target set by [`set_scaling_target`](Self::set_scaling_target).
    ///
    /// At most `max_actions_per_tick` actions are taken; the rest waits for the next ticks
    /// (`capped`). A call while another thread ticks returns at once with `skipped`.
    /// Errors of the registry are reported in `decisions`, never panicked on.
    pub fn tick(&self, pending_jobs: usize) -> TickReport {
        let mut report = TickReport {
            at: self.registry.now(),
            pending_jobs,
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
        let now = report.at;
        let mut budget = Budget::new(self.config.max_actions_per_tick);

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
            match self.registry.grant_grace(now) {
                Ok(()) => {
                    report.stall_grace = Some(gap);
                    report.decisions.push(format!(
                        "host stall: no tick for {:.1} s (> heartbeat_timeout {:.1} s); every \
                         worker gets a fresh grace period",
                        gap as f64 / 1000.0,
                        self.config.heartbeat_timeout.as_secs_f64()
                    ));
                }
                Err(e) => report.decisions.push(format!("grant_grace failed: {e}")),
            }
        }

        if health_due {
            match self.health_check_inner(&mut budget) {
                Ok(hc) => {
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
                    report.unhealthy = hc.unhealthy;
                    report.lost_jobs = hc.lost_jobs;
                    report.terminated = hc.terminated;
                    report.failed = hc.failed;
                }
                Err(e) => report.decisions.push(format!("health check failed: {e}")),
            }
        }

        match self.cleanup_inner(&mut budget) {
            Ok(c) => {
                report.terminated.extend(c.terminated);
                report.failed.extend(c.failed);
                report.drained.extend(c.drained);
                report.lost_jobs.extend(c.lost_jobs);
            }
            Err(e) => report.decisions.push(format!("cleanup failed: {e}")),
        }

        let target = self.target.lock().clone();
        if let Some(target) = target {
            match self.plan_inner(pending_jobs, Some(&target)) {
                Ok(plan) => {
                    self.execute_plan(&plan, &target, &mut budget, &mut report);
                    report.decisions.insert(0, plan.explanation.clone());
                    report.scaling = Some(plan);
                }
                Err(e) => report.decisions.push(format!("scaling plan failed: {e}")),
            }
        }

        report.provider_backoff = self.provider_backoff();
        report.actions = budget.used;
        report.capped = budget.capped;
        if budget.capped {
            report.decisions.push(format!(
                "action cap max_actions_per_tick {} reached: the rest is left for the next ticks",
                self.config.max_actions_per_tick
            ));
        }
        report
    }

    fn execute_plan(
        &self,
        plan: &ScalingPlan,
        target: &ScalingTarget,
        budget: &mut Budget,
        report: &mut TickReport,
    ) {
        let now = plan.at;
        let mut provisioned = 0;
        for _ in 0..plan.provision {
            if !budget.take() {
                break;
            }
            match self.provision_inner(&target.provider_id, Arc::clone(&target.spec)) {
                Ok(w) => {
                    provisioned += 1;
                    report.provisioned.push(ProvisionedWorker {
                        worker_id: w.id,
                        provider_id: target.provider_id.clone(),
                        resource_id: w.handle.resource_id.clone(),
                    });
                }
                Err((e, failure)) => {
                    match failure {
                        Some(f) => {
                            report.decisions.push(format!(
                                "provider {} failed to create a worker ({} in a row): {}; backing \
                                 off until {}",
                                f.provider_id, f.consecutive_failures, f.error, f.backoff_until
                            ));
                            report.provision_failures.push(f);
                        }
                        None => report.decisions.push(format!("provisioning stopped: {e}")),
                    }
                    // A failing provider is not asked again in the same tick.
                    break;
                }
            }
        }
        if provisioned > 0 {
            let mut s = self.schedule.lock();
            s.last_scale_up = Some(now);
            s.last_scale_action = Some(now);
        }

        let mut retired = Vec::new();
        let mut cleanup = CleanupResult::default();
        for id in &plan.scale_down {
            if !budget.take() {
                break;
            }
            // Only a worker still idle is retired; `retire` drains rather than kills if a
            // claim slips in.
            match self.registry.get(id) {
                Ok(Some(w)) if w.state == WorkerState::Ready && w.current_job.is_none() => {
                    self.retire(&w, TerminationReason::ScaledDown, now, &mut cleanup);
                    retired.push(*id);
                }
                _ => {}
            }
        }
        if !retired.is_empty() {
            let mut s = self.schedule.lock();
            s.last_scale_action = Some(now);
            drop(s);
            let destroyed = self.destroy_due(Some(&retired), budget);
            report.terminated.extend(destroyed.terminated);
            report.failed.extend(destroyed.failed);
            report.drained.extend(cleanup.drained);
        }
    }

    /// The manager's view: registry counts, provisions in flight, pending destroys, lifetime
    /// totals.
    ///
    /// # Errors
    /// Only when the registry fails to answer.
    pub fn stats(&self) -> Result<LifecycleStats> {
        let c = &self.counters;
        Ok(LifecycleStats {
            registry: self.registry.stats()?,
            in_flight: self.ledger.lock().in_flight.len(),
            pending_destroys: self.destroys.lock().len(),
            providers: self.providers.read().len(),
            provisioned_total: c.provisioned.load(Ordering::Relaxed),
            provision_failures_total: c.provision_failures.load(Ordering::Relaxed),
            terminated_total: c.terminated.load(Ordering::Relaxed),
            destroy_failures_total: c.destroy_failures.load(Ordering::Relaxed),
            unhealthy_total: c.unhealthy.load(Ordering::Relaxed),
            lost_jobs_total: c.lost_jobs.load(Ordering::Relaxed),
            mass_expiry_holds_total: c.holds.load(Ordering::Relaxed),
        })
    }
}
