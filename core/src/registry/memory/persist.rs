//! Snapshot and restore of the in-memory registry.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::super::indexes::{Membership, Record};
use super::super::snapshot::{Snapshot, SNAPSHOT_FORMAT};
use super::super::WorkerRegistry;
use super::{place_of, InMemoryWorkerRegistry};
use crate::error::{Error, Result};
use crate::worker::Worker;

impl InMemoryWorkerRegistry {
    /// [`WorkerRegistry::snapshot`].
    pub(super) fn take_snapshot(&self) -> Snapshot {
        // All shard locks at once (in order): no record changes while we read.
        let shards: Vec<_> = self.shards.iter().map(|s| s.read()).collect();
        let seq = self.bus.seq();
        let mut workers: Vec<Worker> = shards
            .iter()
            .flat_map(|shard| shard.records().map(|(slot, rec)| shard.worker(slot, rec)))
            .collect();
        let retired_ids = self.indexes.lock().retired.oldest_first();
        // Read last, under the locks: every time in the records (heartbeats included, which
        // store a time read from the clock before: their own reading, or the `at` of an
        // earlier event when their event carries that) is at most `taken_at`, as
        // `Snapshot::validate` wants.
        let taken_at = self.now();
        drop(shards);
        workers.sort_by_key(|w| (w.created_at, w.id));
        Snapshot {
            format: SNAPSHOT_FORMAT.to_owned(),
            seq,
            taken_at,
            workers,
            retired_ids,
        }
    }

    /// [`WorkerRegistry::restore`].
    pub(super) fn restore_from(&self, mut snapshot: Snapshot) -> Result<()> {
        snapshot.validate()?;
        // Times after this clock's now are clamped to it (or refused beyond the skew bound).
        snapshot.fit_to_clock(self.now())?;
        let mut shards: Vec<_> = self.shards.iter().map(|s| s.write()).collect();
        let held: usize = shards.iter().map(|s| s.len()).sum();
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
        ix.restoring = true;
        for worker in &snapshot.workers {
            let id = worker.id;
            let shard = &mut *shards[self.shard_index(&id)];
            let class = ix.classes.join(&worker.handle, Arc::clone(&worker.spec));
            let spec = Arc::clone(ix.classes.spec(class));
            let birth_ticket = ix.ticket();
            let rec = Record::from_worker(worker, class, birth_ticket);
            let monitored = rec.state.heartbeat_monitored();
            let after = rec.membership();
            let slot = shard.next_slot();
            let place = place_of(self.shard_index(&id), slot);
            ix.refile(id, place, Membership::none(), None, after, &rec);
            ix.count_new(&rec);
            if let Some(job) = &rec.current_job {
                ix.jobs.insert(job.clone(), id);
            }
            shard.insert(slot, rec, Some(spec), worker.last_heartbeat);
            shard.column.set_monitored(slot, monitored, floor);
        }
        ix.end_restore();
        // Under the mutex that orders events (order: it, then the bus): an event published
        // right after it is released (a host's, about no worker) must take a seq past the
        // snapshot's, as every event after the restore does.
        self.bus.set_seq(snapshot.seq);
        drop(ix);
        Ok(())
    }
}
