//! The [`WorkerRegistry`] implementation of [`InMemoryWorkerRegistry`]: the per-worker
//! operations here; `claim`, the deadline queries and snapshots delegate to their modules.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::super::indexes::{resource_tag, Membership, Record};
use super::super::snapshot::Snapshot;
use super::super::stats::WorkerRegistryStats;
use super::super::telemetry::{HeartbeatAges, JobTotals, SubscriberDrops};
use super::super::{TransitionGuard, Transitioned, WorkerRegistry};
use super::{not_found, place_of, InMemoryWorkerRegistry};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::events::{EventKind, SubscribeOptions, Subscription};
use crate::filter::WorkerFilter;
use crate::ids::{JobId, ProviderId, WorkerId};
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker, WorkerHandle, WorkerSpec};

impl WorkerRegistry for InMemoryWorkerRegistry {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker> {
        let id = handle.worker_id;
        // Decoded first: independent of everything up to the retired check, it overlaps
        // with the validation and the locks (see `RetiredIds::contains_decoded`).
        let minted = id.minted_counter();
        handle.validate()?;
        // Outside the locks too: a hash of the resource id.
        let tag = resource_tag(&handle.resource_id);
        // The spec is validated unless it is the `Arc` the last registration joined with (a
        // fleet registered from one shared spec checks it once): seen under the lock, checked
        // outside it (a spec may be large), then the locks are taken again.
        let mut spec_checked = false;
        let (mut shard, mut ix) = loop {
            let shard = self.shard(&id).write();
            let ix = self.indexes.lock();
            if spec_checked || ix.classes.is_last_given(&spec) {
                break (shard, ix);
            }
            drop(ix);
            drop(shard);
            spec.validate()?;
            spec_checked = true;
        };
        if shard.contains(&id) || ix.retired.contains_decoded(&id, minted) {
            return Err(Error::AlreadyExists(id));
        }
        let now = self.now();
        let handle = Arc::new(handle);
        // Equal specs are shared: the record's shard keeps the registry's copy.
        let class = ix.classes.join(&handle, spec);
        let birth_ticket = ix.ticket();
        let rec = Record::new(handle, tag, class, birth_ticket, now);
        // Creating: not heartbeat-monitored (the column's slot starts unmonitored).
        debug_assert!(!rec.state.heartbeat_monitored());
        let after = rec.membership();
        let slot = shard.next_slot();
        let place = place_of(self.shard_index(&id), slot);
        ix.refile(id, place, Membership::none(), None, after, &rec);
        ix.count_new(&rec);
        self.bus.publish(now, || EventKind::Registered {
            worker_id: id,
            provider_id: rec.handle.provider_id.clone(),
            provider_type: rec.handle.provider_type.clone(),
        });
        let spec = ix.classes.spec(class);
        let worker = rec.to_worker(now, spec);
        let new_class = (!shard.holds_class(class)).then(|| Arc::clone(spec));
        drop(ix);
        shard.insert(slot, rec, new_class, now);
        Ok(worker)
    }

    fn unregister(&self, id: &WorkerId, reason: TerminationReason) -> Result<Worker> {
        let minted = id.minted_counter();
        let mut shard = self.shard(id).write();
        let (mut rec, last_heartbeat, last_of_class) =
            shard.remove(id).ok_or_else(|| not_found(id))?;
        let mut ix = self.indexes.lock();
        let now = self.now();
        ix.forget(*id, &mut rec);
        // Registered, so not retired (register and restore refuse retired ids).
        ix.retired.insert_new_decoded(*id, minted);
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
        drop(ix);
        // The record moves into the snapshot (its handle and job are not cloned).
        let spec = last_of_class.unwrap_or_else(|| Arc::clone(shard.class_spec(rec.class)));
        Ok(rec.into_worker(last_heartbeat, spec))
    }

    fn get(&self, id: &WorkerId) -> Result<Option<Worker>> {
        Ok(self.shard(id).read().snapshot_of(id))
    }

    fn find(&self, filter: &WorkerFilter) -> Result<Vec<Worker>> {
        filter.validate()?;
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
                if let Some(worker) = self.shard(&id).read().snapshot_of(&id) {
                    if filter.matches(&worker, now) {
                        out.push(worker);
                    }
                }
            }
            return Ok(out);
        }
        for shard in self.shards.iter() {
            let shard = shard.read();
            for (slot, rec) in shard.records() {
                if out.len() >= limit {
                    return Ok(out);
                }
                // No snapshot for a record whose state rules it out.
                if !filter.states.is_empty() && !filter.states.contains(&rec.state) {
                    continue;
                }
                let worker = shard.worker(slot, rec);
                if filter.matches(&worker, now) {
                    out.push(worker);
                }
            }
        }
        Ok(out)
    }

    /// Walks the records of every shard under its read lock, in slot order, but reads the
    /// handle only of a record of one of the provider's classes (a number in the record, read
    /// once under the indexes' lock: a provider without a record costs O(classes) and walks
    /// nothing) whose resource tag (a 16-bit digest kept in the record) is one of the asked
    /// ids' — about one record in 65,536 per id asked beside the matches — and builds a
    /// snapshot only for a match: O(records) sequential reads, no allocation for a record that
    /// does not match. A record registered during the call may be missed, as by any walk of
    /// the shards. (Since 2026-12-07, the tag: before, the handle of every record of the
    /// provider was read, one random miss each: 352 ms at 1M workers.)
    fn find_by_resource_ids(
        &self,
        provider_id: &ProviderId,
        resource_ids: &[&str],
    ) -> Result<Vec<Worker>> {
        if resource_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mine = self.indexes.lock().classes.of_provider(provider_id);
        if mine.is_empty() {
            return Ok(Vec::new());
        }
        let set: Option<HashSet<&str>> =
            (resource_ids.len() > 8).then(|| resource_ids.iter().copied().collect());
        let wanted = |resource: &str| match &set {
            Some(set) => set.contains(resource),
            None => resource_ids.contains(&resource),
        };
        // The asked ids' tags, one bit each of 2^16 (8 KiB): a record whose tag is not among
        // them is ruled out with no read of its handle.
        let mut tags = vec![0u64; 1 << 10];
        for id in resource_ids {
            let t = resource_tag(id) as usize;
            tags[t >> 6] |= 1 << (t & 63);
        }
        let tagged = |t: u16| tags[usize::from(t) >> 6] & (1 << (t & 63)) != 0;
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read();
            for (slot, rec) in shard.records() {
                if !tagged(rec.resource_tag)
                    || !mine.get(rec.class as usize).copied().unwrap_or(false)
                {
                    continue;
                }
                // The provider is checked too: a class number freed and taken by another
                // provider's class during the walk.
                if wanted(&rec.handle.resource_id) && rec.handle.provider_id == *provider_id {
                    out.push(shard.worker(slot, rec));
                }
            }
        }
        Ok(out)
    }

    fn terminal_ids(&self) -> Result<Vec<WorkerId>> {
        // The index of terminal records: ids only, no record read.
        Ok(self.indexes.lock().terminal.iter().copied().collect())
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
        // The ids listed, kept from the second batch on (one batch cannot list an id twice).
        let mut listed: Option<HashSet<WorkerId>> = None;
        while out.len() < n {
            let want = n - out.len();
            let keys: Vec<(Timestamp, WorkerId)> = {
                let ix = self.indexes.lock();
                // The `want` oldest past `after` of each class, merged.
                let mut keys: Vec<(Timestamp, WorkerId)> = ix
                    .classes
                    .iter()
                    .flat_map(|class| class.ready.oldest_above(after, want))
                    .collect();
                keys.sort_unstable();
                keys.truncate(want);
                keys
            };
            let Some(&last) = keys.last() else {
                break;
            };
            let exhausted = keys.len() < want;
            // Read under each record's own lock: a worker claimed (or retired) since the index
            // was read is left out, and the walk goes on past it. So is one still `Ready` but
            // idle since another time (claimed and released meanwhile): it is no longer at
            // this place in the order (kept, it would be listed out of order).
            for (since, id) in keys {
                let shard = self.shard(&id).read();
                let Some((slot, rec)) = shard.get(&id) else {
                    continue;
                };
                if rec.state != WorkerState::Ready
                    || rec.current_job.is_some()
                    || rec.idle_since() != Some(since)
                {
                    continue;
                }
                // A worker listed by an earlier batch, then claimed and released, sits past
                // `after` again: listed once, at its first place.
                if listed.as_mut().is_some_and(|listed| !listed.insert(id)) {
                    continue;
                }
                out.push(shard.worker(slot, rec));
            }
            if exhausted {
                break;
            }
            // Another batch: what is listed so far is remembered from here on.
            listed.get_or_insert_with(|| out.iter().map(|w| w.id).collect());
            after = Some(last);
        }
        Ok(out)
    }

    fn heartbeat(&self, id: &WorkerId) -> Result<()> {
        let now = self.now();
        let shard = self.shard(id).read();
        let slot = shard.slot_of(id).ok_or_else(|| not_found(id))?;
        if self.bus.wants_heartbeats() {
            return self.heartbeat_heard(id, now, shard, slot);
        }
        if shard.column.beat(slot, now) {
            return Ok(());
        }
        drop(shard);
        // Out of the column's range (a heartbeat kept far, or time past the column's span: a
        // rebase, once in days): the write lock. The worker may have left meanwhile.
        let mut shard = self.shard(id).write();
        let slot = shard.slot_of(id).ok_or_else(|| not_found(id))?;
        shard.column.beat_mut(slot, now);
        Ok(())
    }

    fn assign_to_job(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        let mut shard = self.shard(id).write();
        let (slot, rec, column, spec) = shard.get_mut(id).ok_or_else(|| not_found(id))?;
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
        self.assign_locked(&mut ix, column, slot, rec, job, now);
        drop(ix);
        Ok(rec.to_worker(column.get(slot), spec))
    }

    fn release_from_job(&self, id: &WorkerId, expected_job: Option<&JobId>) -> Result<JobId> {
        let mut shard = self.shard(id).write();
        let (slot, rec, column, spec) = shard.get_mut(id).ok_or_else(|| not_found(id))?;
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
        ix.unhold(&job);
        ix.jobs_released += 1;
        self.bus.publish(now, || EventKind::ReleasedFromJob {
            worker_id: *id,
            job_id: job.clone(),
        });
        self.change(&mut ix, column, slot, rec, now, |r| {
            r.current_job = None;
            // Saturating: a restored snapshot may carry any count.
            r.jobs_executed = r.jobs_executed.saturating_add(1);
            if r.state == WorkerState::Busy {
                r.state = if r.jobs_exhausted(spec) {
                    WorkerState::Draining
                } else {
                    WorkerState::Ready
                };
            }
        });
        Ok(job)
    }

    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        filter.validate()?;
        self.claim_ready(filter, job)
    }

    fn find_unhealthy(&self, heartbeat_timeout: Duration) -> Result<Vec<Worker>> {
        Ok(self.unhealthy(heartbeat_timeout))
    }

    fn count_unhealthy(&self, heartbeat_timeout: Duration) -> Result<usize> {
        Ok(self.unhealthy_count(heartbeat_timeout))
    }

    fn find_startup_expired(&self, startup_timeout: Duration) -> Result<Vec<Worker>> {
        Ok(self.startup_expired(startup_timeout))
    }

    fn find_for_termination(&self) -> Result<Vec<(Worker, TerminationReason)>> {
        Ok(self.due_for_termination())
    }

    fn grant_grace(&self, since: Timestamp) -> Result<()> {
        self.grace_floor.fetch_max(since, Ordering::AcqRel);
        Ok(())
    }

    fn stats(&self) -> Result<WorkerRegistryStats> {
        Ok(self.indexes.lock().stats())
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

    /// From a bounded stride sample of the per-shard heartbeat columns (see
    /// `heartbeat_ages` in `deadlines.rs`).
    fn heartbeat_age_histogram(&self) -> Result<Option<HeartbeatAges>> {
        Ok(Some(self.heartbeat_ages()))
    }

    fn subscriber_drops(&self) -> Result<Vec<SubscriberDrops>> {
        Ok(self.bus.subscriber_drops())
    }

    fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription> {
        self.bus.subscribe(options)
    }

    fn publish(&self, kind: EventKind) -> Result<()> {
        kind.check_publishable()?;
        // Numbered under the registry-wide mutex, with the time read under it, as every event
        // of the registry's own: a change reads its time under that mutex and numbers its
        // events before letting go of it, so an event numbered in between would stamp the
        // change's event with its own later time (`at` never goes back along `seq`), and the
        // change's record would no longer keep the `at` of its event.
        let publish = |kind: EventKind| {
            let _order = self.indexes.lock();
            self.bus.publish(self.now(), || kind);
        };
        if let EventKind::HeartbeatReceived { worker_id: id } = kind {
            // A heartbeat event as the registry's own: an event only while some subscriber
            // wants heartbeat events (no seq spent otherwise); it records no heartbeat.
            let shard = self.shard(&id).read();
            if !shard.contains(&id) {
                return Err(not_found(&id));
            }
            if self.bus.wants_heartbeats() {
                let _order = self.indexes.lock();
                self.bus.publish_heartbeat(self.now(), id, |_| true);
            }
            return Ok(());
        }
        match kind.worker_id() {
            Some(id) => {
                // Under the worker's shard lock, as every event of the registry's own: no event
                // about a worker can follow its `Unregistered` (published under the write lock).
                let shard = self.shard(&id).read();
                if !shard.contains(&id) {
                    return Err(not_found(&id));
                }
                publish(kind);
            }
            None => publish(kind),
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Snapshot> {
        Ok(self.take_snapshot())
    }

    fn restore(&self, snapshot: Snapshot) -> Result<()> {
        self.restore_from(snapshot)
    }
}
