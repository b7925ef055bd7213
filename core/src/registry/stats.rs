//! [`WorkerRegistryStats`]: counts maintained on every change, read in O(1) (per state) or
//! O(providers + pools) (per provider, per pool).
//!
//! The in-memory registry keeps the per-provider, per-type and per-pool counts in [`Tally`]s:
//! numbered slots, which each class of workers (spec and provider) names once when it is made,
//! so that a change of state counts with an array increment, not a look-up of a string key in
//! a map (`register` and `unregister` did three each, `claim` and `release` one). `stats()`
//! builds the maps from the keys in use: O(providers + types + pools) held now, whatever the
//! registry held before (clarified 2026-12-07, see [`Tally`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use super::shrink::shrink;
use crate::ids::ProviderId;
use crate::state::WorkerState;
use crate::worker::{ProviderType, Worker, WorkerSpec};

/// The label the manager puts on every worker it provisions for a pool, with the pool's name
/// as value: how a pool's workers are recognised (by the manager, by the registry's per-pool
/// counts [`WorkerRegistryStats::by_pool`], and by a scheduler that wants to claim from one
/// pool: `WorkerFilter::new().label(POOL_LABEL, "gpu-spot")`).
pub const POOL_LABEL: &str = "hodei.pool";

/// The pool a worker of `spec` counts in: the value of its [`POOL_LABEL`] label, if any. A
/// spec never changes after register, so neither does a worker's pool.
pub(crate) fn pool_of(spec: &WorkerSpec) -> Option<&str> {
    spec.labels.get(POOL_LABEL).map(String::as_str)
}

/// Number of workers in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct StateCounts {
    /// `Creating`.
    pub creating: usize,
    /// `Connecting`.
    pub connecting: usize,
    /// `Ready`.
    pub ready: usize,
    /// `Busy`.
    pub busy: usize,
    /// `Draining`.
    pub draining: usize,
    /// `Terminating`.
    pub terminating: usize,
    /// `Terminated`.
    pub terminated: usize,
}
crate::object_form::object_form!(StateCounts, "state counts");

impl StateCounts {
    /// The count for `state`.
    pub fn get(&self, state: WorkerState) -> usize {
        match state {
            WorkerState::Creating => self.creating,
            WorkerState::Connecting => self.connecting,
            WorkerState::Ready => self.ready,
            WorkerState::Busy => self.busy,
            WorkerState::Draining => self.draining,
            WorkerState::Terminating => self.terminating,
            WorkerState::Terminated => self.terminated,
        }
    }

    pub(crate) fn slot(&mut self, state: WorkerState) -> &mut usize {
        match state {
            WorkerState::Creating => &mut self.creating,
            WorkerState::Connecting => &mut self.connecting,
            WorkerState::Ready => &mut self.ready,
            WorkerState::Busy => &mut self.busy,
            WorkerState::Draining => &mut self.draining,
            WorkerState::Terminating => &mut self.terminating,
            WorkerState::Terminated => &mut self.terminated,
        }
    }

    /// Workers still starting (`Creating` + `Connecting`): capacity on its way.
    pub fn starting(&self) -> usize {
        self.creating + self.connecting
    }

    /// Workers that are not on their way out (everything but `Terminating`/`Terminated`).
    pub fn live(&self) -> usize {
        self.creating + self.connecting + self.ready + self.busy + self.draining
    }

    /// Workers in any state.
    pub fn total(&self) -> usize {
        self.live() + self.terminating + self.terminated
    }
}

/// Counts of the registry's workers, maintained on every change (reading them is O(1) in the
/// fleet size).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct WorkerRegistryStats {
    /// Registered workers.
    pub total: usize,
    /// Per state.
    pub by_state: StateCounts,
    /// Per provider.
    pub by_provider: BTreeMap<ProviderId, usize>,
    /// Per provider type.
    pub by_provider_type: BTreeMap<ProviderType, usize>,
    /// Per pool, per state: the workers whose spec carries the label [`POOL_LABEL`], keyed by
    /// that label's value (workers without it are in no entry). A pool with no worker has no
    /// entry. Read in O(pools): what a pool-mode manager tick reads instead of finding each
    /// pool's workers.
    #[serde(default)]
    pub by_pool: BTreeMap<String, StateCounts>,
}
crate::object_form::object_form!(WorkerRegistryStats, "registry stats");

impl WorkerRegistryStats {
    /// Counts `workers` from scratch: what the maintained counters must always equal.
    pub fn recount<'a>(workers: impl IntoIterator<Item = &'a Worker>) -> Self {
        let mut stats = WorkerRegistryStats::default();
        for w in workers {
            stats.total += 1;
            *stats.by_state.slot(w.state) += 1;
            increment(&mut stats.by_provider, &w.handle.provider_id);
            increment(&mut stats.by_provider_type, &w.handle.provider_type);
            if let Some(pool) = pool_of(&w.spec) {
                let counts = match stats.by_pool.get_mut(pool) {
                    Some(counts) => counts,
                    None => stats.by_pool.entry(pool.to_owned()).or_default(),
                };
                *counts.slot(w.state) += 1;
            }
        }
        stats
    }
}

/// Counts one more for `key`; clones the key only for its first count.
fn increment<K: Ord + Clone>(map: &mut BTreeMap<K, usize>, key: &K) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.clone(), 1);
        }
    }
}

/// Counts of type `C` by key `K` in numbered slots: a slot is taken by [`acquire`] (once per
/// user, e.g. per class of workers with that key) and given back by [`release`]; the counts
/// in between are array increments through the slot number.
///
/// **Room follows the live keys** (clarified 2026-12-07: before, the slot table, its free
/// list and the map by key kept the room of the most keys ever held at once, and `collect`
/// walked every slot of it, free ones included: a host with a provider a tenant, cut from
/// 10,000 tenants to 10, paid for 10,000 slots on every `stats()`). Slot numbers are held by
/// their users (a class keeps its three), so a slot never moves: free slots are reused
/// lowest first, which packs the keys in use at the bottom, and the `release` that frees the
/// last slot cuts it off with the free slots before it. The slot table and the map by key
/// follow the [`shrink`](super::shrink) rule. So the map is O(live keys) and the table
/// O(highest slot in use), which new keys bring down as they fill the lowest slots.
///
/// [`acquire`]: Tally::acquire
/// [`release`]: Tally::release
#[derive(Debug)]
pub(crate) struct Tally<K, C> {
    /// `(key, count, users)`; a free slot has no key. Its last slot is in use.
    slots: Vec<(Option<K>, C, u32)>,
    by_key: HashMap<K, u32, foldhash::fast::RandomState>,
    /// The free slots (all below the last), reused lowest first.
    free: BTreeSet<u32>,
}

impl<K, C> Default for Tally<K, C> {
    fn default() -> Self {
        Tally {
            slots: Vec::new(),
            by_key: HashMap::default(),
            free: BTreeSet::new(),
        }
    }
}

impl<K: Clone + Eq + Hash + Ord, C: Default> Tally<K, C> {
    /// The slot of `key` for one more user (a new slot, the lowest free one, with a zero
    /// count, for its first). O(log free slots) for a new key.
    pub fn acquire(&mut self, key: &K) -> u32 {
        if let Some(&slot) = self.by_key.get(key) {
            self.slots[slot as usize].2 += 1;
            return slot;
        }
        let entry = (Some(key.clone()), C::default(), 1);
        let slot = match self.free.pop_first() {
            Some(slot) => {
                self.slots[slot as usize] = entry;
                slot
            }
            None => {
                self.slots.push(entry);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 keys")
            }
        };
        self.by_key.insert(key.clone(), slot);
        slot
    }

    /// One user of `slot` less; the slot is freed with its last (its count must be zero by
    /// then: every worker counted there has left), and the tables give room back by the
    /// rule. O(log free slots) amortized when a key goes, else O(1).
    pub fn release(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        entry.2 -= 1;
        if entry.2 > 0 {
            return;
        }
        let key = entry.0.take().expect("a used slot has its key");
        entry.1 = C::default();
        self.by_key.remove(&key);
        shrink(&mut self.by_key);
        if slot as usize + 1 == self.slots.len() {
            self.slots.pop();
            while self.slots.last().is_some_and(|(key, ..)| key.is_none()) {
                self.slots.pop();
                self.free.pop_last();
            }
            shrink(&mut self.slots);
        } else {
            self.free.insert(slot);
        }
    }

    /// The count of `slot`.
    #[inline]
    pub fn count(&mut self, slot: u32) -> &mut C {
        &mut self.slots[slot as usize].1
    }

    /// The counts for which `keep` holds, by key: O(live keys), read through the map by key
    /// (whose room follows them), never through the free slots.
    pub fn collect(&self, keep: impl Fn(&C) -> bool) -> BTreeMap<K, C>
    where
        C: Clone,
    {
        // Inserted one by one: a map of a few keys is one allocation (a collect sorts in a
        // vector first: two).
        let mut map = BTreeMap::new();
        for (key, &slot) in &self.by_key {
            let count = &self.slots[slot as usize].1;
            if keep(count) {
                map.insert(key.clone(), count.clone());
            }
        }
        map
    }

    /// Room of the slot table and of the map by key, for tests of the bounds.
    #[cfg(test)]
    pub fn rooms(&self) -> (usize, usize) {
        (self.slots.capacity(), self.by_key.capacity())
    }
}

/// The registry-wide counts beside the [`Tallies`]: total and per state.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub total: usize,
    pub by_state: StateCounts,
}

/// The slots of one class of workers in [`Tallies`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TallySlots {
    provider: u32,
    kind: u32,
    pool: Option<u32>,
}

/// The per-provider, per-type and per-pool counts of the in-memory registry (see the module
/// doc).
#[derive(Debug, Default)]
pub(crate) struct Tallies {
    providers: Tally<ProviderId, usize>,
    kinds: Tally<ProviderType, usize>,
    pools: Tally<String, StateCounts>,
}

impl Tallies {
    /// The slots of a new class of workers of `provider`, `kind` and `pool`.
    pub fn acquire(
        &mut self,
        provider: &ProviderId,
        kind: &ProviderType,
        pool: Option<&str>,
    ) -> TallySlots {
        TallySlots {
            provider: self.providers.acquire(provider),
            kind: self.kinds.acquire(kind),
            pool: pool.map(|p| self.pools.acquire(&p.to_owned())),
        }
    }

    /// A class goes (its members are all uncounted).
    pub fn release(&mut self, slots: TallySlots) {
        self.providers.release(slots.provider);
        self.kinds.release(slots.kind);
        if let Some(pool) = slots.pool {
            self.pools.release(pool);
        }
    }

    /// Counts a worker of the class with `slots`, in `state`, once more.
    #[inline]
    pub fn add(&mut self, slots: TallySlots, state: WorkerState) {
        *self.providers.count(slots.provider) += 1;
        *self.kinds.count(slots.kind) += 1;
        if let Some(pool) = slots.pool {
            *self.pools.count(pool).slot(state) += 1;
        }
    }

    /// Counts a worker of the class with `slots`, in `state`, once less.
    #[inline]
    pub fn remove(&mut self, slots: TallySlots, state: WorkerState) {
        *self.providers.count(slots.provider) -= 1;
        *self.kinds.count(slots.kind) -= 1;
        if let Some(pool) = slots.pool {
            *self.pools.count(pool).slot(state) -= 1;
        }
    }

    /// A worker of the class with `slots` moves from `from` to `to`.
    #[inline]
    pub fn moved(&mut self, slots: TallySlots, from: WorkerState, to: WorkerState) {
        if let Some(pool) = slots.pool {
            let counts = self.pools.count(pool);
            *counts.slot(from) -= 1;
            *counts.slot(to) += 1;
        }
    }

    /// The rooms (slot table, map by key) of the per-provider, per-type and per-pool
    /// tallies, for tests of the bounds.
    #[cfg(test)]
    pub fn rooms(&self) -> [(usize, usize); 3] {
        [
            self.providers.rooms(),
            self.kinds.rooms(),
            self.pools.rooms(),
        ]
    }

    /// The stats with these tallies and the registry's `total` and `by_state`.
    pub fn stats(&self, total: usize, by_state: StateCounts) -> WorkerRegistryStats {
        WorkerRegistryStats {
            total,
            by_state,
            by_provider: self.providers.collect(|n| *n > 0),
            by_provider_type: self.kinds.collect(|n| *n > 0),
            by_pool: self.pools.collect(|c| c.total() > 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_slots_are_shared_by_key_reused_when_free_and_zero_counts_left_out() {
        let mut tally: Tally<String, usize> = Tally::default();
        let (a, b) = ("a".to_owned(), "b".to_owned());
        let sa = tally.acquire(&a);
        assert_eq!(
            tally.acquire(&a),
            sa,
            "one slot per key, shared by its users"
        );
        let sb = tally.acquire(&b);
        *tally.count(sa) += 2;
        assert_eq!(tally.collect(|n| *n > 0), BTreeMap::from([(a.clone(), 2)]));
        *tally.count(sa) -= 2;
        tally.release(sa);
        assert_eq!(tally.collect(|_| true).len(), 2, "a still has a user");
        tally.release(sa);
        // Freed: its slot goes to the next new key, with a zero count.
        let c = "c".to_owned();
        assert_eq!(tally.acquire(&c), sa);
        assert_eq!(*tally.count(sa), 0);
        *tally.count(sb) += 1;
        assert_eq!(tally.collect(|n| *n > 0), BTreeMap::from([(b, 1)]));
        assert_eq!(tally.collect(|_| true).len(), 2);
        assert!(!tally.by_key.contains_key(&a));
    }
}
