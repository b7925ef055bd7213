//! [`RetiredIds`]: the ids a registry has unregistered, which `register` refuses (invariant 5:
//! ids are never reused), bounded to the last `limit` retired.
//!
//! # Why not one hash set
//! Every `register` asks whether its (almost always fresh) id was retired, and every
//! `unregister` adds an id and, at the limit, forgets the oldest. A hash set of 2^20 ids is
//! tens of megabytes, far bigger than the caches: each of those three steps was a cache miss
//! (measured at ~45% of register + unregister at 10k workers, issue 12).
//!
//! # Layout
//! - **Blocks in retirement order**: the ids themselves, appended to the newest block; a block
//!   holds up to `block_cap` ids and a small position table (open addressing, `u16` positions,
//!   load at most 1/2) for the exact look-up. Blocks are never rebuilt: forgetting the oldest
//!   id moves the oldest block's `start` on, and a block whose ids are all forgotten is
//!   dropped. So the exact "last `limit` ids" promise holds id by id, and retirement order is
//!   kept for snapshots.
//! - **One filter in front of the blocks**: a cuckoo filter of 16-bit fingerprints (buckets of
//!   four in one `u64`, load at most 1/2), about 4 bytes per id (4 MiB for 2^20 ids). A look-up
//!   reads two buckets; a fresh id is answered "no" there, without touching the blocks. It
//!   supports removal, so forgetting the oldest id removes its fingerprint (two more buckets).
//!   A "maybe" (about 1 in 16,000 fresh ids, or a retired id) is settled by the blocks' exact
//!   tables: **a false positive of the filter never makes `contains` true**.
//! - The filter can always be rebuilt from the blocks: it doubles when half full, shrinks when
//!   a lower limit leaves it at most 1/8 full, and is rebuilt bigger in the (vanishingly rare)
//!   case that an insertion finds no room after its relocations.
//!
//! - **This process's own ids in a bitmap by counter**: an id [`WorkerId::new`] minted decodes
//!   to its counter (`crate::mint`), and such ids skip the filter and the position tables: a
//!   bit per counter in a window of at most `limit / 2` bytes (about 4 counters an id
//!   remembered, at most 64 KiW), which the minting order keeps dense — `unregister` sets a
//!   bit near the newest counters and forgetting clears one near the oldest, each in a few hot
//!   cache lines, and `register` asks one bit (a fresh id is usually above every word). When
//!   a newer counter slides the window on, the counters it leaves below are moved to an exact
//!   hash set (`below`), as is a counter filed below the window (a worker that lived through
//!   more mints than the window spans). Exact: each decodable id's counter is filed in exactly
//!   one of the two, chosen by the window's base, which only ever moves up; an id that does
//!   not decode takes the filter path. The blocks keep every id, in order, for forgetting and
//!   snapshots.
//!
//! Memory: 16 bytes an id in the blocks; for an id of another origin 4 to 8 in their position
//! tables and 4 to 8 in the filter (about 25 bytes an id at the default limit; at most ~40);
//! for a minted id at most half a byte in the bitmap, or ~18 bytes in `below`; plus at most
//! one block of ids already forgotten.
//!
//! # Modules
//! [`block`] holds the blocks, [`filter`] the cuckoo filter, [`minted`] the bitmap of minted
//! ids; this module keeps them in step.

mod block;
mod filter;
mod minted;

use std::collections::VecDeque;
use std::fmt;
use std::hash::BuildHasher;

use crate::ids::WorkerId;

use block::{as_id, Block, MAX_BLOCK};
use filter::{buckets_for, Filter, MIN_BUCKETS};
use minted::MintedSet;

/// How many retired ids an [`InMemoryWorkerRegistry`](super::InMemoryWorkerRegistry) keeps by
/// default.
pub(super) const DEFAULT_RETIRED_ID_LIMIT: usize = 1 << 20;

/// The smallest block (a small limit gets small blocks: at most one block of forgotten ids
/// is kept, which must not outweigh the `limit` remembered).
const MIN_BLOCK: usize = 64;

/// The ids of a registry that were unregistered, the last `limit` of them. See the module doc.
pub(super) struct RetiredIds {
    /// Oldest first; every block but the newest is full.
    blocks: VecDeque<Block>,
    filter: Filter,
    /// Ids remembered (those of the blocks, less the oldest block's `start`).
    len: usize,
    /// Of those, the ids not minted here: the filter's (and the pending batch's).
    filtered: usize,
    limit: usize,
    hasher: foldhash::fast::RandomState,
    /// Fingerprint bits kept: all 16, except in tests that force false positives.
    fp_mask: u16,
    /// Hashes of remembered ids not yet in the filter (the newest, at most [`BATCH`]):
    /// `contains` looks here too.
    pending: Vec<u64>,
    /// Hashes of forgotten ids whose fingerprints are still in the filter (at most
    /// [`BATCH`]): a filter "maybe" for them is settled "no" by the blocks.
    stale: Vec<u64>,
    /// Ids appended since the first one not indexed (0: every id is indexed or minted), so
    /// fewer than [`BATCH`] are not indexed.
    since_flush: usize,
    /// The remembered ids this process minted, by counter (see the module doc).
    minted: MintedSet,
}

/// Fingerprints are added and removed in batches: the random reads of a batch overlap
/// (independent loads), where one at a time each waits for its cache miss.
const BATCH: usize = 32;

impl fmt::Debug for RetiredIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetiredIds")
            .field("len", &self.len)
            .field("limit", &self.limit)
            .field("blocks", &self.blocks.len())
            .field("filter_slots", &self.filter.slots())
            .finish_non_exhaustive()
    }
}

impl Default for RetiredIds {
    fn default() -> Self {
        RetiredIds {
            blocks: VecDeque::new(),
            filter: Filter::with_buckets(MIN_BUCKETS),
            len: 0,
            filtered: 0,
            limit: DEFAULT_RETIRED_ID_LIMIT,
            hasher: foldhash::fast::RandomState::default(),
            fp_mask: u16::MAX,
            pending: Vec::with_capacity(BATCH),
            stale: Vec::with_capacity(BATCH),
            since_flush: 0,
            minted: MintedSet::new(DEFAULT_RETIRED_ID_LIMIT),
        }
    }
}

impl RetiredIds {
    /// Whether `id` is among the last `limit` retired. Exact. An id this process minted: one
    /// bit (or, below the window, a hash set). Another: usually two reads of the filter and a
    /// scan of the pending batch; the blocks only when either says maybe.
    pub fn contains(&self, id: &WorkerId) -> bool {
        self.contains_decoded(id, id.minted_counter())
    }

    /// [`contains`](Self::contains) of `id`, whose [`WorkerId::minted_counter`] the caller
    /// computed (`register` does it before taking its locks: the permutation is a chain of
    /// multiplies that then runs beside the lock and look-up work instead of after it).
    #[inline]
    pub fn contains_decoded(&self, id: &WorkerId, minted: Option<u64>) -> bool {
        debug_assert_eq!(minted, id.minted_counter());
        if self.len == 0 {
            return false;
        }
        match minted {
            Some(counter) => self.minted.contains(counter),
            None => self.contains_hashed(id, self.hash(id)),
        }
    }

    fn contains_hashed(&self, id: &WorkerId, h: u64) -> bool {
        (self.filter.may_contain(h, self.fp_mask) || self.pending.contains(&h)) && self.find(id, h)
    }

    /// Remembers `id` (once: an id already remembered keeps its place), forgetting the oldest
    /// retired id if the limit is reached. With a limit of 0 nothing is remembered.
    pub fn insert(&mut self, id: WorkerId) {
        match id.minted_counter() {
            Some(counter) => {
                if !self.minted.contains(counter) {
                    self.push_minted(id, counter);
                }
            }
            None => {
                let h = self.hash(&id);
                if !self.contains_hashed(&id, h) {
                    self.push(id, h);
                }
            }
        }
    }

    /// Remembers `id`, which the caller knows is not remembered (`unregister`: a registered
    /// id is never among the retired, since `register` and `restore` refuse those). Saves the
    /// look-up of [`insert`](Self::insert).
    #[cfg(test)]
    pub fn insert_new(&mut self, id: WorkerId) {
        self.insert_new_decoded(id, id.minted_counter());
    }

    /// `insert_new` (in tests) of `id`, whose [`WorkerId::minted_counter`] the
    /// caller computed (see [`contains_decoded`](Self::contains_decoded)).
    pub fn insert_new_decoded(&mut self, id: WorkerId, minted: Option<u64>) {
        debug_assert_eq!(minted, id.minted_counter());
        debug_assert!(!self.contains(&id), "{id} is retired already");
        match minted {
            Some(counter) => self.push_minted(id, counter),
            None => {
                let h = self.hash(&id);
                self.push(id, h);
            }
        }
    }

    /// Appends an id of another origin (hash `h`): indexed and filtered in the next batch.
    fn push(&mut self, id: WorkerId, h: u64) {
        if !self.append(id, None) {
            return;
        }
        self.filtered += 1;
        self.pending.push(h);
        self.since_flush += 1;
        if self.since_flush >= BATCH {
            self.flush();
        }
    }

    /// Appends a minted id (of `counter`): its bit, no hash, no filter.
    fn push_minted(&mut self, id: WorkerId, counter: u64) {
        if !self.append(id, Some(counter)) {
            return;
        }
        self.minted.insert(counter);
        if self.since_flush > 0 {
            // Behind an id not indexed yet: the suffix not indexed stays one run.
            self.since_flush += 1;
            if self.since_flush >= BATCH {
                self.flush();
            }
        }
    }

    /// Appends `id` (minted from `minted`, if it was) to the newest block after making room;
    /// false with a limit of 0.
    fn append(&mut self, id: WorkerId, minted: Option<u64>) -> bool {
        if self.limit == 0 {
            return false;
        }
        // Room first: the filter then never holds more than `limit` fingerprints, and a
        // registry at its limit never doubles the filter.
        while self.len >= self.limit {
            self.forget_oldest();
        }
        // A minted id needs no position: counted as indexed unless ids before it wait.
        let indexed = minted.is_some() && self.since_flush == 0;
        let block_cap = self.block_cap();
        match self.blocks.back_mut() {
            Some(block) if block.ids.len() < block.cap => block.push(id, minted, indexed),
            _ => {
                let mut block = Block::new(block_cap);
                block.push(id, minted, indexed);
                self.blocks.push_back(block);
            }
        }
        self.len += 1;
        true
    }

    /// Brings the filter up to date: the stale fingerprints out, the pending ones in
    /// (removals first: the filter then holds exactly the remembered ids, never more).
    fn flush(&mut self) {
        self.index_blocks();
        for h in self.stale.drain(..) {
            let removed = self.filter.remove(h, self.fp_mask);
            debug_assert!(removed, "a forgotten id's fingerprint was in the filter");
        }
        if self.filtered * 2 > self.filter.slots() {
            self.rebuild(self.filter.buckets.len() * 2);
            return;
        }
        for i in 0..self.pending.len() {
            if !self.filter.insert(self.pending[i], self.fp_mask) {
                // A failed insertion dropped some fingerprint: rebuild from the blocks.
                self.rebuild(self.filter.buckets.len() * 2);
                return;
            }
        }
        self.pending.clear();
    }

    /// Sets the limit, forgetting the oldest ids beyond it at once.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        self.minted.set_span(limit);
        while self.len > self.limit {
            self.forget_oldest();
        }
        if self.filter.slots() > 8 * MIN_BUCKETS * 4 && self.filtered * 8 <= self.filter.slots() {
            self.rebuild(buckets_for(self.filtered));
        } else {
            self.flush();
        }
    }

    /// The remembered ids, oldest first.
    pub fn oldest_first(&self) -> Vec<WorkerId> {
        self.iter().collect()
    }

    /// Number of ids remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held (blocks and filter).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        let blocks: usize = self.blocks.iter().map(Block::bytes).sum();
        blocks + self.filter.buckets.len() * 8 + self.minted.bytes()
    }

    fn iter(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.blocks
            .iter()
            .flat_map(|b| (b.start..b.ids.len()).map(|pos| b.id_at(pos)))
    }

    fn hash(&self, id: &WorkerId) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Blocks for the current limit: about an eighth of it, within [MIN_BLOCK, MAX_BLOCK].
    fn block_cap(&self) -> usize {
        (self.limit / 8).clamp(MIN_BLOCK, MAX_BLOCK)
    }

    /// The exact answer: whether a block remembers `id` (hash `h`).
    fn find(&self, id: &WorkerId, h: u64) -> bool {
        self.blocks.iter().rev().any(|b| b.find(id, h))
    }

    fn forget_oldest(&mut self) {
        let Some(block) = self.blocks.front_mut() else {
            return;
        };
        let (pos, counter) = (block.start, block.counter_at(block.start));
        let id = block.ids[pos];
        block.start += 1;
        if block.start == block.ids.len() {
            self.blocks.pop_front();
        }
        self.len -= 1;
        if let Some(counter) = counter {
            self.minted.remove(counter);
            return;
        }
        self.filtered -= 1;
        let h = self.hasher.hash_one(as_id(id));
        // Still pending (a small limit forgets ids within a batch): never in the filter.
        if let Some(i) = self.pending.iter().position(|&p| p == h) {
            self.pending.swap_remove(i);
            return;
        }
        self.stale.push(h);
        if self.stale.len() >= BATCH {
            self.flush();
        }
    }

    /// Indexes the blocks' newest ids (only the newest blocks have any not indexed).
    fn index_blocks(&mut self) {
        self.since_flush = 0;
        let hasher = &self.hasher;
        for block in self.blocks.iter_mut().rev() {
            if block.indexed == block.ids.len() {
                break;
            }
            block.index(hasher);
        }
    }

    /// A new filter of at least `buckets` buckets holding every remembered id (nothing
    /// pending or stale after it).
    fn rebuild(&mut self, buckets: usize) {
        self.index_blocks();
        self.pending.clear();
        self.stale.clear();
        let mut buckets = buckets.max(buckets_for(self.filtered));
        'size: loop {
            let mut filter = Filter::with_buckets(buckets);
            let others = self.blocks.iter().flat_map(|b| {
                (b.start..b.ids.len())
                    .filter(|&pos| b.counter_at(pos).is_none())
                    .map(|pos| as_id(b.ids[pos]))
            });
            for id in others {
                if !filter.insert(self.hasher.hash_one(id), self.fp_mask) {
                    buckets *= 2;
                    continue 'size;
                }
            }
            self.filter = filter;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashSet, VecDeque};

    use super::super::test_rng::XorShift;
    use super::*;

    /// The model: a set and the retirement order, the last `limit` kept.
    struct Model {
        set: HashSet<WorkerId>,
        order: VecDeque<WorkerId>,
        limit: usize,
    }

    impl Model {
        fn new(limit: usize) -> Model {
            Model {
                set: HashSet::new(),
                order: VecDeque::new(),
                limit,
            }
        }

        fn insert(&mut self, id: WorkerId) {
            if self.limit == 0 || self.set.contains(&id) {
                return;
            }
            while self.order.len() >= self.limit {
                let old = self.order.pop_front().unwrap();
                self.set.remove(&old);
            }
            self.set.insert(id);
            self.order.push_back(id);
        }

        fn set_limit(&mut self, limit: usize) {
            self.limit = limit;
            while self.order.len() > limit {
                let old = self.order.pop_front().unwrap();
                self.set.remove(&old);
            }
        }
    }

    /// An id this process did not mint (another process's, or one the caller drew).
    fn foreign() -> WorkerId {
        let id = WorkerId::from_bytes(uuid::Uuid::new_v4().into_bytes()).unwrap();
        assert_eq!(id.minted_counter(), None);
        id
    }

    /// A fresh id, minted here or not (`foreign_pct` % not), or minted from a counter far
    /// below the newest (a worker that lived through many mints: the minted set's `below`).
    fn fresh(rng: &mut XorShift, foreign_pct: usize) -> WorkerId {
        let x = rng.below(100);
        if x < foreign_pct {
            foreign()
        } else if x < foreign_pct + 3 {
            // Counters far apart, so that the window slides, and from below it.
            WorkerId::from_counter(1 << 50 | rng.next() >> 24)
        } else {
            WorkerId::new()
        }
    }

    /// Long churn with limit changes against the model: `contains` exact for remembered,
    /// forgotten and never-seen ids, minted here or not; `oldest_first` equal to the model's
    /// order; memory bounded.
    fn churn(fp_mask: u16, steps: usize, limits: &[usize], seed: u64) {
        churn_mixed(fp_mask, steps, limits, seed, 50);
    }

    fn churn_mixed(fp_mask: u16, steps: usize, limits: &[usize], seed: u64, foreign_pct: usize) {
        let mut rng = XorShift(seed);
        let mut retired = RetiredIds {
            fp_mask,
            ..RetiredIds::default()
        };
        let mut model = Model::new(DEFAULT_RETIRED_ID_LIMIT);
        let first = limits[0];
        retired.set_limit(first);
        model.set_limit(first);
        let mut seen: Vec<WorkerId> = Vec::new();
        for step in 0..steps {
            match rng.below(100) {
                // Mostly fresh ids, as unregister brings.
                0..=79 => {
                    let id = fresh(&mut rng, foreign_pct);
                    seen.push(id);
                    retired.insert_new(id);
                    model.insert(id);
                }
                // An id seen before: remembered (no change) or forgotten (remembered again).
                80..=94 if !seen.is_empty() => {
                    let id = seen[rng.below(seen.len())];
                    retired.insert(id);
                    model.insert(id);
                }
                95..=98 => {
                    let limit = limits[rng.below(limits.len())];
                    retired.set_limit(limit);
                    model.set_limit(limit);
                }
                _ => {
                    // A fresh id is never reported retired.
                    assert!(!retired.contains(&fresh(&mut rng, foreign_pct)));
                }
            }
            assert_eq!(retired.len(), model.order.len(), "step {step}");
            for _ in 0..4 {
                if seen.is_empty() {
                    break;
                }
                let id = seen[rng.below(seen.len())];
                assert_eq!(
                    retired.contains(&id),
                    model.set.contains(&id),
                    "step {step}"
                );
            }
            if step % 1009 == 0 {
                assert!(retired.oldest_first().iter().eq(model.order.iter()));
                // Bounded: the forgotten ids still held are the oldest block's prefix, less
                // than one block; the filter at most 1/2 full.
                let held: usize = retired.blocks.iter().map(|b| b.ids.len()).sum();
                let front = retired.blocks.front().map_or((0, 1), |b| (b.start, b.cap));
                assert_eq!(held - retired.len, front.0);
                assert!(front.0 < front.1);
                assert!(retired.blocks.iter().all(|b| b.ids.len() <= b.cap));
                assert!((retired.filtered - retired.pending.len()) * 2 <= retired.filter.slots());
                let minted = model
                    .order
                    .iter()
                    .filter(|id| id.minted_counter().is_some());
                assert_eq!(retired.filtered, model.order.len() - minted.count());
                let m = &retired.minted;
                assert!(m.words.len() as u64 <= m.span);
                assert!(m.words.front() != Some(&0) && m.words.back() != Some(&0));
                assert!(m.below.iter().all(|&c| c < m.base * 64));
                assert!(retired.pending.len() < BATCH && retired.stale.len() < BATCH);
                let unindexed: usize = retired.blocks.iter().map(|b| b.ids.len() - b.indexed).sum();
                assert!(unindexed < BATCH);
            }
            if step % 5003 == 0 {
                for id in &seen {
                    assert_eq!(retired.contains(id), model.set.contains(id));
                }
            }
        }
        assert!(retired.oldest_first().iter().eq(model.order.iter()));
    }

    #[test]
    fn churn_with_limit_changes_matches_the_model() {
        churn(
            u16::MAX,
            60_000,
            &[5_000, 700, 0, 1, 64, 20_000],
            0x2545_f491_4f6c_dd1d,
        );
    }

    #[test]
    fn churn_of_minted_ids_only_and_of_foreign_ids_only() {
        churn_mixed(u16::MAX, 30_000, &[5_000, 64, 0, 20_000], 11, 0);
        churn_mixed(u16::MAX, 20_000, &[5_000, 64, 20_000], 13, 100);
    }

    #[test]
    fn a_minted_id_stays_retired_wherever_its_counter_is_filed() {
        // Through the bitmap, below its window, after the window slid past it, after a lower
        // limit shrank the window: a retired minted id is found every time, and an id never
        // retired is not (the fast path must never let a retired id through).
        let mut retired = RetiredIds::default();
        retired.set_limit(10_000);
        let span = retired.minted.span * 64;
        let at = |c: u64| WorkerId::from_counter(c);
        let base = 1_u64 << 40;
        retired.insert_new(at(base + 5));
        retired.insert_new(at(base + 700));
        assert!(retired.contains(&at(base + 5)) && retired.contains(&at(base + 700)));
        assert!(!retired.contains(&at(base + 6)) && !retired.contains(&at(base + 699)));
        // A counter far above: the window slides, the old ones move below it.
        retired.insert_new(at(base + 10 * span));
        assert!(retired.minted.below.contains(&(base + 5)));
        assert!(retired.contains(&at(base + 5)) && retired.contains(&at(base + 700)));
        assert!(retired.contains(&at(base + 10 * span)));
        // A counter below the window goes below at once.
        retired.insert_new(at(base + 3));
        assert!(retired.minted.below.contains(&(base + 3)));
        assert!(retired.contains(&at(base + 3)));
        assert!(!retired.contains(&at(base + 4)));
        // Re-inserting is a no-op; a lower limit forgets the oldest and shrinks the window.
        retired.insert(at(base + 5));
        assert_eq!(retired.len(), 4);
        for c in 0..200 {
            retired.insert_new(at(base + 10 * span + 1 + c * 97));
        }
        retired.set_limit(100);
        assert_eq!(retired.len(), 100);
        assert!(retired.minted.words.len() as u64 <= retired.minted.span);
        assert!(!retired.contains(&at(base + 5)) && !retired.contains(&at(base + 3)));
        assert!(retired.contains(&at(base + 10 * span + 1 + 199 * 97)));
        assert!(retired.minted.below.len() < 100);
        // Oldest first, minted or not.
        let other = foreign();
        retired.insert_new(other);
        assert_eq!(retired.oldest_first().last(), Some(&other));
        assert!(retired.contains(&other));
    }

    #[test]
    fn false_positives_of_the_filter_never_answer_true() {
        // Three fingerprint bits: nearly every look-up of a fresh id is a filter "maybe",
        // settled by the blocks; and buckets overflow, so the filter is rebuilt bigger.
        churn(0b111, 20_000, &[2_000, 300, 65], 0x9e37_79b9_7f4a_7c15);
        // One fingerprint value for every id: the worst case of the relocation walk.
        churn(0b1, 4_000, &[500, 64], 7);
    }

    #[test]
    fn a_full_set_forgets_oldest_first_without_growing() {
        let mut retired = RetiredIds::default();
        retired.set_limit(10_000);
        let ids: Vec<WorkerId> = (0..30_000).map(|_| WorkerId::new()).collect();
        let mut slots = 0;
        for (n, id) in ids.iter().enumerate() {
            retired.insert(*id);
            if n == 10_000 {
                slots = retired.filter.slots();
            }
        }
        // At the limit, churn neither grows the filter nor keeps more than one spare block;
        // the bytes an id stay within the documented ~40 (about 25 at the default limit).
        assert_eq!(retired.filter.slots(), slots);
        assert!(retired.bytes() <= 40 * 10_000, "{} bytes", retired.bytes());
        assert!(retired.filter.slots() <= 4 * 10_000);
        let held: usize = retired.blocks.iter().map(|b| b.ids.len()).sum();
        assert!(held < 10_000 + retired.block_cap());
        assert_eq!(retired.oldest_first(), ids[20_000..]);
        assert!(ids[..20_000].iter().all(|id| !retired.contains(id)));
        assert!(ids[20_000..].iter().all(|id| retired.contains(id)));
        // A lower limit forgets at once and shrinks the filter.
        retired.set_limit(100);
        assert_eq!(retired.oldest_first(), ids[29_900..]);
        assert!(retired.filter.slots() <= 4 * 100);
        assert!(!retired.contains(&ids[29_899]));
        retired.set_limit(0);
        assert_eq!(retired.len(), 0);
        retired.insert(ids[0]);
        assert!(!retired.contains(&ids[0]));
    }

    #[test]
    fn about_25_bytes_an_id_at_the_default_limit() {
        let mut retired = RetiredIds::default();
        for _ in 0..DEFAULT_RETIRED_ID_LIMIT + 50_000 {
            retired.insert_new(foreign());
        }
        assert_eq!(retired.len(), DEFAULT_RETIRED_ID_LIMIT);
        // 16 (the id) + 4 (its block's position table) + 4 (the filter: 4 MiB) + slack.
        let per_id = retired.bytes() as f64 / retired.len() as f64;
        assert!(per_id <= 26.0, "{per_id:.1} bytes an id");
        // Minted ids instead: 16 (the id) and a few bits; the filter shrinks to nothing.
        let mut retired = RetiredIds::default();
        for _ in 0..DEFAULT_RETIRED_ID_LIMIT + 50_000 {
            retired.insert_new(WorkerId::new());
        }
        let per_id = retired.bytes() as f64 / retired.len() as f64;
        assert!(per_id <= 17.0, "{per_id:.1} bytes a minted id");
        assert_eq!(retired.filter.slots(), MIN_BUCKETS * 4);
    }
}
