//! [`HeartbeatColumn`]: one shard's heartbeats as a dense array, indexed by a slot that the
//! record keeps.
//!
//! A heartbeat is one atomic `fetch_max` into the column (under the shard's *read* lock); a
//! health check of the shard reads the column sequentially, 8 bytes per worker, instead of a
//! random look-up into every record. On top of it a small cache makes the usual check cost
//! what is due rather than the shard's size (see [`Sweep`]).
//!
//! Slots are the shard's slab slots ([`Shard`](super::memory)): the slab allocates and reuses
//! them, the column follows (`attach`, `release`). Every access goes through the shard's id →
//! slot index, under the shard's lock, so a stale id (an unregistered worker) can never reach
//! the slot's new occupant: its look-up fails first. Attaching and releasing need the shard's
//! write lock, which excludes every heartbeat to the shard.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::clock::Timestamp;

/// Width of a bucket of [`HeartbeatAges`](super::HeartbeatAges) (1 s), in milliseconds.
pub(super) const HEARTBEAT_AGE_BUCKET_MS: u64 = 1_000;

/// Ages below this many buckets are counted in an array, older ones in a map.
const DENSE_AGES: usize = 4096;

/// Heartbeat-age counts gathered over the shards' columns: a worker whose key (`max(heartbeat,
/// grace floor)`) lies in the bucket starting at `b` (ms) is counted at age `now - b`.
#[derive(Debug)]
pub(super) struct AgeCounts {
    now: Timestamp,
    now_bucket: u64,
    /// By age in buckets, for the recent ones (nearly every worker of a live fleet).
    dense: Vec<u64>,
    /// By bucket, for the older ones.
    sparse: BTreeMap<u64, u64>,
}

impl AgeCounts {
    pub fn new(now: Timestamp) -> AgeCounts {
        AgeCounts {
            now,
            now_bucket: now / HEARTBEAT_AGE_BUCKET_MS,
            dense: vec![0; DENSE_AGES],
            sparse: BTreeMap::new(),
        }
    }

    fn add(&mut self, key: Timestamp) {
        let bucket = key / HEARTBEAT_AGE_BUCKET_MS;
        // A heartbeat stored after `now` was read counts as age 0.
        let age = self.now_bucket.saturating_sub(bucket) as usize;
        match self.dense.get_mut(age) {
            Some(n) => *n += 1,
            None => *self.sparse.entry(bucket).or_default() += 1,
        }
    }

    /// `(age_ms, workers)`, youngest first, empty buckets left out. The age of a bucket is
    /// measured from `now` to the bucket's start, as `HeartbeatAges` documents.
    pub fn into_buckets(self) -> Vec<(u64, u64)> {
        let (now, now_bucket) = (self.now, self.now_bucket);
        let mut out: Vec<(u64, u64)> = self
            .dense
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(age, n)| {
                let start = (now_bucket - age as u64) * HEARTBEAT_AGE_BUCKET_MS;
                (now - start, *n)
            })
            .collect();
        out.extend(
            self.sparse
                .into_iter()
                .rev()
                .map(|(bucket, n)| (now.saturating_sub(bucket * HEARTBEAT_AGE_BUCKET_MS), n)),
        );
        out
    }
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
    /// Taken by `due` under the shard's read lock; reached through `get_mut` under its write
    /// lock (lock order: shard, then this).
    sweep: Mutex<Sweep>,
}

impl HeartbeatColumn {
    /// Takes `slot` (a slab slot: a free one, or the next past the end) with last heartbeat
    /// `heartbeat`, not monitored.
    pub fn attach(&mut self, slot: u32, heartbeat: Timestamp) {
        let s = slot as usize;
        if s < self.beats.len() {
            *self.beats[s].get_mut() = heartbeat;
            self.monitored[s] = false;
        } else {
            debug_assert_eq!(s, self.beats.len(), "slots are attached in order");
            self.beats.push(AtomicU64::new(heartbeat));
            self.monitored.push(false);
        }
    }

    /// Releases a slot (its record left the shard): never due again until attached.
    pub fn release(&mut self, slot: u32) {
        let s = slot as usize;
        *self.beats[s].get_mut() = FREE;
        self.monitored[s] = false;
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

    /// Calls `due` with the slot of every monitored worker whose key (`max(heartbeat, floor)`)
    /// is below `cutoff`. Takes `&self`: runs under the shard's read lock, beside heartbeats
    /// (a worker heartbeating meanwhile may or may not be reported).
    ///
    /// Cost: the suspects of the last scan while `cutoff` stays at or below the horizon (the
    /// usual health check, every tick, finds what is due plus the slots re-filed since);
    /// otherwise one sequential pass over the column (8 bytes per slot).
    pub fn due(&self, floor: Timestamp, cutoff: Timestamp, mut due: impl FnMut(u32)) {
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
                    due(slot);
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
                    due(s as u32);
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

    /// Adds the key of every monitored slot to `ages` (one pass over the column).
    pub fn count_ages(&self, floor: Timestamp, ages: &mut AgeCounts) {
        for (beat, on) in self.beats.iter().zip(&self.monitored) {
            if *on {
                ages.add(beat.load(Ordering::Acquire).max(floor));
            }
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
    fn ages_are_measured_from_the_bucket_start_recent_and_old_alike() {
        // 5000 s after the epoch plus 400 ms: recent ages in the array, older ones in the map;
        // a heartbeat stored after `now` was read counts in the current bucket.
        let now = 5_000_400;
        let mut ages = AgeCounts::new(now);
        for key in [5_000_000, 5_000_399, 4_999_000, 200_000, 200_999, now + 5] {
            ages.add(key);
        }
        assert_eq!(
            ages.into_buckets(),
            vec![(400, 3), (1_400, 1), (4_800_400, 2)]
        );
    }
}
