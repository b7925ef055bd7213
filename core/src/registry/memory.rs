//! [`InMemoryWorkerRegistry`]: sharded records, atomic heartbeats, deadline indexes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::column::HeartbeatColumn;
use super::indexes::{Indexes, Membership, Record, DEFAULT_RETIRED_ID_LIMIT};
use super::snapshot::{Snapshot, SNAPSHOT_FORMAT};
use super::stats::{pool_of, WorkerRegistryStats};
use super::telemetry::{HeartbeatAges, JobTotals, SubscriberDrops};
use super::{TransitionGuard, Transitioned, WorkerRegistry};
use crate::clock::{millis, Clock, SystemClock, Timestamp};
use crate::error::{Error, Result};
use crate::events::{EventBus, EventKind, SubscribeOptions, Subscription};
use crate::filter::WorkerFilter;
use crate::ids::{JobId, WorkerId};
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker, WorkerHandle, WorkerSpec};

/// Number of shards: a power of two, enough that two to eight threads rarely meet.
const SHARD_COUNT: usize = 64;

/// Most ready-index entries `claim` walks per hold of the registry-wide mutex (~2-5 us): the
/// bound on how long an unmatchable filter over a large ready set delays other operations.
const CLAIM_SCAN_BATCH: usize = 256;

/// One shard: its records and their heartbeat column, under one lock.
#[derive(Debug, Default)]
struct Shard {
    records: HashMap<WorkerId, Record, foldhash::fast::RandomState>,
    column: HeartbeatColumn,
}

impl Shard {
    /// The snapshot of `rec`, with its heartbeat from the column.
    fn worker(&self, id: WorkerId, rec: &Record) -> Worker {
        rec.to_worker(id, self.column.get(rec.slot))
    }
}

/// The in-memory [`WorkerRegistry`].
///
/// # Design
/// - Records live in 64 `RwLock`ed hash maps (shards) chosen by worker id. `get` and
///   `heartbeat` take one shard's *shared* lock; `heartbeat` is one atomic `fetch_max`.
/// - Each shard keeps its workers' last heartbeats in a dense column (8 bytes a worker, the
///   slot kept in the record): `find_unhealthy` reads the column, not the records, under the
///   shard's shared lock, and usually only the slots found due last time (a cache valid until
///   the cutoff passes the oldest heartbeat not due); a record is read only for a worker due.
/// - One mutex guards the registry-wide indexes (ready workers ordered by idle time, job
///   holders, deadline indexes) and the counters behind `stats`. Every change of state takes a
///   shard's write lock, then this mutex, then publishes its events under it, so event `seq`
///   follows the order of changes.
/// - Deadline indexes make `find_unhealthy`, `find_startup_expired` and
///   `find_for_termination` cost what is due, not the fleet size.
/// - No user code runs under any of these locks: subscribers are channels, fed with
///   `try_send`.
///
/// # Examples
/// ```
/// use hodei_workers::*;
/// let registry = InMemoryWorkerRegistry::new();
/// let provider = ProviderId::new("docker-local")?;
/// let spec = std::sync::Arc::new(WorkerSpec::new("ubuntu:24.04").with_label("pool", "ci"));
/// let worker = registry.register(WorkerHandle::new(provider, ProviderType::Docker, "c-1"), spec)?;
/// registry.update_state(&worker.id, WorkerState::Ready)?;
///
/// let job = JobId::new("job-42")?;
/// let taken = registry.claim(&WorkerFilter::new().label("pool", "ci"), job.clone())?.unwrap();
/// assert_eq!(taken.state, WorkerState::Busy);
/// assert_eq!(registry.release_from_job(&taken.id, Some(&job))?, job);
/// assert_eq!(registry.stats()?.by_state.ready, 1);
/// # Ok::<(), hodei_workers::Error>(())
/// ```
pub struct InMemoryWorkerRegistry {
    shards: Box<[RwLock<Shard>]>,
    indexes: Mutex<Indexes>,
    bus: Arc<EventBus>,
    clock: Arc<dyn Clock>,
    /// See [`WorkerRegistry::grant_grace`].
    grace_floor: AtomicU64,
}

impl fmt::Debug for InMemoryWorkerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryWorkerRegistry")
            .field("workers", &self.indexes.lock().stats.total)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Default for InMemoryWorkerRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryWorkerRegistry {
    /// An empty registry on the monotonic [`SystemClock`].
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock::new()))
    }

    /// An empty registry on `clock` (a [`ManualClock`](crate::ManualClock) for tests).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        InMemoryWorkerRegistry {
            shards: (0..SHARD_COUNT)
                .map(|_| RwLock::new(Shard::default()))
                .collect(),
            indexes: Mutex::new(Indexes::default()),
            bus: Arc::new(EventBus::default()),
            clock,
            grace_floor: AtomicU64::new(0),
        }
    }

    /// How many unregistered ids a registry remembers by default (see
    /// [`with_retired_id_limit`](Self::with_retired_id_limit)): 2^20, at most ~50 MiB.
    pub const DEFAULT_RETIRED_ID_LIMIT: usize = DEFAULT_RETIRED_ID_LIMIT;

    /// Sets how many unregistered ids the registry remembers (builder style).
    ///
    /// Ids are never reused: `register` of an id that was unregistered is `AlreadyExists`, so
    /// that a late call naming the old worker (a stale `release_from_job`) can never act on a
    /// new one. The registry remembers the last `limit` unregistered ids (about 50 bytes
    /// each; snapshots carry them); an id retired longer ago than that may be registered
    /// again. Random ids ([`WorkerId::new`]) never collide: the limit only matters for ids
    /// chosen by the caller.
    pub fn with_retired_id_limit(self, limit: usize) -> Self {
        self.indexes.lock().retired.set_limit(limit);
        self
    }

    /// The registry's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn shard(&self, id: &WorkerId) -> &RwLock<Shard> {
        &self.shards[self.shard_index(id)]
    }

    fn shard_index(&self, id: &WorkerId) -> usize {
        // Ids are random v4 UUIDs; two bytes away from the version nibbles spread them well.
        let b = id.as_bytes();
        (b[15] ^ b[3]) as usize & (SHARD_COUNT - 1)
    }

    fn floor(&self) -> Timestamp {
        self.grace_floor.load(Ordering::Acquire)
    }

    /// Applies `edit` to a record and keeps indexes, counters and events in step: the one path
    /// by which a record changes.
    fn change(
        &self,
        ix: &mut Indexes,
        column: &mut HeartbeatColumn,
        id: WorkerId,
        rec: &mut Record,
        now: Timestamp,
        edit: impl FnOnce(&mut Record),
    ) {
        let (before, before_idle, from) = (rec.membership(), rec.idle_since, rec.state);
        edit(rec);
        rec.updated_at = now;
        let to = rec.state;
        if to != from {
            rec.state_changed_at = now;
            if to == WorkerState::Ready {
                rec.idle_since = Some(now);
            }
            ix.stats.moved(from, to, pool_of(&rec.spec));
        }
        ix.refile(id, before, before_idle, rec.membership(), rec);
        column.set_monitored(rec.slot, to.heartbeat_monitored(), self.floor());
        if to != from {
            self.bus.publish(now, || EventKind::StateChanged {
                worker_id: id,
                from,
                to,
            });
        }
    }

    fn assign_locked(
        &self,
        ix: &mut Indexes,
        column: &mut HeartbeatColumn,
        id: WorkerId,
        rec: &mut Record,
        job: JobId,
        now: Timestamp,
    ) {
        ix.jobs.insert(job.clone(), id);
        ix.jobs_assigned += 1;
        self.change(ix, column, id, rec, now, |r| {
            r.current_job = Some(job.clone());
            r.state = WorkerState::Busy;
        });
        self.bus.publish(now, || EventKind::AssignedToJob {
            worker_id: id,
            job_id: job,
        });
    }

    /// The one path of `update_state` and `transition_if`: checks `guard` (if any) and the
    /// state machine against the record under its shard's write lock, then moves it.
    fn move_state(
        &self,
        id: &WorkerId,
        guard: Option<&TransitionGuard>,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        let mut shard_guard = self.shard(id).write();
        let shard = &mut *shard_guard;
        let rec = shard.records.get_mut(id).ok_or_else(|| not_found(id))?;
        let from = rec.state;
        if let Some(guard) = guard {
            if !guard.holds(from, rec.idle_since, rec.current_job.is_some()) {
                return Ok(None);
            }
        }
        if from == to {
            return Ok(Some(Transitioned {
                worker: rec.to_worker(*id, shard.column.get(rec.slot)),
                from,
                lost_job: None,
            }));
        }
        // Back to Ready only without a job and below max_jobs: a one-shot worker that ran its
        // job must not take a second one (the error's message names max_jobs).
        let no_ready =
            to == WorkerState::Ready && (rec.current_job.is_some() || rec.jobs_exhausted());
        if !from.can_update_to(to) || no_ready {
            return Err(Error::InvalidTransition {
                worker_id: *id,
                from,
                to,
            });
        }
        let lost = if to.is_terminal() {
            rec.current_job.clone()
        } else {
            None
        };
        // A starting worker that moves on (to Connecting or Ready) has just reported in: that
        // is a sign of life, so its heartbeat deadline starts now and not at registration
        // (a boot slower than the heartbeat timeout must not be expired the moment it ends).
        let reported_in = from.is_starting() && !to.is_terminal();
        let mut ix = self.indexes.lock();
        // Read under the mutex that orders the events: times never go back along `seq`.
        let now = self.now();
        if reported_in {
            shard.column.beat(rec.slot, now);
        }
        self.change(&mut ix, &mut shard.column, *id, rec, now, |r| {
            r.state = to;
            if to.is_terminal() {
                r.current_job = None;
            }
        });
        if let Some(job) = &lost {
            ix.jobs.remove(job);
            self.bus.publish(now, || EventKind::JobLost {
                worker_id: *id,
                job_id: job.clone(),
            });
        }
        drop(ix);
        let worker = rec.to_worker(*id, shard.column.get(rec.slot));
        Ok(Some(Transitioned {
            worker,
            from,
            lost_job: lost,
        }))
    }

    /// Snapshots of `ids` (those still present), each kept only if `keep` holds for it.
    fn snapshots_where(
        &self,
        ids: impl IntoIterator<Item = WorkerId>,
        mut keep: impl FnMut(&Record) -> bool,
    ) -> Vec<Worker> {
        ids.into_iter()
            .filter_map(|id| {
                let shard = self.shard(&id).read();
                shard
                    .records
                    .get(&id)
                    .filter(|rec| keep(rec))
                    .map(|rec| shard.worker(id, rec))
            })
            .collect()
    }
}

fn not_found(id: &WorkerId) -> Error {
    Error::NotFound(*id)
}

impl WorkerRegistry for InMemoryWorkerRegistry {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker> {
        handle.validate()?;
        spec.validate()?;
        let id = handle.worker_id;
        let mut guard = self.shard(&id).write();
        let shard = &mut *guard;
        if shard.records.contains_key(&id) {
            return Err(Error::AlreadyExists(id));
        }
        let mut ix = self.indexes.lock();
        if ix.retired.contains(&id) {
            return Err(Error::AlreadyExists(id));
        }
        let now = self.now();
        let rec = Record {
            handle: Arc::new(handle),
            spec,
            state: WorkerState::Creating,
            slot: shard.column.alloc(id, now),
            current_job: None,
            jobs_executed: 0,
            created_at: now,
            updated_at: now,
            state_changed_at: now,
            idle_since: None,
        };
        // Creating: not heartbeat-monitored (the column's slot starts unmonitored).
        debug_assert!(!rec.state.heartbeat_monitored());
        let after = rec.membership();
        ix.refile(id, Membership::none(), None, after, &rec);
        ix.stats.add(
            rec.state,
            &rec.handle.provider_id,
            &rec.handle.provider_type,
            pool_of(&rec.spec),
        );
        self.bus.publish(now, || EventKind::Registered {
            worker_id: id,
            provider_id: rec.handle.provider_id.clone(),
            provider_type: rec.handle.provider_type.clone(),
        });
        drop(ix);
        let worker = rec.to_worker(id, now);
        shard.records.insert(id, rec);
        Ok(worker)
    }

    fn unregister(&self, id: &WorkerId, reason: TerminationReason) -> Result<Worker> {
        let mut shard = self.shard(id).write();
        let mut rec = shard.records.remove(id).ok_or_else(|| not_found(id))?;
        let last_heartbeat = shard.column.get(rec.slot);
        shard.column.release(rec.slot);
        let mut ix = self.indexes.lock();
        let now = self.now();
        ix.forget(*id, &mut rec);
        ix.retired.insert(*id);
        if let Some(job) = &rec.current_job {
            self.bus.publish(now, || EventKind::JobLost {
                worker_id: *id,
                job_id: job.clone(),
            });
        }
        self.bus.publish(now, || EventKind::Unregistered {
            worker_id: *id,
            reason,
        });
        Ok(rec.to_worker(*id, last_heartbeat))
    }

    fn get(&self, id: &WorkerId) -> Result<Option<Worker>> {
        let shard = self.shard(id).read();
        Ok(shard.records.get(id).map(|rec| shard.worker(*id, rec)))
    }

    fn find(&self, filter: &WorkerFilter) -> Result<Vec<Worker>> {
        let now = self.now();
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if !filter.states.is_empty() && filter.states.iter().all(|s| s.is_terminal()) {
            // Only terminal records can match: read their index, not the fleet.
            let ids: Vec<WorkerId> = self.indexes.lock().terminal.iter().copied().collect();
            for id in ids {
                if out.len() >= limit {
                    break;
                }
                let shard = self.shard(&id).read();
                if let Some(rec) = shard.records.get(&id) {
                    let worker = shard.worker(id, rec);
                    if filter.matches(&worker, now) {
                        out.push(worker);
                    }
                }
            }
            return Ok(out);
        }
        for shard in self.shards.iter() {
            let shard = shard.read();
            for (id, rec) in shard.records.iter() {
                if out.len() >= limit {
                    return Ok(out);
                }
                // No snapshot for a record whose state rules it out.
                if !filter.states.is_empty() && !filter.states.contains(&rec.state) {
                    continue;
                }
                let worker = shard.worker(*id, rec);
                if filter.matches(&worker, now) {
                    out.push(worker);
                }
            }
        }
        Ok(out)
    }

    fn update_state(&self, id: &WorkerId, to: WorkerState) -> Result<Worker> {
        let moved = self.move_state(id, None, to)?;
        Ok(moved.expect("no guard: the move applies or fails").worker)
    }

    fn transition_if(
        &self,
        id: &WorkerId,
        guard: &TransitionGuard,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        self.move_state(id, Some(guard), to)
    }

    fn longest_idle(&self, n: usize) -> Result<Vec<Worker>> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut after: Option<(Timestamp, WorkerId)> = None;
        while out.len() < n {
            let want = n - out.len();
            let keys: Vec<(Timestamp, WorkerId)> = {
                let ix = self.indexes.lock();
                let lower = match after {
                    Some(key) => Bound::Excluded(key),
                    None => Bound::Unbounded,
                };
                ix.ready
                    .range((lower, Bound::Unbounded))
                    .take(want)
                    .map(|(key, _)| *key)
                    .collect()
            };
            let Some(&last) = keys.last() else {
                break;
            };
            let exhausted = keys.len() < want;
            // Read under each record's own lock: a worker claimed (or retired) since the index
            // was read is left out, and the walk goes on past it.
            out.extend(
                self.snapshots_where(keys.into_iter().map(|(_, id)| id), |rec| {
                    rec.state == WorkerState::Ready && rec.current_job.is_none()
                }),
            );
            if exhausted {
                break;
            }
            after = Some(last);
        }
        Ok(out)
    }

    fn heartbeat(&self, id: &WorkerId) -> Result<()> {
        let now = self.now();
        let shard = self.shard(id).read();
        let rec = shard.records.get(id).ok_or_else(|| not_found(id))?;
        shard.column.beat(rec.slot, now);
        if self.bus.wants_heartbeats() {
            // Published under the shard lock (order shard -> bus, as everywhere): every other
            // event of this worker is published under its shard's write lock, so a heartbeat
            // event can never follow its `Unregistered` in seq order.
            self.bus
                .publish(now, || EventKind::HeartbeatReceived { worker_id: *id });
        }
        Ok(())
    }

    fn assign_to_job(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        let mut guard = self.shard(id).write();
        let shard = &mut *guard;
        let rec = shard.records.get_mut(id).ok_or_else(|| not_found(id))?;
        if !rec.state.accepts_jobs() || rec.current_job.is_some() {
            return Err(Error::NotAvailable {
                worker_id: *id,
                state: rec.state,
            });
        }
        let mut ix = self.indexes.lock();
        if let Some(holder) = ix.jobs.get(&job) {
            return Err(Error::JobAlreadyAssigned {
                job_id: job,
                worker_id: *holder,
            });
        }
        let now = self.now();
        self.assign_locked(&mut ix, &mut shard.column, *id, rec, job, now);
        drop(ix);
        Ok(rec.to_worker(*id, shard.column.get(rec.slot)))
    }

    fn release_from_job(&self, id: &WorkerId, expected_job: Option<&JobId>) -> Result<JobId> {
        let mut guard = self.shard(id).write();
        let shard = &mut *guard;
        let rec = shard.records.get_mut(id).ok_or_else(|| not_found(id))?;
        let current = match (&rec.current_job, expected_job) {
            (Some(current), Some(expected)) if current != expected => None,
            (current, _) => current.clone(),
        };
        let Some(job) = current else {
            return Err(Error::NotBusy {
                worker_id: *id,
                expected: expected_job.cloned(),
            });
        };
        let mut ix = self.indexes.lock();
        let now = self.now();
        ix.jobs.remove(&job);
        ix.jobs_released += 1;
        self.bus.publish(now, || EventKind::ReleasedFromJob {
            worker_id: *id,
            job_id: job.clone(),
        });
        self.change(&mut ix, &mut shard.column, *id, rec, now, |r| {
            r.current_job = None;
            // Saturating: a restored snapshot may carry any count.
            r.jobs_executed = r.jobs_executed.saturating_add(1);
            if r.state == WorkerState::Busy {
                r.state = if r.jobs_exhausted() {
                    WorkerState::Draining
                } else {
                    WorkerState::Ready
                };
            }
        });
        Ok(job)
    }

    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        let now = self.now();
        // Only workers idle since at most `newest` can match `idle_for`.
        let newest = match filter.idle_for {
            Some(idle) => now.checked_sub(millis(idle)),
            None => Some(Timestamp::MAX),
        };
        let hopeless = (!filter.states.is_empty() && !filter.states.contains(&WorkerState::Ready))
            || filter.accepting_jobs == Some(false)
            || filter.limit == Some(0);
        let Some(newest) = newest.filter(|_| !hopeless) else {
            // No worker can match; still, a job already held is an error whatever the filter:
            // the caller must learn of the double assignment, not read "no worker free".
            if let Some(holder) = self.indexes.lock().jobs.get(&job) {
                return Err(Error::JobAlreadyAssigned {
                    job_id: job,
                    worker_id: *holder,
                });
            }
            return Ok(None);
        };
        let mut upper = Bound::Included((newest, WorkerId::MAX));
        loop {
            // At most CLAIM_SCAN_BATCH entries per hold of the registry-wide mutex: a filter
            // that matches few of many ready workers (or none) makes this claim walk them, but
            // never stalls other operations for more than one batch.
            let mut candidates: Vec<(Timestamp, WorkerId)> = Vec::with_capacity(4);
            let mut scanned_to = None;
            {
                let ix = self.indexes.lock();
                if let Some(holder) = ix.jobs.get(&job) {
                    return Err(Error::JobAlreadyAssigned {
                        job_id: job,
                        worker_id: *holder,
                    });
                }
                let walk = ix
                    .ready
                    .range((Bound::Unbounded, upper))
                    .rev()
                    .take(CLAIM_SCAN_BATCH);
                // Workers made from one spec share it (`Arc`): without a provider condition the
                // answer depends on the spec alone, so a run of workers of one spec costs one
                // pointer comparison each, not a look-up of every label.
                let by_spec = filter.provider_id.is_none() && filter.provider_type.is_none();
                let mut last: Option<(&Arc<WorkerSpec>, bool)> = None;
                for (key, entry) in walk {
                    scanned_to = Some(*key);
                    let matches = match last {
                        Some((spec, answer)) if by_spec && Arc::ptr_eq(spec, &entry.spec) => answer,
                        _ => {
                            let answer = filter.matches_static(&entry.handle, &entry.spec);
                            last = Some((&entry.spec, answer));
                            answer
                        }
                    };
                    if matches {
                        candidates.push(*key);
                        if candidates.len() == 4 {
                            break;
                        }
                    }
                }
            }
            let Some(scanned_to) = scanned_to else {
                // Walked past the oldest ready worker.
                return Ok(None);
            };
            for (since, id) in candidates {
                let mut guard = self.shard(&id).write();
                let shard = &mut *guard;
                let Some(rec) = shard.records.get_mut(&id) else {
                    continue;
                };
                // Re-check under the record's lock: another claimer may have been first.
                if rec.state != WorkerState::Ready
                    || rec.current_job.is_some()
                    || rec.idle_since != Some(since)
                {
                    continue;
                }
                if let Some(silent) = filter.unhealthy_for {
                    if now.saturating_sub(shard.column.get(rec.slot)) <= millis(silent) {
                        continue;
                    }
                }
                let mut ix = self.indexes.lock();
                if let Some(holder) = ix.jobs.get(&job) {
                    return Err(Error::JobAlreadyAssigned {
                        job_id: job,
                        worker_id: *holder,
                    });
                }
                let at = self.now();
                self.assign_locked(&mut ix, &mut shard.column, id, rec, job, at);
                drop(ix);
                return Ok(Some(rec.to_worker(id, shard.column.get(rec.slot))));
            }
            upper = Bound::Excluded(scanned_to);
        }
    }

    fn find_unhealthy(&self, heartbeat_timeout: Duration) -> Result<Vec<Worker>> {
        let now = self.now();
        let floor = self.floor();
        // Silent for longer than the timeout <=> heartbeat < now - timeout.
        let Some(cutoff) = now.checked_sub(millis(heartbeat_timeout)) else {
            return Ok(Vec::new());
        };
        if floor >= cutoff {
            return Ok(Vec::new());
        }
        let mut unhealthy = Vec::new();
        for lock in self.shards.iter() {
            // The shared lock: heartbeats to the shard go on while its column is read.
            let shard = lock.read();
            shard.column.due(floor, cutoff, |id| {
                if let Some(rec) = shard.records.get(&id) {
                    unhealthy.push(shard.worker(id, rec));
                }
            });
        }
        // In shard order: the trait promises no order.
        Ok(unhealthy)
    }

    fn count_unhealthy(&self, heartbeat_timeout: Duration) -> Result<usize> {
        let now = self.now();
        let floor = self.floor();
        let Some(cutoff) = now.checked_sub(millis(heartbeat_timeout)) else {
            return Ok(0);
        };
        if floor >= cutoff {
            return Ok(0);
        }
        Ok(self
            .shards
            .iter()
            .map(|lock| lock.read().column.count_due(floor, cutoff))
            .sum())
    }

    fn find_startup_expired(&self, startup_timeout: Duration) -> Result<Vec<Worker>> {
        let now = self.now();
        let Some(cutoff) = now.checked_sub(millis(startup_timeout)) else {
            return Ok(Vec::new());
        };
        if self.floor() >= cutoff {
            return Ok(Vec::new());
        }
        let due: Vec<WorkerId> = {
            let ix = self.indexes.lock();
            ix.startup_due
                .range(..(cutoff, WorkerId::MIN))
                .map(|(_, id)| *id)
                .collect()
        };
        Ok(self.snapshots_where(due, |rec| {
            rec.state.is_starting() && rec.created_at < cutoff
        }))
    }

    fn find_for_termination(&self) -> Result<Vec<(Worker, TerminationReason)>> {
        let now = self.now();
        let mut due: BTreeMap<WorkerId, TerminationReason> = BTreeMap::new();
        {
            let ix = self.indexes.lock();
            for (_, id) in ix.idle_due.range(..(now, WorkerId::MIN)) {
                due.insert(*id, TerminationReason::Idle);
            }
            // Lifetime wins over idle: it is the harder limit.
            for (_, id) in ix.lifetime_due.range(..(now, WorkerId::MIN)) {
                due.insert(*id, TerminationReason::Lifetime);
            }
            for id in &ix.drained {
                due.insert(*id, TerminationReason::Drained);
            }
        }
        let mut out = Vec::with_capacity(due.len());
        for (id, reason) in due {
            let shard = self.shard(&id).read();
            let Some(rec) = shard.records.get(&id) else {
                continue;
            };
            let reason = match reason {
                TerminationReason::Drained if rec.jobs_exhausted() => TerminationReason::MaxJobs,
                other => other,
            };
            // Re-check against the record: it may have moved since the index was read.
            let m = rec.membership();
            let still_due = match reason {
                // Its idle clock may have restarted (a job came and went) since the index was
                // read: only the live deadline counts.
                TerminationReason::Idle => {
                    m.is_ready()
                        && rec.idle_since.is_some_and(|since| {
                            since.saturating_add(millis(rec.spec.idle_timeout)) < now
                        })
                }
                TerminationReason::Lifetime => m.is_lifetime_tracked(),
                _ => m.is_drained(),
            };
            if still_due {
                out.push((shard.worker(id, rec), reason));
            }
        }
        Ok(out)
    }

    fn grant_grace(&self, since: Timestamp) -> Result<()> {
        self.grace_floor.fetch_max(since, Ordering::AcqRel);
        Ok(())
    }

    fn stats(&self) -> Result<WorkerRegistryStats> {
        Ok(self.indexes.lock().stats.clone())
    }

    fn count(&self) -> Result<usize> {
        Ok(self.indexes.lock().stats.total)
    }

    fn job_totals(&self) -> Result<Option<JobTotals>> {
        let ix = self.indexes.lock();
        Ok(Some(JobTotals {
            assigned: ix.jobs_assigned,
            released: ix.jobs_released,
        }))
    }

    /// From a stride sample of the per-shard heartbeat columns: at most 32,768 slots in all
    /// (an equal share a shard), each shard under its shared lock, no record read. Exact while
    /// every shard was read whole; above, the sample scaled to the exact monitored count of
    /// the state counters (see [`HeartbeatAges`] for the error).
    fn heartbeat_age_histogram(&self) -> Result<Option<HeartbeatAges>> {
        let now = self.now();
        let floor = self.floor();
        let per_shard = super::telemetry::HEARTBEAT_AGE_SAMPLE / SHARD_COUNT;
        let mut ages = super::telemetry::AgeCounts::new(now);
        let mut whole = true;
        for shard in self.shards.iter() {
            let read = shard
                .read()
                .column
                .sample(floor, per_shard, |key| ages.add(key));
            whole &= read.read_live == read.live;
        }
        let scale_to = if whole {
            None
        } else {
            let ix = self.indexes.lock();
            let monitored = WorkerState::ALL
                .iter()
                .filter(|s| s.heartbeat_monitored())
                .map(|s| ix.stats.by_state.get(*s))
                .sum::<usize>();
            Some(monitored as u64)
        };
        Ok(Some(ages.into_ages(scale_to)))
    }

    fn subscriber_drops(&self) -> Result<Vec<SubscriberDrops>> {
        Ok(self.bus.subscriber_drops())
    }

    fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription> {
        self.bus.subscribe(options)
    }

    fn publish(&self, kind: EventKind) -> Result<()> {
        match kind.worker_id() {
            Some(id) => {
                // Under the worker's shard lock, as every event of the registry's own: no event
                // about a worker can follow its `Unregistered` (published under the write lock).
                let shard = self.shard(&id).read();
                if !shard.records.contains_key(&id) {
                    return Err(not_found(&id));
                }
                self.bus.publish(self.now(), || kind);
            }
            None => self.bus.publish(self.now(), || kind),
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Snapshot> {
        // All shard locks at once (in order): no record changes while we read.
        let shards: Vec<_> = self.shards.iter().map(|s| s.read()).collect();
        let seq = self.bus.seq();
        let mut workers: Vec<Worker> = shards
            .iter()
            .flat_map(|shard| shard.records.iter().map(|(id, rec)| shard.worker(*id, rec)))
            .collect();
        let retired_ids = self.indexes.lock().retired.oldest_first();
        // Read last, under the locks: every time in the records (heartbeats included, which
        // read the clock before storing) is at most `taken_at`, as `Snapshot::validate` wants.
        let taken_at = self.now();
        drop(shards);
        workers.sort_by_key(|w| (w.created_at, w.id));
        Ok(Snapshot {
            format: SNAPSHOT_FORMAT.to_owned(),
            seq,
            taken_at,
            workers,
            retired_ids,
        })
    }

    fn restore(&self, snapshot: Snapshot) -> Result<()> {
        snapshot.validate()?;
        let mut shards: Vec<_> = self.shards.iter().map(|s| s.write()).collect();
        let held: usize = shards.iter().map(|s| s.records.len()).sum();
        if held > 0 {
            return Err(Error::invalid(format!(
                "restore needs an empty registry; this one holds {held} workers"
            )));
        }
        let mut ix = self.indexes.lock();
        if let Some(w) = snapshot.workers.iter().find(|w| ix.retired.contains(&w.id)) {
            return Err(Error::invalid(format!(
                "worker {} was registered in this registry before and retired: ids are never \
                 reused",
                w.id
            )));
        }
        // The host was down between the snapshot and now: every worker gets a fresh heartbeat
        // and startup grace from now, as after a stall (`grant_grace`).
        let now = self.now();
        self.grace_floor.fetch_max(now, Ordering::AcqRel);
        let floor = self.floor();
        for id in &snapshot.retired_ids {
            ix.retired.insert(*id);
        }
        for worker in &snapshot.workers {
            let id = worker.id;
            let shard = &mut *shards[self.shard_index(&id)];
            let slot = shard.column.alloc(id, worker.last_heartbeat);
            let rec = Record::from_worker(worker, slot);
            shard
                .column
                .set_monitored(slot, rec.state.heartbeat_monitored(), floor);
            let after = rec.membership();
            ix.refile(id, Membership::none(), None, after, &rec);
            ix.stats.add(
                rec.state,
                &rec.handle.provider_id,
                &rec.handle.provider_type,
                pool_of(&rec.spec),
            );
            if let Some(job) = &rec.current_job {
                ix.jobs.insert(job.clone(), id);
            }
            shard.records.insert(id, rec);
        }
        drop(ix);
        self.bus.set_seq(snapshot.seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::ids::ProviderId;
    use crate::worker::ProviderType;

    fn registry() -> (Arc<ManualClock>, InMemoryWorkerRegistry) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
        (clock, registry)
    }

    fn connecting(registry: &InMemoryWorkerRegistry, spec: &Arc<WorkerSpec>) -> WorkerId {
        let provider = ProviderId::new("p").unwrap();
        let handle = WorkerHandle::new(provider, ProviderType::Docker, "c");
        let id = registry.register(handle, Arc::clone(spec)).unwrap().id;
        registry.update_state(&id, WorkerState::Connecting).unwrap();
        id
    }

    /// Column slots (live and free) and cached suspects of every shard, and the records.
    fn column_sizes(registry: &InMemoryWorkerRegistry) -> (usize, usize, usize) {
        registry
            .shards
            .iter()
            .fold((0, 0, 0), |(sl, su, r), shard| {
                let shard = shard.read();
                let (slots, suspects) = shard.column.sizes();
                (sl + slots, su + suspects, r + shard.records.len())
            })
    }

    #[test]
    fn churn_without_health_checks_keeps_the_column_bounded() {
        let (clock, registry) = registry();
        let spec = Arc::new(WorkerSpec::new("img"));
        let resident: Vec<WorkerId> = (0..200).map(|_| connecting(&registry, &spec)).collect();
        // A first check fills the cache: from then on every worker that becomes monitored with
        // a key below the horizon is cached as a suspect.
        clock.advance(Duration::from_secs(61));
        assert_eq!(
            registry
                .find_unhealthy(Duration::from_secs(60))
                .unwrap()
                .len(),
            resident.len()
        );
        for round in 0..20_000u64 {
            let id = connecting(&registry, &spec);
            if round % 3 == 0 {
                registry
                    .update_state(&id, WorkerState::Terminating)
                    .unwrap();
            }
            registry
                .unregister(&id, TerminationReason::Requested)
                .unwrap();
            if round % 1000 == 0 {
                clock.advance(Duration::from_secs(1));
            }
            let (slots, suspects, records) = column_sizes(&registry);
            // Slots are reused: at most the peak of records a shard ever held.
            assert!(
                slots <= records + SHARD_COUNT,
                "round {round}: {slots} slots for {records} records"
            );
            assert!(
                suspects <= slots + SHARD_COUNT * 65,
                "round {round}: {suspects} suspects for {slots} slots"
            );
        }
        assert_eq!(registry.count().unwrap(), resident.len());
        // Nothing was lost on the way: all residents are still found once due.
        clock.advance(Duration::from_secs(61));
        let mut unhealthy: Vec<WorkerId> = registry
            .find_unhealthy(Duration::from_secs(60))
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
        unhealthy.sort();
        let mut expected = resident.clone();
        expected.sort();
        assert_eq!(unhealthy, expected);
    }

    #[test]
    fn a_reused_slot_never_answers_to_its_former_worker() {
        let (clock, registry) = registry();
        let spec = Arc::new(WorkerSpec::new("img"));
        let old = connecting(&registry, &spec);
        let shard = registry.shard_index(&old);
        registry
            .unregister(&old, TerminationReason::Requested)
            .unwrap();
        // Register until a worker lands in the same shard: it takes the freed slot.
        let new = loop {
            let id = connecting(&registry, &spec);
            if registry.shard_index(&id) == shard {
                break id;
            }
        };
        let registered_at = registry.get(&new).unwrap().unwrap().last_heartbeat;
        clock.advance(Duration::from_secs(5));
        assert_eq!(registry.heartbeat(&old), Err(Error::NotFound(old)));
        assert_eq!(
            registry.get(&new).unwrap().unwrap().last_heartbeat,
            registered_at
        );
        assert_eq!(registry.get(&old).unwrap(), None);
        clock.advance(Duration::from_secs(60));
        let silent: Vec<WorkerId> = registry
            .find_unhealthy(Duration::from_secs(60))
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
        assert!(silent.contains(&new) && !silent.contains(&old));
    }

    #[test]
    fn a_few_due_entries_are_rechecked_one_by_one_exactly() {
        let (clock, registry) = registry();
        let spec = Arc::new(WorkerSpec::new("img"));
        let ids: Vec<WorkerId> = (0..5000).map(|_| connecting(&registry, &spec)).collect();
        // Spread the heartbeats over 100 s, so that only a small share of a shard (~80
        // records) is due at each step and the per-entry path (not the rebuild) does the work.
        for (i, id) in ids.iter().enumerate() {
            if i % 50 == 0 {
                clock.advance(Duration::from_millis(999));
            }
            registry.heartbeat(id).unwrap();
        }
        let timeout = Duration::from_secs(30);
        for _ in 0..150 {
            clock.advance(Duration::from_millis(1003));
            let cutoff = registry.now() - millis(timeout);
            let mut got: Vec<WorkerId> = registry
                .find_unhealthy(timeout)
                .unwrap()
                .into_iter()
                .map(|w| w.id)
                .collect();
            got.sort();
            let mut want: Vec<WorkerId> = ids
                .iter()
                .filter(|id| registry.get(id).unwrap().unwrap().last_heartbeat < cutoff)
                .copied()
                .collect();
            want.sort();
            assert_eq!(got, want);
            // The brake's count agrees, for the timeout and for half of it (which may need a
            // scan of the column, or only the suspects).
            assert_eq!(registry.count_unhealthy(timeout).unwrap(), want.len());
            let half = timeout / 2;
            assert_eq!(
                registry.count_unhealthy(half).unwrap(),
                registry.find_unhealthy(half).unwrap().len()
            );
            // Half of the fleet stays alive.
            for id in ids.iter().step_by(2) {
                registry.heartbeat(id).unwrap();
            }
        }
    }

    #[test]
    fn heartbeats_racing_unregister_and_slot_reuse_never_reach_the_new_occupant() {
        let (clock, registry) = registry();
        let spec = Arc::new(WorkerSpec::new("img"));
        let old: Vec<WorkerId> = (0..2000).map(|_| connecting(&registry, &spec)).collect();
        let done = std::sync::atomic::AtomicBool::new(false);
        let fresh: Vec<(WorkerId, Timestamp)> = std::thread::scope(|s| {
            for t in 0..2 {
                let (old, registry, clock, done) = (&old, &registry, &clock, &done);
                s.spawn(move || {
                    // Heartbeats to the old workers, with the clock moving, until the churner
                    // is done: each answers Ok or NotFound, and never lands elsewhere.
                    loop {
                        for id in old.iter().skip(t).step_by(2) {
                            clock.advance(Duration::from_millis(1));
                            match registry.heartbeat(id) {
                                Ok(()) | Err(Error::NotFound(_)) => {}
                                Err(e) => panic!("heartbeat: {e}"),
                            }
                        }
                        if done.load(Ordering::Acquire) {
                            break;
                        }
                    }
                });
            }
            // Unregisters the old workers one by one and registers new ones, which take their
            // slots; nobody heartbeats the new ones.
            let mut fresh = Vec::new();
            for id in &old {
                registry
                    .unregister(id, TerminationReason::Requested)
                    .unwrap();
                let provider = ProviderId::new("p").unwrap();
                let handle = WorkerHandle::new(provider, ProviderType::Docker, "c");
                let id = registry.register(handle, Arc::clone(&spec)).unwrap().id;
                let w = registry.update_state(&id, WorkerState::Connecting).unwrap();
                fresh.push((id, w.last_heartbeat));
            }
            done.store(true, Ordering::Release);
            fresh
        });
        for (id, at) in &fresh {
            assert_eq!(registry.get(id).unwrap().unwrap().last_heartbeat, *at);
        }
        for id in &old {
            assert_eq!(registry.heartbeat(id), Err(Error::NotFound(*id)));
        }
        assert_eq!(registry.count().unwrap(), fresh.len());
    }

    #[test]
    fn find_of_terminal_states_reads_the_terminal_index_exactly() {
        let (_clock, registry) = registry();
        let spec = Arc::new(WorkerSpec::new("img"));
        let ids: Vec<WorkerId> = (0..300).map(|_| connecting(&registry, &spec)).collect();
        for (i, id) in ids.iter().enumerate() {
            match i % 5 {
                0 => {
                    registry.update_state(id, WorkerState::Terminating).unwrap();
                }
                1 => {
                    registry.update_state(id, WorkerState::Terminated).unwrap();
                }
                2 => {
                    registry.update_state(id, WorkerState::Terminating).unwrap();
                    registry
                        .unregister(id, TerminationReason::Requested)
                        .unwrap();
                }
                _ => {}
            }
        }
        let ids_of = |filter: &WorkerFilter| {
            let mut got: Vec<WorkerId> = registry
                .find(filter)
                .unwrap()
                .into_iter()
                .map(|w| w.id)
                .collect();
            got.sort();
            got
        };
        let want = |pick: &dyn Fn(usize) -> bool| {
            let mut want: Vec<WorkerId> = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| pick(*i))
                .map(|(_, id)| *id)
                .collect();
            want.sort();
            want
        };
        let terminal =
            WorkerFilter::new().states([WorkerState::Terminating, WorkerState::Terminated]);
        assert_eq!(ids_of(&terminal), want(&|i| i % 5 < 2));
        let terminating = WorkerFilter::new().states([WorkerState::Terminating]);
        assert_eq!(ids_of(&terminating), want(&|i| i % 5 == 0));
        assert_eq!(registry.find(&terminal.clone().limit(7)).unwrap().len(), 7);
        // Other states still scan, state first.
        let connecting_only = WorkerFilter::new().states([WorkerState::Connecting]);
        assert_eq!(ids_of(&connecting_only), want(&|i| i % 5 > 2));
    }

    #[test]
    fn events_nobody_hears_still_take_their_seq() {
        let (_clock, registry) = registry();
        let spec = Arc::new(WorkerSpec::new("img"));
        // Two events (Registered, StateChanged) with nobody subscribed: numbered, not built.
        let id = connecting(&registry, &spec);
        assert_eq!(registry.snapshot().unwrap().seq, 2);
        let events = registry.subscribe(SubscribeOptions::default()).unwrap();
        registry.update_state(&id, WorkerState::Ready).unwrap();
        let heard: Vec<u64> = events.drain().iter().map(|e| e.seq).collect();
        assert_eq!(heard, [3]);
        drop(events);
        // Unsubscribed again: the numbering goes on without anyone listening.
        registry
            .unregister(&id, TerminationReason::Requested)
            .unwrap();
        assert_eq!(registry.snapshot().unwrap().seq, 4);
        let events = registry.subscribe(SubscribeOptions::default()).unwrap();
        connecting(&registry, &spec);
        let heard: Vec<u64> = events.drain().iter().map(|e| e.seq).collect();
        assert_eq!(heard, [5, 6]);
    }

    #[test]
    fn retired_ids_are_bounded_oldest_forgotten_first() {
        let (_clock, registry) = registry();
        let registry = registry.with_retired_id_limit(3);
        let spec = Arc::new(WorkerSpec::new("img"));
        let provider = ProviderId::new("p").unwrap();
        let handles: Vec<WorkerHandle> = (0..5)
            .map(|_| WorkerHandle::new(provider.clone(), ProviderType::Docker, "c"))
            .collect();
        for h in &handles {
            let id = registry.register(h.clone(), Arc::clone(&spec)).unwrap().id;
            registry
                .unregister(&id, TerminationReason::Requested)
                .unwrap();
        }
        // The last three are remembered (and carried by a snapshot), the first two forgotten.
        let ids: Vec<WorkerId> = handles.iter().map(|h| h.worker_id).collect();
        assert_eq!(registry.snapshot().unwrap().retired_ids, ids[2..]);
        for h in &handles[2..] {
            assert_eq!(
                registry.register(h.clone(), Arc::clone(&spec)).unwrap_err(),
                Error::AlreadyExists(h.worker_id)
            );
        }
        for h in &handles[..2] {
            registry.register(h.clone(), Arc::clone(&spec)).unwrap();
        }
        // A smaller limit forgets at once.
        let registry = registry.with_retired_id_limit(1);
        assert_eq!(registry.snapshot().unwrap().retired_ids, ids[4..]);
    }
}
