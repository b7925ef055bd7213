//! Worker classes: the workers of one spec and one provider, with their ready and lifetime
//! queues; and the interning of specs, so that workers made from equal specs share one.
//!
//! A filter's static part ([`WorkerFilter::matches_static`]) depends only on a worker's spec
//! and provider, so it gives one answer for a whole class: `claim` asks each class once, not
//! each ready worker, and an unmatchable filter costs the number of classes, never a walk of
//! the ready workers. Within a class the deadlines follow one order: idle deadlines are
//! `idle_since + spec.idle_timeout` and lifetime deadlines `created_at + spec.max_lifetime`,
//! so the ready set (by `(idle_since, id)`, a sorted deque: ties by id are the order `claim`
//! promises) and the lifetime queue (by `created_at`, a `VecDeque` of 32-byte entries, O(1)
//! at the ends where nearly every change happens) are in deadline order: the idle and
//! lifetime checks read only their due prefix.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use super::stats::{pool_of, Tallies, TallySlots};
use crate::clock::Timestamp;
use crate::ids::{ProviderId, WorkerId};
use crate::worker::{ProviderType, WorkerHandle, WorkerSpec};

/// A queue position: the timestamp a worker is ordered by, its ticket (a registry-wide
/// counter taken when the entry was made, which orders equal timestamps by arrival), its
/// place (see [`Queue`]).
#[cfg(test)]
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

    #[cfg(test)]
    fn place(&self) -> Place {
        let (at, ticket) = self.key();
        (at, ticket, self.place)
    }
}

/// Workers ordered by `(timestamp, ticket)`, oldest at the front.
///
/// An entry names its worker by its place (shard and slot, see
/// [`InMemoryWorkerRegistry`](super::InMemoryWorkerRegistry)'s `place`) rather than its id:
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
#[derive(Debug, Default)]
pub(super) struct Queue {
    entries: VecDeque<Entry>,
    dead: usize,
}

impl Queue {
    /// Live entries.
    pub fn len(&self) -> usize {
        self.entries.len() - self.dead
    }

    /// Adds the worker at `place` at `(at, ticket)`: O(1) at the back (the usual case: the
    /// clock does not go back and tickets grow), else a shift of the newer entries.
    pub fn insert(&mut self, at: Timestamp, ticket: u64, place: u32) {
        debug_assert!(ticket & DEAD == 0);
        let entry = Entry::new(at, ticket, place);
        match self.entries.back() {
            Some(last) if last.key() > (at, ticket) => {
                let pos = self.entries.partition_point(|e| e.key() < (at, ticket));
                self.entries.insert(pos, entry);
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
        let pos = self.entries.partition_point(|e| e.key() < key);
        match self.entries.get_mut(pos) {
            Some(e) if e.key() == key && e.live() => e.kill(),
            _ => return false,
        }
        self.dead += 1;
        self.trim();
        true
    }

    /// Drops the dead entries at both ends; compacts when they outnumber the live entries.
    fn trim(&mut self) {
        while self.entries.back().is_some_and(|e| !e.live()) {
            self.entries.pop_back();
            self.dead -= 1;
        }
        while self.entries.front().is_some_and(|e| !e.live()) {
            self.entries.pop_front();
            self.dead -= 1;
        }
        if self.dead > 16 && self.dead > self.len() {
            self.entries.retain(Entry::live);
            self.dead = 0;
        }
    }

    /// Live entries as `(timestamp, ticket, place)`, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (Timestamp, u64, u32)> + '_ {
        self.entries.iter().filter(|e| e.live()).map(|e| {
            let (at, ticket) = e.key();
            (at, ticket, e.place)
        })
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
        self.entries
            .range(..end)
            .rev()
            .find(|e| e.live())
            .map(Entry::place)
    }

    /// Up to `want` live entries after `lower` in `(timestamp, ticket)` order, oldest first.
    #[cfg(test)]
    pub fn oldest_above(&self, lower: Option<(Timestamp, u64)>, want: usize) -> Vec<Place> {
        let from = match lower {
            Some(key) => self.entries.partition_point(|e| e.key() <= key),
            None => 0,
        };
        self.entries
            .range(from..)
            .filter(|e| e.live())
            .take(want)
            .map(Entry::place)
            .collect()
    }
}

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
pub(super) struct ReadySet {
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

/// The workers of one (interned) spec, provider id and provider type.
#[derive(Debug)]
pub(super) struct Class {
    /// The shared spec of the class.
    pub spec: Arc<WorkerSpec>,
    /// A member's handle: the filter's static part reads only its provider id and type,
    /// which every member shares.
    pub handle: Arc<WorkerHandle>,
    /// The hash of the spec's content (its bucket among the interned specs).
    spec_hash: u64,
    /// Registered members.
    members: usize,
    /// `Ready` members by `(idle_since, id)`: the last is the most recently idle.
    pub ready: ReadySet,
    /// Members whose lifetime is tracked (`Creating`, `Connecting`, `Ready`, `Busy`) by
    /// `created_at`: the oldest end has the nearest lifetime deadline.
    pub living: Queue,
    /// Its slots in the counts by provider, type and pool (its spec's `POOL_LABEL`), taken
    /// once here rather than looked up by key on every change of a member's state.
    pub tally: TallySlots,
}

/// What makes a class: the interned spec (by address), the provider id and type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClassKey {
    spec: usize,
    provider_id: ProviderId,
    provider_type: ProviderType,
}

/// One interned spec and how many classes use it.
#[derive(Debug)]
struct Interned {
    spec: Arc<WorkerSpec>,
    users: usize,
}

/// The last spec `join` was given, by the caller's `Arc`, with the class it went to: a run of
/// registrations with one spec `Arc` and one provider (the usual case) skips hashing the spec.
#[derive(Debug)]
struct LastJoin {
    given: Arc<WorkerSpec>,
    provider_id: ProviderId,
    provider_type: ProviderType,
    class: u32,
}

/// The classes of a registry, and its interned specs.
#[derive(Debug, Default)]
pub(super) struct Classes {
    /// Classes by number (`Record::class`); `None` for a free number.
    slots: Vec<Option<Class>>,
    free: Vec<u32>,
    by_key: HashMap<ClassKey, u32, foldhash::fast::RandomState>,
    /// Interned specs by content hash.
    specs: HashMap<u64, Vec<Interned>, foldhash::fast::RandomState>,
    hasher: foldhash::fast::RandomState,
    last: Option<LastJoin>,
    /// The counts by provider, type and pool (the classes hold their slots).
    pub tallies: Tallies,
}

impl Classes {
    /// The class numbered `class`, mutably.
    pub fn get_mut(&mut self, class: u32) -> &mut Class {
        self.slots[class as usize]
            .as_mut()
            .expect("a record's class lives while it has members")
    }

    /// The tally slots of the class numbered `class`.
    #[inline]
    pub fn tally(&self, class: u32) -> TallySlots {
        self.slots[class as usize]
            .as_ref()
            .expect("a record's class lives while it has members")
            .tally
    }

    /// Every class.
    pub fn iter(&self) -> impl Iterator<Item = &Class> {
        self.slots.iter().flatten()
    }

    /// Every class, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Class> {
        self.slots.iter_mut().flatten()
    }

    /// The shared copy of `spec` and its hash: an equal spec already interned, or `spec`
    /// itself, which becomes the shared one. O(size of the spec) for the hash.
    fn intern(&mut self, spec: Arc<WorkerSpec>) -> (Arc<WorkerSpec>, u64) {
        let hash = spec_hash(&spec, &self.hasher);
        let bucket = self.specs.entry(hash).or_default();
        if let Some(found) = bucket
            .iter()
            .find(|i| Arc::ptr_eq(&i.spec, &spec) || *i.spec == *spec)
        {
            return (Arc::clone(&found.spec), hash);
        }
        bucket.push(Interned {
            spec: Arc::clone(&spec),
            users: 0,
        });
        (spec, hash)
    }

    /// One more class of the interned `spec`.
    fn use_spec(&mut self, spec: &Arc<WorkerSpec>, hash: u64) {
        if let Some(i) = self
            .specs
            .get_mut(&hash)
            .and_then(|b| b.iter_mut().find(|i| Arc::ptr_eq(&i.spec, spec)))
        {
            i.users += 1;
        }
    }

    /// One class less of the interned `spec`; forgotten at none.
    fn release_spec(&mut self, spec: &Arc<WorkerSpec>, hash: u64) {
        if let Some(bucket) = self.specs.get_mut(&hash) {
            if let Some(pos) = bucket.iter().position(|i| Arc::ptr_eq(&i.spec, spec)) {
                bucket[pos].users -= 1;
                if bucket[pos].users == 0 {
                    bucket.swap_remove(pos);
                    if bucket.is_empty() {
                        self.specs.remove(&hash);
                    }
                }
            }
        }
    }

    /// Whether `spec` is the very `Arc` the last `join` was given: a spec validated then (by
    /// `register` or `restore`) and unchanged since (immutable behind the `Arc`, which this
    /// keeps alive, so no other spec can take its address).
    pub fn is_last_given(&self, spec: &Arc<WorkerSpec>) -> bool {
        self.last
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(&l.given, spec))
    }

    /// Joins a new member with `handle` and `spec` to its class: returns the class number
    /// (its shared spec, which the record's shard keeps, is [`spec`](Self::spec)).
    pub fn join(&mut self, handle: &Arc<WorkerHandle>, spec: Arc<WorkerSpec>) -> u32 {
        if let Some(last) = &self.last {
            if Arc::ptr_eq(&last.given, &spec)
                && last.provider_id == handle.provider_id
                && last.provider_type == handle.provider_type
            {
                // No clone of the spec here: `register` reads it by reference (each count of a
                // shared `Arc` is an atomic on one line every registration writes).
                let class = last.class;
                self.get_mut(class).members += 1;
                return class;
            }
        }
        let given = Arc::clone(&spec);
        let class = self.join_slow(handle, spec);
        self.last = Some(LastJoin {
            given,
            provider_id: handle.provider_id.clone(),
            provider_type: handle.provider_type.clone(),
            class,
        });
        class
    }

    /// The shared spec of the class numbered `class`.
    pub fn spec(&self, class: u32) -> &Arc<WorkerSpec> {
        &self.slots[class as usize]
            .as_ref()
            .expect("a record's class lives while it has members")
            .spec
    }

    fn join_slow(&mut self, handle: &Arc<WorkerHandle>, spec: Arc<WorkerSpec>) -> u32 {
        let (spec, spec_hash) = self.intern(spec);
        let key = ClassKey {
            spec: Arc::as_ptr(&spec) as usize,
            provider_id: handle.provider_id.clone(),
            provider_type: handle.provider_type.clone(),
        };
        if let Some(&class) = self.by_key.get(&key) {
            self.get_mut(class).members += 1;
            return class;
        }
        self.use_spec(&spec, spec_hash);
        let class = Class {
            tally: self
                .tallies
                .acquire(&handle.provider_id, &handle.provider_type, pool_of(&spec)),
            spec: Arc::clone(&spec),
            handle: Arc::clone(handle),
            spec_hash,
            members: 1,
            ready: ReadySet::default(),
            living: Queue::default(),
        };
        let number = match self.free.pop() {
            Some(n) => {
                self.slots[n as usize] = Some(class);
                n
            }
            None => {
                self.slots.push(Some(class));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 classes")
            }
        };
        self.by_key.insert(key, number);
        number
    }

    /// A member of `class` leaves the registry (its queue entries are already gone); the
    /// class and its spec are forgotten with their last member.
    pub fn leave(&mut self, class: u32) {
        let c = self.get_mut(class);
        c.members -= 1;
        if c.members > 0 {
            return;
        }
        let c = self.slots[class as usize].take().expect("live class");
        if self.last.as_ref().is_some_and(|l| l.class == class) {
            self.last = None;
        }
        debug_assert!(c.ready.len() == 0 && c.living.len() == 0);
        self.by_key.remove(&ClassKey {
            spec: Arc::as_ptr(&c.spec) as usize,
            provider_id: c.handle.provider_id.clone(),
            provider_type: c.handle.provider_type.clone(),
        });
        self.free.push(class);
        self.tallies.release(c.tally);
        self.release_spec(&c.spec, c.spec_hash);
    }

    /// Sorts every queue (after a restore that pushed unsorted).
    pub fn sort(&mut self) {
        for c in self.iter_mut() {
            c.living.sort();
            c.ready.sort();
        }
    }
}

/// A hash of a spec's content (equal specs hash equal; `-0.0` and `0.0` CPU counts may not,
/// which only means two shared copies).
fn spec_hash(spec: &WorkerSpec, hasher: &impl BuildHasher) -> u64 {
    let mut h = hasher.build_hasher();
    spec.image.hash(&mut h);
    spec.labels.hash(&mut h);
    spec.environment.hash(&mut h);
    spec.capabilities.hash(&mut h);
    spec.architecture.hash(&mut h);
    spec.idle_timeout.hash(&mut h);
    spec.max_lifetime.hash(&mut h);
    spec.max_jobs.hash(&mut h);
    let r = &spec.resources;
    r.cpu_cores.to_bits().hash(&mut h);
    r.memory_bytes.hash(&mut h);
    r.disk_bytes.hash(&mut h);
    r.gpu_count.hash(&mut h);
    r.gpu_type.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::super::test_rng::XorShift;
    use super::*;

    fn id(n: u8) -> WorkerId {
        let mut b = [0u8; 16];
        b[15] = n;
        WorkerId::from_bytes(b).unwrap()
    }

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
    fn equal_specs_are_shared_and_forgotten_with_their_last_user() {
        let mut classes = Classes::default();
        let handle = Arc::new(WorkerHandle::new(
            ProviderId::new("p").unwrap(),
            ProviderType::Docker,
            "c",
        ));
        let a = classes.join(&handle, Arc::new(WorkerSpec::new("img")));
        let b = classes.join(&handle, Arc::new(WorkerSpec::new("img")));
        let c = classes.join(&handle, Arc::new(WorkerSpec::new("other")));
        assert!(Arc::ptr_eq(classes.spec(a), classes.spec(b)));
        assert_eq!(a, b);
        assert_ne!(a, c);
        classes.leave(a);
        classes.leave(b);
        classes.leave(c);
        assert_eq!(classes.iter().count(), 0);
        assert!(classes.specs.is_empty() && classes.by_key.is_empty());
    }
}
