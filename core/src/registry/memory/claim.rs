//! `claim`: the most recently idle `Ready` worker that matches a filter, given a job
//! atomically (invariant 2: a job is held by at most one worker).
//!
//! The ready index is per class (spec and provider, see `classes.rs`): the filter's static
//! part is asked once per class, and each matching class offers its most recently idle
//! worker in O(log n); the newest of those is the one. So the cost is O(classes), whatever
//! the number of ready workers, and a filter that no class matches is answered without
//! looking at any worker. Only the filter's dynamic conditions (`unhealthy_for`) are checked
//! worker by worker, against the record, walking down the order.
//!
//! Locks: the registry-wide mutex to pick, then the worker's shard. The usual case takes the
//! shard with `try_write` while still holding the mutex (a try never waits, so the lock
//! order shard → mutex of every other path cannot deadlock with it) and assigns in that one
//! hold; only when the shard is busy does it let go and take the locks in order.

use super::super::indexes::Indexes;
use super::super::WorkerRegistry;
use super::shard::Shard;
use super::InMemoryWorkerRegistry;
use crate::clock::{millis, Timestamp};
use crate::error::{Error, Result};
use crate::filter::WorkerFilter;
use crate::ids::{JobId, WorkerId};
use crate::state::WorkerState;
use crate::worker::Worker;

/// Why a candidate was passed over.
enum Verdict {
    /// Assigned: the snapshot.
    Taken(Worker),
    /// Not (or no longer) a match: walk on below it.
    Skip,
}

impl InMemoryWorkerRegistry {
    /// [`WorkerRegistry::claim`]: see the module doc.
    pub(super) fn claim_ready(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
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
        // Candidates are below `upper` in (idle_since, id) order: every worker idle since
        // `newest` or before. The bound is the nil id a millisecond later (nil is never a
        // worker), not `(newest, WorkerId::MAX)`: the largest UUID is a valid worker id, and a
        // worker holding it, idle since exactly `newest`, would sit on that bound and be left
        // out. (Idle since `Timestamp::MAX` only on a clock at its very end.)
        let mut upper = match newest.checked_add(1) {
            Some(next) => (next, WorkerId::MIN),
            None => (Timestamp::MAX, WorkerId::MAX),
        };
        loop {
            let (since, id) = {
                let mut ix = self.indexes.lock();
                if let Some(holder) = ix.jobs.get(&job) {
                    return Err(Error::JobAlreadyAssigned {
                        job_id: job,
                        worker_id: *holder,
                    });
                }
                let Some(key) = newest_match(&ix, filter, upper) else {
                    return Ok(None);
                };
                // The usual case: the shard is free, assign in this hold of the mutex.
                if let Some(mut shard) = self.shard(&key.1).try_write() {
                    match self.try_take(&mut ix, &mut shard, filter, key, &job, now) {
                        Verdict::Taken(worker) => return Ok(Some(worker)),
                        Verdict::Skip => {
                            upper = key;
                            continue;
                        }
                    }
                }
                key
            };
            // The shard was busy: take the locks in order and check again.
            let mut shard = self.shard(&id).write();
            let mut ix = self.indexes.lock();
            if let Some(holder) = ix.jobs.get(&job) {
                return Err(Error::JobAlreadyAssigned {
                    job_id: job,
                    worker_id: *holder,
                });
            }
            match self.try_take(&mut ix, &mut shard, filter, (since, id), &job, now) {
                Verdict::Taken(worker) => return Ok(Some(worker)),
                // Claimed by someone else meanwhile, or fails a dynamic condition: the walk
                // goes on below it (a worker that became ready since is newer than the bound
                // and is left out, as a claim that started a moment later would see it).
                Verdict::Skip => upper = (since, id),
            }
        }
    }

    /// Assigns `job` to the worker `key` if it is still the `Ready` worker of that idle time
    /// and passes the filter's dynamic conditions. Both locks held; the job is known free.
    fn try_take(
        &self,
        ix: &mut Indexes,
        shard: &mut Shard,
        filter: &WorkerFilter,
        (since, id): (Timestamp, WorkerId),
        job: &JobId,
        now: Timestamp,
    ) -> Verdict {
        let Some((slot, rec, column, spec)) = shard.get_mut(&id) else {
            return Verdict::Skip;
        };
        if rec.state != WorkerState::Ready
            || rec.current_job.is_some()
            || rec.idle_since() != Some(since)
        {
            return Verdict::Skip;
        }
        if let Some(silent) = filter.unhealthy_for {
            if now.saturating_sub(column.get(slot)) <= millis(silent) {
                return Verdict::Skip;
            }
        }
        // Read under the mutex that orders the events: times never go back along `seq`.
        let at = self.now();
        self.assign_locked(ix, column, slot, rec, job.clone(), at);
        Verdict::Taken(rec.to_worker(column.get(slot), spec))
    }
}

/// The most recently idle ready worker below `upper` of the classes whose spec and provider
/// match `filter`. O(classes × log ready).
fn newest_match(
    ix: &Indexes,
    filter: &WorkerFilter,
    upper: (Timestamp, WorkerId),
) -> Option<(Timestamp, WorkerId)> {
    ix.classes
        .iter()
        .filter(|class| class.ready.len() > 0 && filter.matches_static(&class.handle, &class.spec))
        .filter_map(|class| class.ready.newest_below(upper))
        .max()
}
