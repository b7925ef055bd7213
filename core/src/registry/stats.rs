//! [`WorkerRegistryStats`]: counts maintained on every change, read in O(1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::ProviderId;
use crate::state::WorkerState;
use crate::worker::{ProviderType, Worker};

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
}

impl WorkerRegistryStats {
    /// Counts `workers` from scratch: what the maintained counters must always equal.
    pub fn recount<'a>(workers: impl IntoIterator<Item = &'a Worker>) -> Self {
        let mut stats = WorkerRegistryStats::default();
        for w in workers {
            stats.add(w.state, &w.handle.provider_id, &w.handle.provider_type);
        }
        stats
    }

    pub(crate) fn add(&mut self, state: WorkerState, provider: &ProviderId, kind: &ProviderType) {
        self.total += 1;
        *self.by_state.slot(state) += 1;
        *self.by_provider.entry(provider.clone()).or_default() += 1;
        *self.by_provider_type.entry(kind.clone()).or_default() += 1;
    }

    pub(crate) fn remove(
        &mut self,
        state: WorkerState,
        provider: &ProviderId,
        kind: &ProviderType,
    ) {
        self.total -= 1;
        *self.by_state.slot(state) -= 1;
        decrement(&mut self.by_provider, provider);
        decrement(&mut self.by_provider_type, kind);
    }

    pub(crate) fn moved(&mut self, from: WorkerState, to: WorkerState) {
        *self.by_state.slot(from) -= 1;
        *self.by_state.slot(to) += 1;
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
