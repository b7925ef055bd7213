//! The registry of workers: the [`WorkerRegistry`] trait, its statistics and snapshots, and the
//! [`InMemoryWorkerRegistry`].

mod classes;
mod column;
mod freeslots;
mod idtable;
mod indexes;
mod memory;
mod retired;
mod shrink;
mod snapshot;
mod stats;
mod telemetry;
#[cfg(test)]
mod test_rng;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use memory::InMemoryWorkerRegistry;
pub use snapshot::{Snapshot, MAX_SNAPSHOT_CLOCK_SKEW, SNAPSHOT_FORMAT};
pub(crate) use stats::pool_of;
pub use stats::{StateCounts, WorkerRegistryStats, POOL_LABEL};
pub use telemetry::{HeartbeatAges, JobTotals, SubscriberDrops};

use crate::clock::Timestamp;
use crate::error::Result;
use crate::events::{EventKind, SubscribeOptions, Subscription};
use crate::filter::WorkerFilter;
use crate::ids::{JobId, ProviderId, WorkerId};
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker, WorkerHandle, WorkerSpec};

/// The registry of a fleet's workers: who they are, what state they are in, which job each
/// holds.
///
/// Object-safe, `Send + Sync`, every method `&self` and synchronous. Every method returns
/// [`Result`], even where the in-memory registry cannot fail, so that a backend on a shared
/// database fits the same trait.
///
/// **Invariants**, true after every call under any interleaving of threads:
/// 1. `state == Busy` ⇒ the worker holds a job; a worker holding a job is `Busy` or `Draining`.
/// 2. A [`JobId`] is held by at most one worker; a worker holds at most one job.
/// 3. Moving a worker that holds a job to `Terminating`/`Terminated`, or unregistering it,
///    emits [`EventKind::JobLost`] and clears the job.
/// 4. [`stats`](Self::stats) equals a recount of the records.
/// 5. Ids are never reused: an id once registered is refused by `register` for ever after
///    (`AlreadyExists`), even once unregistered (within a documented bound for in-memory
///    registries: [`InMemoryWorkerRegistry::with_retired_id_limit`]).
/// 6. Events: `seq` strictly increases, `at` never decreases along `seq`, a record's
///    `updated_at`/`state_changed_at`/`idle_since` are the `at` of the event of their change,
///    and no event about a worker follows its `Unregistered`.
pub trait WorkerRegistry: Send + Sync + fmt::Debug {
    /// The registry's clock: every deadline is measured on it.
    fn now(&self) -> Timestamp;

    /// Registers a worker in `Creating`. The id is `handle.worker_id`.
    ///
    /// # Errors
    /// `AlreadyExists` for an id registered now or before (ids are never reused);
    /// `InvalidArgument` for an invalid spec or handle ([`WorkerSpec::validate`],
    /// [`WorkerHandle::validate`]: NUL bytes, strings over their limits, durations over
    /// [`MAX_SPEC_DURATION`](crate::MAX_SPEC_DURATION), …).
    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker>;

    /// Removes a worker's record and returns its last snapshot. A held job is reported lost.
    ///
    /// # Errors
    /// `NotFound`.
    fn unregister(&self, id: &WorkerId, reason: TerminationReason) -> Result<Worker>;

    /// A snapshot of one worker, `None` when unknown. Takes no exclusive lock.
    fn get(&self, id: &WorkerId) -> Result<Option<Worker>>;

    /// Snapshots of the workers matching `filter` (a full scan: not a hot path).
    ///
    /// # Errors
    /// `InvalidArgument` for a filter asking for strings no worker holds
    /// ([`WorkerFilter::validate`]: a label, capability or GPU model over its limit).
    fn find(&self, filter: &WorkerFilter) -> Result<Vec<Worker>>;

    /// Workers that accept jobs now (`Ready`).
    fn find_available(&self) -> Result<Vec<Worker>> {
        self.find(&WorkerFilter::new().accepting_jobs(true))
    }

    /// Workers of one provider.
    fn find_by_provider(&self, provider_id: &ProviderId) -> Result<Vec<Worker>> {
        self.find(&WorkerFilter::new().provider_id(provider_id.clone()))
    }

    /// The records of `provider_id` whose handle's resource id is one of `resource_ids`, in
    /// no particular order, terminal records included (as
    /// [`find_by_provider`](Self::find_by_provider)); ids no record of that provider holds
    /// are simply missing from the answer, and an empty `resource_ids` returns nothing
    /// without a look. What the lifecycle manager's orphan retries ask ("does a record of
    /// this provider hold this instance now?"), so that a leader retrying a few orphans does
    /// not read a whole provider's fleet.
    ///
    /// Cost: the default takes [`find_by_provider`](Self::find_by_provider)'s answer
    /// (a snapshot per record of the provider) and keeps the matches, so that a host's own
    /// registry keeps working; the in-memory registry walks the records under each shard's
    /// read lock and builds a snapshot only for a match (O(records) reads, no allocation per
    /// record that does not match); PostgreSQL runs one query that reads the provider's rows
    /// on the server and ships only the matching ones.
    fn find_by_resource_ids(
        &self,
        provider_id: &ProviderId,
        resource_ids: &[&str],
    ) -> Result<Vec<Worker>> {
        if resource_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = self.find_by_provider(provider_id)?;
        found.retain(|w| resource_ids.contains(&w.handle.resource_id.as_str()));
        Ok(found)
    }

    /// The ids of the `Terminating`/`Terminated` records, in no particular order: what the
    /// lifecycle manager compares with its destroy queue (periodically, while the queue is
    /// not empty), so it needs no snapshot. The default takes the ids of
    /// [`find`](Self::find)'s answer; the in-memory registry copies them from its index of
    /// terminal records, O(terminal records), no record read.
    fn terminal_ids(&self) -> Result<Vec<WorkerId>> {
        Ok(self
            .find(&WorkerFilter::new().states([WorkerState::Terminating, WorkerState::Terminated]))?
            .into_iter()
            .map(|w| w.id)
            .collect())
    }

    /// Moves a worker to `state` and returns the new snapshot. The same state is a no-op
    /// (no event). A move out of `Creating`/`Connecting` (other than to `Terminating`/
    /// `Terminated`) means the agent reported in, and counts as a heartbeat. Never makes the job moves `Ready -> Busy` (that is `assign`/`claim`) nor
    /// `Busy -> Ready` (that is `release`); `Busy -> Draining` keeps the job, which finishes
    /// first. `Draining -> Ready` only without a job and below the spec's `max_jobs` (a
    /// one-shot worker that ran its job never takes another; nor does one restored while
    /// starting at its `max_jobs` become `Ready`). Entering
    /// `Terminating`/`Terminated` with a job reports it lost ([`EventKind::JobLost`]) and
    /// clears it.
    ///
    /// # Errors
    /// `NotFound`; `InvalidTransition` for a move the state machine refuses, or back to
    /// `Ready` with a job or at `max_jobs` (the message names `max_jobs`).
    fn update_state(&self, id: &WorkerId, state: WorkerState) -> Result<Worker>;

    /// Records a heartbeat: updates `last_heartbeat` only. In memory: one shard's shared lock
    /// and one atomic store into its heartbeat column.
    ///
    /// # Errors
    /// `NotFound` (the host should tell the agent to register again).
    fn heartbeat(&self, id: &WorkerId) -> Result<()>;

    /// Gives `job` to a `Ready` worker (`-> Busy`).
    ///
    /// # Errors
    /// `NotFound`; `NotAvailable` when the worker is not `Ready`; `JobAlreadyAssigned` when
    /// another worker holds the job.
    fn assign_to_job(&self, id: &WorkerId, job: JobId) -> Result<Worker>;

    /// Takes the job back: `Busy -> Ready` (idle clock restarts), or stays `Draining`;
    /// `jobs_executed += 1`; reaching `spec.max_jobs` moves the worker to `Draining`.
    ///
    /// With `expected_job`, a worker holding another job is left alone (`NotBusy`): a late
    /// release from an old assignment never frees a new one.
    ///
    /// # Errors
    /// `NotFound`; `NotBusy` when it holds no job or another job than `expected_job`.
    fn release_from_job(&self, id: &WorkerId, expected_job: Option<&JobId>) -> Result<JobId>;

    /// Picks a `Ready` worker matching `filter` and assigns `job` to it, atomically. Prefers the
    /// most recently idle worker, so that surplus workers idle out. `Ok(None)` when none
    /// matches. Cost does not grow with the number of busy workers. The in-memory registry
    /// asks the filter's spec and provider conditions once per class of workers (one spec,
    /// one provider): O(classes × log ready), and a filter no class matches looks at no
    /// worker. Only `unhealthy_for` is checked worker by worker, walking down the ready
    /// order, for the first 64 candidates: O(classes × log ready + 64); past them one pass
    /// over the heartbeat columns (4 bytes a worker of the fleet, not under the registry-wide
    /// mutex) plus a record read for each monitored worker silent for that long finds the
    /// same worker the walk would have (since 2026-12-07: before, a claim no ready worker was
    /// silent enough for walked every ready worker).
    ///
    /// # Errors
    /// `InvalidArgument` for a filter asking for strings no worker holds
    /// ([`WorkerFilter::validate`]: a label, capability or GPU model over its limit);
    /// `JobAlreadyAssigned` when a worker already holds `job`.
    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>>;

    /// Workers past their heartbeat deadline: in a monitored state (`Connecting`, `Ready`,
    /// `Busy`, `Draining`) and silent for longer than `heartbeat_timeout`. Never a pass over
    /// the records: the in-memory registry answers from its heartbeat columns, usually at the
    /// cost of what is due, at worst one sequential pass over 4 bytes a worker.
    fn find_unhealthy(&self, heartbeat_timeout: Duration) -> Result<Vec<Worker>>;

    /// How many workers [`find_unhealthy`](Self::find_unhealthy) would return now, without
    /// building their snapshots (the lifecycle manager's brake counts with it). The default
    /// counts `find_unhealthy`'s answer; the in-memory registry reads its heartbeat columns
    /// only, never a record; PostgreSQL counts on the server (no row travels).
    fn count_unhealthy(&self, heartbeat_timeout: Duration) -> Result<usize> {
        Ok(self.find_unhealthy(heartbeat_timeout)?.len())
    }

    /// Workers past their startup deadline: still `Creating`/`Connecting` longer than
    /// `startup_timeout` after registration. Cost follows the number due.
    fn find_startup_expired(&self, startup_timeout: Duration) -> Result<Vec<Worker>>;

    /// Workers due for retirement, each with its reason: `Lifetime` (past `max_lifetime`; a
    /// `Busy` one is to be drained, not killed), `Idle` (`Ready` past `idle_timeout` since it
    /// last became ready), `Drained` / `MaxJobs` (`Draining` without a job). Cost follows the
    /// number due.
    fn find_for_termination(&self) -> Result<Vec<(Worker, TerminationReason)>>;

    /// After a stall of the host: no heartbeat or startup deadline that started before `since`
    /// expires before `since + timeout`. Every worker gets a fresh grace period, in O(1).
    fn grant_grace(&self, since: Timestamp) -> Result<()>;

    /// Counts per state, provider and provider type. O(1) in the fleet size: O(providers,
    /// provider types and pools with workers now) for the maps (clarified 2026-12-07: the
    /// in-memory registry walked every provider, type and pool it ever held at once).
    fn stats(&self) -> Result<WorkerRegistryStats>;

    /// Number of registered workers. O(1).
    fn count(&self) -> Result<usize>;

    /// A new subscriber to the event stream: it receives every event whose change commits
    /// (is published) after this call returns, in `seq` order, and none from before (on a
    /// shared database also an event whose `seq` was taken before the call and whose
    /// transaction commits after it: docs/DESIGN.md §10).
    ///
    /// # Errors
    /// `InvalidArgument` for a capacity of 0.
    fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription>;

    /// Publishes an event of the host or the manager on the registry's stream (with the next
    /// `seq`). A `HeartbeatReceived` reaches only the subscribers that want heartbeat events
    /// and, like the registry's own, is no event while none does (in memory: no `seq` taken;
    /// on PostgreSQL: written only while a subscriber of this registry handle wants them); it records
    /// no heartbeat.
    ///
    /// The kinds that tell of a change of the registry's records (`Registered`,
    /// `StateChanged`, `AssignedToJob`, `ReleasedFromJob`, `JobLost`, `Unregistered`:
    /// [`EventKind::is_registry_change`]) are the registry's own, emitted as it makes the
    /// change, and are refused here: a subscriber that reads one knows the change happened
    /// (clarified 2026-12-07). Every other kind is publishable.
    ///
    /// # Errors
    /// `InvalidArgument` naming the kind for one of the registry's own
    /// ([`EventKind::check_publishable`], checked first, before anything is read).
    /// `NotFound` for an event about a worker (see [`EventKind::worker_id`]) that is not
    /// registered (never was, or was unregistered: no event about a worker may follow its
    /// `Unregistered`). Nothing is published then.
    fn publish(&self, kind: EventKind) -> Result<()>;

    /// The leadership lease of the managers sharing this registry, for the replica named
    /// `holder`, lasting `ttl` after each renewal (see
    /// [`WorkerLifecycleManager::replicated`](crate::WorkerLifecycleManager::replicated)).
    /// `Ok(None)` (the default): the registry is not shared between processes, a manager on
    /// it needs no lease.
    ///
    /// # Errors
    /// `InvalidArgument` for a holder or ttl the backend refuses; `Backend` when the lease's
    /// store cannot be reached.
    fn lease(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Arc<dyn crate::lifecycle::Leadership>>> {
        let _ = (holder, ttl);
        Ok(None)
    }

    /// A view of this registry for a manager that leads under `term` of `lease`: each write
    /// a manager makes (`register`, `unregister`, `update_state`, `transition_if`,
    /// `grant_grace`, `publish`; `assign_to_job` too) checks in the store, in its own
    /// transaction, that `lease.holder()` still holds `term`, and otherwise fails with
    /// [`Error::NotLeader`](crate::Error::NotLeader) and changes nothing. Reads, the host's
    /// hot-path writes (`heartbeat`, `heartbeat_many`, `claim`, `release_from_job`) and
    /// `restore` are the registry's own, unfenced. This closes what the manager's own fence
    /// cannot: a leader slowed between its check and its write (a pause, a wait for a
    /// connection) while another replica took over.
    ///
    /// `None` (the default, and whenever `lease` does not live in this registry's store,
    /// [`Leadership::fence_key`](crate::Leadership::fence_key)): writes are not fenced by the
    /// store. Cheap: no round trip.
    fn fenced(
        &self,
        lease: &dyn crate::lifecycle::Leadership,
        term: crate::lifecycle::Term,
    ) -> Option<Arc<dyn WorkerRegistry>> {
        let _ = (lease, term);
        None
    }

    /// Every record plus the event `seq` and the retired ids, consistent at one instant;
    /// `taken_at` is read last, so no time in the snapshot lies after it.
    fn snapshot(&self) -> Result<Snapshot>;

    /// Bulk heartbeat: one answer per id, in order (`NotFound` per unknown id), each as
    /// [`heartbeat`](Self::heartbeat) would give it. A shared backend turns it into one
    /// statement.
    ///
    /// # Errors
    /// The outer `Err` only when the backend fails as a whole.
    fn heartbeat_many(&self, ids: &[WorkerId]) -> Result<Vec<Result<()>>> {
        Ok(ids.iter().map(|id| self.heartbeat(id)).collect())
    }

    /// Moves a worker to `to` only if `guard` still holds, atomically with the check: the
    /// way to act on a decision taken on an older view (a cleanup list, a health check) without
    /// hitting a worker that moved meanwhile (claimed, released, reported in).
    ///
    /// The move follows the rules of [`update_state`](Self::update_state) (same refusals,
    /// events, `JobLost` when a job is lost, same-state no-op).
    ///
    /// `Ok(None)`: the guard no longer holds, nothing changed.
    ///
    /// # Errors
    /// `NotFound` for an unknown worker; `InvalidTransition` when the guard holds but the state
    /// machine refuses the move.
    fn transition_if(
        &self,
        id: &WorkerId,
        guard: &TransitionGuard,
        to: WorkerState,
    ) -> Result<Option<Transitioned>>;

    /// The `n` longest-idle `Ready` workers, longest idle first (scale-in candidates),
    /// answered from the ready index (no fleet scan): cost O(classes × n + n log n) in
    /// memory, whatever the number of ready workers. Each worker is listed once, with the
    /// idle time of its place in the order, also while workers are claimed and released
    /// meanwhile (one claimed, or whose idle time restarted, during the call may be left out).
    fn longest_idle(&self, n: usize) -> Result<Vec<Worker>>;

    /// Loads a snapshot into an empty registry. The snapshot is checked whole first
    /// ([`Snapshot::validate`]): on any error the registry is left untouched.
    ///
    /// Restoring grants grace from now, as [`grant_grace`](Self::grant_grace)`(now)`: the
    /// host was down since the snapshot, so no heartbeat or startup deadline expires before
    /// `now + timeout` (idle and lifetime deadlines are not moved). The snapshot's retired ids
    /// stay refused by `register`.
    ///
    /// A snapshot dated after this registry's clock (another host's clock ahead of this one)
    /// has its times clamped to now ([`Snapshot::fit_to_clock`]), so that none of its workers
    /// escapes its deadlines; one dated more than [`MAX_SNAPSHOT_CLOCK_SKEW`] (an hour) after
    /// now is refused.
    ///
    /// # Errors
    /// `Snapshot` for a corrupt or inconsistent snapshot, or one dated more than
    /// [`MAX_SNAPSHOT_CLOCK_SKEW`] after this registry's clock; `InvalidArgument` when the registry
    /// is not empty, or one of the snapshot's workers was registered in this registry before.
    fn restore(&self, snapshot: Snapshot) -> Result<()>;

    /// Jobs assigned and released since the registry was made, if the backend counts them
    /// (`Ok(None)` otherwise: the default). For metrics; O(1) where implemented.
    fn job_totals(&self) -> Result<Option<JobTotals>> {
        Ok(None)
    }

    /// The heartbeat ages of the monitored workers from the heartbeat deadline index, if the
    /// backend keeps one (`Ok(None)` otherwise: the default). Never reads the workers'
    /// records, never scans the fleet: the in-memory registry reads a stride sample of at most
    /// 32,768 slots of its heartbeat columns (under shared locks) — exact for small fleets,
    /// an estimate with an exact total above (none, when the sample meets no monitored worker:
    /// a fleet shrunk to a few, scattered in long columns). See [`HeartbeatAges`] for what the
    /// ages mean and the estimate's error.
    fn heartbeat_age_histogram(&self) -> Result<Option<HeartbeatAges>> {
        Ok(None)
    }

    /// Every live subscription of this registry (this handle's: a shared-database backend does
    /// not list those of other processes), with the events it lost because its queue was full
    /// and the events queued now, as its own [`Subscription::dropped`] and
    /// [`Subscription::len`] say; a dropped subscription is not listed. Empty by default (a
    /// backend that does not keep the figures). For metrics.
    ///
    /// A subscriber that stops reading is what this is for: its losses show here without it
    /// reading. A backend whose subscriptions read their events only when used (PostgreSQL)
    /// first lets each subscription that is not in a call of its own read what has arrived
    /// ([`SubscriptionMonitor::drops`](crate::SubscriptionMonitor::drops)).
    fn subscriber_drops(&self) -> Result<Vec<SubscriberDrops>> {
        Ok(Vec::new())
    }
}

/// What must still hold, against the record as it is *now*, for a conditional transition
/// ([`WorkerRegistry::transition_if`]) to apply. The default guard always holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransitionGuard {
    /// The worker must be in one of these states (empty: any state).
    pub states: Vec<WorkerState>,
    /// The worker must be `Ready` with exactly this `idle_since` (it was not claimed and
    /// released since).
    pub idle_since: Option<Timestamp>,
    /// The worker must hold no job.
    pub without_job: bool,
}

impl TransitionGuard {
    /// The guard that always holds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires the worker to be in `state` (or in another state added the same way).
    pub fn in_state(mut self, state: WorkerState) -> Self {
        self.states.push(state);
        self
    }

    /// Requires the worker to be `Ready` since exactly `since`.
    pub fn idle_since(mut self, since: Timestamp) -> Self {
        self.idle_since = Some(since);
        self
    }

    /// Requires the worker to hold no job.
    pub fn without_job(mut self) -> Self {
        self.without_job = true;
        self
    }

    /// Whether the guard holds for a worker in `state`, idle since `idle_since`, holding a job
    /// or not. The one definition every backend applies.
    pub fn holds(&self, state: WorkerState, idle_since: Option<Timestamp>, has_job: bool) -> bool {
        (self.states.is_empty() || self.states.contains(&state))
            && self
                .idle_since
                .is_none_or(|t| state == WorkerState::Ready && idle_since == Some(t))
            && !(self.without_job && has_job)
    }
}

/// The result of a conditional transition that applied.
///
/// `PartialEq` only: a [`Worker`] holds an `f64` (its spec's `cpu_cores`).
#[derive(Debug, Clone, PartialEq)]
pub struct Transitioned {
    /// The worker after the move.
    pub worker: Worker,
    /// The state it left (equal to `worker.state` when it was already there: no move, no
    /// event, as with [`WorkerRegistry::update_state`]).
    pub from: WorkerState,
    /// The job it held and lost by the move (also emitted as `JobLost`), if any.
    pub lost_job: Option<JobId>,
}

/// Checks that `worker` satisfies invariant 1 (state/job consistency). Used by tests and the
/// snapshot loader.
pub(crate) fn job_state_consistent(state: WorkerState, job: Option<&JobId>) -> bool {
    match job {
        Some(_) => matches!(state, WorkerState::Busy | WorkerState::Draining),
        None => state != WorkerState::Busy,
    }
}
