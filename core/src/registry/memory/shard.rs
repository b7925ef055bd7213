//! [`Shard`]: one shard's records in a slab, found through a compact id → slot index, and
//! their heartbeat column, all under the shard's lock.
//!
//! The index holds 20 bytes a worker (id and slot) in a linear-probing table without
//! tombstones ([`IdTable`]), so that a look-up by id touches one or two adjacent cache lines; the record itself lives in a slab (`Vec`) at a stable
//! slot, reused through a free set, and the heartbeat column is indexed by the same slot.
//! A heartbeat reads the index and stores into the column: it never touches the record.
//!
//! **Memory is O(live workers), amortized** (clarified 2026-12-07: before, nothing here ever
//! shrank, and a shard kept the memory of its largest fleet). Records never move (the
//! startup and lifetime queues name them by slot), so the slab and the column give back only
//! their free *tail*: free slots are reused **lowest first** ([`FreeSlots`]), which packs the
//! live records at the front, so that once the old high-slot workers of a shrunk fleet have
//! died the tail is free and is cut off (slab, column, free set) in the `remove` that frees
//! the last live slot of it. The index, the slab's and column's `Vec`s, the free set and the
//! class table shrink by the [`shrink`](super::super::shrink) rule (below a quarter full, to
//! half full): a fleet oscillating around one size never rebuilds on every call. All of it
//! happens in `insert` and `remove`, under the shard's write lock; `get`, `heartbeat` and
//! `claim` do no extra work.
//!
//! **Slot reuse never resurrects an old worker**: a slot is only ever reached through the
//! index, the index entry of a worker is removed (under the shard's write lock) before its
//! slot goes back to the free set (or is cut off with the tail), and nobody outside the shard
//! keeps a slot across a release of the lock but the queues, whose entries carry the
//! record's birth ticket. A stale id therefore misses in the index and never finds the slot's
//! new occupant, whether the slot was reused in place or cut off and made again.

use std::sync::Arc;

use super::super::column::HeartbeatColumn;
use super::super::freeslots::FreeSlots;
use super::super::idtable::IdTable;
use super::super::indexes::Record;
use super::super::shrink::shrink;
use crate::clock::Timestamp;
use crate::ids::WorkerId;
use crate::worker::{Worker, WorkerSpec};

/// Slots a shard may hold: its slots must fit a place (see
/// [`place_of`](super::place_of)), 2^26 (67 million workers a shard).
pub(super) const MAX_SLOTS: u32 = 1 << (32 - super::SHARD_BITS);

/// One shard. See the module doc.
#[derive(Debug, Default)]
pub(super) struct Shard {
    /// Id → slot of every record of the shard.
    index: IdTable<u32>,
    /// Records by slot; `None` for a free slot. Its last slot is never free (a freed last
    /// slot is cut off, with the free slots before it).
    slab: Vec<Option<Record>>,
    /// Free slots of `slab` (and of the column), reused lowest first.
    free: FreeSlots,
    /// The spec of each class (by number) with members here, and how many: the records
    /// keep their class number, not a reference to the spec (8 bytes a worker less); a
    /// snapshot reads it here, under the same lock as the record. Its last entry holds a
    /// spec (trailing empty entries are cut off; class numbers are reused lowest first).
    specs: Vec<(Option<Arc<WorkerSpec>>, u32)>,
    /// Last heartbeats by slot.
    pub column: HeartbeatColumn,
}

impl Shard {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether `id` is here.
    pub fn contains(&self, id: &WorkerId) -> bool {
        self.index.contains(id)
    }

    /// The slot of `id`.
    #[inline]
    pub fn slot_of(&self, id: &WorkerId) -> Option<u32> {
        self.index.get(id)
    }

    /// The record in `slot` (`None` for a free slot).
    #[inline]
    pub fn at(&self, slot: u32) -> Option<&Record> {
        self.slab.get(slot as usize).and_then(Option::as_ref)
    }

    /// The record of `id` and its slot.
    #[inline]
    pub fn get(&self, id: &WorkerId) -> Option<(u32, &Record)> {
        let slot = self.slot_of(id)?;
        self.at(slot).map(|rec| (slot, rec))
    }

    /// The record of `id`, its slot, the column (to move it in step with the record) and its
    /// spec.
    #[allow(clippy::type_complexity)]
    pub fn get_mut(
        &mut self,
        id: &WorkerId,
    ) -> Option<(u32, &mut Record, &mut HeartbeatColumn, &Arc<WorkerSpec>)> {
        let slot = self.slot_of(id)?;
        let rec = self.slab.get_mut(slot as usize)?.as_mut()?;
        let spec = class_spec(&self.specs, rec.class);
        Some((slot, rec, &mut self.column, spec))
    }

    /// The spec of `rec`'s class.
    pub fn spec_of(&self, rec: &Record) -> &Arc<WorkerSpec> {
        class_spec(&self.specs, rec.class)
    }

    /// The snapshot of `rec` (in `slot`), with its heartbeat from the column.
    pub fn worker(&self, slot: u32, rec: &Record) -> Worker {
        rec.to_worker(self.column.get(slot), self.spec_of(rec))
    }

    /// The snapshot of the worker `id`, if here.
    pub fn snapshot_of(&self, id: &WorkerId) -> Option<Worker> {
        self.get(id).map(|(slot, rec)| self.worker(slot, rec))
    }

    /// Whether the shard holds the spec of `class` (it has members of it).
    pub fn holds_class(&self, class: u32) -> bool {
        self.specs
            .get(class as usize)
            .is_some_and(|(held, _)| held.is_some())
    }

    /// Adds `rec` (whose id is not here), with last heartbeat `heartbeat`, not monitored;
    /// returns its slot. `slot` is [`next_slot`](Self::next_slot), read under the same lock
    /// (the caller files the record's place with it; passed in, the lowest free slot is
    /// found once a registration). `spec`, the interned spec of its class, is
    /// needed only when the shard does not hold the class yet ([`holds_class`](Self::holds_class)).
    pub fn insert(
        &mut self,
        slot: u32,
        rec: Record,
        spec: Option<Arc<WorkerSpec>>,
        heartbeat: Timestamp,
    ) -> u32 {
        let id = rec.id();
        let class = rec.class as usize;
        if self.specs.len() <= class {
            self.specs.resize(class + 1, (None, 0));
        }
        let (held, members) = &mut self.specs[class];
        match (held.as_ref(), spec) {
            (Some(held), Some(spec)) => debug_assert!(Arc::ptr_eq(held, &spec)),
            (Some(_), None) => {}
            (None, spec) => *held = Some(spec.expect("the spec of a class new to the shard")),
        }
        *members += 1;
        debug_assert_eq!(slot, self.next_slot());
        if (slot as usize) < self.slab.len() {
            self.free.remove(slot);
            self.slab[slot as usize] = Some(rec);
        } else {
            assert!(slot < MAX_SLOTS, "fewer than 2^26 workers a shard");
            self.slab.push(Some(rec));
        }
        self.column.attach(slot, heartbeat);
        // `register` and `restore` checked that the id is not here, under this lock.
        self.index.insert_new(id, slot);
        slot
    }

    /// Removes the record of `id`; returns it with its last heartbeat, and its class's spec
    /// if it was the class's last member here (else the shard still holds it:
    /// [`class_spec`](Self::class_spec)). The index entry goes first, then the slot is freed
    /// (see the module doc); the last slot is cut off with the free slots before it, and
    /// what shrank gives its memory back. O(1) amortized.
    // Inlined into `unregister`: returned out of line, the record (written field by field)
    // was copied out of the return slot with 16-byte loads that the CPU cannot forward from
    // those stores (a stall on every call).
    #[inline]
    pub fn remove(
        &mut self,
        id: &WorkerId,
    ) -> Option<(Record, Timestamp, Option<Arc<WorkerSpec>>)> {
        let slot = self.index.remove(id)?;
        let rec = self.slab[slot as usize]
            .take()
            .expect("an indexed slot holds its record");
        let last = self.column.get(slot);
        self.column.release(slot);
        if slot as usize + 1 == self.slab.len() {
            self.cut_free_tail();
        } else {
            self.free.insert(slot);
        }
        let class = rec.class as usize;
        let (held, members) = &mut self.specs[class];
        *members -= 1;
        let spec = if *members == 0 {
            let spec = held.take().expect("a member's class has its spec here");
            if class + 1 == self.specs.len() {
                while self.specs.last().is_some_and(|(held, _)| held.is_none()) {
                    self.specs.pop();
                }
                shrink(&mut self.specs);
            }
            Some(spec)
        } else {
            None
        };
        Some((rec, last, spec))
    }

    /// Cuts off the slab's last slot (just freed) and the free slots before it, in the slab,
    /// the column and the free set, and gives memory back by the rule. O(slots cut), each
    /// slot cut once after the registration that made it: O(1) amortized.
    fn cut_free_tail(&mut self) {
        self.slab.pop();
        while let Some(None) = self.slab.last() {
            self.free.remove(self.slab.len() as u32 - 1);
            self.slab.pop();
        }
        let slots = self.slab.len();
        shrink(&mut self.slab);
        self.column.truncate(slots);
        self.free.truncate(slots);
    }

    /// The spec of `class`, which has members here.
    pub fn class_spec(&self, class: u32) -> &Arc<WorkerSpec> {
        class_spec(&self.specs, class)
    }

    /// The slot that the next [`insert`](Self::insert) will take.
    pub fn next_slot(&self) -> u32 {
        self.free.first().unwrap_or(self.slab.len() as u32)
    }

    /// Every record with its slot, in slot order.
    pub fn records(&self) -> impl Iterator<Item = (u32, &Record)> {
        self.slab
            .iter()
            .enumerate()
            .filter_map(|(slot, rec)| rec.as_ref().map(|rec| (slot as u32, rec)))
    }

    /// A sample of the shard's heartbeats for the age metrics: calls `key` with the key
    /// (`max(heartbeat, floor)`) of every monitored worker among `min(workers, target)`
    /// distinct workers of the shard — every worker when the shard holds at most `target`,
    /// whatever the layout of its free slots (clarified 2026-12-07: a stride over the slots
    /// met few or none of the workers of a shrunk fleet whose column kept its length).
    /// Above, the workers are spread over the whole slab: for each of `target` points at a
    /// constant stride over the slots, the first worker at or after it (and after the
    /// previous one read), the last ones kept so that the count is reached
    /// ([`FreeSlots::sample_taken`]; clarified 2026-12-07, again: no longer evenly by rank
    /// among the workers, so a worker just after a run of free slots is likelier read).
    /// Returns the shard's exact number of workers and how many were read.
    ///
    /// Cost: at most `target` column words, read at a constant stride when the shard has no
    /// free slot (the usual fleet); with free slots and more than `target` workers, also one
    /// word of the free-slot bitmap and a bit test a worker read whose point is taken (the
    /// reads overlap as the stride's do: 1.1× the stride's time for a fleet with a free slot
    /// in every 64, where the rank walk it replaces took 2.5×), and one bitmap word
    /// a 64 slots skipped over runs of free slots; with at most `target` workers, one bitmap
    /// word a 64 slots of the slab (245 words at a peak of 1M) and a bit step a worker. No
    /// record read, no write (runs under the shard's read lock). Slots are filled in
    /// registration order, so with random worker ids a spread over them is a fair sample of
    /// the shard's workers.
    pub fn sample_heartbeats(
        &self,
        floor: Timestamp,
        target: usize,
        mut key: impl FnMut(Timestamp),
    ) -> HeartbeatSample {
        if self.len() == self.slab.len() {
            return HeartbeatSample {
                live: self.len(),
                read_live: self.column.sample_full(floor, target, key),
            };
        }
        let mut read = 0;
        self.free
            .sample_taken(self.slab.len(), self.len(), target, |slot| {
                read += 1;
                if let Some(k) = self.column.monitored_key(slot, floor) {
                    key(k);
                }
            });
        HeartbeatSample {
            live: self.len(),
            read_live: read,
        }
    }

    /// Slab slots (live and free) and free slots, for tests of the bounds.
    #[cfg(test)]
    pub fn slots(&self) -> (usize, usize) {
        (self.slab.len(), self.free.len())
    }

    /// What the shard's structures hold room for, for tests of the bounds.
    #[cfg(test)]
    pub fn capacities(&self) -> ShardCapacities {
        let (index, rehashes) = self.index.size_and_rehashes();
        let (column, suspects) = self.column.capacities();
        ShardCapacities {
            index,
            index_rehashes: rehashes,
            slab: self.slab.capacity(),
            column,
            suspects,
            free_words: self.free.capacity_words(),
            specs: self.specs.capacity(),
        }
    }
}

/// What [`Shard::sample_heartbeats`] read of a shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct HeartbeatSample {
    /// The shard's workers, exactly.
    pub live: usize,
    /// Workers read (all of them when the shard was read whole).
    pub read_live: usize,
}

/// The room a shard's structures hold (entries, slots or words), for tests.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ShardCapacities {
    pub index: usize,
    pub index_rehashes: usize,
    pub slab: usize,
    pub column: usize,
    pub suspects: usize,
    pub free_words: usize,
    pub specs: usize,
}

/// The spec of `class` in a shard's class table (a class with a member in the shard).
fn class_spec(specs: &[(Option<Arc<WorkerSpec>>, u32)], class: u32) -> &Arc<WorkerSpec> {
    specs[class as usize]
        .0
        .as_ref()
        .expect("a member's class has its spec here")
}
