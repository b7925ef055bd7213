//! The live record of a worker and the registry-wide indexes kept beside the shards.
//!
//! Which indexes hold a worker is a function of its record ([`Membership`]); every mutation
//! computes the membership before and after and applies the difference, so the indexes cannot
//! drift from the records.
//!
//! The heartbeat deadlines are not among them: each shard keeps its workers' heartbeats in a
//! dense column under its own lock ([`HeartbeatColumn`](super::column::HeartbeatColumn)); the
//! record holds its slot there.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::classes::{Classes, Queue};
use super::retired::RetiredIds;
use super::shrink::shrink;
use crate::clock::Timestamp;
use crate::ids::{JobId, WorkerId};
use crate::registry::stats::{Totals, WorkerRegistryStats};
use crate::state::WorkerState;
use crate::worker::{Worker, WorkerHandle, WorkerSpec};

/// One worker's live record, in its shard's slab. Its last heartbeat is not here: it is in
/// the shard's heartbeat column at the record's slot (whose monitored flag follows
/// `state.heartbeat_monitored()`).
///
/// Kept small (80 bytes, pinned by a test), since there is one per worker: the id is the
/// handle's (`handle.worker_id`, equal by construction: `register` takes the id from the
/// handle, `restore` refuses a worker whose handle names another), the spec is its class's
/// (the shard keeps one reference per class it holds members of, see
/// [`Shard`](super::memory)), and `idle_since` is a time and a flag beside `state` rather than
/// an `Option` (8 bytes of tag and padding saved). The two bytes left of the alignment hold
/// the resource id's [`resource_tag`].
#[derive(Debug)]
pub(super) struct Record {
    pub handle: Arc<WorkerHandle>,
    pub current_job: Option<JobId>,
    /// Its ticket in the lifetime and startup queues (taken at register / restore).
    pub birth_ticket: u64,
    pub jobs_executed: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub state_changed_at: Timestamp,
    /// `idle_since` when `has_idle`, else meaningless (see [`Record::idle_since`]).
    idle_at: Timestamp,
    /// Its class (spec and provider) in [`Indexes::classes`].
    pub class: u32,
    pub state: WorkerState,
    has_idle: bool,
    /// [`resource_tag`] of `handle.resource_id`: a walk looking for resource ids
    /// (`find_by_resource_ids`) rules out a record whose tag differs without reading its
    /// handle, a miss a record at 1M workers.
    pub resource_tag: u16,
}

/// A 16-bit digest of a resource id, kept in its record ([`Record::resource_tag`]): equal ids
/// have equal tags, so a record whose tag is none of the asked ids' is none of them. The same
/// in every registry of the process (a fixed seed). Cost: one hash of the id at register.
pub(super) fn resource_tag(resource_id: &str) -> u16 {
    use std::hash::BuildHasher;
    let h = foldhash::fast::FixedState::with_seed(0x6865_6164_6572_7321).hash_one(resource_id);
    // The high bits: foldhash's are the best mixed.
    (h >> 48) as u16
}

impl Record {
    /// A new record of a worker registered at `now` (`Creating`, never idle); `tag` is
    /// [`resource_tag`] of its resource id (computed by the caller before it takes the locks).
    pub fn new(
        handle: Arc<WorkerHandle>,
        tag: u16,
        class: u32,
        birth_ticket: u64,
        now: Timestamp,
    ) -> Record {
        debug_assert_eq!(tag, resource_tag(&handle.resource_id));
        Record {
            resource_tag: tag,
            handle,
            current_job: None,
            birth_ticket,
            jobs_executed: 0,
            created_at: now,
            updated_at: now,
            state_changed_at: now,
            idle_at: 0,
            class,
            state: WorkerState::Creating,
            has_idle: false,
        }
    }

    /// The record of `w` in `class` (its heartbeat goes to the column, its spec to the
    /// shard's class table). `w.handle.worker_id` must be `w.id` (a validated snapshot's
    /// workers are).
    pub fn from_worker(w: &Worker, class: u32, birth_ticket: u64) -> Record {
        debug_assert_eq!(w.id, w.handle.worker_id);
        Record {
            handle: Arc::clone(&w.handle),
            current_job: w.current_job.clone(),
            birth_ticket,
            jobs_executed: w.jobs_executed,
            created_at: w.created_at,
            updated_at: w.updated_at,
            state_changed_at: w.state_changed_at,
            idle_at: w.idle_since.unwrap_or(0),
            class,
            state: w.state,
            has_idle: w.idle_since.is_some(),
            resource_tag: resource_tag(&w.handle.resource_id),
        }
    }

    /// The worker's id (its handle's).
    #[inline]
    pub fn id(&self) -> WorkerId {
        self.handle.worker_id
    }

    /// When the worker last entered `Ready` (`None` if it never did).
    #[inline]
    pub fn idle_since(&self) -> Option<Timestamp> {
        self.has_idle.then_some(self.idle_at)
    }

    /// Sets [`idle_since`](Self::idle_since).
    pub fn set_idle_since(&mut self, at: Option<Timestamp>) {
        self.has_idle = at.is_some();
        self.idle_at = at.unwrap_or(0);
    }

    /// The snapshot of this record, whose last heartbeat (read from its slot) is
    /// `last_heartbeat` and whose spec (its class's) is `spec`.
    pub fn to_worker(&self, last_heartbeat: Timestamp, spec: &Arc<WorkerSpec>) -> Worker {
        Worker {
            id: self.id(),
            handle: Arc::clone(&self.handle),
            spec: Arc::clone(spec),
            state: self.state,
            current_job: self.current_job.clone(),
            jobs_executed: self.jobs_executed,
            created_at: self.created_at,
            updated_at: self.updated_at,
            state_changed_at: self.state_changed_at,
            last_heartbeat,
            idle_since: self.idle_since(),
        }
    }

    /// The snapshot of this record, which leaves the registry (its handle and job move).
    pub fn into_worker(self, last_heartbeat: Timestamp, spec: Arc<WorkerSpec>) -> Worker {
        let idle_since = self.idle_since();
        Worker {
            id: self.id(),
            handle: self.handle,
            spec,
            state: self.state,
            current_job: self.current_job,
            jobs_executed: self.jobs_executed,
            created_at: self.created_at,
            updated_at: self.updated_at,
            state_changed_at: self.state_changed_at,
            last_heartbeat,
            idle_since,
        }
    }

    pub fn membership(&self) -> Membership {
        Membership::of(self.state, self.current_job.is_some())
    }

    /// Whether the worker, of `spec`, has run its `max_jobs`.
    pub fn jobs_exhausted(&self, spec: &WorkerSpec) -> bool {
        spec.max_jobs
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

/// The registry-wide indexes and counters, behind one mutex. Lock order: shard, then this,
/// then the event bus.
#[derive(Debug, Default)]
pub(super) struct Indexes {
    /// Total and per state; per provider, type and pool in `classes.tallies`.
    pub stats: Totals,
    /// The classes (spec and provider) with their ready and lifetime queues: the ready
    /// index of `claim` and `longest_idle`, the idle and lifetime deadlines.
    pub classes: Classes,
    /// Who holds each job (invariant 2).
    pub jobs: HashMap<JobId, WorkerId, foldhash::fast::RandomState>,
    /// Starting workers by `created_at` (one startup timeout for all: one queue).
    pub startup: Queue,
    /// Set while `restore` refiles a whole snapshot: queue entries are pushed unsorted and
    /// sorted once at the end ([`Indexes::end_restore`]).
    pub restoring: bool,
    /// The next queue ticket (see [`Queue`]).
    next_ticket: u64,
    /// Draining workers without a job.
    pub drained: BTreeSet<WorkerId>,
    /// `Terminating`/`Terminated` workers: `find` of those states reads this, not the fleet
    /// (the lifecycle manager looks them up while its destroy queue is not empty).
    pub terminal: BTreeSet<WorkerId>,
    /// Successful assignments (`assign_to_job`, `claim`) since the registry was made.
    pub jobs_assigned: u64,
    /// Successful `release_from_job` calls since the registry was made.
    pub jobs_released: u64,
    /// Ids unregistered, refused by `register` (ids are never reused; see [`RetiredIds`]).
    pub retired: RetiredIds,
}

/// The place of a record that joins no queue (one being removed).
const NOWHERE: u32 = u32::MAX;

impl Indexes {
    /// Moves `id`, at `place` (its shard and slot, see
    /// [`InMemoryWorkerRegistry`](super::InMemoryWorkerRegistry)'s `place`: what the queues
    /// keep), from membership `before` (computed on the record before the change, with the
    /// `before_idle_since` it had) to membership `after` (normally `rec.membership()`).
    #[allow(clippy::too_many_arguments)]
    pub fn refile(
        &mut self,
        id: WorkerId,
        place: u32,
        before: Membership,
        before_idle_since: Option<Timestamp>,
        after: Membership,
        rec: &Record,
    ) {
        let idle_restarted = before_idle_since != rec.idle_since();
        let restoring = self.restoring;
        let add = |q: &mut Queue, at, ticket| {
            debug_assert!(place != NOWHERE, "a record joining a queue has a place");
            if restoring {
                q.push_unsorted(at, ticket, place)
            } else {
                q.insert(at, ticket, place)
            }
        };
        let class = self.classes.get_mut(rec.class);
        if before.ready && (!after.ready || idle_restarted) {
            class.ready.remove(before_idle_since.unwrap_or(0), id);
        }
        if after.ready && (!before.ready || idle_restarted) {
            let at = rec.idle_since().unwrap_or(0);
            if restoring {
                class.ready.push_unsorted(at, id);
            } else {
                class.ready.insert(at, id);
            }
        }
        if before.lifetime != after.lifetime {
            if after.lifetime {
                add(&mut class.living, rec.created_at, rec.birth_ticket);
            } else {
                class.living.remove(rec.created_at, rec.birth_ticket);
            }
        }
        if before.starting != after.starting {
            if after.starting {
                add(&mut self.startup, rec.created_at, rec.birth_ticket);
            } else {
                self.startup.remove(rec.created_at, rec.birth_ticket);
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

    /// Forgets who holds `job`, and gives the map's room back by the
    /// [`shrink`](super::shrink) rule (clarified 2026-12-07: the map kept the room of the
    /// busiest fleet before).
    pub fn unhold(&mut self, job: &JobId) {
        self.jobs.remove(job);
        shrink(&mut self.jobs);
    }

    /// A fresh queue ticket: tickets grow, so entries made at one timestamp keep their order.
    pub fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Ends a restore: sorts the queues filled unsorted.
    pub fn end_restore(&mut self) {
        self.restoring = false;
        self.classes.sort();
        self.startup.sort();
    }

    /// Counts a record that joins the registry (its class is joined already).
    pub fn count_new(&mut self, rec: &Record) {
        self.stats.total += 1;
        *self.stats.by_state.slot(rec.state) += 1;
        let tally = self.classes.tally(rec.class);
        self.classes.tallies.add(tally, rec.state);
    }

    /// Counts a worker of `class` that moved from `from` to `to`.
    pub fn count_move(&mut self, class: u32, from: WorkerState, to: WorkerState) {
        *self.stats.by_state.slot(from) -= 1;
        *self.stats.by_state.slot(to) += 1;
        let tally = self.classes.tally(class);
        self.classes.tallies.moved(tally, from, to);
    }

    /// The counts, as `stats()` reports them: O(providers + types + pools).
    pub fn stats(&self) -> WorkerRegistryStats {
        self.classes
            .tallies
            .stats(self.stats.total, self.stats.by_state)
    }

    /// Removes every trace of a record that leaves the registry.
    pub fn forget(&mut self, id: WorkerId, rec: &mut Record) {
        let (before, idle_since) = (rec.membership(), rec.idle_since());
        self.refile(id, NOWHERE, before, idle_since, Membership::none(), rec);
        if let Some(job) = &rec.current_job {
            self.unhold(job);
        }
        self.stats.total -= 1;
        *self.stats.by_state.slot(rec.state) -= 1;
        let tally = self.classes.tally(rec.class);
        self.classes.tallies.remove(tally, rec.state);
        self.classes.leave(rec.class);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_stays_small() {
        // One per worker (issue 12's memory row): a field added or widened shows here. The
        // slab keeps `Option<Record>`, which the handle's non-null pointer makes free.
        assert_eq!(std::mem::size_of::<Record>(), 80);
        assert_eq!(std::mem::size_of::<Option<Record>>(), 80);
    }
}
