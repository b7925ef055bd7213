//! `claim`: the most recently idle `Ready` worker that matches a filter, given a job
//! atomically (invariant 2: a job is held by at most one worker).
//!
//! The ready index is per class (spec and provider, see `classes.rs`): the filter's static
//! part is asked once per class, and each matching class offers its most recently idle
//! worker in O(log n); the newest of those is the one. So the cost is O(classes), whatever
//! the number of ready workers, and a filter that no class matches is answered without
//! looking at any worker.
//!
//! Only the filter's dynamic condition `unhealthy_for` (silent for longer than a duration) is
//! checked worker by worker, against the heartbeat column, walking down the order — for the
//! first [`WALK_LIMIT`] candidates only (since 2026-12-07: before, a claim no ready worker was
//! silent enough for walked the whole ready set under the registry-wide mutex: 17 ms at 10k
//! and 3.8 s at 1M in `claim_unhealthy_unmatched`, BENCHMARKS.md). Past them the answer comes
//! from one pass over the shards' heartbeat columns
//! ([`HeartbeatColumn::silent_before`](super::super::column::HeartbeatColumn::silent_before)),
//! shard by shard under each one's shared lock and *not* under the registry-wide mutex: the
//! records of the monitored workers silent long enough are read, and among those `Ready`, of a
//! class the static part matches and below the walk's bound, the newest by `(idle_since, id)`
//! is taken — the worker the walk would have reached, for a registry that does not change
//! meanwhile. Cost with `unhealthy_for`: O(classes × log ready + K) when the answer is among
//! the first K = 64 candidates; else also one sequential pass over 4 bytes a worker of the
//! fleet (not only the ready ones: 64 µs at 10k, 2.1 ms at 1M with the walk) plus a record
//! read for each monitored worker silent for that long. A candidate taken or changed between
//! the pass and the take is passed over as the walk passes over one (the pass runs again
//! below it, so a claim that keeps losing its candidate to others pays a pass each time).
//!
//! Locks: the registry-wide mutex to pick, then the worker's shard. The usual case takes the
//! shard with `try_write` while still holding the mutex (a try never waits, so the lock
//! order shard → mutex of every other path cannot deadlock with it) and assigns in that one
//! hold; only when the shard is busy does it let go and take the locks in order. The pass
//! takes each shard's shared lock with no other lock held, then the chosen worker's shard and
//! the mutex in order.

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

/// How many candidates a claim with `unhealthy_for` checks one by one, walking down the
/// ready order, before it finds the answer with one pass over the heartbeat columns (see the
/// module doc): a match near the top (the usual case) stays O(log ready) a class, and a
/// claim no worker is silent enough for costs a column pass, not a walk of the ready set.
pub(super) const WALK_LIMIT: usize = 64;

#[cfg(test)]
thread_local! {
    /// Candidates this thread's claims checked against their record under the locks (tests
    /// count them: a claim's cost in candidates, not in time).
    pub(super) static CANDIDATES_CHECKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl InMemoryWorkerRegistry {
    /// [`WorkerRegistry::claim`]: see the module doc.
    pub(super) fn claim_ready(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        self.claim_walking(filter, job, WALK_LIMIT)
    }

    /// [`claim_ready`](Self::claim_ready) walking at most `walk_limit` candidates that fail
    /// `unhealthy_for` before the column pass (tests compare limits: 0, always the pass;
    /// `usize::MAX`, always the walk).
    pub(super) fn claim_walking(
        &self,
        filter: &WorkerFilter,
        job: JobId,
        walk_limit: usize,
    ) -> Result<Option<Worker>> {
        let now = self.now();
        // Silent for longer than `d` <=> last heartbeat < now - d; none when `now < d`.
        let silent_cutoff = filter
            .unhealthy_for
            .map(|silent| now.checked_sub(millis(silent)));
        // Only workers idle since at most `newest` can match `idle_for`.
        let newest = match filter.idle_for {
            Some(idle) => now.checked_sub(millis(idle)),
            None => Some(Timestamp::MAX),
        };
        let hopeless = (!filter.states.is_empty() && !filter.states.contains(&WorkerState::Ready))
            || filter.accepting_jobs == Some(false)
            || filter.limit == Some(0)
            || silent_cutoff == Some(None);
        let silent_cutoff = silent_cutoff.flatten();
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
        // Candidates passed over so far (taken meanwhile, or not silent enough).
        let mut walked = 0usize;
        loop {
            if let Some(cutoff) = silent_cutoff.filter(|_| walked >= walk_limit) {
                match self.take_newest_silent(filter, &job, upper, cutoff, now)? {
                    Ok(taken) => return Ok(taken),
                    Err(below) => {
                        upper = below;
                        continue;
                    }
                }
            }
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
                    match self.try_take(&mut ix, &mut shard, filter, key, &job, now, false) {
                        Verdict::Taken(worker) => return Ok(Some(worker)),
                        Verdict::Skip => {
                            upper = key;
                            walked += 1;
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
            match self.try_take(&mut ix, &mut shard, filter, (since, id), &job, now, false) {
                Verdict::Taken(worker) => return Ok(Some(worker)),
                // Claimed by someone else meanwhile, or fails a dynamic condition: the walk
                // goes on below it (a worker that became ready since is newer than the bound
                // and is left out, as a claim that started a moment later would see it).
                Verdict::Skip => {
                    upper = (since, id);
                    walked += 1;
                }
            }
        }
    }

    /// The pass of a claim with `unhealthy_for` past the walk's first candidates: finds the
    /// newest `Ready` worker below `upper`, of a class the filter's static part matches,
    /// silent since before `cutoff`, from the heartbeat columns, and takes it. `Ok(Ok(_))`:
    /// the claim's answer; `Ok(Err(key))`: the candidate `key` was taken or changed
    /// meanwhile, go on below it.
    fn take_newest_silent(
        &self,
        filter: &WorkerFilter,
        job: &JobId,
        upper: (Timestamp, WorkerId),
        cutoff: Timestamp,
        now: Timestamp,
    ) -> Result<std::result::Result<Option<Worker>, (Timestamp, WorkerId)>> {
        let held = |ix: &Indexes| {
            ix.jobs.get(job).map(|holder| Error::JobAlreadyAssigned {
                job_id: job.clone(),
                worker_id: *holder,
            })
        };
        // The classes whose static part matches, by number, read under the mutex; the pass
        // then runs without it (shard then mutex is the lock order).
        let matching = {
            let ix = self.indexes.lock();
            if let Some(e) = held(&ix) {
                return Err(e);
            }
            let mut matching = Vec::new();
            for (n, class) in ix.classes.numbered() {
                if class.ready.len() > 0 && filter.matches_static(&class.handle, &class.spec) {
                    if matching.len() <= n as usize {
                        matching.resize(n as usize + 1, false);
                    }
                    matching[n as usize] = true;
                }
            }
            matching
        };
        let newest = if matching.is_empty() {
            None
        } else {
            self.newest_silent(&matching, upper, cutoff)
        };
        let Some(key) = newest else {
            // As the walk: a job held meanwhile is an error, not "no worker free".
            return match held(&self.indexes.lock()) {
                Some(e) => Err(e),
                None => Ok(Ok(None)),
            };
        };
        let mut shard = self.shard(&key.1).write();
        let mut ix = self.indexes.lock();
        if let Some(e) = held(&ix) {
            return Err(e);
        }
        // The static part again, on the record: a class number read above may have been
        // freed and reused by another class since.
        match self.try_take(&mut ix, &mut shard, filter, key, job, now, true) {
            Verdict::Taken(worker) => Ok(Ok(Some(worker))),
            Verdict::Skip => Ok(Err(key)),
        }
    }

    /// The newest `(idle_since, id)` below `upper` of the `Ready` workers of the classes
    /// marked in `matching` whose last heartbeat is below `cutoff`: one pass over every
    /// shard's column under its shared lock, a record read for each monitored worker silent
    /// since before `cutoff`.
    fn newest_silent(
        &self,
        matching: &[bool],
        upper: (Timestamp, WorkerId),
        cutoff: Timestamp,
    ) -> Option<(Timestamp, WorkerId)> {
        let mut newest: Option<(Timestamp, WorkerId)> = None;
        for lock in self.shards.iter() {
            let shard = lock.read();
            shard.column.silent_before(cutoff, |slot| {
                let Some(rec) = shard.at(slot) else {
                    return;
                };
                if rec.state != WorkerState::Ready
                    || rec.current_job.is_some()
                    || !matching.get(rec.class as usize).copied().unwrap_or(false)
                {
                    return;
                }
                let Some(since) = rec.idle_since() else {
                    return;
                };
                let key = (since, rec.id());
                if key < upper && newest.is_none_or(|n| key > n) {
                    newest = Some(key);
                }
            });
        }
        newest
    }

    /// Assigns `job` to the worker `key` if it is still the `Ready` worker of that idle time
    /// and passes the filter's dynamic conditions (and its static part, when `check_static`:
    /// a candidate not found through its class). Both locks held; the job is known free.
    #[allow(clippy::too_many_arguments)]
    fn try_take(
        &self,
        ix: &mut Indexes,
        shard: &mut Shard,
        filter: &WorkerFilter,
        (since, id): (Timestamp, WorkerId),
        job: &JobId,
        now: Timestamp,
        check_static: bool,
    ) -> Verdict {
        #[cfg(test)]
        CANDIDATES_CHECKED.with(|n| n.set(n.get() + 1));
        let Some((slot, rec, column, spec)) = shard.get_mut(&id) else {
            return Verdict::Skip;
        };
        if rec.state != WorkerState::Ready
            || rec.current_job.is_some()
            || rec.idle_since() != Some(since)
            || (check_static && !filter.matches_static(&rec.handle, spec))
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
