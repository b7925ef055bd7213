//! The live record of a worker and the registry-wide indexes kept beside the shards.
//!
//! Which indexes hold a worker is a function of its record ([`Membership`]); every mutation
//! computes the membership before and after and applies the difference, so the indexes cannot
//! drift from the records.
//!
//! The heartbeat deadlines are not among them: each shard keeps its own [`HeartbeatWheel`]
//! under its own lock, so re-filing a worker needs neither the registry-wide mutex nor a tree
//! insert. The wheel is lazy twice over. Heartbeats store into an atomic without touching it,
//! so a worker may be filed under an older time than its live heartbeat; and entries are never
//! searched for and removed: the record remembers the bucket it is filed under
//! (`heartbeat_bucket`, changed only under the shard's write lock), and an entry that does not
//! match its record (the record moved, left the monitored states or is gone) is garbage,
//! dropped when its bucket is processed or when the wheel is compacted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::clock::{millis, Timestamp};
use crate::ids::{JobId, WorkerId};
use crate::registry::stats::WorkerRegistryStats;
use crate::state::WorkerState;
use crate::worker::{Worker, WorkerHandle, WorkerSpec};

/// One worker's live record inside a shard.
#[derive(Debug)]
pub(super) struct Record {
    pub handle: Arc<WorkerHandle>,
    pub spec: Arc<WorkerSpec>,
    pub state: WorkerState,
    /// The bucket of its shard's [`HeartbeatWheel`] this worker is filed under: `Some` exactly
    /// while its state is heartbeat-monitored.
    pub heartbeat_bucket: Option<u64>,
    pub current_job: Option<JobId>,
    pub jobs_executed: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub state_changed_at: Timestamp,
    /// Written under the shard's *read* lock by `heartbeat` (fetch_max: never goes back).
    pub last_heartbeat: AtomicU64,
    pub idle_since: Option<Timestamp>,
}

impl Record {
    pub fn from_worker(w: &Worker) -> Record {
        Record {
            handle: Arc::clone(&w.handle),
            spec: Arc::clone(&w.spec),
            state: w.state,
            heartbeat_bucket: None,
            current_job: w.current_job.clone(),
            jobs_executed: w.jobs_executed,
            created_at: w.created_at,
            updated_at: w.updated_at,
            state_changed_at: w.state_changed_at,
            last_heartbeat: AtomicU64::new(w.last_heartbeat),
            idle_since: w.idle_since,
        }
    }

    pub fn to_worker(&self, id: WorkerId) -> Worker {
        Worker {
            id,
            handle: Arc::clone(&self.handle),
            spec: Arc::clone(&self.spec),
            state: self.state,
            current_job: self.current_job.clone(),
            jobs_executed: self.jobs_executed,
            created_at: self.created_at,
            updated_at: self.updated_at,
            state_changed_at: self.state_changed_at,
            last_heartbeat: self.last_heartbeat.load(Ordering::Acquire),
            idle_since: self.idle_since,
        }
    }

    pub fn heartbeat(&self) -> Timestamp {
        self.last_heartbeat.load(Ordering::Acquire)
    }

    pub fn membership(&self) -> Membership {
        Membership::of(self.state, self.current_job.is_some())
    }

    fn idle_deadline(&self) -> Option<Timestamp> {
        self.idle_since
            .map(|s| s.saturating_add(millis(self.spec.idle_timeout)))
    }

    fn lifetime_deadline(&self) -> Timestamp {
        self.created_at
            .saturating_add(millis(self.spec.max_lifetime))
    }

    /// Whether the worker has run its `max_jobs`.
    pub fn jobs_exhausted(&self) -> bool {
        self.spec
            .max_jobs
            .is_some_and(|max| self.jobs_executed >= u64::from(max))
    }
}

/// Which indexes a worker belongs in, from its state and whether it holds a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Membership {
    /// `ready` and `idle_due`: `Ready`.
    ready: bool,
    /// `startup_due`: `Creating`/`Connecting`.
    starting: bool,
    /// `lifetime_due`: `Creating`, `Connecting`, `Ready`, `Busy` (a `Draining` worker is
    /// already on its way out).
    lifetime: bool,
    /// `drained`: `Draining` without a job.
    drained: bool,
}

impl Membership {
    pub fn of(state: WorkerState, has_job: bool) -> Membership {
        use WorkerState::*;
        Membership {
            ready: state == Ready,
            starting: state.is_starting(),
            lifetime: matches!(state, Creating | Connecting | Ready | Busy),
            drained: state == Draining && !has_job,
        }
    }

    /// No index at all (a record being removed).
    pub fn none() -> Membership {
        Membership::default()
    }

    pub fn is_ready(self) -> bool {
        self.ready
    }

    pub fn is_lifetime_tracked(self) -> bool {
        self.lifetime
    }

    pub fn is_drained(self) -> bool {
        self.drained
    }
}

/// What `claim` needs to pre-filter a ready worker without its shard's lock.
#[derive(Debug, Clone)]
pub(super) struct ReadyEntry {
    pub handle: Arc<WorkerHandle>,
    pub spec: Arc<WorkerSpec>,
}

/// The registry-wide indexes and counters, behind one mutex. Lock order: shard, then this,
/// then the event bus.
#[derive(Debug, Default)]
pub(super) struct Indexes {
    pub stats: WorkerRegistryStats,
    /// Ready workers by `(idle_since, id)`: the last entry is the most recently idle.
    pub ready: BTreeMap<(Timestamp, WorkerId), ReadyEntry>,
    /// Who holds each job (invariant 2).
    pub jobs: HashMap<JobId, WorkerId, foldhash::fast::RandomState>,
    /// `(created_at, id)` of starting workers.
    pub startup_due: BTreeSet<(Timestamp, WorkerId)>,
    /// `(idle deadline, id)` of ready workers.
    pub idle_due: BTreeSet<(Timestamp, WorkerId)>,
    /// `(lifetime deadline, id)`.
    pub lifetime_due: BTreeSet<(Timestamp, WorkerId)>,
    /// Draining workers without a job.
    pub drained: BTreeSet<WorkerId>,
    /// Successful assignments (`assign_to_job`, `claim`) since the registry was made.
    pub jobs_assigned: u64,
    /// Successful `release_from_job` calls since the registry was made.
    pub jobs_released: u64,
    /// Ids unregistered, refused by `register` (ids are never reused).
    pub retired: RetiredIds,
}

/// How many retired ids an [`InMemoryWorkerRegistry`](super::InMemoryWorkerRegistry) keeps by
/// default.
pub(super) const DEFAULT_RETIRED_ID_LIMIT: usize = 1 << 20;

/// The last `limit` unregistered ids, in a set for `register`'s check and in retirement order
/// for eviction (oldest first). About 50 bytes per id.
#[derive(Debug)]
pub(super) struct RetiredIds {
    set: HashSet<WorkerId, foldhash::fast::RandomState>,
    order: VecDeque<WorkerId>,
    limit: usize,
}

impl Default for RetiredIds {
    fn default() -> Self {
        RetiredIds {
            set: HashSet::default(),
            order: VecDeque::new(),
            limit: DEFAULT_RETIRED_ID_LIMIT,
        }
    }
}

impl RetiredIds {
    pub fn contains(&self, id: &WorkerId) -> bool {
        self.set.contains(id)
    }

    /// Remembers `id`, forgetting the oldest retired id beyond the limit.
    pub fn insert(&mut self, id: WorkerId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            self.trim();
        }
    }

    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        self.trim();
    }

    fn trim(&mut self) {
        while self.order.len() > self.limit {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    pub fn oldest_first(&self) -> Vec<WorkerId> {
        self.order.iter().copied().collect()
    }
}

impl Indexes {
    /// Moves `id` from membership `before` (computed on the record before the change, with the
    /// `before_idle_since` it had) to membership `after` (normally `rec.membership()`).
    pub fn refile(
        &mut self,
        id: WorkerId,
        before: Membership,
        before_idle_since: Option<Timestamp>,
        after: Membership,
        rec: &Record,
    ) {
        let idle_restarted = before_idle_since != rec.idle_since;
        if before.ready && (!after.ready || idle_restarted) {
            let since = before_idle_since.unwrap_or(0);
            self.ready.remove(&(since, id));
            let deadline = since.saturating_add(millis(rec.spec.idle_timeout));
            self.idle_due.remove(&(deadline, id));
        }
        if after.ready && (!before.ready || idle_restarted) {
            let since = rec.idle_since.unwrap_or(0);
            self.ready.insert(
                (since, id),
                ReadyEntry {
                    handle: Arc::clone(&rec.handle),
                    spec: Arc::clone(&rec.spec),
                },
            );
            self.idle_due.insert((rec.idle_deadline().unwrap_or(0), id));
        }
        if before.starting != after.starting {
            if after.starting {
                self.startup_due.insert((rec.created_at, id));
            } else {
                self.startup_due.remove(&(rec.created_at, id));
            }
        }
        if before.lifetime != after.lifetime {
            if after.lifetime {
                self.lifetime_due.insert((rec.lifetime_deadline(), id));
            } else {
                self.lifetime_due.remove(&(rec.lifetime_deadline(), id));
            }
        }
        if before.drained != after.drained {
            if after.drained {
                self.drained.insert(id);
            } else {
                self.drained.remove(&id);
            }
        }
    }

    /// Removes every trace of a record that leaves the registry.
    pub fn forget(&mut self, id: WorkerId, rec: &mut Record) {
        let (before, idle_since) = (rec.membership(), rec.idle_since);
        self.refile(id, before, idle_since, Membership::none(), rec);
        if let Some(job) = &rec.current_job {
            self.jobs.remove(job);
        }
        self.stats.remove(
            rec.state,
            &rec.handle.provider_id,
            &rec.handle.provider_type,
        );
    }
}

/// Width of one [`HeartbeatWheel`] bucket, in milliseconds: coarse, so that a worker is
/// re-filed at most about once per heartbeat timeout and a bucket gathers many workers.
pub(super) const HEARTBEAT_BUCKET_MS: u64 = 1_000;

/// Garbage a wheel may carry beyond its live entries before it is compacted, on top of a share
/// of the shard's records (see [`HeartbeatWheel::needs_compaction`]).
const WHEEL_SLACK: usize = 64;

/// The bucket of a heartbeat deadline key (a heartbeat, or the grace floor).
pub(super) fn heartbeat_bucket(key: Timestamp) -> u64 {
    key / HEARTBEAT_BUCKET_MS
}

/// One shard's heartbeat deadlines: the ids of its monitored workers, bucketed by the
/// heartbeat (or grace floor) they were filed under.
///
/// Invariant: every monitored record `r` of the shard has `r.heartbeat_bucket == Some(b)` and
/// an entry in bucket `b`, and `b`'s start is at most `max(r.heartbeat(), floor)` (heartbeats
/// and the floor only grow), so the buckets starting before a cutoff hold every worker silent
/// since before it. Entries that do not match their record are garbage (see the module doc).
#[derive(Debug, Default)]
pub(super) struct HeartbeatWheel {
    buckets: BTreeMap<u64, Vec<WorkerId>>,
    /// Entries in `buckets`, garbage included.
    entries: usize,
    /// Records with `heartbeat_bucket` set: the live entries.
    monitored: usize,
    /// Live entries per bucket (garbage not counted): the heartbeat ages of the shard's
    /// monitored workers, readable without touching a record.
    live: BTreeMap<u64, u64>,
}

impl HeartbeatWheel {
    /// Files `id` under its live heartbeat (or the grace floor) if it is monitored and not
    /// filed yet; marks it unfiled if it is no longer monitored (its entry becomes garbage).
    pub fn refile(&mut self, id: WorkerId, rec: &mut Record, floor: Timestamp) {
        let monitored = rec.state.heartbeat_monitored();
        if monitored && rec.heartbeat_bucket.is_none() {
            self.monitored += 1;
            self.file(id, rec, floor);
        } else if !monitored {
            if let Some(bucket) = rec.heartbeat_bucket.take() {
                self.monitored -= 1;
                self.unfile_live(bucket);
            }
        }
    }

    fn unfile_live(&mut self, bucket: u64) {
        if let Some(n) = self.live.get_mut(&bucket) {
            *n -= 1;
            if *n == 0 {
                self.live.remove(&bucket);
            }
        }
    }

    /// `(bucket, live workers filed under it)`, oldest first. Costs the buckets, not the
    /// workers.
    pub fn live_buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.live.iter().map(|(b, n)| (*b, *n))
    }

    /// Forgets a record that leaves the shard (its entry becomes garbage).
    pub fn forget(&mut self, rec: &mut Record) {
        if let Some(bucket) = rec.heartbeat_bucket.take() {
            self.monitored -= 1;
            self.unfile_live(bucket);
        }
    }

    /// Files a monitored record under `max(heartbeat, floor)`; returns that key.
    fn file(&mut self, id: WorkerId, rec: &mut Record, floor: Timestamp) -> Timestamp {
        let key = rec.heartbeat().max(floor);
        let bucket = heartbeat_bucket(key);
        self.buckets.entry(bucket).or_default().push(id);
        self.entries += 1;
        *self.live.entry(bucket).or_default() += 1;
        rec.heartbeat_bucket = Some(bucket);
        key
    }

    /// Entries (garbage included) in the buckets that start before `cutoff`.
    pub fn due_entries(&self, cutoff: Timestamp) -> usize {
        self.buckets
            .range(..first_bucket_at_or_after(cutoff))
            .map(|(_, ids)| ids.len())
            .sum()
    }

    /// Takes the entries of the buckets that start before `cutoff` out of the wheel, sorted
    /// and without duplicates (a worker that left its bucket and came back to it has two).
    pub fn take_due(&mut self, cutoff: Timestamp) -> Vec<(u64, WorkerId)> {
        let rest = self.buckets.split_off(&first_bucket_at_or_after(cutoff));
        let due = mem::replace(&mut self.buckets, rest);
        let mut out: Vec<(u64, WorkerId)> = due
            .into_iter()
            .flat_map(|(bucket, ids)| ids.into_iter().map(move |id| (bucket, id)))
            .collect();
        self.entries -= out.len();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Re-checks one entry taken by [`take_due`](Self::take_due) against its record `rec`:
    /// garbage is dropped; a live entry is re-filed under the live heartbeat (so a worker
    /// still due stays due for the next look) and `true` is returned iff the worker has been
    /// silent since before `cutoff`.
    pub fn recheck(
        &mut self,
        bucket: u64,
        id: WorkerId,
        rec: &mut Record,
        floor: Timestamp,
        cutoff: Timestamp,
    ) -> bool {
        if rec.heartbeat_bucket != Some(bucket) {
            return false;
        }
        // Monitored by the invariant: leaving the monitored states clears the bucket.
        self.unfile_live(bucket);
        self.file(id, rec, floor) < cutoff
    }

    /// Rebuilds the wheel from all of its shard's records in one sequential pass, calling
    /// `due` for every monitored worker silent since before `cutoff`. Cheaper than per-entry
    /// look-ups once a large share of the shard is due.
    pub fn rebuild<'a>(
        &mut self,
        records: impl Iterator<Item = (&'a WorkerId, &'a mut Record)>,
        floor: Timestamp,
        cutoff: Timestamp,
        mut due: impl FnMut(WorkerId, &Record),
    ) {
        self.buckets.clear();
        self.entries = 0;
        self.monitored = 0;
        self.live.clear();
        for (id, rec) in records {
            if !rec.state.heartbeat_monitored() {
                rec.heartbeat_bucket = None;
                continue;
            }
            self.monitored += 1;
            if self.file(*id, rec, floor) < cutoff {
                due(*id, rec);
            }
        }
    }

    /// Whether the garbage outgrew its bound: more entries than twice the live ones, plus a
    /// slack proportional to the shard's `records` (so that a shard of mostly unmonitored
    /// records is not rescanned every few operations). Entries only grow by filing, so checking
    /// after every operation that may file keeps memory linear in the shard's records even if
    /// `find_unhealthy` is never called.
    pub fn needs_compaction(&self, records: usize) -> bool {
        self.entries > 2 * self.monitored + records / 2 + WHEEL_SLACK
    }

    /// Drops all garbage: re-files every monitored record under the bucket it is filed under.
    pub fn compact<'a>(&mut self, records: impl Iterator<Item = (&'a WorkerId, &'a Record)>) {
        self.buckets.clear();
        self.entries = 0;
        for (id, rec) in records {
            if let Some(bucket) = rec.heartbeat_bucket {
                self.buckets.entry(bucket).or_default().push(*id);
                self.entries += 1;
            }
        }
        debug_assert_eq!(self.entries, self.monitored);
        debug_assert_eq!(self.live.values().sum::<u64>(), self.monitored as u64);
    }

    /// Entries held, garbage included (for tests of the bound).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.entries
    }
}

/// The first bucket whose start is at or after `cutoff`: the buckets before it may hold keys
/// below `cutoff`.
fn first_bucket_at_or_after(cutoff: Timestamp) -> u64 {
    cutoff.div_ceil(HEARTBEAT_BUCKET_MS)
}
