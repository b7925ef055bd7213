//! [`FreeSlots`]: a shard's free slab slots, handed out lowest first.
//!
//! Why lowest first: records never move (the startup and lifetime queues name them by slot),
//! so a slab can only give back its free *tail*. Reusing the lowest free slot packs the live
//! records at the front: once the old high-slot workers of a shrunk fleet have died, the tail
//! is free and the slab and its heartbeat column are truncated (a last-freed-first list kept
//! refilling slots all over the old fleet's range, and the tail never emptied).
//!
//! A hierarchical bitmap: one bit a slot (set when free), and above it levels of one bit a
//! word of the level below (set when that word is not zero), up to a top level of one word.
//! Finding the lowest (or highest) free slot reads one word a level: three at 16k slots a
//! shard (a registry of 1M), five at the 2^26 a shard may hold. Insert and remove write one
//! word, and a word a level above only when a word fills from or empties to zero. Memory: one
//! bit a slot of the slab, plus 1/63 of that.

use super::shrink::shrink;

/// Bits of a word.
const BITS: usize = 64;

/// A set of free slots. See the module doc.
#[derive(Debug, Default)]
pub(super) struct FreeSlots {
    /// `levels[0]`: bit `s` set when slot `s` is free. `levels[l + 1]`: bit `j` set exactly
    /// when word `j` of `levels[l]` is not zero. The last level has at most one word.
    levels: Vec<Vec<u64>>,
}

impl FreeSlots {
    /// Free slots (counted: for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.levels
            .first()
            .map_or(0, |bits| bits.iter().map(|w| w.count_ones() as usize).sum())
    }

    /// Whether `slot` is free.
    #[inline]
    pub fn contains(&self, slot: u32) -> bool {
        let s = slot as usize;
        self.levels
            .first()
            .and_then(|bits| bits.get(s / BITS))
            .is_some_and(|w| w >> (s % BITS) & 1 == 1)
    }

    /// Marks `slot` free (it was not).
    pub fn insert(&mut self, slot: u32) {
        debug_assert!(!self.contains(slot), "slot {slot} freed twice");
        let s = slot as usize;
        if self
            .levels
            .first()
            .is_none_or(|bits| s / BITS >= bits.len())
        {
            self.make_room(s);
        }
        let mut i = s;
        for words in self.levels.iter_mut() {
            let w = &mut words[i / BITS];
            let was = *w;
            *w = was | 1 << (i % BITS);
            if was != 0 {
                // The levels above already mark this word.
                return;
            }
            i /= BITS;
        }
    }

    /// Room for slot `s` at every level, and levels up to a top of one word.
    #[cold]
    fn make_room(&mut self, s: usize) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let mut need = s / BITS + 1;
        let mut l = 0;
        loop {
            if l == self.levels.len() {
                // A new top: one bit a word of the old top, set for its words not zero.
                let below = &self.levels[l - 1];
                let mut top = vec![0u64; below.len().div_ceil(BITS)];
                for (j, w) in below.iter().enumerate() {
                    if *w != 0 {
                        top[j / BITS] |= 1 << (j % BITS);
                    }
                }
                self.levels.push(top);
            }
            let top = l + 1 == self.levels.len();
            let words = &mut self.levels[l];
            if words.len() < need {
                words.resize(need, 0);
            }
            if top && words.len() <= 1 {
                return;
            }
            need = words.len().div_ceil(BITS);
            l += 1;
        }
    }

    /// Marks `slot` taken (it was free).
    pub fn remove(&mut self, slot: u32) {
        debug_assert!(self.contains(slot), "slot {slot} is not free");
        let mut i = slot as usize;
        for words in self.levels.iter_mut() {
            let w = &mut words[i / BITS];
            *w &= !(1 << (i % BITS));
            if *w != 0 {
                return;
            }
            i /= BITS;
        }
    }

    /// The lowest free slot.
    #[inline]
    pub fn first(&self) -> Option<u32> {
        let top = *self.levels.last()?.first()?;
        if top == 0 {
            return None;
        }
        let mut i = top.trailing_zeros() as usize;
        for words in self.levels.iter().rev().skip(1) {
            i = i * BITS + words[i].trailing_zeros() as usize;
        }
        Some(i as u32)
    }

    /// Takes the lowest free slot (the shard finds it once, with `first`, and removes it).
    #[cfg(test)]
    pub fn pop_first(&mut self) -> Option<u32> {
        let slot = self.first()?;
        self.remove(slot);
        Some(slot)
    }

    /// Calls `f` with `min(taken, target)` distinct slots below `slots` that are *not* free,
    /// in ascending order; `taken` is their number (the shard's records). Whatever the
    /// layout of the free slots, the calls reach that count.
    ///
    /// - `taken <= target`: every taken slot (the sample is exact).
    /// - `taken > target`, with `n = target`: `n` points spread evenly over the slots at a
    ///   constant stride, `slots % n / 2 + i * (slots / n)` for `i` in `0..n`; the call of
    ///   point `i` is the first taken slot at or after it and after the previous call's slot,
    ///   or — when that one would leave fewer than `n - 1 - i` taken slots after it, or there
    ///   is none — the `(n - i)`-th last taken slot, and the calls left are the taken slots
    ///   after it (clarified 2026-12-07: before, the calls were the taken slots of ranks
    ///   evenly spread, found by counting the taken slots of every word; now no rank is
    ///   counted). So the calls are spread over the slots, not evenly over the taken slots'
    ///   ranks: a taken slot just after a run of free slots is likelier called than one
    ///   amid taken slots. Every run of consecutive taken slots holds a call when, with the
    ///   free slots just before its first, it spans a point (any `slots / n` consecutive
    ///   slots from the first point on hold one): every quarter of the taken slots holds a
    ///   call once they are at least `4 * (slots / n + n)`. Without a free slot (`taken ==
    ///   slots`) the calls are the points, as the ranks were.
    ///
    /// Cost: O(calls) when no slot below `slots` is free (no word read). Else, for `taken <=
    /// target`, one word read a 64 slots below `slots` and a bit step a call; for `taken >
    /// target`, a word read and a bit test a call whose point is taken (one call's place
    /// does not wait for the call before, so the reads that follow overlap), plus, for a
    /// call whose point is free or already passed, a word read a 64 slots from there to its
    /// slot (these stretches never overlap: at most one read a 64 slots in all); and, only
    /// once a call lies past slot `taken - n + i` (below which the `(n - i)`-th last taken
    /// slot cannot lie), the bound of the last calls: a word read and a popcount a 64 slots
    /// from that taken slot to the end, then a word read a call left. No write, no division
    /// a call.
    #[inline]
    pub fn sample_taken(&self, slots: usize, taken: usize, target: usize, mut f: impl FnMut(u32)) {
        let n = taken.min(target);
        if n == 0 {
            return;
        }
        if taken == slots {
            // A constant stride: the reads of the column it leads to are a stride the
            // processor's prefetcher follows (a step alternating between two lengths read 40 %
            // slower).
            let step = slots / n;
            let mut at = slots % n / 2;
            for _ in 0..n {
                f(at as u32);
                at += step;
            }
            return;
        }
        let taken_slots =
            TakenSlots::new(self.levels.first().map_or(&[][..], Vec::as_slice), slots);
        if taken <= target {
            for w in 0..slots.div_ceil(BITS) {
                let mut live = taken_slots.word(w);
                while live != 0 {
                    f((w * BITS) as u32 + live.trailing_zeros());
                    live &= live - 1;
                }
            }
            return;
        }
        let stride = slots / n;
        let mut point = slots % n / 2;
        // The lowest slot the next call may take (the previous call's slot + 1).
        let mut from = 0;
        // Call `i` at or below `taken - n + i` leaves enough taken slots after it.
        let low_bound = taken - n;
        // Once a call lies past `taken - n + i`: the `(n - i)`-th last taken slot, which
        // bounds call `i` (it leaves `n - 1 - i` taken slots after it); then moved on with
        // the calls.
        let mut bound: Option<usize> = None;
        for i in 0..n {
            // The usual call: its point is taken, after the previous call and below the
            // bound. One word read and a bit test; its place depends on its point alone, not
            // on the call before, so the processor overlaps the calls' column reads.
            if bound.is_none()
                && from <= point
                && point <= low_bound + i
                && !taken_slots.is_free(point)
            {
                f(point as u32);
                from = point + 1;
                point += stride;
                continue;
            }
            // The scans of these calls, from `max(point, from)` to the call's slot, never
            // overlap: one word read a 64 slots in all.
            let slot = taken_slots.next(point.max(from));
            if bound.is_some() || slot.is_none_or(|s| s > low_bound + i) {
                let b = bound.unwrap_or_else(|| taken_slots.nth_last(n - 1 - i));
                if slot.is_none_or(|s| s > b) {
                    // Every call left is one of the last `n - i` taken slots.
                    let mut s = b;
                    for _ in i..n {
                        f(s as u32);
                        s = taken_slots.next(s + 1).unwrap_or(slots);
                    }
                    return;
                }
                bound = taken_slots.next(b + 1);
            }
            let s = slot.unwrap_or_default();
            f(s as u32);
            from = s + 1;
            point += stride;
        }
    }

    /// Forgets the room of every slot from `slots` on (none of which is free), and gives its
    /// memory back by the [`shrink`](super::shrink) rule.
    pub fn truncate(&mut self, slots: usize) {
        let mut need = slots;
        for words in self.levels.iter_mut() {
            need = need.div_ceil(BITS);
            debug_assert!(words.iter().skip(need).all(|w| *w == 0));
            words.truncate(need);
            shrink(words);
        }
    }

    /// Words held by the levels (their capacities), for tests of the bounds.
    #[cfg(test)]
    pub fn capacity_words(&self) -> usize {
        self.levels.iter().map(Vec::capacity).sum()
    }
}

/// The taken slots below `slots` of a bitmap of free slots, found word by word.
struct TakenSlots<'a> {
    free: &'a [u64],
    slots: usize,
}

impl<'a> TakenSlots<'a> {
    fn new(free: &'a [u64], slots: usize) -> Self {
        TakenSlots { free, slots }
    }

    /// Word `w` of the taken bits (a slot past the bitmap is taken, one from `slots` on is
    /// not).
    #[inline]
    fn word(&self, w: usize) -> u64 {
        let live = !self.free.get(w).copied().unwrap_or(0);
        if (w + 1) * BITS > self.slots {
            live & ((1u64 << (self.slots % BITS)) - 1)
        } else {
            live
        }
    }

    /// Whether slot `s` (below `slots`) is free.
    #[inline]
    fn is_free(&self, s: usize) -> bool {
        self.free
            .get(s / BITS)
            .is_some_and(|w| w >> (s % BITS) & 1 == 1)
    }

    /// The first taken slot at or after `at`: one word read, and one a word of free slots
    /// skipped.
    #[inline]
    fn next(&self, at: usize) -> Option<usize> {
        if at >= self.slots {
            return None;
        }
        let mut w = at / BITS;
        let mut live = self.word(w) & (u64::MAX << (at % BITS));
        while live == 0 {
            w += 1;
            if w * BITS >= self.slots {
                return None;
            }
            live = self.word(w);
        }
        Some(w * BITS + live.trailing_zeros() as usize)
    }

    /// The `k`-th (from 0) last taken slot, which exists: one word read a 64 slots from it
    /// to the end, and a bit step a taken slot of its word after it.
    fn nth_last(&self, k: usize) -> usize {
        let mut left = k;
        for w in (0..self.slots.div_ceil(BITS)).rev() {
            let mut live = self.word(w);
            let count = live.count_ones() as usize;
            if left < count {
                for _ in 0..left {
                    live &= !(1u64 << (BITS - 1 - live.leading_zeros() as usize));
                }
                return w * BITS + (BITS - 1 - live.leading_zeros() as usize);
            }
            left -= count;
        }
        unreachable!("fewer than {} taken slots", k + 1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::super::test_rng::XorShift;
    use super::*;

    #[test]
    fn free_slots_answer_as_a_sorted_set_does() {
        // Inserts, removals, pops of the lowest and truncations of a free tail, against a
        // BTreeSet, over ranges that take one to four levels.
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for range in [50u32, 3_000, 300_000] {
            let mut set = FreeSlots::default();
            let mut model: BTreeSet<u32> = BTreeSet::new();
            let mut end = range;
            for step in 0..20_000u32 {
                let s = rng.below(end.max(1) as usize) as u32;
                match rng.below(8) {
                    0..=2 if !model.contains(&s) => {
                        set.insert(s);
                        model.insert(s);
                    }
                    3 | 4 if model.contains(&s) => {
                        set.remove(s);
                        model.remove(&s);
                    }
                    5 => assert_eq!(set.pop_first(), model.pop_first(), "step {step}"),
                    6 if rng.below(100) == 0 => {
                        // The slab's tail goes: every slot from `end` on leaves the set.
                        end = rng.below(range as usize + 1) as u32;
                        while model.last().is_some_and(|&l| l >= end) {
                            let l = model.pop_last().unwrap();
                            set.remove(l);
                        }
                        set.truncate(end as usize);
                        if rng.below(2) == 0 {
                            end = range;
                        }
                    }
                    _ => {}
                }
                assert_eq!(set.len(), model.len());
                assert_eq!(set.first(), model.first().copied(), "step {step}");
                assert_eq!(set.contains(s), model.contains(&s));
            }
        }
    }

    #[test]
    fn a_sample_of_the_taken_slots_reaches_its_count_evenly_whatever_the_layout() {
        let mut rng = XorShift(0x6a09_e667_f3bc_c908);
        for slots in [0usize, 1, 63, 64, 65, 700, 5_000] {
            for free_in_8 in [0, 1, 4, 7, 8] {
                let mut set = FreeSlots::default();
                for s in 0..slots as u32 {
                    if rng.below(8) < free_in_8 {
                        set.insert(s);
                    }
                }
                let taken: Vec<u32> = (0..slots as u32).filter(|&s| !set.contains(s)).collect();
                for target in [1, 5, 64, 512, 10_000] {
                    let mut got = Vec::new();
                    set.sample_taken(slots, taken.len(), target, |s| got.push(s));
                    assert_eq!(
                        got,
                        sample_model(slots, &taken, target),
                        "{slots} slots, {free_in_8}/8 free, target {target}"
                    );
                }
            }
        }
    }

    /// A fleet that shrank and grew back into its lowest free slots: its first slots all
    /// taken, one in 10 of the others. When the points past the dense head outnumber the
    /// taken slots there, the last calls are bounded by the slots left: the count is still
    /// reached, the last calls are the last taken slots, and the head is sampled too. The
    /// reverse (a sparse head, a dense tail) packs calls after the sparse run.
    #[test]
    fn a_sample_of_a_regrown_fleet_reaches_its_count() {
        for (slots, dense_head) in [(5_000usize, true), (5_000, false), (20_000, true)] {
            let head = slots * 3 / 10;
            let mut set = FreeSlots::default();
            for s in 0..slots {
                let in_head = (s < head) == dense_head;
                if !in_head && s % 10 != 9 {
                    set.insert(s as u32);
                }
            }
            let taken: Vec<u32> = (0..slots as u32).filter(|&s| !set.contains(s)).collect();
            let mut got = Vec::new();
            set.sample_taken(slots, taken.len(), 512, |s| got.push(s));
            assert_eq!(
                got,
                sample_model(slots, &taken, 512),
                "{slots}, {dense_head}"
            );
            assert_eq!(got.len(), 512);
            assert!(
                got.iter().any(|&s| (s as usize) < head),
                "the head is sampled"
            );
            assert!(
                got.iter().any(|&s| (s as usize) >= head),
                "the tail is sampled"
            );
            if dense_head && slots / 512 < 10 {
                // More points (one in `slots / 512`) than taken slots (one in 10) past the
                // head: the bound, the last calls are the last taken slots.
                assert_eq!(got[got.len() - 20..], taken[taken.len() - 20..]);
            }
        }
    }

    /// The sample of [`FreeSlots::sample_taken`] by its doc, naively: every taken slot, or for
    /// each point the first taken slot at or after it and after the previous call's, unless
    /// that lies past (or there is none before) the slot that leaves just enough taken slots
    /// for the calls left.
    fn sample_model(slots: usize, taken: &[u32], target: usize) -> Vec<u32> {
        if taken.len() <= target {
            return taken.to_vec();
        }
        let n = target;
        let mut from = 0;
        (0..n)
            .map(|i| {
                let point = (slots % n / 2 + i * (slots / n)) as u32;
                let bound = taken[taken.len() - n + i];
                let first = taken.get(taken.partition_point(|&s| s < point.max(from)));
                let call = first.map_or(bound, |&s| s.min(bound));
                from = call + 1;
                call
            })
            .collect()
    }

    /// A layout of free slots: runs of taken and free slots of random lengths (a fleet that
    /// shrank, then grew back into its lowest free slots), or each slot free with a chance.
    fn layouts() -> impl Strategy<Value = (usize, Vec<bool>)> {
        let runs = prop::collection::vec((0usize..300, 0usize..300), 0..40).prop_map(|runs| {
            let mut free = Vec::new();
            for (taken, gap) in runs {
                free.extend(std::iter::repeat_n(false, taken));
                free.extend(std::iter::repeat_n(true, gap));
            }
            free
        });
        let scattered = (0usize..6_000, 0u32..=100, any::<u64>()).prop_map(|(slots, pct, seed)| {
            let mut rng = XorShift(seed | 1);
            (0..slots).map(|_| (rng.below(100) as u32) < pct).collect()
        });
        let free = prop_oneof![runs, scattered];
        (prop_oneof![Just(512usize), 1usize..80, 1usize..700], free)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Whatever the layout: distinct taken slots only, ascending, every one of them when
        /// they are at most the target, exactly the target's count when more; the rule of the
        /// doc (against the naive model); and spread: every quarter of the taken slots (by
        /// rank) holds a call once they are at least `4 * (slots / target + target)`.
        #[test]
        fn a_sample_holds_distinct_taken_slots_reaches_its_count_and_spreads(
            (target, free) in layouts()
        ) {
            let slots = free.len();
            let mut set = FreeSlots::default();
            for (s, _) in free.iter().enumerate().filter(|(_, f)| **f) {
                set.insert(s as u32);
            }
            let taken: Vec<u32> = (0..slots as u32).filter(|&s| !free[s as usize]).collect();
            let mut got = Vec::new();
            set.sample_taken(slots, taken.len(), target, |s| got.push(s));
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "ascending, distinct: {got:?}");
            prop_assert!(got.iter().all(|&s| (s as usize) < slots && !free[s as usize]));
            if taken.len() <= target {
                prop_assert_eq!(&got, &taken);
            } else {
                prop_assert_eq!(got.len(), target);
            }
            prop_assert_eq!(&got, &sample_model(slots, &taken, target));
            if taken.len() > target && taken.len() >= 4 * (slots / target + target) {
                let quarter = |s: u32| taken.partition_point(|&t| t < s) * 4 / taken.len();
                let mut calls = [0; 4];
                for &s in &got {
                    calls[quarter(s)] += 1;
                }
                prop_assert!(calls.iter().all(|&c| c > 0), "calls by quarter {calls:?}");
            }
        }
    }

    #[test]
    fn a_truncated_set_gives_its_words_back() {
        let mut set = FreeSlots::default();
        for s in 0..1_000_000u32 {
            set.insert(s);
        }
        let peak = set.capacity_words();
        assert!(peak >= 1_000_000 / 64);
        for s in (1_000..1_000_000u32).rev() {
            set.remove(s);
        }
        set.truncate(1_000);
        assert!(set.capacity_words() <= 4 * 64, "{}", set.capacity_words());
        assert_eq!(set.first(), Some(0));
        assert_eq!(set.len(), 1_000);
    }
}
