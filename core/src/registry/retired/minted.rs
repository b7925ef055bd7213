//! [`MintedSet`]: the counters of the remembered ids this process minted, as a bitmap (see the
//! module doc of `retired`).

use std::collections::{HashSet, VecDeque};

/// The counters of the remembered minted ids (see the module doc): those from `64 * base` on
/// as bits of `words` (at most `span` words), those below in `below`.
#[derive(Debug)]
pub(super) struct MintedSet {
    /// Bit `c % 64` of word `c / 64 - base` for counter `c`; no zero word at either end.
    pub(super) words: VecDeque<u64>,
    /// The word number of `words[0]`. Never decreases, which keeps the split exact: a counter
    /// at or above `64 * base` is only ever in `words`, one below only in `below`.
    pub(super) base: u64,
    /// Counters below `64 * base`.
    pub(super) below: HashSet<u64, foldhash::fast::RandomState>,
    /// The most words kept: `limit / 16` (half a byte an id remembered) within [16, 2^16].
    pub(super) span: u64,
}

impl MintedSet {
    pub(super) fn new(limit: usize) -> MintedSet {
        MintedSet {
            words: VecDeque::new(),
            base: 0,
            below: HashSet::default(),
            span: Self::span_for(limit),
        }
    }

    pub(super) fn span_for(limit: usize) -> u64 {
        (limit as u64 / 16).clamp(16, 1 << 16)
    }

    pub(super) fn set_span(&mut self, limit: usize) {
        self.span = Self::span_for(limit);
        while self.words.len() as u64 > self.span {
            self.pop_front();
        }
    }

    #[inline]
    pub(super) fn contains(&self, counter: u64) -> bool {
        let word = counter / 64;
        if word >= self.base {
            self.words
                .get((word - self.base) as usize)
                .is_some_and(|w| w >> (counter % 64) & 1 == 1)
        } else {
            !self.below.is_empty() && self.below.contains(&counter)
        }
    }

    /// Files `counter` (not filed).
    pub(super) fn insert(&mut self, counter: u64) {
        let word = counter / 64;
        if word < self.base {
            self.below.insert(counter);
            return;
        }
        // Slide the window until `word` fits (what falls out goes to `below`).
        while !self.words.is_empty() && word - self.base >= self.span {
            self.pop_front();
        }
        if self.words.is_empty() {
            self.base = word;
        }
        let i = (word - self.base) as usize;
        if self.words.len() <= i {
            self.words.resize(i + 1, 0);
        }
        self.words[i] |= 1 << (counter % 64);
    }

    /// Unfiles `counter` (filed).
    pub(super) fn remove(&mut self, counter: u64) {
        let word = counter / 64;
        if word < self.base {
            let removed = self.below.remove(&counter);
            debug_assert!(removed, "a remembered counter is filed");
            return;
        }
        let i = (word - self.base) as usize;
        debug_assert!(self.words[i] >> (counter % 64) & 1 == 1);
        self.words[i] &= !(1 << (counter % 64));
        while self.words.front() == Some(&0) {
            self.words.pop_front();
            self.base += 1;
        }
        while self.words.back() == Some(&0) {
            self.words.pop_back();
        }
    }

    /// Moves the lowest word's counters to `below` and the window's base up past it (and
    /// past the zero words after it).
    pub(super) fn pop_front(&mut self) {
        if let Some(w) = self.words.pop_front() {
            let first = self.base * 64;
            let mut bits = w;
            while bits != 0 {
                self.below.insert(first + u64::from(bits.trailing_zeros()));
                bits &= bits - 1;
            }
            self.base += 1;
        }
        while self.words.front() == Some(&0) {
            self.words.pop_front();
            self.base += 1;
        }
    }

    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.words.capacity() * 8 + self.below.capacity() * 9
    }
}
