//! [`IdTable`]: a hash table from worker ids to small values, with linear probing and
//! backward-shift deletion.
//!
//! It holds the shards' id → slot indexes. Why not the standard `HashMap`: it marks removed
//! entries with tombstones, which pile up under churn (a registry that registers and
//! unregisters all day); a look-up of an absent key (every `register` asks whether its new id
//! is already there) then probes until an empty slot, past every tombstone, until the next
//! rehash — measured at 60% of `register`'s time when the retired ids were kept in such a set
//! (they now have their own structure, `registry/retired.rs`). Backward-shift deletion leaves no tombstone: the
//! table after a removal is the table the remaining keys would have built. Linear probing also
//! keeps a look-up on one or two adjacent cache lines: an entry is the id and the value, side
//! by side (20 bytes for a `u32`), with no separate control bytes.
//!
//! Load stays between 1/2 and 3/4 while the table grows: past 3/4 it grows by half (not
//! double), so a table of `n` ids takes 27–40 bytes an id for a `u32` value instead of the
//! 27–53 of doubling (at 1M workers the shards' indexes were at load 0.48, 42 bytes a
//! worker). It also shrinks (clarified 2026-12-07: before, a table never shrank, and a fleet
//! grown to 1M and shrunk to 10k kept the 1M's tables at load 0.01): below load 1/4 it is
//! rehashed to load 1/2 (never below [`MIN_SIZE`] entries), the registry-wide rule of
//! [`shrink`](super::shrink). So the load is always between 1/4 and 3/4 (above [`MIN_SIZE`]),
//! 1/2 right after any rehash, and a fleet oscillating around one size never rehashes back and
//! forth: from 1/2 it takes a growth of half the live ids or a loss of half of them. A rehash
//! costs O(ids) and happens only in `insert_new` and `remove`, never in a look-up. The sizes
//! are not powers of two, so an id's home is `hash × size / 2^64` (one multiply) rather than
//! a mask. At 3/4 a look-up probes about 2.5 entries (one or two cache lines).

use std::hash::BuildHasher;

use crate::ids::WorkerId;

/// Marks an empty entry: the nil id, which is never a worker.
const EMPTY: WorkerId = WorkerId::MIN;

/// The smallest table (entries): the first insert makes it, and no shrink goes below it.
const MIN_SIZE: usize = 16;

/// A map from worker ids (never the nil id) to `V`. See the module doc.
#[derive(Debug, Clone)]
pub(super) struct IdTable<V: Copy + Default> {
    entries: Box<[(WorkerId, V)]>,
    len: usize,
    hasher: foldhash::fast::RandomState,
    /// Rehashes (growths and shrinks) so far, for tests of the hysteresis.
    #[cfg(test)]
    rehashes: usize,
}

impl<V: Copy + Default> Default for IdTable<V> {
    fn default() -> Self {
        IdTable {
            entries: Box::new([]),
            len: 0,
            hasher: foldhash::fast::RandomState::default(),
            #[cfg(test)]
            rehashes: 0,
        }
    }
}

impl<V: Copy + Default> IdTable<V> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The entry where `id`'s probe starts in a table of `size` entries: the hash scaled to
    /// the size (its high bits: foldhash's are well mixed).
    #[inline]
    fn home_in(&self, id: &WorkerId, size: usize) -> usize {
        ((u128::from(self.hasher.hash_one(id)) * size as u128) >> 64) as usize
    }

    #[inline]
    fn home(&self, id: &WorkerId) -> usize {
        self.home_in(id, self.entries.len())
    }

    /// The entry after `i`, cyclically.
    #[inline]
    fn next(&self, i: usize) -> usize {
        let j = i + 1;
        if j == self.entries.len() {
            0
        } else {
            j
        }
    }

    /// The position of `id`, if present.
    #[inline]
    fn find(&self, id: &WorkerId) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mut i = self.home(id);
        loop {
            let key = &self.entries[i].0;
            if key == id {
                return Some(i);
            }
            if *key == EMPTY {
                return None;
            }
            i = self.next(i);
        }
    }

    /// The value of `id`.
    #[inline]
    pub fn get(&self, id: &WorkerId) -> Option<V> {
        self.find(id).map(|i| self.entries[i].1)
    }

    /// Whether `id` is present.
    pub fn contains(&self, id: &WorkerId) -> bool {
        self.find(id).is_some()
    }

    /// Sets the value of `id` (never the nil id); returns the previous value.
    #[cfg(test)]
    pub fn insert(&mut self, id: WorkerId, value: V) -> Option<V> {
        debug_assert!(id != EMPTY, "the nil id is never a worker");
        if let Some(i) = self.find(&id) {
            return Some(std::mem::replace(&mut self.entries[i].1, value));
        }
        self.insert_new(id, value);
        None
    }

    /// Adds `id` (never the nil id), which the caller knows is absent (`register` asked
    /// under the same lock): saves the look-up that `insert` (in tests) makes.
    pub fn insert_new(&mut self, id: WorkerId, value: V) {
        debug_assert!(id != EMPTY, "the nil id is never a worker");
        debug_assert!(self.find(&id).is_none(), "{id} is present");
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            // By half (load 3/4 -> 1/2).
            self.rehash((self.entries.len() + self.entries.len() / 2).max(MIN_SIZE));
        }
        let mut i = self.home(&id);
        while self.entries[i].0 != EMPTY {
            i = self.next(i);
        }
        self.entries[i] = (id, value);
        self.len += 1;
    }

    /// Re-files every entry into a table of `size` entries (more than `len`). O(len + size).
    #[cold]
    fn rehash(&mut self, size: usize) {
        debug_assert!(size > self.len);
        #[cfg(test)]
        {
            self.rehashes += 1;
        }
        let old = std::mem::replace(
            &mut self.entries,
            vec![(EMPTY, V::default()); size].into_boxed_slice(),
        );
        for (id, value) in old.iter().copied().filter(|e| e.0 != EMPTY) {
            let mut i = self.home_in(&id, size);
            while self.entries[i].0 != EMPTY {
                i = self.next(i);
            }
            self.entries[i] = (id, value);
        }
    }

    /// Removes `id`; returns its value. Shifts the entries after it back (no tombstone).
    pub fn remove(&mut self, id: &WorkerId) -> Option<V> {
        let mut hole = self.find(id)?;
        let value = self.entries[hole].1;
        let mut j = hole;
        loop {
            j = self.next(j);
            let key = self.entries[j].0;
            if key == EMPTY {
                break;
            }
            let home = self.home(&key);
            // The entry at `j` may move back to `hole` unless its home lies cyclically in
            // (hole, j]: then it would be placed before its home.
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.entries[hole] = self.entries[j];
                hole = j;
            }
        }
        self.entries[hole] = (EMPTY, V::default());
        self.len -= 1;
        // Below load 1/4: to load 1/2 (see the module doc).
        let size = self.entries.len();
        if size > MIN_SIZE && self.len * 4 < size {
            self.rehash((2 * self.len).max(MIN_SIZE));
        }
        Some(value)
    }

    /// Entries of the table (live and empty) and rehashes so far, for tests of the bounds.
    #[cfg(test)]
    pub fn size_and_rehashes(&self) -> (usize, usize) {
        (self.entries.len(), self.rehashes)
    }

    /// Every entry, in table order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (WorkerId, V)> + '_ {
        self.entries.iter().copied().filter(|e| e.0 != EMPTY)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::test_rng::XorShift;
    use super::*;

    #[test]
    fn load_stays_between_a_half_and_three_quarters_while_growing() {
        let mut table: IdTable<u32> = IdTable::default();
        for n in 1..=50_000u32 {
            table.insert(WorkerId::new(), n);
            let size = table.entries.len();
            assert!(4 * table.len() <= 3 * size, "{n} ids in {size} entries");
            if n >= 12 {
                assert!(2 * table.len() >= size, "{n} ids in {size} entries");
            }
        }
    }

    /// DESIGN.md (in-memory layout), clarified 2026-12-07: the index runs at load 1/4 to 3/4
    /// after removals too (1/2 after a rehash), and a table oscillating around one size does
    /// not rehash on every call.
    #[test]
    fn load_stays_between_a_quarter_and_three_quarters_while_shrinking() {
        let mut table: IdTable<u32> = IdTable::default();
        let ids: Vec<WorkerId> = (0..100_000u32).map(|_| WorkerId::new()).collect();
        for (n, id) in ids.iter().enumerate() {
            table.insert_new(*id, n as u32);
        }
        for (n, id) in ids.iter().enumerate().rev() {
            assert_eq!(table.remove(id), Some(n as u32));
            let (size, _) = table.size_and_rehashes();
            assert!(4 * table.len() <= 3 * size, "{} ids in {size}", table.len());
            if size > MIN_SIZE {
                assert!(
                    4 * table.len() >= size,
                    "{} ids in {size} entries",
                    table.len()
                );
            }
            if n % 4_999 == 0 {
                for (m, id) in ids[..n].iter().enumerate().step_by(97) {
                    assert_eq!(table.get(id), Some(m as u32));
                }
                assert_eq!(table.get(&ids[n]), None);
            }
        }
        assert_eq!(table.size_and_rehashes().0, MIN_SIZE);
        // Oscillating by a few ids around 10k: a rehash at most once, not on every call.
        for (n, id) in ids[..10_000].iter().enumerate() {
            table.insert_new(*id, n as u32);
        }
        let (_, before) = table.size_and_rehashes();
        for round in 0..2_000usize {
            let k = 1 + round % 7;
            for id in &ids[10_000..10_000 + k] {
                table.insert_new(*id, 0);
            }
            for id in &ids[10_000..10_000 + k] {
                assert_eq!(table.remove(id), Some(0));
            }
            table.remove(&ids[round]);
            table.insert_new(ids[round], round as u32);
        }
        assert!(table.size_and_rehashes().1 - before <= 1);
        assert_eq!(table.len(), 10_000);
    }

    #[test]
    fn churn_matches_a_hash_map_and_keeps_the_table_bounded() {
        let mut table: IdTable<u32> = IdTable::default();
        let mut model: HashMap<WorkerId, u32> = HashMap::new();
        let mut live: Vec<WorkerId> = Vec::new();
        let mut gone: Vec<WorkerId> = Vec::new();
        // A deterministic walk: grow to 500, then churn (one in, one out) for a long while.
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for step in 0..40_000u32 {
            let x = rng.next();
            if live.len() < 500 || x % 2 == 0 {
                let id = WorkerId::new();
                assert_eq!(table.insert(id, step), None);
                model.insert(id, step);
                live.push(id);
            } else {
                let id = live.swap_remove((x as usize / 2) % live.len());
                assert_eq!(table.remove(&id), model.remove(&id));
                gone.push(id);
            }
            if step % 997 == 0 {
                assert_eq!(table.len(), model.len());
                for (id, v) in &model {
                    assert_eq!(table.get(id), Some(*v));
                }
                for id in gone.iter().rev().take(200) {
                    assert_eq!(table.get(id), None);
                }
                let mut seen: Vec<(WorkerId, u32)> = table.iter().collect();
                seen.sort();
                let mut want: Vec<(WorkerId, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                want.sort();
                assert_eq!(seen, want);
            }
        }
        // Never more than twice what the peak needed: no tombstones grow the table.
        assert!(table.entries.len() <= 4 * model.len().max(500).next_power_of_two());
        // Replacing a value keeps one entry.
        let id = live[0];
        assert_eq!(table.insert(id, 7), model.get(&id).copied());
        assert_eq!(table.get(&id), Some(7));
        assert_eq!(table.len(), model.len());
    }
}
