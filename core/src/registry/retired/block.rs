//! [`Block`]: retired ids in retirement order, with an exact position table (see the module
//! doc of `retired`).

use std::hash::BuildHasher;

use crate::ids::WorkerId;

/// The largest block: positions `1..=MAX_BLOCK` fit the `u16` position tables.
pub(super) const MAX_BLOCK: usize = 1 << 15;

/// Ids in retirement order with an exact position table.
pub(super) struct Block {
    /// The ids' bits, or for an id minted here its counter (see `minted`): the counter is
    /// what the minted set needs when the id is forgotten, and decoding it again would cost
    /// a permutation.
    pub(super) ids: Vec<u128>,
    /// Bit `pos` set: `ids[pos]` is a minted id's counter.
    minted: Vec<u64>,
    /// Position + 1 in `ids` of each of `ids[..indexed]`, by hash (linear probing, 0 for
    /// empty); a power of two, at most half full. The newest ids are indexed in batches
    /// (with the filter's), so that `unregister` only appends. Minted ids are not in it (the
    /// bitmap answers for them), but count among `ids[..indexed]`.
    slots: Box<[u16]>,
    pub(super) indexed: usize,
    /// Ids in `slots`.
    keyed: usize,
    /// Ids at the front already forgotten (only the oldest block has any).
    pub(super) start: usize,
    /// The most ids this block takes (at most [`MAX_BLOCK`]).
    pub(super) cap: usize,
}

impl Block {
    /// Heap bytes held.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.ids.capacity() * 16 + self.slots.len() * 2 + self.minted.capacity() * 8
    }

    pub(super) fn new(cap: usize) -> Block {
        Block {
            ids: Vec::new(),
            minted: Vec::new(),
            slots: vec![0; 16].into_boxed_slice(),
            indexed: 0,
            keyed: 0,
            start: 0,
            cap,
        }
    }

    /// The position table's home of hash `h`: bits 32 and up, which the filter does not use
    /// for its bucket (below 2^32 buckets); the fingerprint's bits 48 and up are only reached
    /// by tables of more than 2^16 slots, which a block never has.
    pub(super) fn home(h: u64, mask: usize) -> usize {
        (h >> 32) as usize & mask
    }

    /// Appends `id`, minted from `minted` if it was; `indexed`: it needs no position and
    /// every id before it is indexed.
    pub(super) fn push(&mut self, id: WorkerId, minted: Option<u64>, indexed: bool) {
        debug_assert!(self.ids.len() < self.cap);
        debug_assert!(!indexed || self.indexed == self.ids.len());
        let pos = self.ids.len();
        if pos % 64 == 0 {
            self.minted.push(0);
        }
        match minted {
            Some(counter) => {
                self.ids.push(u128::from(counter));
                self.minted[pos / 64] |= 1 << (pos % 64);
            }
            None => self.ids.push(id.as_uuid().as_u128()),
        }
        if indexed {
            self.indexed += 1;
        }
    }

    /// The counter of the id at `pos` if it was minted here.
    #[inline]
    pub(super) fn counter_at(&self, pos: usize) -> Option<u64> {
        (self.minted[pos / 64] >> (pos % 64) & 1 == 1).then(|| self.ids[pos] as u64)
    }

    /// The id at `pos`.
    pub(super) fn id_at(&self, pos: usize) -> WorkerId {
        match self.counter_at(pos) {
            Some(counter) => WorkerId::from_counter(counter),
            None => as_id(self.ids[pos]),
        }
    }

    /// Indexes the ids not yet in the position table (minted ids are skipped).
    pub(super) fn index(&mut self, hasher: &foldhash::fast::RandomState) {
        while self.indexed < self.ids.len() {
            if self.counter_at(self.indexed).is_some() {
                self.indexed += 1;
                continue;
            }
            if (self.keyed + 1) * 2 > self.slots.len() {
                let size = self.slots.len() * 2;
                self.slots = vec![0; size].into_boxed_slice();
                for pos in 0..self.indexed {
                    if self.counter_at(pos).is_none() {
                        let h = hasher.hash_one(as_id(self.ids[pos]));
                        Self::place(&mut self.slots, h, pos);
                    }
                }
            }
            let h = hasher.hash_one(as_id(self.ids[self.indexed]));
            Self::place(&mut self.slots, h, self.indexed);
            self.indexed += 1;
            self.keyed += 1;
        }
    }

    pub(super) fn place(slots: &mut [u16], h: u64, pos: usize) {
        let mask = slots.len() - 1;
        let mut i = Self::home(h, mask);
        while slots[i] != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = u16::try_from(pos + 1).expect("a block holds at most 2^15 ids");
    }

    /// Whether `id` (hash `h`, not a minted id) is here and not forgotten: the position
    /// table, then the ids not yet indexed (fewer than a batch).
    pub(super) fn find(&self, id: &WorkerId, h: u64) -> bool {
        let bits = id.as_uuid().as_u128();
        let mask = self.slots.len() - 1;
        let mut i = Self::home(h, mask);
        loop {
            let pos = self.slots[i] as usize;
            if pos == 0 {
                break;
            }
            // A forgotten copy (the id was retired again since) does not end the search.
            if pos > self.start && self.ids[pos - 1] == bits {
                return true;
            }
            i = (i + 1) & mask;
        }
        // A minted id's entry is its counter, which may equal some id's bits: skipped.
        (self.indexed.max(self.start)..self.ids.len())
            .any(|pos| self.ids[pos] == bits && self.counter_at(pos).is_none())
    }
}

/// The id whose bits an entry of a block holds (an id of another origin: never nil).
pub(super) fn as_id(bits: u128) -> WorkerId {
    WorkerId::from_bytes(bits.to_be_bytes()).expect("a retired id is not nil")
}
