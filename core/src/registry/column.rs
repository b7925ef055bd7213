//! [`HeartbeatColumn`]: one shard's heartbeats as a dense array of 32-bit words, indexed by a
//! slot that the record keeps.
//!
//! A word holds the slot's last heartbeat as a millisecond offset from the column's `base`,
//! and whether the slot's worker is heartbeat-monitored (see [`Word`]): a health check of the
//! shard reads 4 bytes per worker and no other array. A heartbeat is one atomic `fetch_max`
//! into its word under the shard's *read* lock, so heartbeats never wait for one another (nor
//! for a preempted thread holding the lock). On top of it a small cache makes the usual check
//! cost what is due rather than the shard's size (see [`Sweep`]); when the check must read the
//! whole column it takes the shard's *write* lock, which lets it read the words as plain
//! memory in a loop the compiler vectorises (atomic loads never are); heartbeats to the shard
//! wait for that pass (a few µs at 1M workers).
//!
//! **Exact to the millisecond, whatever the times**: a heartbeat outside the 2^31 − 2 ms
//! (~24.8 days) the offsets cover is kept exactly in a side table (`far`), its word marked
//! [`Word::FAR_MONITORED`] or [`Word::FAR_IDLE`]; when the clock runs past the range the column
//! rebases (one pass over the column, once in ~12 days) and what no longer fits goes to the
//! side table. A registry whose workers heartbeat never has a far slot.
//!
//! Slots are the shard's slab slots ([`Shard`](super::memory)): the slab allocates and reuses
//! them, the column follows (`attach`, `release`). Every access goes through the shard's id →
//! slot index, under the shard's lock, so a stale id (an unregistered worker) can never reach
//! the slot's new occupant: its look-up fails first. Writes other than a heartbeat in range
//! (`attach`, `release`, `beat_mut`, `set_monitored`, `due_pass`) need the shard's write lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};

use parking_lot::Mutex;

use super::shrink::shrink;
use crate::clock::Timestamp;

/// The encoding of a column word (an `i32`).
///
/// - a monitored slot with offset `o` (its heartbeat is `base + o`, `0 <= o < SPAN`):
///   `i32::MIN + 1 + o`, a negative word;
/// - an unmonitored slot with offset `o`: `o`, a non-negative word below `FAR_IDLE`;
/// - a slot whose heartbeat does not fit (exact value in `far`): `FAR_MONITORED` (`i32::MIN`)
///   or `FAR_IDLE`;
/// - a free slot: `FREE` (`i32::MAX`).
///
/// So a health check with cutoff offset `c` asks `word < i32::MIN + 1 + c` of every word: true
/// exactly for the monitored slots due and the far monitored ones (checked exactly after), false
/// for every unmonitored and free slot; and the smallest word not below that bound is the
/// smallest monitored heartbeat not due.
struct Word;

impl Word {
    const FREE: i32 = i32::MAX;
    const FAR_IDLE: i32 = i32::MAX - 1;
    const FAR_MONITORED: i32 = i32::MIN;
    /// Offsets `0..SPAN` fit in a word.
    const SPAN: u64 = (i32::MAX - 1) as u64;

    fn monitored(offset: u64) -> i32 {
        debug_assert!(offset < Self::SPAN);
        i32::MIN + 1 + offset as i32
    }

    fn idle(offset: u64) -> i32 {
        debug_assert!(offset < Self::SPAN);
        offset as i32
    }

    /// Whether a live word is of a monitored slot.
    fn is_monitored(w: i32) -> bool {
        w < 0
    }

    /// The offset of a word that is neither far nor free.
    fn offset(w: i32) -> u64 {
        if w < 0 {
            (i64::from(w) - i64::from(i32::MIN) - 1) as u64
        } else {
            w as u64
        }
    }

    fn is_near(w: i32) -> bool {
        w != Self::FREE && w != Self::FAR_IDLE && w != Self::FAR_MONITORED
    }
}

/// Suspects a shard may gather between health checks beyond its slots: past this the cache is
/// dropped and the next check scans the column (bounds memory when no check ever runs).
const SUSPECT_SLACK: usize = 64;

/// Slots a full pass reads as one block: the block's smallest word says whether any of them is
/// due (the usual answer is no), without a branch per slot.
const BLOCK: usize = 64;

/// The due-check cache of one shard.
///
/// Invariant: every *monitored* slot whose key (`max(heartbeat, grace floor)`) is below
/// `horizon` is in `suspects` (which may also hold stale or duplicate slots, re-checked on use).
/// Keys only grow (heartbeats never go back, the floor only rises), so a check with a cutoff
/// at most `horizon` needs to look at the suspects only; a later cutoff scans the column and
/// moves the horizon to the smallest monitored key not due. A slot that becomes monitored with
/// a key below the horizon is added to the suspects.
#[derive(Debug, Default)]
struct Sweep {
    /// 0 at first: the first check scans.
    horizon: Timestamp,
    suspects: Vec<u32>,
}

/// One shard's heartbeat column. See the module doc.
#[derive(Debug, Default)]
pub(super) struct HeartbeatColumn {
    /// Offsets are from here (ms on the registry clock); set by the first `attach`, moved
    /// forward by a rebase.
    base: Timestamp,
    /// Whether `base` was set.
    based: bool,
    /// One [`Word`] per slot. Written under the shard's read lock only by `beat` (a
    /// `fetch_max` within a word's class, which keeps its sign: monitored or not).
    words: Vec<AtomicI32>,
    /// The exact last heartbeat of every slot whose word is far.
    far: BTreeMap<u32, Timestamp>,
    /// Occupied slots.
    live: usize,
    /// Taken by `due` under the shard's read lock; reached through `get_mut` under its write
    /// lock (lock order: shard, then this).
    sweep: Mutex<Sweep>,
}

impl HeartbeatColumn {
    #[inline]
    fn word(&self, s: usize) -> i32 {
        self.words[s].load(Ordering::Relaxed)
    }

    fn word_mut(&mut self, s: usize) -> &mut i32 {
        self.words[s].get_mut()
    }

    /// The word of heartbeat `t` for a slot monitored or not (`None`: out of range).
    fn encode(&self, t: Timestamp, monitored: bool) -> Option<i32> {
        let offset = t.checked_sub(self.base).filter(|o| *o < Word::SPAN)?;
        Some(if monitored {
            Word::monitored(offset)
        } else {
            Word::idle(offset)
        })
    }

    /// Stores heartbeat `t` into `slot`, monitored or not (the slot's far entry follows).
    /// `now`: `t` is the clock's time (a heartbeat), so past the range the column rebases on
    /// it; any other time (a restored heartbeat, which may lie anywhere) that does not fit is
    /// kept far instead, so that one odd value cannot push every live slot out of range.
    fn store(&mut self, slot: u32, t: Timestamp, monitored: bool, now: bool) {
        if !self.based {
            // Room on both sides: restored heartbeats lie in the past, new ones in the future.
            self.base = t.saturating_sub(Word::SPAN / 2);
            self.based = true;
        } else if now && t.saturating_sub(self.base) >= Word::SPAN {
            self.rebase(t - Word::SPAN / 2);
        }
        self.put(slot, t, monitored);
    }

    /// Writes `slot`'s word for heartbeat `t` on the current base: the offset when it fits,
    /// else `t` in `far` and the far word of its class.
    fn put(&mut self, slot: u32, t: Timestamp, monitored: bool) {
        let s = slot as usize;
        match self.encode(t, monitored) {
            Some(w) => {
                if !Word::is_near(*self.word_mut(s)) {
                    self.far.remove(&slot);
                }
                *self.word_mut(s) = w;
            }
            None => {
                self.far.insert(slot, t);
                *self.word_mut(s) = if monitored {
                    Word::FAR_MONITORED
                } else {
                    Word::FAR_IDLE
                };
            }
        }
    }

    /// Moves `base` to `to` (later than it): re-encodes every live slot, exactly (what no
    /// longer fits goes to `far`, what fits again leaves it). The cache stays valid: no key
    /// changes.
    fn rebase(&mut self, to: Timestamp) {
        let old: Vec<(u32, Timestamp, bool)> = (0..self.words.len() as u32)
            .filter(|&slot| self.word(slot as usize) != Word::FREE)
            .map(|slot| (slot, self.get(slot), self.is_monitored(slot)))
            .collect();
        self.base = to;
        for (slot, t, monitored) in old {
            self.put(slot, t, monitored);
        }
    }

    #[inline]
    fn is_monitored(&self, slot: u32) -> bool {
        let w = self.word(slot as usize);
        w != Word::FREE && Word::is_monitored(w)
    }

    /// Takes `slot` (a slab slot: a free one, or the next past the end) with last heartbeat
    /// `heartbeat`, not monitored.
    pub fn attach(&mut self, slot: u32, heartbeat: Timestamp) {
        let s = slot as usize;
        self.live += 1;
        if s >= self.words.len() {
            debug_assert_eq!(s, self.words.len(), "slots are attached in order");
            self.words.push(AtomicI32::new(Word::FREE));
        }
        self.store(slot, heartbeat, false, false);
    }

    /// Releases a slot (its record left the shard): never due again until attached.
    pub fn release(&mut self, slot: u32) {
        let s = slot as usize;
        if !Word::is_near(*self.word_mut(s)) {
            self.far.remove(&slot);
        }
        *self.word_mut(s) = Word::FREE;
        self.live -= 1;
    }

    /// Drops every slot from `slots` on (all free: the slab gave back its free tail), and
    /// gives the memory back by the [`shrink`](super::shrink) rule (clarified 2026-12-07: the
    /// column followed the slab's peak for ever before). O(1) but for a shrink, which is
    /// O(slots) and follows a quarter of the capacity's worth of truncations at least.
    ///
    /// The cache may keep suspects past the new end (stale, as a reused slot's are): a check
    /// reads such a slot as free (see `monitored_key`), and a later `attach` of the slot is
    /// re-checked on use as any suspect is.
    pub fn truncate(&mut self, slots: usize) {
        debug_assert!((slots..self.words.len()).all(|s| self.word(s) == Word::FREE));
        self.words.truncate(slots);
        if shrink(&mut self.words) {
            let sweep = self.sweep.get_mut();
            sweep.suspects.retain(|&s| (s as usize) < slots);
            shrink(&mut sweep.suspects);
        }
    }

    /// The last heartbeat of `slot` (`Timestamp::MAX` for a free slot).
    #[inline]
    pub fn get(&self, slot: u32) -> Timestamp {
        let w = self.word(slot as usize);
        if Word::is_near(w) {
            self.base + Word::offset(w)
        } else if w == Word::FREE {
            Timestamp::MAX
        } else {
            self.far[&slot]
        }
    }

    /// Records a heartbeat at `now` (never goes back) under the shard's read lock: one
    /// `fetch_max` into the slot's word. `false` when the heartbeat does not fit the word (a
    /// far slot, or `now` past the column's range): nothing changed, call
    /// [`beat_mut`](Self::beat_mut) under the write lock.
    #[inline]
    pub fn beat(&self, slot: u32, now: Timestamp) -> bool {
        let word = &self.words[slot as usize];
        let w = word.load(Ordering::Relaxed);
        let offset = now.wrapping_sub(self.base);
        if !Word::is_near(w) || offset >= Word::SPAN {
            // A clock before the base cannot raise a near heartbeat (it is at least the base).
            return Word::is_near(w) && now < self.base;
        }
        // A concurrent heartbeat of the same slot writes a word of the same class (only the
        // write lock changes a class): the larger word is the later heartbeat.
        let new = if Word::is_monitored(w) {
            Word::monitored(offset)
        } else {
            Word::idle(offset)
        };
        word.fetch_max(new, Ordering::Relaxed);
        true
    }

    /// [`beat`](Self::beat) under the shard's write lock, for any time: keeps a heartbeat
    /// that does not fit exactly (far), rebases past the column's range.
    pub fn beat_mut(&mut self, slot: u32, now: Timestamp) {
        if now > self.get(slot) {
            let monitored = self.is_monitored(slot);
            self.store(slot, now, monitored, true);
        }
    }

    /// Sets whether `slot` is heartbeat-monitored (after any heartbeat the change implies).
    pub fn set_monitored(&mut self, slot: u32, on: bool, floor: Timestamp) {
        let was = self.is_monitored(slot);
        if was == on {
            return;
        }
        let beat = self.get(slot);
        self.store(slot, beat, on, false);
        if on {
            let key = beat.max(floor);
            let slots = self.words.len();
            let sweep = self.sweep.get_mut();
            if key < sweep.horizon {
                sweep.suspects.push(slot);
                if sweep.suspects.len() > slots + SUSPECT_SLACK {
                    // Churn without health checks: forget the cache, the next check scans.
                    sweep.suspects = Vec::new();
                    sweep.horizon = 0;
                }
            }
        }
    }

    /// The bound a full pass compares every word with (see [`Word`]).
    fn bound(&self, cutoff: Timestamp) -> i32 {
        let c = cutoff.saturating_sub(self.base).min(Word::SPAN);
        // c <= SPAN: the bound is at most -1 (every monitored word below it when c = SPAN).
        (i64::from(i32::MIN) + 1 + c as i64) as i32
    }

    /// The key of a monitored `slot` (`max(heartbeat, floor)`), `None` for a slot not
    /// monitored (or free).
    ///
    /// A suspect may lie past the column's end (cached before a truncation, see
    /// [`truncate`](Self::truncate)): it is free.
    #[inline]
    pub fn monitored_key(&self, slot: u32, floor: Timestamp) -> Option<Timestamp> {
        if slot as usize >= self.words.len() {
            return None;
        }
        self.is_monitored(slot).then(|| self.get(slot).max(floor))
    }

    /// Calls `due` with the slot of every monitored worker whose key (`max(heartbeat, floor)`)
    /// is below `cutoff`, from the cache, under the shard's read lock (heartbeats may land
    /// meanwhile: a worker heartbeating during the check may or may not be reported).
    ///
    /// `false` when the cache cannot answer (`cutoff` past its horizon): nothing was called,
    /// ask [`due_pass`](Self::due_pass) under the write lock. Cost: the suspects of the last
    /// pass (what is due, plus the slots re-filed since).
    pub fn due(&self, floor: Timestamp, cutoff: Timestamp, mut due: impl FnMut(u32)) -> bool {
        if floor >= cutoff {
            // Every key is at least the floor: nothing is due.
            return true;
        }
        let mut sweep = self.sweep.lock();
        if cutoff > sweep.horizon {
            return false;
        }
        self.due_cached(&mut sweep, floor, cutoff, &mut due);
        true
    }

    fn due_cached(
        &self,
        sweep: &mut Sweep,
        floor: Timestamp,
        cutoff: Timestamp,
        due: &mut impl FnMut(u32),
    ) {
        let horizon = sweep.horizon;
        sweep.suspects.sort_unstable();
        sweep.suspects.dedup();
        sweep.suspects.retain(|&slot| {
            let Some(k) = self.monitored_key(slot, floor) else {
                return false;
            };
            if k < cutoff {
                due(slot);
            }
            k < horizon
        });
    }

    /// [`due`](Self::due) for any cutoff, under the shard's write lock: the cache if it can
    /// answer (another check may have passed since), else one sequential pass over the
    /// column, 4 bytes per slot read as plain memory, blocks of 64 slots skipped on their
    /// smallest word; the pass refills the cache. Returns whether it passed over the column.
    pub fn due_pass(
        &mut self,
        floor: Timestamp,
        cutoff: Timestamp,
        mut due: impl FnMut(u32),
    ) -> bool {
        if floor >= cutoff {
            return false;
        }
        if cutoff <= self.sweep.get_mut().horizon {
            let mut sweep = std::mem::take(self.sweep.get_mut());
            self.due_cached(&mut sweep, floor, cutoff, &mut due);
            *self.sweep.get_mut() = sweep;
            return false;
        }
        // With floor < cutoff, a key is below the cutoff exactly when the heartbeat is, and
        // the smallest key not due is the smallest heartbeat not due: the floor drops out.
        let bound = self.bound(cutoff);
        let HeartbeatColumn {
            base,
            words,
            far,
            sweep,
            ..
        } = self;
        let sweep = sweep.get_mut();
        sweep.suspects.clear();
        let mut smallest = Word::FREE;
        let mut far_horizon = Timestamp::MAX;
        let mut found = |slot: u32, w: i32, suspects: &mut Vec<u32>| {
            if w == Word::FAR_MONITORED {
                let beat = far[&slot];
                if beat >= cutoff {
                    far_horizon = far_horizon.min(beat);
                    return;
                }
            }
            suspects.push(slot);
            due(slot);
        };
        for (b, block) in words.chunks_mut(BLOCK).enumerate() {
            // `get_mut`: plain loads (the write lock excludes every heartbeat), vectorised.
            let least = block
                .iter_mut()
                .map(|w| *w.get_mut())
                .fold(Word::FREE, i32::min);
            if least >= bound {
                smallest = smallest.min(least);
                continue;
            }
            for (i, w) in block.iter_mut().enumerate() {
                let w = *w.get_mut();
                if w < bound {
                    found((b * BLOCK + i) as u32, w, &mut sweep.suspects);
                } else {
                    smallest = smallest.min(w);
                }
            }
        }
        // Only a monitored word counts (an unmonitored or free one is never due).
        let near_horizon = if Word::is_monitored(smallest) {
            *base + Word::offset(smallest)
        } else {
            Timestamp::MAX
        };
        sweep.horizon = near_horizon.min(far_horizon);
        // One pass that found a whole fleet due must not keep its room for ever.
        shrink(&mut sweep.suspects);
        true
    }

    /// Calls `silent` with the slot of every monitored worker whose last heartbeat is below
    /// `cutoff`, in slot order, under the shard's read lock: the heartbeat itself, not its
    /// key (the grace floor plays no part), which is what a filter's `unhealthy_for` asks
    /// (since 2026-12-07: `claim`'s pass, see `memory/claim.rs`). One sequential pass over
    /// the words (atomic loads, 4 bytes a slot; a block of 64 slots whose smallest word is not
    /// below the bound is passed over as a whole), the far monitored slots checked exactly;
    /// the cache is neither read nor changed (it answers for keys, and a pass here must not
    /// move the health check's horizon). A heartbeat landing meanwhile may or may not count.
    pub fn silent_before(&self, cutoff: Timestamp, mut silent: impl FnMut(u32)) {
        let bound = self.bound(cutoff);
        for (b, block) in self.words.chunks(BLOCK).enumerate() {
            let least = block
                .iter()
                .map(|w| w.load(Ordering::Relaxed))
                .fold(Word::FREE, i32::min);
            if least >= bound {
                continue;
            }
            for (i, w) in block.iter().enumerate() {
                let w = w.load(Ordering::Relaxed);
                let slot = (b * BLOCK + i) as u32;
                // A far word keeps its class under the read lock: only the write lock moves a
                // slot in or out of `far`.
                if w < bound && (w != Word::FAR_MONITORED || self.far[&slot] < cutoff) {
                    silent(slot);
                }
            }
        }
    }

    /// Counts the monitored workers whose key is below `cutoff`, from the column alone (no
    /// record is read, the cache is left alone), under the shard's read lock: one sequential
    /// pass (atomic loads, 4 bytes per slot), or the suspects when `cutoff` is at or below
    /// the horizon.
    pub fn count_due(&self, floor: Timestamp, cutoff: Timestamp) -> usize {
        if floor >= cutoff {
            return 0;
        }
        let sweep = self.sweep.lock();
        if cutoff <= sweep.horizon {
            let mut slots: Vec<u32> = sweep
                .suspects
                .iter()
                .copied()
                .filter(|&slot| self.monitored_key(slot, floor).is_some_and(|k| k < cutoff))
                .collect();
            slots.sort_unstable();
            slots.dedup();
            return slots.len();
        }
        drop(sweep);
        let bound = self.bound(cutoff);
        let below = self
            .words
            .iter()
            .filter(|w| w.load(Ordering::Relaxed) < bound)
            .count();
        // The far monitored words are all below the bound; count those really due.
        let far_monitored = self
            .far
            .iter()
            .filter(|(slot, _)| self.word(**slot as usize) == Word::FAR_MONITORED);
        let (far, far_due) = far_monitored.fold((0, 0), |(n, d), (_, beat)| {
            (n + 1, d + usize::from(*beat < cutoff))
        });
        below - far + far_due
    }

    /// For a column without a free slot (the usual fleet): calls `key` with the key
    /// (`max(heartbeat, floor)`) of every monitored slot among `min(slots, n)` slots read at a
    /// constant stride (`slots / n`, or every slot); returns how many were read. A plain loop
    /// over the words the processor's prefetcher follows. At most `n` word reads.
    pub fn sample_full(&self, floor: Timestamp, n: usize, mut key: impl FnMut(Timestamp)) -> usize {
        debug_assert_eq!(self.live, self.words.len(), "no free slot");
        let stride = (self.words.len() / n.max(1)).max(1);
        let mut read = 0;
        for s in (0..self.words.len()).step_by(stride).take(n) {
            read += 1;
            if let Some(k) = self.monitored_key(s as u32, floor) {
                key(k);
            }
        }
        read
    }

    /// Slots held (live and free) and suspects cached, for tests of the bounds.
    #[cfg(test)]
    pub fn sizes(&self) -> (usize, usize) {
        (self.words.len(), self.sweep.lock().suspects.len())
    }

    /// Capacities (words, suspects), for tests of the bounds.
    #[cfg(test)]
    pub fn capacities(&self) -> (usize, usize) {
        (self.words.capacity(), self.sweep.lock().suspects.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_rng::XorShift;
    use super::*;

    /// A slot of the model: last heartbeat and whether it is monitored.
    type ModelSlot = Option<(Timestamp, bool)>;

    fn model_due(model: &[ModelSlot], floor: Timestamp, cutoff: Timestamp) -> Vec<u32> {
        (0..model.len() as u32)
            .filter(|&s| model[s as usize].is_some_and(|(beat, on)| on && beat.max(floor) < cutoff))
            .collect()
    }

    /// Random attach / release / beat / monitor / check sequences, with heartbeats from the
    /// epoch's start to years later (every path: near words, far words, rebases), against a
    /// plain model: every heartbeat reads back to the millisecond, and every health check and
    /// count finds exactly the monitored slots due, through the cache or a pass.
    #[test]
    fn the_column_is_exact_to_the_millisecond_over_any_range_of_times() {
        const DAY: u64 = 24 * 3600 * 1000;
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next();
        for round in 0..40 {
            let mut column = HeartbeatColumn::default();
            let mut model: Vec<ModelSlot> = Vec::new();
            let mut free: Vec<u32> = Vec::new();
            let mut now: Timestamp = 1_700_000_000_000 + next() % (10 * DAY);
            let mut floor: Timestamp = 0;
            for step in 0..3_000 {
                // Mostly small steps; now and then a jump of days, weeks or years, forward
                // or (a manual clock set back) backward.
                now = match next() % 100 {
                    0 => now + next() % (400 * DAY),
                    1 => now.saturating_sub(next() % (40 * DAY)),
                    2 if round % 2 == 0 => next() % (2 * now + 1),
                    _ => now + next() % 5_000,
                };
                let live: Vec<u32> = (0..model.len() as u32)
                    .filter(|&s| model[s as usize].is_some())
                    .collect();
                match next() % 10 {
                    0 | 1 => {
                        let slot = free.pop().unwrap_or(model.len() as u32);
                        // Restored workers carry any heartbeat, older or newer.
                        let beat = if next() % 4 == 0 {
                            next() % (2 * now + 1)
                        } else {
                            now
                        };
                        column.attach(slot, beat);
                        if slot as usize == model.len() {
                            model.push(None);
                        }
                        model[slot as usize] = Some((beat, false));
                    }
                    2 if !live.is_empty() => {
                        let slot = live[next() as usize % live.len()];
                        column.release(slot);
                        model[slot as usize] = None;
                        free.push(slot);
                    }
                    3..=5 if !live.is_empty() => {
                        let slot = live[next() as usize % live.len()];
                        if !column.beat(slot, now) {
                            column.beat_mut(slot, now);
                        }
                        let m = model[slot as usize].as_mut().unwrap();
                        m.0 = m.0.max(now);
                    }
                    6 | 7 if !live.is_empty() => {
                        let slot = live[next() as usize % live.len()];
                        let on = next() % 3 != 0;
                        column.set_monitored(slot, on, floor);
                        model[slot as usize].as_mut().unwrap().1 = on;
                    }
                    8 if next() % 8 == 0 => floor = floor.max(now.saturating_sub(next() % DAY)),
                    _ => {
                        let cutoff = now.saturating_sub(next() % (2 * DAY));
                        let want = model_due(&model, floor, cutoff);
                        let mut got = Vec::new();
                        if !column.due(floor, cutoff, |s| got.push(s)) {
                            column.due_pass(floor, cutoff, |s| got.push(s));
                        }
                        got.sort_unstable();
                        assert_eq!(got, want, "round {round} step {step}: due");
                        assert_eq!(
                            column.count_due(floor, cutoff),
                            want.len(),
                            "round {round} step {step}: count"
                        );
                        // The raw heartbeats, whatever the floor (unhealthy_for's test).
                        let want: Vec<u32> = (0..model.len() as u32)
                            .filter(|&s| {
                                model[s as usize].is_some_and(|(beat, on)| on && beat < cutoff)
                            })
                            .collect();
                        let mut got = Vec::new();
                        column.silent_before(cutoff, |s| got.push(s));
                        assert_eq!(got, want, "round {round} step {step}: silent");
                    }
                }
                for (s, m) in model.iter().enumerate().filter(|_| step % 7 == 0) {
                    if let Some((beat, on)) = m {
                        assert_eq!(column.get(s as u32), *beat, "round {round} step {step}");
                        assert_eq!(column.is_monitored(s as u32), *on);
                    }
                }
            }
        }
    }
}
