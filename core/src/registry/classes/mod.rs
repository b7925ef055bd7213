//! Worker classes: the workers of one spec and one provider, with their ready and lifetime
//! queues; and the interning of specs, so that workers made from equal specs share one.
//!
//! A filter's static part ([`WorkerFilter::matches_static`](crate::WorkerFilter::matches_static)) depends only on a worker's spec
//! and provider, so it gives one answer for a whole class: `claim` asks each class once, not
//! each ready worker, and an unmatchable filter costs the number of classes, never a walk of
//! the ready workers. Within a class the deadlines follow one order: idle deadlines are
//! `idle_since + spec.idle_timeout` and lifetime deadlines `created_at + spec.max_lifetime`,
//! so the ready set (by `(idle_since, id)`, a sorted deque: ties by id are the order `claim`
//! promises) and the lifetime queue (by `created_at`, a `VecDeque` of 32-byte entries, O(1)
//! at the ends where nearly every change happens) are in deadline order: the idle and
//! lifetime checks read only their due prefix.
//!
//! # Modules
//! [`Queue`] (`queue.rs`: workers in deadline order, a class's lifetime queue and the
//! registry's startup queue) and [`ReadySet`] (`ready.rs`) are the two orders a class keeps;
//! this module holds the classes and the interned specs.

mod queue;
mod ready;

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::iter::Peekable;
use std::sync::Arc;

use super::shrink::shrink;
use super::stats::{pool_of, Tallies, TallySlots};
use crate::ids::ProviderId;
use crate::worker::{ProviderType, WorkerHandle, WorkerSpec};

pub(super) use queue::Queue;
pub(super) use ready::ReadySet;

/// How far from either end of a deque ([`Queue`], [`ReadySet`]) an insert below its back may
/// land and still go into the deque, shifting at most this many entries; farther in, it goes to
/// the B-tree beside the deque, which reads merge. Shifting half of a deque of a million
/// entries for one insert takes about a millisecond.
const NEAR: usize = 32;

/// Whether an insert at position `pos` of a deque of `len` entries goes into the deque (within
/// [`NEAR`] of either end) rather than into the B-tree beside it.
fn near_an_end(pos: usize, len: usize) -> bool {
    pos <= NEAR || len - pos <= NEAR
}

/// Two ascending sequences of distinct items as one, ascending.
struct Merge<T, A: Iterator<Item = T>, B: Iterator<Item = T>> {
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<T: Ord, A: Iterator<Item = T>, B: Iterator<Item = T>> Merge<T, A, B> {
    fn new(a: A, b: B) -> Self {
        Merge {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

impl<T: Ord, A: Iterator<Item = T>, B: Iterator<Item = T>> Iterator for Merge<T, A, B> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y < x => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
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
    /// Classes by number (`Record::class`); `None` for a free number. Its last entry is a
    /// class (trailing free numbers are cut off).
    slots: Vec<Option<Class>>,
    /// Free numbers below the last class, reused lowest first (clarified 2026-12-07: last
    /// freed first before): the numbers in use stay packed at the bottom, so that this table
    /// and each shard's class table, indexed by number, stay O(classes) after a mix of
    /// classes shrank.
    free: BTreeSet<u32>,
    /// Class numbers by key. Follows the [`shrink`](super::shrink) rule, as `specs` does
    /// (clarified 2026-12-07: both kept the room of the most classes ever before, so a
    /// registry of one class a worker cut from 8,000 to 80 held room for 14,000).
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

    /// Which class numbers are classes of `provider_id`: `mine[n]` for class `n` (numbers
    /// past the end are not). O(classes). A record's class never changes while it lives, so
    /// every record of the provider registered before this call is in one of them.
    pub fn of_provider(&self, provider_id: &ProviderId) -> Vec<bool> {
        let mut mine = Vec::new();
        for (n, class) in self.slots.iter().enumerate() {
            if class
                .as_ref()
                .is_some_and(|c| c.handle.provider_id == *provider_id)
            {
                mine.resize(n + 1, false);
                mine[n] = true;
            }
        }
        mine
    }

    /// Every class with its number (`claim`'s pass reads the numbers of the matching ones).
    pub fn numbered(&self) -> impl Iterator<Item = (u32, &Class)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(n, c)| c.as_ref().map(|c| (n as u32, c)))
    }

    /// The room of the class table and of the maps beside it (by key, interned specs), for
    /// tests of the bounds.
    #[cfg(test)]
    pub fn capacities(&self) -> (usize, usize, usize) {
        (
            self.slots.capacity(),
            self.by_key.capacity(),
            self.specs.capacity(),
        )
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
                        shrink(&mut self.specs);
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
        let number = match self.free.pop_first() {
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
    /// class and its spec are forgotten with their last member, and the tables give their
    /// room back by the [`shrink`](super::shrink) rule (one comparison each but for a
    /// shrink, and only when a class goes).
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
        shrink(&mut self.by_key);
        if class as usize + 1 == self.slots.len() {
            self.slots.pop();
            while let Some(None) = self.slots.last() {
                self.slots.pop();
                self.free.pop_last();
            }
            shrink(&mut self.slots);
        } else {
            self.free.insert(class);
        }
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

/// A hash of a spec's content: specs equal by `==` hash equal (interning looks for an equal
/// spec in its hash's bucket only).
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
    // `-0.0 == 0.0` but their bits differ: hashed as one (a NaN, which no spec holds, is
    // equal to nothing anyway).
    let cpu = if r.cpu_cores == 0.0 { 0.0 } else { r.cpu_cores };
    cpu.to_bits().hash(&mut h);
    r.memory_bytes.hash(&mut h);
    r.disk_bytes.hash(&mut h);
    r.gpu_count.hash(&mut h);
    r.gpu_type.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

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
