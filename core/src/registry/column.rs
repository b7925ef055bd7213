//! [`HeartbeatColumn`]: one shard's heartbeats as a dense array, indexed by a slot that the
//! record keeps.
//!
//! A heartbeat is one atomic `fetch_max` into the column (under the shard's *read* lock); a
//! health check of the shard reads the column sequentially, 8 bytes per worker, instead of a
//! random look-up into every record. On top of it a small cache makes the usual check cost
//! what is due rather than the shard's size (see [`Sweep`]).
//!
//! Slots are reused through a free list. Only the record knows its slot and every access goes
//! through the record, under the shard's lock, so a stale id (an unregistered worker) can
//! never reach the slot's new occupant: its look-up fails first. Slot allocation and release
//! need the shard's write lock, which excludes every heartbeat to the shard.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::clock::Timestamp;
use crate::ids::WorkerId;

/// What [`HeartbeatColumn::sample`] read of a column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ColumnSample {
    /// Live (occupied) slots of the column: its workers, exactly.
    pub live: usize,
    /// Live slots among those read (all of them when the column was read whole).
    pub read_live: usize,
}

/// The heartbeat of a free slot: never due, never lowers the horizon.
const FREE: Timestamp = Timestamp::MAX;

/// Suspects a shard may gather between health checks beyond its slots: past this the cache is
/// dropped and the next check scans the column (bounds memory when no check ever runs).
const SUSPECT_SLACK: usize = 64;

/// The due-check cache of one shard.
///
/// Invariant: every *monitored* slot whose key (`max(heartbeat, grace floor)`) is below
/// `horizon` is in `suspects` (which may also hold stale or duplicate slots, re-checked on use).
/// Keys only grow (heartbeats are `fetch_max`, the floor only rises), so a check with a cutoff
/// at most `horizon` needs to look at the suspects only; a later cutoff scans the column and
/// moves the horizon to the smallest key not due. A slot that becomes monitored with a key
/// below the horizon is added to the suspects.
#[derive(Debug, Default)]
struct Sweep {
    /// 0 at first: the first check scans.
    horizon: Timestamp,
    suspects: Vec<u32>,
}

/// One shard's heartbeat column. See the module doc.
#[derive(Debug, Default)]
pub(super) struct HeartbeatColumn {
    /// Last heartbeat of each slot, in ms on the registry clock; [`FREE`] for a free slot.
    beats: Vec<AtomicU64>,
    /// Whether each slot's worker is heartbeat-monitored (read only for slots found due).
    monitored: Vec<bool>,
    /// The worker in each slot (the due list is made of ids).
    owners: Vec<WorkerId>,
    free: Vec<u32>,
    /// Taken by `due` under the shard's read lock; reached through `get_mut` under its write
    /// lock (lock order: shard, then this).
    sweep: Mutex<Sweep>,
}

impl HeartbeatColumn {
    /// A slot for `id`, last heartbeat `heartbeat`, not monitored. Reuses a free slot if any.
    pub fn alloc(&mut self, id: WorkerId, heartbeat: Timestamp) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                let s = slot as usize;
                *self.beats[s].get_mut() = heartbeat;
                self.monitored[s] = false;
                self.owners[s] = id;
                slot
            }
            None => {
                let slot =
                    u32::try_from(self.beats.len()).expect("fewer than 2^32 workers a shard");
                self.beats.push(AtomicU64::new(heartbeat));
                self.monitored.push(false);
                self.owners.push(id);
                slot
            }
        }
    }

    /// Releases a slot (its record left the shard).
    pub fn release(&mut self, slot: u32) {
        let s = slot as usize;
        *self.beats[s].get_mut() = FREE;
        self.monitored[s] = false;
        self.free.push(slot);
    }

    /// The last heartbeat of `slot`.
    pub fn get(&self, slot: u32) -> Timestamp {
        self.beats[slot as usize].load(Ordering::Acquire)
    }

    /// Records a heartbeat at `now` (never goes back). Needs only the shard's read lock.
    pub fn beat(&self, slot: u32, now: Timestamp) {
        self.beats[slot as usize].fetch_max(now, Ordering::AcqRel);
    }

    /// Sets whether `slot` is heartbeat-monitored (after any heartbeat the change implies).
    pub fn set_monitored(&mut self, slot: u32, on: bool, floor: Timestamp) {
        let s = slot as usize;
        let was = std::mem::replace(&mut self.monitored[s], on);
        if on && !was {
            let key = (*self.beats[s].get_mut()).max(floor);
            let slots = self.beats.len();
            let sweep = self.sweep.get_mut();
            if key < sweep.horizon {
                sweep.suspects.push(slot);
                if sweep.suspects.len() > slots + SUSPECT_SLACK {
                    // Churn without health checks: forget the cache, the next check scans.
                    sweep.suspects = Vec::new();
                    sweep.horizon = 0;
                }
            }
        }
    }

    /// Calls `due` with the id of every monitored worker whose key (`max(heartbeat, floor)`)
    /// is below `cutoff`. Takes `&self`: runs under the shard's read lock, beside heartbeats
    /// (a worker heartbeating meanwhile may or may not be reported).
    ///
    /// Cost: the suspects of the last scan while `cutoff` stays at or below the horizon (the
    /// usual health check, every tick, finds what is due plus the slots re-filed since);
    /// otherwise one sequential pass over the column (8 bytes per slot).
    pub fn due(&self, floor: Timestamp, cutoff: Timestamp, mut due: impl FnMut(WorkerId)) {
        let mut sweep = self.sweep.lock();
        let key = |s: usize| self.beats[s].load(Ordering::Acquire).max(floor);
        if cutoff <= sweep.horizon {
            let horizon = sweep.horizon;
            sweep.suspects.sort_unstable();
            sweep.suspects.dedup();
            sweep.suspects.retain(|&slot| {
                let s = slot as usize;
                if !self.monitored[s] {
                    return false;
                }
                let k = key(s);
                if k < cutoff {
                    due(self.owners[s]);
                }
                k < horizon
            });
            return;
        }
        sweep.suspects.clear();
        let mut horizon = Timestamp::MAX;
        // 64 slots at a time, without a branch per slot: the due ones (few, usually) are
        // marked in a bit mask and visited after.
        for (c, chunk) in self.beats.chunks(64).enumerate() {
            let mut mask = 0u64;
            for (i, beat) in chunk.iter().enumerate() {
                let k = beat.load(Ordering::Relaxed).max(floor);
                let is_due = k < cutoff;
                horizon = horizon.min(if is_due { Timestamp::MAX } else { k });
                mask |= u64::from(is_due) << i;
            }
            while mask != 0 {
                let s = c * 64 + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                if self.monitored[s] {
                    sweep.suspects.push(s as u32);
                    due(self.owners[s]);
                }
            }
        }
        sweep.horizon = horizon;
    }

    /// Counts the monitored workers whose key is below `cutoff`, from the column alone (no
    /// record is read, the cache is left alone): one sequential pass, or the suspects when
    /// `cutoff` is at or below the horizon.
    pub fn count_due(&self, floor: Timestamp, cutoff: Timestamp) -> usize {
        let sweep = self.sweep.lock();
        let key = |s: usize| self.beats[s].load(Ordering::Acquire).max(floor);
        if cutoff <= sweep.horizon {
            let mut slots: Vec<u32> = sweep
                .suspects
                .iter()
                .copied()
                .filter(|&slot| self.monitored[slot as usize] && key(slot as usize) < cutoff)
                .collect();
            slots.sort_unstable();
            slots.dedup();
            return slots.len();
        }
        drop(sweep);
        self.beats
            .iter()
            .zip(&self.monitored)
            .filter(|(beat, on)| **on && beat.load(Ordering::Acquire).max(floor) < cutoff)
            .count()
    }

    /// A stride sample of the column for the heartbeat-age metrics: calls `key` with the key
    /// (`max(heartbeat, floor)`) of every *monitored* slot among slots `0, s, 2s, …`, where
    /// `s = ceil(slots / max_slots)` — every slot when the column holds at most `max_slots`
    /// (live and free). Returns the column's exact count of live slots and how many of the
    /// slots read were live, so that the caller can scale what it saw.
    ///
    /// Cost: at most `max_slots` slot reads (a heartbeat and a flag each), whatever the
    /// shard's size; no lock of its own and no write (runs under the shard's read lock, beside
    /// heartbeats). Slots are filled in registration order, so with random worker ids a stride
    /// sample is a fair sample of the shard's workers.
    pub fn sample(
        &self,
        floor: Timestamp,
        max_slots: usize,
        mut key: impl FnMut(Timestamp),
    ) -> ColumnSample {
        let stride = self.beats.len().div_ceil(max_slots.max(1)).max(1);
        let mut read_live = 0;
        for s in (0..self.beats.len()).step_by(stride) {
            let beat = self.beats[s].load(Ordering::Acquire);
            if beat != FREE {
                read_live += 1;
                if self.monitored[s] {
                    key(beat.max(floor));
                }
            }
        }
        ColumnSample {
            live: self.beats.len() - self.free.len(),
            read_live,
        }
    }

    /// Slots held (live and free) and suspects cached, for tests of the bounds.
    #[cfg(test)]
    pub fn sizes(&self) -> (usize, usize) {
        (self.beats.len(), self.sweep.lock().suspects.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_reads_at_most_max_slots_and_counts_the_live_ones_exactly() {
        let mut column = HeartbeatColumn::default();
        let slots: Vec<u32> = (0..10u64)
            .map(|i| column.alloc(WorkerId::new(), 1_000 * i))
            .collect();
        for &slot in &slots[..8] {
            column.set_monitored(slot, true, 0);
        }
        column.release(slots[3]);
        let sample = |column: &HeartbeatColumn, max: usize, floor: Timestamp| {
            let mut keys = Vec::new();
            let read = column.sample(floor, max, |k| keys.push(k));
            (keys, read)
        };
        // Whole: every monitored slot (3 is free, 8 and 9 are not monitored).
        let (keys, read) = sample(&column, 10, 0);
        assert_eq!(keys, vec![0, 1_000, 2_000, 4_000, 5_000, 6_000, 7_000]);
        assert_eq!(
            read,
            ColumnSample {
                live: 9,
                read_live: 9
            }
        );
        // At most 4 of 10: stride 3, slots 0, 3 (free), 6, 9 (not monitored); the floor
        // raises the keys below it.
        let (keys, read) = sample(&column, 4, 5_500);
        assert_eq!(keys, vec![5_500, 6_000]);
        assert_eq!(
            read,
            ColumnSample {
                live: 9,
                read_live: 3
            }
        );
        let (keys, _) = sample(&column, 1, 0);
        assert_eq!(keys, vec![0]);
        // max 0 is taken as 1, an empty column reads nothing.
        assert_eq!(sample(&column, 0, 0).0, vec![0]);
        let empty = HeartbeatColumn::default();
        assert_eq!(sample(&empty, 4, 0), (vec![], ColumnSample::default()));
    }
}
