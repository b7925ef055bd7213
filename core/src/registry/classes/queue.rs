//! [`Queue`]: a class's workers in deadline order (`(timestamp, ticket)`), named by place.

use std::collections::{BTreeMap, VecDeque};

use super::{near_an_end, Merge};
use crate::clock::Timestamp;
use crate::registry::shrink::shrink;

/// A queue position: the timestamp a worker is ordered by, its ticket (a registry-wide
/// counter taken when the entry was made, which orders equal timestamps by arrival), its
/// place (see [`Queue`]).
pub(super) type Place = (Timestamp, u64, u32);

/// The top bit of a ticket marks a removed entry (tickets count from 0 and never reach it).
const DEAD: u64 = 1 << 63;

/// One entry of a [`Queue`]: 20 bytes (packed to an alignment of 4, so that it carries no
/// padding). Scalar fields, not `[u32; 2]` halves: an entry made of halves was assembled on
/// the stack with 4-byte stores and copied into the queue with a 16-byte load, which the CPU
/// cannot forward from those stores (a stall on every `register`, measured at 5% of
/// register + unregister); scalars are stored straight into the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
struct Entry {
    at: u64,
    /// The ticket, with [`DEAD`] set once removed (a removal in the middle keeps the order).
    ticket: u64,
    place: u32,
}

impl Entry {
    fn new(at: Timestamp, ticket: u64, place: u32) -> Entry {
        Entry { at, ticket, place }
    }

    fn key(&self) -> (Timestamp, u64) {
        (self.at, self.ticket & !DEAD)
    }

    fn live(&self) -> bool {
        self.ticket & DEAD == 0
    }

    fn kill(&mut self) {
        self.ticket |= DEAD;
    }

    fn place(&self) -> Place {
        let (at, ticket) = self.key();
        (at, ticket, self.place)
    }
}

/// Workers ordered by `(timestamp, ticket)`, oldest at the front.
///
/// An entry names its worker by its place (shard and slot, see
/// [`InMemoryWorkerRegistry`](crate::InMemoryWorkerRegistry)'s `place`) rather than its id:
/// 20 bytes an entry instead of 32. A reader resolves the place under the shard's lock and
/// keeps the record only if its `birth_ticket` is the entry's ticket (tickets are never
/// reused, so a slot reused by another worker is never mistaken for the entry's).
///
/// Tickets grow with every entry made, so a new entry at the current time goes at the back in
/// O(1), however many workers share its timestamp (a fleet registered or made ready at one
/// instant), and every other operation finds its place by binary search on the full key. A
/// removal in the middle leaves a dead entry (O(log n)); dead entries at the ends are dropped
/// at once and the queue is compacted when they outnumber the live ones, so its length stays
/// below twice the live count plus a constant.
///
/// An entry that arrives far inside the queue (a drained worker taken back to `Ready`
/// re-enters the lifetime queue at its old `created_at`) goes to `late`, a B-tree beside the
/// deque, which reads merge (see [`near_an_end`]): shifting the deque for it was O(n), ~7 µs a
/// worker taken back at 100k (`examples/ready_burst.rs`).
#[derive(Debug, Default)]
pub(in crate::registry) struct Queue {
    entries: VecDeque<Entry>,
    dead: usize,
    /// Place by `(timestamp, ticket)` of the entries that arrived below the back of
    /// `entries`, far from both ends. Disjoint from `entries`.
    late: BTreeMap<(Timestamp, u64), u32>,
}

impl Queue {
    /// Live entries.
    pub fn len(&self) -> usize {
        self.entries.len() - self.dead + self.late.len()
    }

    /// Adds the worker at `place` at `(at, ticket)`: O(1) at the back (the usual case: the
    /// clock does not go back and tickets grow), else a shift of the newer entries.
    pub fn insert(&mut self, at: Timestamp, ticket: u64, place: u32) {
        debug_assert!(ticket & DEAD == 0);
        let entry = Entry::new(at, ticket, place);
        match self.entries.back() {
            Some(last) if last.key() > (at, ticket) => {
                let pos = self.entries.partition_point(|e| e.key() < (at, ticket));
                if near_an_end(pos, self.entries.len()) {
                    self.entries.insert(pos, entry);
                } else {
                    self.late.insert((at, ticket), place);
                }
            }
            _ => {
                // Written in place, field by field: a pushed value is copied from the stack
                // with a load wider than the stores that made it (see [`Entry`]).
                self.entries.push_back(Entry::new(0, 0, 0));
                let back = self.entries.back_mut().expect("just pushed");
                back.at = at;
                back.ticket = ticket;
                back.place = place;
            }
        }
    }

    /// Adds an entry at the back, out of order: [`sort`](Self::sort) must follow before any
    /// other use (restore).
    pub fn push_unsorted(&mut self, at: Timestamp, ticket: u64, place: u32) {
        self.entries.push_back(Entry::new(at, ticket, place));
    }

    /// Sorts after [`push_unsorted`](Self::push_unsorted).
    pub fn sort(&mut self) {
        debug_assert!(self.dead == 0 && self.late.is_empty());
        self.entries
            .make_contiguous()
            .sort_unstable_by_key(Entry::key);
    }

    /// Removes the entry at `(at, ticket)`; false if absent. O(1) for the newest entry (a
    /// worker that leaves right after it came: `register` then `unregister`), else O(log n).
    pub fn remove(&mut self, at: Timestamp, ticket: u64) -> bool {
        let key = (at, ticket);
        if self
            .entries
            .back()
            .is_some_and(|e| e.key() == key && e.live())
        {
            self.entries.pop_back();
            self.trim();
            return true;
        }
        if !self.late.is_empty() && self.late.remove(&key).is_some() {
            return true;
        }
        let pos = self.entries.partition_point(|e| e.key() < key);
        match self.entries.get_mut(pos) {
            Some(e) if e.key() == key && e.live() => e.kill(),
            _ => return false,
        }
        self.dead += 1;
        self.trim();
        true
    }

    /// Drops the dead entries at both ends; compacts when they outnumber the live entries;
    /// gives memory back by the [`shrink`](crate::registry::shrink) rule (clarified
    /// 2026-12-07: before, a queue kept the room of its longest past). One comparison a
    /// removal but for a shrink, O(entries) after a quarter of the capacity's worth of
    /// removals at least.
    fn trim(&mut self) {
        while self.entries.back().is_some_and(|e| !e.live()) {
            self.entries.pop_back();
            self.dead -= 1;
        }
        while self.entries.front().is_some_and(|e| !e.live()) {
            self.entries.pop_front();
            self.dead -= 1;
        }
        if self.dead > 16 && self.dead > self.entries.len() - self.dead {
            self.entries.retain(Entry::live);
            self.dead = 0;
        }
        shrink(&mut self.entries);
    }

    /// Room of the deque (entries), for tests of the bounds.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Live entries as `(timestamp, ticket, place)`, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (Timestamp, u64, u32)> + '_ {
        Merge::new(
            self.entries.iter().filter(|e| e.live()).map(Entry::place),
            self.late
                .iter()
                .map(|(&(at, ticket), &place)| (at, ticket, place)),
        )
    }

    /// Live entries with a timestamp below `before`, oldest first.
    pub fn older_than(
        &self,
        before: Timestamp,
    ) -> impl Iterator<Item = (Timestamp, u64, u32)> + '_ {
        self.iter().take_while(move |e| e.0 < before)
    }

    /// The newest live entry below `upper` in `(timestamp, ticket)` order: O(log n) plus the
    /// dead entries passed.
    #[cfg(test)]
    pub fn newest_below(&self, upper: (Timestamp, u64)) -> Option<Place> {
        let end = self.entries.partition_point(|e| e.key() < upper);
        let in_deque = self
            .entries
            .range(..end)
            .rev()
            .find(|e| e.live())
            .map(Entry::place);
        let in_late = self
            .late
            .range(..upper)
            .next_back()
            .map(|(&(at, ticket), &place)| (at, ticket, place));
        in_deque.max(in_late)
    }

    /// Up to `want` live entries after `lower` in `(timestamp, ticket)` order, oldest first.
    #[cfg(test)]
    pub fn oldest_above(&self, lower: Option<(Timestamp, u64)>, want: usize) -> Vec<Place> {
        use std::ops::Bound;
        let (from, late_from) = match lower {
            Some(key) => (
                self.entries.partition_point(|e| e.key() <= key),
                Bound::Excluded(key),
            ),
            None => (0, Bound::Unbounded),
        };
        Merge::new(
            self.entries
                .range(from..)
                .filter(|e| e.live())
                .map(Entry::place),
            self.late
                .range((late_from, Bound::Unbounded))
                .map(|(&(at, ticket), &place)| (at, ticket, place)),
        )
        .take(want)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_keeps_order_through_middle_removals_and_late_inserts() {
        let mut q = Queue::default();
        for n in 1..=40u32 {
            q.insert(u64::from(n / 2), u64::from(n), n);
        }
        // Out of order (an older timestamp, a newer ticket): lands at the end of its timestamp.
        q.insert(3, 100, 100);
        for n in (2..=38u8).step_by(2) {
            assert!(q.remove(u64::from(n / 2), u64::from(n)));
        }
        assert!(!q.remove(5, 10), "already removed");
        let live: Vec<(u64, u64, u32)> = q.iter().collect();
        assert_eq!(live.len(), q.len());
        assert!(live.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(live.len(), 40 - 19 + 1);
        assert_eq!(q.newest_below((u64::MAX, u64::MAX)), Some((20, 40, 40)));
        assert_eq!(q.newest_below((3, 100)), Some((3, 7, 7)));
        assert_eq!(q.newest_below((3, u64::MAX)), Some((3, 100, 100)));
        assert_eq!(q.newest_below((0, 1)), None);
        assert_eq!(
            q.oldest_above(Some((3, 7)), 2),
            vec![(3, 100, 100), (4, 9, 9)]
        );
        assert_eq!(q.oldest_above(None, 1), vec![(0, 1, 1)]);
        // Times and tickets past 32 bits keep their order (two halves each).
        let mut big = Queue::default();
        big.insert(u64::MAX - 1, (1 << 62) + 1, 1);
        big.insert(1 << 33, 1 << 40, 2);
        big.insert(1 << 33, 5, 3);
        let order: Vec<u32> = big.iter().map(|e| e.2).collect();
        assert_eq!(order, vec![3, 2, 1]);
        assert!(big.remove(1 << 33, 1 << 40));
        assert_eq!(big.iter().map(|e| e.2).collect::<Vec<_>>(), vec![3, 1]);
        assert_eq!(std::mem::size_of::<Entry>(), 20);
        assert!(q.older_than(4).all(|e| e.0 < 4));
    }

    #[test]
    fn one_timestamp_for_a_whole_queue_keeps_arrival_order() {
        // A fleet made ready at one instant: arrivals go to the back, removals by binary search.
        let mut q = Queue::default();
        for t in 0..50_000u32 {
            q.insert(7, u64::from(t), t.wrapping_mul(2_654_435_761));
        }
        assert_eq!(q.entries.len(), 50_000);
        for t in (49_900..50_000u32).rev() {
            assert_eq!(
                q.newest_below((u64::MAX, u64::MAX)),
                Some((7, u64::from(t), t.wrapping_mul(2_654_435_761)))
            );
            assert!(q.remove(7, u64::from(t)));
        }
        assert!(q.remove(7, 20_000));
        assert_eq!(
            q.newest_below((7, 20_001)),
            Some((7, 19_999, 19_999u32.wrapping_mul(2_654_435_761)))
        );
        assert_eq!(q.len(), 50_000 - 101);
    }

    #[test]
    fn entries_taken_back_far_inside_the_queue_keep_the_order() {
        // A lifetime queue of one class (created at one instant, tickets in arrival order); its
        // workers leave (drained) and come back (taken back to Ready) at their old place, in an
        // order of their own, among arrivals at the back and removals anywhere: compared with
        // a BTreeMap model after every step.
        use std::collections::BTreeMap;
        use std::ops::Bound;

        use super::super::super::test_rng::XorShift;
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut q = Queue::default();
        let mut model: BTreeMap<(Timestamp, u64), u32> = BTreeMap::new();
        let mut out: Vec<(Timestamp, u64, u32)> = Vec::new();
        let mut ticket = 0u64;
        for _ in 0..2_000 {
            q.insert(9, ticket, ticket as u32);
            model.insert((9, ticket), ticket as u32);
            ticket += 1;
        }
        let mut went_late = false;
        for step in 0..8_000u32 {
            let x = rng.next();
            let pick = (x >> 8) as usize % model.len().max(1);
            match x % 5 {
                0 | 1 => {
                    // Leaves (drained), wherever it is.
                    if let Some((&(at, t), &place)) = model.iter().nth(pick) {
                        assert!(q.remove(at, t), "step {step}");
                        model.remove(&(at, t));
                        out.push((at, t, place));
                    }
                }
                2 | 3 => {
                    // Comes back at its old place.
                    if !out.is_empty() {
                        let (at, t, place) = out.swap_remove((x >> 20) as usize % out.len());
                        q.insert(at, t, place);
                        model.insert((at, t), place);
                        went_late |= !q.late.is_empty();
                    }
                }
                _ => {
                    // A new worker at the back.
                    q.insert(9 + (x >> 40) % 2, ticket, ticket as u32);
                    model.insert((9 + (x >> 40) % 2, ticket), ticket as u32);
                    ticket += 1;
                }
            }
            assert_eq!(q.len(), model.len(), "step {step}");
            let upper = model.keys().nth(pick).copied().unwrap_or((9, ticket));
            let as_place = |(&(at, t), &place): (&(Timestamp, u64), &u32)| (at, t, place);
            assert_eq!(
                q.newest_below(upper),
                model.range(..upper).next_back().map(as_place)
            );
            assert_eq!(
                q.oldest_above(Some(upper), 3),
                model
                    .range((Bound::Excluded(upper), Bound::Unbounded))
                    .take(3)
                    .map(as_place)
                    .collect::<Vec<_>>()
            );
            if step % 97 == 0 {
                assert!(q.iter().eq(model.iter().map(as_place)));
                assert!(q.older_than(10).eq(model.range(..(10, 0)).map(as_place)));
            }
        }
        assert!(went_late, "some came back far inside the queue");
        assert!(q.iter().eq(model.iter().map(|(&(at, t), &p)| (at, t, p))));
    }
}
