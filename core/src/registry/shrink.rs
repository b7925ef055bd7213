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
}

/// Applies the rule to `structure`; returns whether it shrank.
#[inline]
pub(super) fn shrink(structure: &mut impl Room) -> bool {
    if should_shrink(structure.live(), structure.room()) {
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
}
