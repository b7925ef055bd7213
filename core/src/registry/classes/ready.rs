//! [`ReadySet`]: a class's `Ready` workers by `(idle_since, id)`, the order `claim` promises.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::ops::Bound;

use super::{near_an_end, Merge};

use crate::clock::Timestamp;
use crate::ids::WorkerId;
use crate::registry::shrink::shrink;

/// A key of the ready set: when the worker became idle, then its id.
type Key = (Timestamp, WorkerId);

/// The `Ready` workers of a class by `(idle_since, id)`: the order `claim` and
/// `longest_idle` promise (ties by id).
///
/// A sorted `VecDeque` of 24-byte entries rather than a B-tree: a worker enters `Ready` at
/// the current time, so nearly every insert is at the back (O(1)), `claim` takes from the
/// back and the idle check from the front; at 1M ready workers that is ~25 bytes a worker
/// against the ~45 of a `BTreeSet` (whose nodes, filled in order, stay about half full).
/// A removal in the middle (a ready worker drained, terminated or unregistered) does not
/// shift the entries: the entry stays in place and its key goes to `gone`, which every read
/// skips; entries of `gone` at either end are dropped at once, and the deque is compacted
/// when `gone` exceeds a quarter of the live entries.
///
/// An insert below the back (an id below others of the same millisecond, the clock gone
/// back) goes into the deque only near either end ([`near_an_end`]); farther in it goes to
/// `late`, a B-tree (O(log n)), and every read merges the two. Without it, a fleet made ready
/// while the clock stands still (a `ManualClock` in a test or a simulation: every key of one
/// millisecond, in random id order) shifted half the deque on each insert, O(n) a worker and
/// O(n²) the fleet: measured 6.6 µs a worker at 100k (`examples/ready_burst.rs`).
#[derive(Debug, Default)]
pub(in crate::registry) struct ReadySet {
    /// Sorted, no duplicates; holds the keys of `gone` too.
    entries: VecDeque<Key>,
    /// Keys removed but still in `entries`.
    gone: HashSet<Key, foldhash::fast::RandomState>,
    /// Keys that arrived below the back of `entries`, far from both ends. Disjoint from
    /// `entries`.
    late: BTreeSet<Key>,
}

impl ReadySet {
    /// Ready workers.
    pub fn len(&self) -> usize {
        self.entries.len() - self.gone.len() + self.late.len()
    }

    fn live(&self, key: &Key) -> bool {
        self.gone.is_empty() || !self.gone.contains(key)
    }

    pub fn insert(&mut self, at: Timestamp, id: WorkerId) {
        let key = (at, id);
        if !self.gone.is_empty() && self.gone.remove(&key) {
            // Still in place: live again.
            return;
        }
        match self.entries.back() {
            Some(last) if *last >= key => {
                let pos = self.entries.partition_point(|e| *e < key);
                debug_assert!(self.entries.get(pos) != Some(&key), "inserted twice");
                if near_an_end(pos, self.entries.len()) {
                    self.entries.insert(pos, key);
                } else {
                    let fresh = self.late.insert(key);
                    debug_assert!(fresh, "inserted twice");
                }
            }
            _ => self.entries.push_back(key),
        }
    }

    /// Adds an entry at the back, out of order: [`sort`](Self::sort) must follow before any
    /// other use (restore).
    pub fn push_unsorted(&mut self, at: Timestamp, id: WorkerId) {
        self.entries.push_back((at, id));
    }

    /// Sorts after [`push_unsorted`](Self::push_unsorted).
    pub fn sort(&mut self) {
        debug_assert!(self.gone.is_empty() && self.late.is_empty());
        self.entries.make_contiguous().sort_unstable();
    }

    pub fn remove(&mut self, at: Timestamp, id: WorkerId) -> bool {
        let key = (at, id);
        if self.entries.back() == Some(&key) {
            self.entries.pop_back();
        } else if self.entries.front() == Some(&key) {
            self.entries.pop_front();
        } else if !self.late.is_empty() && self.late.remove(&key) {
            return true;
        } else {
            let pos = self.entries.partition_point(|e| *e < key);
            if self.entries.get(pos) != Some(&key) || !self.gone.insert(key) {
                return false;
            }
        }
        self.trim();
        true
    }

    /// Drops the removed entries at both ends; compacts when they outnumber a quarter of the
    /// live ones; gives memory back by the [`shrink`](crate::registry::shrink) rule (the
    /// deque and `gone`; clarified 2026-12-07: before, a class's ready set kept the room of
    /// its largest ready fleet). One comparison a removal but for a shrink, O(entries) after
    /// a quarter of the capacity's worth of removals at least.
    fn trim(&mut self) {
        if !self.gone.is_empty() {
            self.drop_gone();
        }
        shrink(&mut self.entries);
        shrink(&mut self.gone);
    }

    /// [`trim`](Self::trim)'s work on the removed entries.
    fn drop_gone(&mut self) {
        while let Some(last) = self.entries.back() {
            if !self.gone.remove(last) {
                break;
            }
            self.entries.pop_back();
        }
        while let Some(first) = self.entries.front() {
            if !self.gone.remove(first) {
                break;
            }
            self.entries.pop_front();
        }
        let live_in_deque = self.entries.len() - self.gone.len();
        if self.gone.len() > 16 && self.gone.len() * 4 > live_in_deque {
            let gone = std::mem::take(&mut self.gone);
            self.entries.retain(|e| !gone.contains(e));
        }
    }

    /// Room of the deque (entries), for tests of the bounds.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Key> + '_ {
        Merge::new(
            self.entries.iter().filter(|e| self.live(e)).copied(),
            self.late.iter().copied(),
        )
    }

    /// The greatest entry below `upper`. O(1) when the newest is (`claim`'s usual case), else
    /// O(log n) plus the removed entries passed.
    pub fn newest_below(&self, upper: Key) -> Option<Key> {
        let end = match self.entries.back() {
            Some(last) if *last < upper => self.entries.len(),
            _ => self.entries.partition_point(|e| *e < upper),
        };
        let in_deque = self
            .entries
            .range(..end)
            .rev()
            .find(|e| self.live(e))
            .copied();
        // `None` orders below every `Some`. The B-tree's last entry is found down its right
        // edge without comparing keys: `claim`'s usual `upper` is above it.
        let in_late = match self.late.last() {
            None => return in_deque,
            Some(last) if *last < upper => Some(*last),
            Some(_) => self.late.range(..upper).next_back().copied(),
        };
        in_deque.max(in_late)
    }

    /// Up to `want` entries above `lower`, oldest first.
    pub fn oldest_above(&self, lower: Option<Key>, want: usize) -> Vec<Key> {
        let (from, late_from) = match lower {
            Some(key) => (
                self.entries.partition_point(|e| *e <= key),
                Bound::Excluded(key),
            ),
            None => (0, Bound::Unbounded),
        };
        Merge::new(
            self.entries.range(from..).filter(|e| self.live(e)).copied(),
            self.late.range((late_from, Bound::Unbounded)).copied(),
        )
        .take(want)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::super::super::test_rng::XorShift;
    use super::*;

    fn id(n: u8) -> WorkerId {
        let mut b = [0u8; 16];
        b[15] = n;
        WorkerId::from_bytes(b).unwrap()
    }

    #[test]
    fn a_ready_set_answers_as_a_sorted_set_does() {
        // Against a BTreeSet model: inserts mostly at the back, some below it (equal
        // timestamps, the clock going back), removals at the ends and in the middle, re-inserts
        // of removed keys; every read compared after every step.
        use std::collections::BTreeSet;
        let mut set = ReadySet::default();
        let mut model: BTreeSet<(Timestamp, WorkerId)> = BTreeSet::new();
        let ids: Vec<WorkerId> = (1..=60u8).map(id).collect();
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut now: Timestamp = 1_000;
        for step in 0..20_000u32 {
            let x = rng.next();
            let pick = ids[(x % 60) as usize];
            match (x >> 8) % 10 {
                0..=3 => {
                    // A worker enters Ready (if it is not ready already).
                    if !model.iter().any(|e| e.1 == pick) {
                        let at = if (x >> 16) % 8 == 0 {
                            now - (x >> 20) % 50
                        } else {
                            now
                        };
                        set.insert(at, pick);
                        model.insert((at, pick));
                    }
                }
                4..=6 => {
                    // It leaves Ready, wherever it is.
                    if let Some(&key) = model.iter().find(|e| e.1 == pick) {
                        assert!(set.remove(key.0, key.1));
                        model.remove(&key);
                    } else {
                        assert!(!set.remove(now, pick));
                    }
                }
                7 => {
                    // claim: the newest leaves.
                    if let Some(&key) = model.iter().next_back() {
                        assert!(set.remove(key.0, key.1));
                        model.remove(&key);
                    }
                }
                _ => now += (x >> 24) % 3,
            }
            assert_eq!(set.len(), model.len(), "step {step}");
            let upper = (now - (x >> 30) % 20, ids[(x >> 40) as usize % 60]);
            assert_eq!(
                set.newest_below(upper),
                model.range(..upper).next_back().copied()
            );
            assert_eq!(
                set.newest_below((Timestamp::MAX, WorkerId::MAX)),
                model.iter().next_back().copied()
            );
            assert_eq!(
                set.oldest_above(Some(upper), 3),
                model
                    .range((Bound::Excluded(upper), Bound::Unbounded))
                    .take(3)
                    .copied()
                    .collect::<Vec<_>>()
            );
            if step % 101 == 0 {
                assert!(set.iter().eq(model.iter().copied()));
                assert!(set.entries.len() <= 2 * model.len() + 20);
            }
        }
        // Restore: pushed unsorted, sorted once.
        let mut restored = ReadySet::default();
        for key in model.iter().rev() {
            restored.push_unsorted(key.0, key.1);
        }
        restored.sort();
        assert!(restored.iter().eq(model.iter().copied()));
    }

    #[test]
    fn a_fleet_made_ready_at_one_instant_keeps_the_order_by_id() {
        // Every key of one millisecond, in random id order (a frozen clock): most land far
        // inside the deque and go to the B-tree. Then claims (newest first), removals anywhere,
        // re-entries at a later millisecond and queries, each compared with a BTreeSet model.
        use std::collections::BTreeSet;
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut random_id = || {
            let bits = (u128::from(rng.next()) << 64) | u128::from(rng.next());
            WorkerId::from_bytes(bits.max(1).to_be_bytes()).unwrap()
        };
        let mut set = ReadySet::default();
        let mut model: BTreeSet<(Timestamp, WorkerId)> = BTreeSet::new();
        let mut now: Timestamp = 5_000;
        for _ in 0..3_000 {
            let id = random_id();
            set.insert(now, id);
            model.insert((now, id));
        }
        assert!(set.late.len() > 1_000, "the burst went to the B-tree");
        assert!(set.iter().eq(model.iter().copied()));
        let newest = (Timestamp::MAX, WorkerId::MAX);
        for step in 0..6_000u32 {
            let x = random_id();
            let pick = x.as_bytes()[0] as usize * model.len().max(1) / 256;
            match x.as_bytes()[1] % 5 {
                0 | 1 => {
                    // claim: the newest leaves.
                    if let Some(&key) = model.iter().next_back() {
                        assert_eq!(set.newest_below(newest), Some(key), "step {step}");
                        assert!(set.remove(key.0, key.1));
                        model.remove(&key);
                    }
                }
                2 => {
                    // Leaves Ready from anywhere.
                    if let Some(&key) = model.iter().nth(pick) {
                        assert!(set.remove(key.0, key.1));
                        model.remove(&key);
                    }
                }
                3 => {
                    // Enters Ready at the frozen instant, or a millisecond later.
                    now += u64::from(x.as_bytes()[2] % 16 == 0);
                    set.insert(now, x);
                    model.insert((now, x));
                }
                _ => {
                    assert!(!set.remove(now, x), "never ready");
                }
            }
            assert_eq!(set.len(), model.len(), "step {step}");
            let upper = model
                .iter()
                .nth(pick)
                .copied()
                .unwrap_or((now, WorkerId::MAX));
            assert_eq!(
                set.newest_below(upper),
                model.range(..upper).next_back().copied()
            );
            assert_eq!(
                set.oldest_above(Some(upper), 4),
                model
                    .range((Bound::Excluded(upper), Bound::Unbounded))
                    .take(4)
                    .copied()
                    .collect::<Vec<_>>()
            );
            assert_eq!(
                set.oldest_above(None, 2),
                model.iter().take(2).copied().collect::<Vec<_>>()
            );
        }
        assert!(set.iter().eq(model.iter().copied()));
    }
}
