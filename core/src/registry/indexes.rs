//! The live record of a worker and the registry-wide indexes kept beside the shards.
//!
//! Which indexes hold a worker is a function of its record ([`Membership`]); every mutation
//! computes the membership before and after and applies the difference, so the indexes cannot
//! drift from the records.
//!
//! The heartbeat index alone is lazy about its keys: heartbeats store into an atomic without
//! touching it, so an entry's key may be older than the live heartbeat. `find_unhealthy` pops
//! the entries due, re-checks each against the live atomic and re-files the ones still alive.
//! The record remembers the key it is filed under (`heartbeat_key`, changed only under the
//! shard's write lock), so there is one entry per monitored worker and none for the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// The key of this worker's entry in `heartbeat_due`, if it has one.
    pub heartbeat_key: Option<Timestamp>,
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
            heartbeat_key: None,
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
    /// `heartbeat_due`: `Connecting`, `Ready`, `Busy`, `Draining`.
    heartbeat: bool,
}

impl Membership {
    pub fn of(state: WorkerState, has_job: bool) -> Membership {
        use WorkerState::*;
        Membership {
            ready: state == Ready,
            starting: state.is_starting(),
            lifetime: matches!(state, Creating | Connecting | Ready | Busy),
            drained: state == Draining && !has_job,
            heartbeat: state.heartbeat_monitored(),
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
    /// Lazy: `(heartbeat when filed, id)`.
    pub heartbeat_due: BTreeSet<(Timestamp, WorkerId)>,
    /// `(created_at, id)` of starting workers.
    pub startup_due: BTreeSet<(Timestamp, WorkerId)>,
    /// `(idle deadline, id)` of ready workers.
    pub idle_due: BTreeSet<(Timestamp, WorkerId)>,
    /// `(lifetime deadline, id)`.
    pub lifetime_due: BTreeSet<(Timestamp, WorkerId)>,
    /// Draining workers without a job.
    pub drained: BTreeSet<WorkerId>,
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
        rec: &mut Record,
        floor: Timestamp,
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
        if after.heartbeat && rec.heartbeat_key.is_none() {
            self.file_heartbeat(id, rec, floor);
        } else if !after.heartbeat {
            if let Some(key) = rec.heartbeat_key.take() {
                self.heartbeat_due.remove(&(key, id));
            }
        }
    }

    /// Files `id` in `heartbeat_due` under its live heartbeat (or the grace floor).
    pub fn file_heartbeat(&mut self, id: WorkerId, rec: &mut Record, floor: Timestamp) {
        let key = rec.heartbeat().max(floor);
        self.heartbeat_due.insert((key, id));
        rec.heartbeat_key = Some(key);
    }

    /// Removes every trace of a record that leaves the registry.
    pub fn forget(&mut self, id: WorkerId, rec: &mut Record) {
        let (before, idle_since) = (rec.membership(), rec.idle_since);
        self.refile(id, before, idle_since, Membership::none(), rec, 0);
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
