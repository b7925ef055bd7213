//! What the manager's operations report: plain data (ids, numbers, strings, `Vec`, `Option`),
//! serializable, easy to carry across the C and Python boundaries.

use serde::Serialize;

use crate::clock::Timestamp;
use crate::ids::{JobId, ProviderId, WorkerId};
use crate::registry::WorkerRegistryStats;
use crate::state::WorkerState;
use crate::worker::TerminationReason;

use super::lease::LeaderInfo;
use super::pools::{PoolPlan, Unschedulable};
use super::provider::ProviderErrorKind;

/// A job that was running on a worker taken out of service: the host must requeue it.
/// (The registry also emits [`EventKind::JobLost`](crate::EventKind::JobLost) for it.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostJob {
    /// The worker that held it.
    pub worker_id: WorkerId,
    /// The job.
    pub job_id: JobId,
}

/// A worker declared unhealthy by a health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnhealthyWorker {
    /// The worker.
    pub worker_id: WorkerId,
    /// Its provider.
    pub provider_id: ProviderId,
    /// The state it was in.
    pub state: WorkerState,
    /// [`TerminationReason::Unhealthy`] (heartbeat deadline) or
    /// [`TerminationReason::StartupTimeout`] (never reached `Ready`).
    pub reason: TerminationReason,
    /// Its last heartbeat (registration counts as one).
    pub last_heartbeat: Timestamp,
}

/// A worker whose instance the provider confirmed destroyed and whose record left the
/// registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TerminatedWorker {
    /// The worker.
    pub worker_id: WorkerId,
    /// Its provider.
    pub provider_id: ProviderId,
    /// The provider's instance id.
    pub resource_id: String,
    /// Why it was terminated.
    pub reason: TerminationReason,
}

/// A destroy the provider failed: the worker stays `Terminating` and is retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestroyFailure {
    /// The worker.
    pub worker_id: WorkerId,
    /// Its provider.
    pub provider_id: ProviderId,
    /// The provider's instance id.
    pub resource_id: String,
    /// What went wrong.
    pub error: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (registry clock).
    pub next_retry_at: Timestamp,
}

/// A worker the manager asked a provider for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvisionedWorker {
    /// The new worker (registered in `Creating`).
    pub worker_id: WorkerId,
    /// Its provider.
    pub provider_id: ProviderId,
    /// The provider's instance id.
    pub resource_id: String,
}

/// A create the provider failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvisionFailure {
    /// The provider.
    pub provider_id: ProviderId,
    /// The kind of failure.
    pub kind: ProviderErrorKind,
    /// What went wrong.
    pub error: String,
    /// Consecutive failures of this provider so far.
    pub consecutive_failures: u32,
    /// Until when automatic provisioning from this provider is suspended.
    pub backoff_until: Timestamp,
}

/// A provider that automatic provisioning is leaving alone after consecutive failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderBackoff {
    /// The provider.
    pub provider_id: ProviderId,
    /// Consecutive create failures.
    pub consecutive_failures: u32,
    /// When it may be asked again (registry clock).
    pub until: Timestamp,
}

/// The brake held: too many workers under heartbeat watch were silent at once, and none of
/// them was declared unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MassExpiryHold {
    /// How many are past their heartbeat deadline now (held back).
    pub would_expire: usize,
    /// How many are silent for more than half the heartbeat timeout (the brake's count, at
    /// least `would_expire`), but those past their startup deadline (expired regardless).
    pub suspect: usize,
    /// Workers under heartbeat watch (`Connecting`, `Ready`, `Busy`, `Draining`), but those
    /// past their startup deadline.
    pub live: usize,
    /// The most that may be silent at once: `max(unhealthy_floor, floor(fraction * live))`.
    pub allowed: usize,
}

/// Which side of a provider's listing the ticks' reconcile brake held (see
/// [`ReconcileHold`]): the label `kind` of `hodei_workers_reconcile_holds_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconcileHoldKind {
    /// The listing missed more of the provider's records than the brake allows: none of them
    /// was expired as vanished. Ends by itself once a listing shows them again (or the
    /// workers meet their heartbeat or startup deadline).
    Expire,
    /// The listing showed more instances no record knows than the brake allows against the
    /// provider's records: none of them was destroyed. Never ends by itself while the
    /// listing shows them: only the host's [`reconcile`](crate::WorkerLifecycleManager::reconcile)
    /// (not braked) destroys them, if they are the host's.
    Orphans,
}

impl ReconcileHoldKind {
    /// `"expire"` or `"orphans"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileHoldKind::Expire => "expire",
            ReconcileHoldKind::Orphans => "orphans",
        }
    }
}

impl std::fmt::Display for ReconcileHoldKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider's listing that the ticks' reconcile brake held (the reconcile's
/// `held by the brake` error line, as data): nothing of that side was done for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileHold {
    /// The provider.
    pub provider_id: ProviderId,
    /// Which side was held.
    pub kind: ReconcileHoldKind,
    /// How many were held back: records the listing missed (`expire`), or instances it showed
    /// that no record knows (`orphans`).
    pub held: usize,
    /// The provider's records the brake measured against: those old enough to be judged
    /// (`expire`), every one (`orphans`).
    pub records: usize,
    /// The most the brake allows: `max(unhealthy_floor, floor(max_unhealthy_fraction *
    /// records))`.
    pub allowed: usize,
}

/// The brake gave up: it had held continuously for longer than `max_mass_expiry_hold`, so the
/// silent workers are declared unhealthy after all (most of the fleet really died).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MassExpiryGiveUp {
    /// How long (ms) the brake had held, from the first check that held to this one.
    pub held_for: u64,
    /// The count the brake would have held with now (`would_expire` of them are declared
    /// unhealthy in this check, the other suspects when they cross their deadline).
    pub hold: MassExpiryHold,
}

/// What [`run_health_check`](crate::WorkerLifecycleManager::run_health_check) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HealthCheckResult {
    /// When it ran (registry clock).
    pub checked_at: Timestamp,
    /// Workers declared unhealthy (moved to `Terminating`, `UnhealthyDetected` emitted).
    pub unhealthy: Vec<UnhealthyWorker>,
    /// Jobs they held: requeue them.
    pub lost_jobs: Vec<LostJob>,
    /// Unhealthy workers destroyed and unregistered.
    pub terminated: Vec<TerminatedWorker>,
    /// Unhealthy workers whose destroy failed (retried later).
    pub failed: Vec<DestroyFailure>,
    /// Set when the mass-expiry brake held: no worker was declared unhealthy for its heartbeat
    /// (startup expiries still were).
    pub held: Option<MassExpiryHold>,
    /// Workers found due but left for a later check: because of the per-tick action cap, or
    /// because the lease was lost during the check (the next leader's checks find them).
    pub deferred: usize,
    /// The brake held at the previous check and lets go now: every worker got a fresh grace
    /// period (nobody was declared unhealthy for its heartbeat in this check).
    pub brake_released: bool,
    /// Set when the brake gave up in this check (held longer than `max_mass_expiry_hold`): the
    /// silent workers past their deadline are in `unhealthy`, no grace period was granted.
    pub brake_gave_up: Option<MassExpiryGiveUp>,
}

/// What [`cleanup_workers`](crate::WorkerLifecycleManager::cleanup_workers) (and
/// [`terminate_worker`](crate::WorkerLifecycleManager::terminate_worker)) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupResult {
    /// Workers destroyed and unregistered, with the reason.
    pub terminated: Vec<TerminatedWorker>,
    /// Busy workers past their lifetime moved to `Draining` (they finish their job first).
    pub drained: Vec<WorkerId>,
    /// Destroys that failed: those workers stay `Terminating` and are retried with back-off.
    pub failed: Vec<DestroyFailure>,
    /// Jobs lost by workers taken out of service (only by `terminate_worker` on a busy worker).
    pub lost_jobs: Vec<LostJob>,
    /// Work found due but left for later: because of the per-tick action cap, or because the
    /// lease was lost meanwhile.
    pub deferred: usize,
}

/// The autoscaler's decision with its inputs (see
/// [`plan_scaling`](crate::WorkerLifecycleManager::plan_scaling)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScalingPlan {
    /// When it was computed (registry clock).
    pub at: Timestamp,
    /// The jobs this plan scales for. From
    /// [`plan_scaling(n)`](crate::WorkerLifecycleManager::plan_scaling): `n`. In a tick
    /// ([`TickReport::scaling`]): the jobs of the host's demand that the target's spec
    /// satisfies (the others are unschedulable, not counted) plus one per job of an interrupted
    /// worker that needs a replacement — of the target's, or any other whose offer the
    /// target's spec satisfies (without pools) — so it may differ from
    /// [`TickReport::pending_jobs`] either way.
    pub pending_jobs: usize,
    /// Idle `Ready` workers of the scaling target (not those of pools).
    pub ready: usize,
    /// `Busy` workers of the scaling target (not those of pools).
    pub busy: usize,
    /// `Creating` + `Connecting` workers of the scaling target (not those of pools): capacity
    /// on its way.
    pub starting: usize,
    /// Provider calls in flight (not yet registered) of the scaling target's spec's pool
    /// (usually none; not those of other pools' specs): capacity on its way.
    pub in_flight: usize,
    /// Every registered worker plus every provision in flight (of any pool): what counts
    /// against `max_workers`.
    pub total: usize,
    /// Workers wanted beyond what is ready or on its way:
    /// `pending + min_ready_workers - ready - starting - in_flight` (at least 0).
    pub wanted: usize,
    /// Workers to provision now (after the caps below).
    pub provision: usize,
    /// Idle `Ready` workers to retire now, longest idle first (never a busy one).
    pub scale_down: Vec<WorkerId>,
    /// What limited `provision` or `scale_down`, if anything (e.g. `"max_workers 10"`,
    /// `"scale-up cooldown until 1700000012000"`, `"provider p backing off"`).
    pub limits: Vec<String>,
    /// One line that explains the decision with its inputs, e.g.
    /// `"+3: pending 7, in flight 2, ready 1, capped by max_workers 10"`.
    pub explanation: String,
}

/// Everything one [`tick`](crate::WorkerLifecycleManager::tick) did, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// When it ran (registry clock).
    pub at: Timestamp,
    /// The jobs of the demand the host passed to this tick ([`Demand::total`]: every
    /// requirement's, unschedulable ones included), 0 for a tick without a demand. The
    /// replacements of interrupted workers are not counted here: they are in the plan's own
    /// count ([`PoolPlan::pending_jobs`] of `pools`, [`ScalingPlan::pending_jobs`] of
    /// `scaling`).
    ///
    /// [`Demand::total`]: crate::Demand::total
    /// [`PoolPlan::pending_jobs`]: crate::PoolPlan::pending_jobs
    pub pending_jobs: usize,
    /// Set to the length of the pause (ms) when the previous tick was longer ago than
    /// `heartbeat_timeout`: every worker got a fresh grace period instead of being expired.
    pub stall_grace: Option<u64>,
    /// Whether the health check ran in this tick (it runs every `health_check_interval`).
    pub health_checked: bool,
    /// Workers declared unhealthy.
    pub unhealthy: Vec<UnhealthyWorker>,
    /// Jobs lost by workers taken out of service: requeue them.
    pub lost_jobs: Vec<LostJob>,
    /// Set when the mass-expiry brake held.
    pub mass_expiry_held: Option<MassExpiryHold>,
    /// The brake let go in this tick: every worker got a fresh grace period.
    pub brake_released: bool,
    /// Set when the brake gave up in this tick (held longer than `max_mass_expiry_hold`): the
    /// silent workers were declared unhealthy after all.
    pub brake_gave_up: Option<MassExpiryGiveUp>,
    /// The providers whose listing the tick's reconcile (a takeover's, a periodic one) held by
    /// the brake, and which side: each also in `decisions`, and counted in
    /// `hodei_workers_reconcile_holds_total`. A held `orphans` side does not end by itself.
    pub reconcile_held: Vec<ReconcileHold>,
    /// Workers destroyed and unregistered (unhealthy, idle, lifetime, drained, scaled down,
    /// destroy retries that succeeded).
    pub terminated: Vec<TerminatedWorker>,
    /// Destroys that failed (retried later with back-off): records', and orphan instances'
    /// (the tick's reconcile's and its retries of remembered ones).
    pub failed: Vec<DestroyFailure>,
    /// Workers moved to `Draining`: busy ones past their lifetime, and the workers of pools
    /// removed or reshaped that a `set_pools`/`remove_pool` left undrained (called on a
    /// follower, or cut short by a registry error or a lost lease).
    pub drained: Vec<WorkerId>,
    /// Workers provisioned.
    pub provisioned: Vec<ProvisionedWorker>,
    /// Creates that failed.
    pub provision_failures: Vec<ProvisionFailure>,
    /// Providers being backed off after consecutive create failures.
    pub provider_backoff: Vec<ProviderBackoff>,
    /// The scaling decision (absent when no scaling target is set, or when pools are set).
    pub scaling: Option<ScalingPlan>,
    /// The pools' decisions, when pools are set (each pool's line is also in `decisions`).
    pub pools: Option<PoolPlan>,
    /// Pending jobs no pool (or, without pools, the scaling target's spec) can ever run, with
    /// the constraint nobody meets: fix the demand or add a pool.
    pub unschedulable: Vec<Unschedulable>,
    /// Human-readable lines explaining the decisions taken (scaling, brake, stall, cap).
    pub decisions: Vec<String>,
    /// Actions performed (state changes and provider calls).
    pub actions: usize,
    /// Whether the action cap stopped this tick early (the rest is done by the next ticks).
    pub capped: bool,
    /// Set when another thread was ticking: this call did nothing.
    pub skipped: bool,
    /// Whether this manager leads (holds the leadership lease and trusts it) at the end of
    /// the tick: only the leader acts; a follower's tick only tries to take or keep the lease.
    /// A leader whose trust window closed during the tick (a provider call outlasted it), or
    /// whose lease the store says another replica took (asked at the end of the tick), reports
    /// `false` and says so in `decisions`.
    pub leading: bool,
    /// The leader as last seen: this replica when `leading`, another one (who, under which
    /// term, since when) otherwise; `None` when no replica ever led.
    pub leader: Option<LeaderInfo>,
    /// Set when the tick panicked midway (a bug of a host's own [`WorkerRegistry`], clock or
    /// lease implementation, or of the library; a provider's panic is a failed provider call
    /// instead): the panic's message, cut to [`MAX_PROVIDER_MESSAGE_LEN`] bytes as a
    /// provider's message is (since 2026-12-07; before, a megabyte-long message was copied
    /// whole). The report holds what the tick did before the panic —
    /// the phases that ended and, since 2026-12-08, what the panicking phase itself did
    /// before it panicked, with their lost jobs to requeue — and a line of `decisions`
    /// names the phase that panicked; the rest of the tick was not done (the next tick does
    /// what is still due).
    ///
    /// [`WorkerRegistry`]: crate::WorkerRegistry
    /// [`MAX_PROVIDER_MESSAGE_LEN`]: crate::MAX_PROVIDER_MESSAGE_LEN
    pub panicked: Option<String>,
}

/// A provider instance the registry does not know, found by `reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrphanInstance {
    /// The provider.
    pub provider_id: ProviderId,
    /// The instance id.
    pub resource_id: String,
    /// `None` when destroyed; the error otherwise (the leader's ticks destroy it again after a
    /// back-off: [`pending_orphans`](crate::WorkerLifecycleManager::pending_orphans)).
    pub error: Option<String>,
}

/// An orphan instance (listed by a provider, known to no record) that the leader's ticks
/// destroy, as [`pending_orphans`](crate::WorkerLifecycleManager::pending_orphans) lists it.
/// Two providers may hold instances of one resource id (two Kubernetes clusters, one pod
/// name): the pair `(provider_id, resource_id)` names the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingOrphan {
    /// The provider that listed the instance.
    pub provider_id: ProviderId,
    /// The id the manager made for the listed instance (no record's).
    pub worker_id: WorkerId,
    /// The provider's id of the instance.
    pub resource_id: String,
    /// Failed destroy attempts so far (0: found over a tick's action cap, not tried yet).
    pub attempts: u32,
    /// When the next attempt is due (registry clock).
    pub next_at: Timestamp,
}

/// What [`reconcile`](crate::WorkerLifecycleManager::reconcile) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// When it ran (registry clock).
    pub at: Timestamp,
    /// Providers whose instances were compared with the registry.
    pub checked: Vec<ProviderId>,
    /// Providers that do not support `list_workers` (skipped).
    pub unsupported: Vec<ProviderId>,
    /// Providers not wholly reconciled, with what happened: `list_workers` failed (`could not
    /// list: …`), the registry could not list their records, the lease was lost before their
    /// listing (`not listed: …`) or among their orphans (`N orphan instances not destroyed:
    /// …`), the listing showed instances no record knows whose handle is invalid (`listing of
    /// P shows N invalid instances, not destroyed (the first: …)`: an empty resource id, say),
    /// the registry failed to unregister records whose instance vanished (`N vanished workers
    /// not unregistered (the first: worker W: …)`: they stay registered), or (a tick's
    /// reconcile only) the listing missed more of the provider's workers
    /// (`Terminating` ones included) than the brake allows (`listing of P would expire N of M
    /// workers: held by the brake`: none of them expired) or showed more instances no record
    /// knows than the brake
    /// allows against the provider's records (`listing of P shows N instances no record knows
    /// (of M records): held by the brake`: none of them destroyed). The reconcile is then
    /// incomplete (a tick's runs again after a back-off).
    pub errors: Vec<(ProviderId, String)>,
    /// Instances unknown to the registry, destroyed (or attempted).
    pub orphans: Vec<OrphanInstance>,
    /// Providers whose orphan check was skipped because a provision was in flight (its new
    /// instance could not be told from an orphan), or because a destroy was confirmed during
    /// the listing (a destroyed record's instance could not be told from one); checked again
    /// next time.
    pub orphan_check_skipped: Vec<ProviderId>,
    /// Records whose instance vanished: expired with [`TerminationReason::Vanished`].
    pub vanished: Vec<WorkerId>,
    /// Jobs lost with them: requeue them.
    pub lost_jobs: Vec<LostJob>,
    /// `Terminating` records the manager was not destroying yet (e.g. after a restore), now
    /// queued for destruction.
    pub adopted_terminating: Vec<WorkerId>,
}

impl ReconcileReport {
    /// Whether it looked at every instance of every provider that lists them: no listing
    /// failed and no orphan check was skipped (the periodic reconcile counts from such a one).
    pub(crate) fn is_complete(&self) -> bool {
        self.errors.is_empty() && self.orphan_check_skipped.is_empty()
    }
}

/// The manager's view of the fleet: the registry's counts plus its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LifecycleStats {
    /// The registry's counts.
    pub registry: WorkerRegistryStats,
    /// Provider calls to create a worker in flight.
    pub in_flight: usize,
    /// Workers `Terminating` whose destroy is queued or being retried.
    pub pending_destroys: usize,
    /// Registered providers.
    pub providers: usize,
    /// Workers provisioned since the manager was made.
    pub provisioned_total: u64,
    /// Failed creates since the manager was made.
    pub provision_failures_total: u64,
    /// Workers destroyed and unregistered since the manager was made.
    pub terminated_total: u64,
    /// Failed destroy attempts since the manager was made.
    pub destroy_failures_total: u64,
    /// Workers declared unhealthy since the manager was made.
    pub unhealthy_total: u64,
    /// Jobs reported lost since the manager was made.
    pub lost_jobs_total: u64,
    /// Health checks held by the mass-expiry brake since the manager was made.
    pub mass_expiry_holds_total: u64,
}
