//! The one rule by which the registry's structures give memory back: shrink below a quarter
//! full, to half full, never below a small minimum.
//!
//! A structure that only grew would keep the memory of its largest fleet for ever (a
//! scheduler that scales from 1M workers down to 10k each night kept the 1M's ~164 B a
//! worker). With this rule every structure that follows it holds O(its live entries),
//! amortized: a shrink costs O(live entries), and between two rebuilds the live count moves
//! by at least a quarter of the capacity (down from 1/2 to 1/4, or up from 1/2 to full), so a
//! fleet oscillating around one size never rebuilds back and forth on every call
//! (hysteresis). Shrinks happen only where the structure is written (under the shard's write
//! lock, or the registry-wide mutex): reads never pay for them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::OnceLock;

/// Capacity (entries) at or below which nothing shrinks: a structure that small is not worth
/// a rebuild.
pub(super) const MIN_CAPACITY: usize = 64;

/// Whether a structure with `live` entries in room for `capacity` should shrink: below a
/// quarter full and above [`MIN_CAPACITY`].
#[inline]
pub(super) fn should_shrink(live: usize, capacity: usize) -> bool {
    capacity > MIN_CAPACITY && live < capacity / 4
}

/// The capacity a shrink leaves for `live` entries: room to grow again (half full), at least
/// [`MIN_CAPACITY`].
#[inline]
pub(super) fn shrunk_capacity(live: usize) -> usize {
    (2 * live).max(MIN_CAPACITY)
}

/// A structure with room for more entries than it holds, that can give the rest back.
pub(super) trait Room {
    /// Entries held.
    fn live(&self) -> usize;
    /// Entries it has room for.
    fn room(&self) -> usize;
    /// Gives back the room above `room` (at least `live`).
    fn shrink_room(&mut self, room: usize);
    /// The room such a structure keeps after `shrink_room(MIN_CAPACITY)`: the least any
    /// shrink leaves it, so at or below it a shrink can do nothing. [`MIN_CAPACITY`] for a
    /// `Vec` or a `VecDeque` (their `shrink_to` is exact).
    fn floor_room(&self) -> usize {
        MIN_CAPACITY
    }
}

/// The room of a std hash table made for [`MIN_CAPACITY`] entries (its bucket count's load
/// limit: 112, 128 buckets at 7/8), measured once: a table shrunk to the minimum keeps that.
fn hash_floor_room() -> usize {
    static FLOOR: OnceLock<usize> = OnceLock::new();
    *FLOOR.get_or_init(|| HashSet::<u64>::with_capacity(MIN_CAPACITY).capacity())
}

impl<T> Room for Vec<T> {
    fn live(&self) -> usize {
        self.len()
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn shrink_room(&mut self, room: usize) {
        self.shrink_to(room);
    }
}

impl<T> Room for VecDeque<T> {
    fn live(&self) -> usize {
        self.len()
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn shrink_room(&mut self, room: usize) {
        self.shrink_to(room);
    }
}

impl<K: Eq + Hash, V, S: BuildHasher> Room for HashMap<K, V, S> {
    fn live(&self) -> usize {
        self.len()
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn shrink_room(&mut self, room: usize) {
        self.shrink_to(room);
    }
    fn floor_room(&self) -> usize {
        hash_floor_room()
    }
}

impl<K: Eq + Hash, S: BuildHasher> Room for HashSet<K, S> {
    fn live(&self) -> usize {
        self.len()
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn shrink_room(&mut self, room: usize) {
        self.shrink_to(room);
    }
    fn floor_room(&self) -> usize {
        hash_floor_room()
    }
}

/// Applies the rule to `structure`; returns whether it shrank.
///
/// A structure whose room is at its [floor](Room::floor_room) is left alone, so every
/// `shrink_room` called really gives room back (clarified 2026-12-07: a hash table shrunk to
/// the minimum keeps room for 112, which the rule alone still found too large below 28
/// entries, and every removal there paid a `shrink_to` that did nothing). Exact for std's
/// hash tables: their bucket counts are powers of two, so above the floor the rule's target
/// (`shrunk_capacity(live)`, with `live` below a quarter of the room) always needs fewer
/// buckets. Cost: the comparisons of [`should_shrink`]; the floor (one atomic load for a
/// hash table) is read only when they say yes.
#[inline]
pub(super) fn shrink(structure: &mut impl Room) -> bool {
    if should_shrink(structure.live(), structure.room())
        && structure.room() > structure.floor_room()
    {
        structure.shrink_room(shrunk_capacity(structure.live()));
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vec_shrinks_below_a_quarter_to_half_and_not_before() {
        let mut v: Vec<u64> = (0..4096).collect();
        v.truncate(1025);
        assert!(!shrink(&mut v), "above a quarter");
        v.truncate(1000);
        assert!(shrink(&mut v));
        assert!(v.capacity() >= 2000 && v.capacity() < 4096);
        // Half full now: neither one more nor one less rebuilds.
        let cap = v.capacity();
        v.push(1);
        v.pop();
        v.pop();
        assert!(!shrink(&mut v));
        assert_eq!(v.capacity(), cap);
        // Never below the minimum.
        v.clear();
        assert!(shrink(&mut v));
        assert!(v.capacity() >= MIN_CAPACITY && v.capacity() < 2 * MIN_CAPACITY);
        assert!(!shrink(&mut v));
    }

    /// A hash table's room after `shrink_to(MIN_CAPACITY)` is its bucket count's load limit,
    /// above the minimum (112 for std's tables: 128 buckets at 7/8): the rule's
    /// `capacity > MIN_CAPACITY` alone called a `shrink_to` that could do nothing on every
    /// removal below a quarter of that (the job map on `release_from_job`, a ready set's
    /// side set on `claim`). Every call of the rule that says it shrank must have shrunk.
    #[test]
    fn a_hash_table_is_shrunk_only_when_its_room_goes_down() {
        let mut map: HashMap<u64, u64> = (0..4096).map(|k| (k, k)).collect();
        let mut set: HashSet<u64> = (0..4096).collect();
        let (mut calls, mut noops) = (0, Vec::new());
        for k in 0..4096 {
            map.remove(&k);
            set.remove(&k);
            let before = (map.capacity(), set.capacity());
            let shrank = (shrink(&mut map), shrink(&mut set));
            calls += usize::from(shrank.0) + usize::from(shrank.1);
            if (shrank.0 && map.capacity() == before.0) || (shrank.1 && set.capacity() == before.1)
            {
                noops.push((map.len(), before));
            }
        }
        assert!(
            noops.is_empty(),
            "{} of {calls} shrinks left the room as it was, first at (live, rooms) {:?}",
            noops.len(),
            noops.first()
        );
        assert!(calls > 0 && map.capacity() < 2 * MIN_CAPACITY);
    }
}
