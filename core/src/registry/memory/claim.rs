//! `claim`: the most recently idle `Ready` worker that matches a filter, given a job
//! atomically (invariant 2: a job is held by at most one worker).

use std::ops::Bound;
use std::sync::Arc;

use super::super::WorkerRegistry;
use super::{InMemoryWorkerRegistry, CLAIM_SCAN_BATCH};
use crate::clock::{millis, Timestamp};
use crate::error::{Error, Result};
use crate::filter::WorkerFilter;
use crate::ids::{JobId, WorkerId};
use crate::state::WorkerState;
use crate::worker::{Worker, WorkerSpec};

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
                let mut shard = self.shard(&id).write();
                let Some((slot, rec, column)) = shard.get_mut(&id) else {
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
                    if now.saturating_sub(column.get(slot)) <= millis(silent) {
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
                self.assign_locked(&mut ix, column, slot, rec, job, at);
                drop(ix);
                return Ok(Some(rec.to_worker(column.get(slot))));
            }
            upper = Bound::Excluded(scanned_to);
        }
    }
}
