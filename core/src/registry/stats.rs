//! [`WorkerRegistryStats`]: counts maintained on every change, read in O(1) (per state) or
//! O(providers + pools) (per provider, per pool).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

impl WorkerRegistryStats {
    /// Counts `workers` from scratch: what the maintained counters must always equal.
    pub fn recount<'a>(workers: impl IntoIterator<Item = &'a Worker>) -> Self {
        let mut stats = WorkerRegistryStats::default();
        for w in workers {
            stats.add(
                w.state,
                &w.handle.provider_id,
                &w.handle.provider_type,
                pool_of(&w.spec),
            );
        }
        stats
    }

    /// Counts one more worker in `state` (of `pool`, if it is in one).
    pub(crate) fn add(
        &mut self,
        state: WorkerState,
        provider: &ProviderId,
        kind: &ProviderType,
        pool: Option<&str>,
    ) {
        self.total += 1;
        *self.by_state.slot(state) += 1;
        increment(&mut self.by_provider, provider);
        increment(&mut self.by_provider_type, kind);
        if let Some(pool) = pool {
            // Allocates the key only for a pool's first worker.
            match self.by_pool.get_mut(pool) {
                Some(counts) => *counts.slot(state) += 1,
                None => {
                    let mut counts = StateCounts::default();
                    *counts.slot(state) += 1;
                    self.by_pool.insert(pool.to_owned(), counts);
                }
            }
        }
    }

    /// Counts one worker in `state` (of `pool`, if it is in one) less.
    pub(crate) fn remove(
        &mut self,
        state: WorkerState,
        provider: &ProviderId,
        kind: &ProviderType,
        pool: Option<&str>,
    ) {
        self.total -= 1;
        *self.by_state.slot(state) -= 1;
        decrement(&mut self.by_provider, provider);
        decrement(&mut self.by_provider_type, kind);
        if let Some(pool) = pool {
            if let Some(counts) = self.by_pool.get_mut(pool) {
                *counts.slot(state) -= 1;
                if counts.total() == 0 {
                    self.by_pool.remove(pool);
                }
            }
        }
    }

    /// Moves one worker (of `pool`, if it is in one) from `from` to `to`.
    pub(crate) fn moved(&mut self, from: WorkerState, to: WorkerState, pool: Option<&str>) {
        *self.by_state.slot(from) -= 1;
        *self.by_state.slot(to) += 1;
        if let Some(counts) = pool.and_then(|p| self.by_pool.get_mut(p)) {
            *counts.slot(from) -= 1;
            *counts.slot(to) += 1;
        }
    }
}

/// Counts one more for `key`; clones the key only for its first count (`register` runs this
/// for every worker, and a provider id is a heap string).
fn increment<K: Ord + Clone>(map: &mut BTreeMap<K, usize>, key: &K) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.clone(), 1);
        }
    }
}

fn decrement<K: Ord>(map: &mut BTreeMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}
