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

    /// Calls `f` with `min(taken, target)` of the slots below `slots` that are *not* free,
    /// in ascending order, evenly spread over them by rank: with `n = min(taken, target)`,
    /// those of ranks `taken % n / 2 + i * (taken / n)` for `i` in `0..n` (a constant step,
    /// centred; every one of them when `taken` is at most `target`). `taken` is their number (the shard's records). Whatever the layout of
    /// the free slots, the calls reach that count.
    ///
    /// Cost: O(calls) when no slot below `slots` is free (the usual fleet: the slot of rank
    /// `k` is `k`, no word read); else one word read a 64 slots below `slots` (a popcount for
    /// a word with a free slot), and at most 32 bit steps a call (over the word's taken or
    /// free slots, whichever are fewer); no write, no division a call.
    pub fn sample_taken(&self, slots: usize, taken: usize, target: usize, mut f: impl FnMut(u32)) {
        let n = taken.min(target);
        if n == 0 {
            return;
        }
        // A constant step: the reads of the column it leads to are a stride the processor's
        // prefetcher follows (a step alternating between two lengths read 40 % slower).
        let step = taken / n;
        let mut next = taken % n / 2;
        if taken == slots {
            for _ in 0..n {
                f(next as u32);
                next += step;
            }
            return;
        }
        let bits = self.levels.first().map_or(&[][..], Vec::as_slice);
        let (mut calls, mut seen) = (0, 0);
        for w in 0..slots.div_ceil(BITS) {
            let mut live = !bits.get(w).copied().unwrap_or(0);
            if (w + 1) * BITS > slots {
                live &= (1u64 << (slots % BITS)) - 1;
            }
            let count = if live == u64::MAX {
                BITS
            } else {
                live.count_ones() as usize
            };
            while next < seen + count {
                let bit = nth_set_bit(live, count, (next - seen) as u32);
                f((w * BITS) as u32 + bit);
                calls += 1;
                if calls == n {
                    return;
                }
                next += step;
            }
            seen += count;
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

/// The place of the `k`-th (from 0) set bit of `word`, which has `count` set bits (`k` below
/// it): at most 32 steps, over the set bits or over the clear ones, whichever are fewer.
#[inline]
fn nth_set_bit(word: u64, count: usize, k: u32) -> u32 {
    if count == BITS {
        return k;
    }
    if count < BITS / 2 {
        let mut rest = word;
        for _ in 0..k {
            rest &= rest - 1;
        }
        return rest.trailing_zeros();
    }
    // Each clear bit at or below the place moves it up by one.
    let (mut place, mut clear) = (k, !word);
    while clear != 0 && clear.trailing_zeros() <= place {
        place += 1;
        clear &= clear - 1;
    }
    place
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

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
                    let n = taken.len().min(target);
                    let want: Vec<u32> = (0..n)
                        .map(|i| taken[taken.len() % n / 2 + i * (taken.len() / n)])
                        .collect();
                    assert_eq!(
                        got, want,
                        "{slots} slots, {free_in_8}/8 free, target {target}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_nth_set_bit_is_found_over_set_or_clear_bits() {
        let mut rng = XorShift(0xbb67_ae85_84ca_a73b);
        for _ in 0..2_000 {
            // Sparse, dense and full words.
            let word = match rng.below(3) {
                0 => rng.next() & rng.next() & rng.next(),
                1 => rng.next() | rng.next() | rng.next(),
                _ => u64::MAX,
            };
            let set: Vec<u32> = (0..64).filter(|b| word >> b & 1 == 1).collect();
            for (k, &bit) in set.iter().enumerate() {
                assert_eq!(
                    nth_set_bit(word, set.len(), k as u32),
                    bit,
                    "{word:#x}, {k}"
                );
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
