//! The live record of a worker and the registry-wide indexes kept beside the shards.
//!
//! Which indexes hold a worker is a function of its record ([`Membership`]); every mutation
//! computes the membership before and after and applies the difference, so the indexes cannot
//! drift from the records.
//!
//! The heartbeat deadlines are not among them: each shard keeps its workers' heartbeats in a
//! dense column under its own lock ([`HeartbeatColumn`](super::column::HeartbeatColumn)); the
//! record holds its slot there.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::clock::{millis, Timestamp};
use crate::ids::{JobId, WorkerId};
use crate::registry::stats::{pool_of, WorkerRegistryStats};
use crate::state::WorkerState;
use crate::worker::{Worker, WorkerHandle, WorkerSpec};

/// One worker's live record inside a shard.
#[derive(Debug)]
pub(super) struct Record {
    pub handle: Arc<WorkerHandle>,
    pub spec: Arc<WorkerSpec>,
    pub state: WorkerState,
    /// Its slot in the shard's heartbeat column, which holds its last heartbeat (the column's
    /// monitored flag follows `state.heartbeat_monitored()`).
    pub slot: u32,
    pub current_job: Option<JobId>,
    pub jobs_executed: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub state_changed_at: Timestamp,
    pub idle_since: Option<Timestamp>,
}

impl Record {
    /// The record of `w`, in `slot` (which holds `w.last_heartbeat`).
    pub fn from_worker(w: &Worker, slot: u32) -> Record {
        Record {
            handle: Arc::clone(&w.handle),
            spec: Arc::clone(&w.spec),
            state: w.state,
            slot,
            current_job: w.current_job.clone(),
            jobs_executed: w.jobs_executed,
            created_at: w.created_at,
            updated_at: w.updated_at,
            state_changed_at: w.state_changed_at,
            idle_since: w.idle_since,
        }
    }

    /// The snapshot of this record, whose last heartbeat (read from its slot) is `last_heartbeat`.
    pub fn to_worker(&self, id: WorkerId, last_heartbeat: Timestamp) -> Worker {
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
            last_heartbeat,
            idle_since: self.idle_since,
        }
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
    /// `terminal`: `Terminating`/`Terminated`.
    terminal: bool,
}

impl Membership {
    pub fn of(state: WorkerState, has_job: bool) -> Membership {
        use WorkerState::*;
        Membership {
            ready: state == Ready,
            starting: state.is_starting(),
            lifetime: matches!(state, Creating | Connecting | Ready | Busy),
            drained: state == Draining && !has_job,
            terminal: state.is_terminal(),
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
    /// `Terminating`/`Terminated` workers: `find` of those states reads this, not the fleet
    /// (the lifecycle manager looks them up while its destroy queue is not empty).
    pub terminal: BTreeSet<WorkerId>,
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
        if before.terminal != after.terminal {
            if after.terminal {
                self.terminal.insert(id);
            } else {
                self.terminal.remove(&id);
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
            pool_of(&rec.spec),
        );
    }
}
