//! The deadline queries: the health check (`find_unhealthy`, `count_unhealthy`) from the
//! shards' heartbeat columns, startup and retirement deadlines from the registry-wide indexes,
//! and the heartbeat-age histogram.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLockWriteGuard;

use super::super::telemetry::{AgeCounts, HeartbeatAges, HEARTBEAT_AGE_SAMPLE};
use super::super::WorkerRegistry;
use super::shard::Shard;
use super::{InMemoryWorkerRegistry, SHARD_COUNT};
use crate::clock::millis;
use crate::ids::WorkerId;
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker};

impl InMemoryWorkerRegistry {
    /// [`WorkerRegistry::find_unhealthy`]: from the columns.
    pub(super) fn unhealthy(&self, heartbeat_timeout: Duration) -> Vec<Worker> {
        let now = self.now();
        let floor = self.floor();
        // Silent for longer than the timeout <=> heartbeat < now - timeout.
        let Some(cutoff) = now.checked_sub(millis(heartbeat_timeout)) else {
            return Vec::new();
        };
        if floor >= cutoff {
            return Vec::new();
        }
        let mut unhealthy = Vec::new();
        let mut due = Vec::new();
        // Whether the last shard needed a pass: the next one likely does too (same cutoff,
        // heartbeats spread alike), so its write lock is taken at once.
        let mut passing = false;
        for lock in self.shards.iter() {
            due.clear();
            let pass = |due: &mut Vec<u32>| {
                let mut write = lock.write();
                let passed = write.column.due_pass(floor, cutoff, |slot| due.push(slot));
                (RwLockWriteGuard::downgrade(write), passed)
            };
            // The shared lock: heartbeats and `get` go on while the cache answers. When the
            // cutoff passed the cache's horizon, a pass over the column under the write lock
            // (plain loads, vectorised), then back to the shared lock for the snapshots.
            let shard = if passing {
                let (shard, passed) = pass(&mut due);
                passing = passed;
                shard
            } else {
                let shard = lock.read();
                if shard.column.due(floor, cutoff, |slot| due.push(slot)) {
                    shard
                } else {
                    drop(shard);
                    let (shard, passed) = pass(&mut due);
                    passing = passed;
                    shard
                }
            };
            if due.is_empty() {
                continue;
            }
            if worth_warming(&shard, due.len()) {
                warm(&shard, &due);
            }
            unhealthy.reserve(due.len());
            for &slot in &due {
                if let Some(rec) = shard.at(slot) {
                    unhealthy.push(shard.worker(slot, rec));
                }
            }
        }
        // In shard order: the trait promises no order.
        unhealthy
    }

    /// [`WorkerRegistry::count_unhealthy`]: from the columns alone.
    pub(super) fn unhealthy_count(&self, heartbeat_timeout: Duration) -> usize {
        let now = self.now();
        let floor = self.floor();
        let Some(cutoff) = now.checked_sub(millis(heartbeat_timeout)) else {
            return 0;
        };
        if floor >= cutoff {
            return 0;
        }
        self.shards
            .iter()
            .map(|lock| lock.read().column.count_due(floor, cutoff))
            .sum()
    }

    /// [`WorkerRegistry::find_startup_expired`]: from the startup index.
    pub(super) fn startup_expired(&self, startup_timeout: Duration) -> Vec<Worker> {
        let now = self.now();
        let Some(cutoff) = now.checked_sub(millis(startup_timeout)) else {
            return Vec::new();
        };
        if self.floor() >= cutoff {
            return Vec::new();
        }
        let due: Vec<(u64, u32)> = {
            let ix = self.indexes.lock();
            ix.startup
                .older_than(cutoff)
                .map(|(_, ticket, place)| (ticket, place))
                .collect()
        };
        self.snapshots_where(self.resolve(due), |rec| {
            rec.state.is_starting() && rec.created_at < cutoff
        })
    }

    /// [`WorkerRegistry::find_for_termination`]: from the idle, lifetime and drained indexes.
    pub(super) fn due_for_termination(&self) -> Vec<(Worker, TerminationReason)> {
        let now = self.now();
        let mut due: BTreeMap<WorkerId, TerminationReason> = BTreeMap::new();
        let living: Vec<(u64, u32)> = {
            let ix = self.indexes.lock();
            // Per class, each queue is in deadline order: only its due prefix is read.
            for class in ix.classes.iter() {
                let idle = millis(class.spec.idle_timeout);
                for (_, id) in class
                    .ready
                    .iter()
                    .take_while(|(since, _)| since.saturating_add(idle) < now)
                {
                    due.insert(id, TerminationReason::Idle);
                }
            }
            // Draining workers are never lifetime-tracked: the two sets are disjoint.
            for id in &ix.drained {
                due.insert(*id, TerminationReason::Drained);
            }
            ix.classes
                .iter()
                .flat_map(|class| {
                    let lifetime = millis(class.spec.max_lifetime);
                    class
                        .living
                        .iter()
                        .take_while(move |(created, ..)| created.saturating_add(lifetime) < now)
                        .map(|(_, ticket, place)| (ticket, place))
                })
                .collect()
        };
        // Lifetime wins over idle: it is the harder limit. The queue names places; their
        // records are read below under their shards' locks, as every other candidate's.
        for id in self.resolve(living) {
            due.insert(id, TerminationReason::Lifetime);
        }
        let mut out = Vec::with_capacity(due.len());
        for (id, reason) in due {
            let shard = self.shard(&id).read();
            let Some((slot, rec)) = shard.get(&id) else {
                continue;
            };
            let reason = match reason {
                TerminationReason::Drained if rec.jobs_exhausted(shard.spec_of(rec)) => {
                    TerminationReason::MaxJobs
                }
                other => other,
            };
            // Re-check against the record: it may have moved since the index was read.
            let m = rec.membership();
            let still_due = match reason {
                // Its idle clock may have restarted (a job came and went) since the index was
                // read: only the live deadline counts.
                TerminationReason::Idle => {
                    m.is_ready()
                        && rec.idle_since().is_some_and(|since| {
                            since.saturating_add(millis(shard.spec_of(rec).idle_timeout)) < now
                        })
                }
                TerminationReason::Lifetime => m.is_lifetime_tracked(),
                _ => m.is_drained(),
            };
            if still_due {
                out.push((shard.worker(slot, rec), reason));
            }
        }
        out
    }

    /// From a sample of the workers of each shard ([`Shard::sample_heartbeats`]): at most
    /// `HEARTBEAT_AGE_SAMPLE` in all (an equal share a shard, which a shard with that many
    /// workers gives whatever its slots' layout), each shard under its shared lock, no
    /// record read. Exact while every shard was read whole; above, the sample scaled to the
    /// exact monitored count of the state counters (see [`HeartbeatAges`] for the error).
    pub(super) fn heartbeat_ages(&self) -> HeartbeatAges {
        let now = self.now();
        let floor = self.floor();
        let per_shard = HEARTBEAT_AGE_SAMPLE / SHARD_COUNT;
        let mut ages = AgeCounts::new(now);
        let mut whole = true;
        for shard in self.shards.iter() {
            let read = shard
                .read()
                .sample_heartbeats(floor, per_shard, |key| ages.add(key));
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
        ages.into_ages(scale_to)
    }
}

/// Below this many due records in a shard, [`warm`] has too few misses to overlap.
const WARM_MIN_DUE: usize = 4;

/// Below this many records in a shard, [`warm`] is skipped: the fleet (64 shards of them, some
/// 250 B a worker with its handle, column and index) fits in a last-level cache of a few tens
/// of MiB (32 MiB here), so the snapshots' loads hit it and a warm-up pass only adds its own
/// loads (1 % expiring at 10k: 2.5 → 3.3 µs with it).
const WARM_MIN_RECORDS: usize = 2048;

/// Whether warming `due` records of `shard` before their snapshots pays: enough of them, in a
/// shard too large to stay cached.
fn worth_warming(shard: &Shard, due: usize) -> bool {
    due >= WARM_MIN_DUE && shard.len() >= WARM_MIN_RECORDS
}

/// Loads the due records and their handles' counts before their snapshots are built.
///
/// The due records lie at random places of the slab, and a snapshot's first write is an atomic
/// increment of the record's handle count, which waits for its line: built one by one, the
/// snapshots pay two cache misses each in a row (~300 ns at 1M). Loading every record and
/// handle count first lets the processor overlap those misses (plain loads of independent
/// slots: no atomic write in between), so that the snapshots find them cached.
fn warm(shard: &Shard, due: &[u32]) {
    let mut touched = 0usize;
    for &slot in due {
        if let Some(rec) = shard.at(slot) {
            // A record spans two cache lines or more: fields spread over it (whatever the
            // compiler's order, one of them lands on each line), and the handle's count.
            touched ^= Arc::strong_count(&rec.handle)
                ^ rec.birth_ticket as usize
                ^ rec.updated_at as usize
                ^ rec.jobs_executed as usize
                ^ rec.class as usize
                ^ rec.state as usize;
        }
    }
    std::hint::black_box(touched);
}
