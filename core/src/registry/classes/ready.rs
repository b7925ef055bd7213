//! [`ReadySet`]: a class's `Ready` workers by `(idle_since, id)`, the order `claim` promises.

use std::collections::{HashSet, VecDeque};

use crate::clock::Timestamp;
use crate::ids::WorkerId;

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
/// when `gone` exceeds a quarter of the live entries. An insert below the back (the clock
/// went back, or an id below others of the same millisecond) shifts the entries on its
/// shorter side.
#[derive(Debug, Default)]
pub(in crate::registry) struct ReadySet {
    /// Sorted, no duplicates; holds the keys of `gone` too.
    entries: VecDeque<(Timestamp, WorkerId)>,
    /// Keys removed but still in `entries`.
    gone: HashSet<(Timestamp, WorkerId), foldhash::fast::RandomState>,
}

impl ReadySet {
    /// Ready workers.
    pub fn len(&self) -> usize {
        self.entries.len() - self.gone.len()
    }

    fn live(&self, key: &(Timestamp, WorkerId)) -> bool {
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
                self.entries.insert(pos, key);
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
        self.entries.make_contiguous().sort_unstable();
    }

    pub fn remove(&mut self, at: Timestamp, id: WorkerId) -> bool {
        let key = (at, id);
        if self.entries.back() == Some(&key) {
            self.entries.pop_back();
        } else if self.entries.front() == Some(&key) {
            self.entries.pop_front();
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
    /// live ones.
    fn trim(&mut self) {
        if self.gone.is_empty() {
            return;
        }
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
        if self.gone.len() > 16 && self.gone.len() * 4 > self.len() {
            let gone = std::mem::take(&mut self.gone);
            self.entries.retain(|e| !gone.contains(e));
        }
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (Timestamp, WorkerId)> + '_ {
        self.entries.iter().filter(|e| self.live(e)).copied()
    }

    /// The greatest entry below `upper`. O(1) when the newest is (`claim`'s usual case), else
    /// O(log n) plus the removed entries passed.
    pub fn newest_below(&self, upper: (Timestamp, WorkerId)) -> Option<(Timestamp, WorkerId)> {
        let end = match self.entries.back() {
            Some(last) if *last < upper => self.entries.len(),
            _ => self.entries.partition_point(|e| *e < upper),
        };
        self.entries
            .range(..end)
            .rev()
            .find(|e| self.live(e))
            .copied()
    }

    /// Up to `want` entries above `lower`, oldest first.
    pub fn oldest_above(
        &self,
        lower: Option<(Timestamp, WorkerId)>,
        want: usize,
    ) -> Vec<(Timestamp, WorkerId)> {
        let from = match lower {
            Some(key) => self.entries.partition_point(|e| *e <= key),
            None => 0,
        };
        self.entries
            .range(from..)
            .filter(|e| self.live(e))
            .take(want)
            .copied()
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
}
