//! Every operation of [`WorkerRegistry`] and every error path, one behaviour per test, on
//! the backend under test driven by a [`ManualClock`].
//!
//! One file per operation, with the helpers they share here:
//!
//! - `register`: `register`, `unregister` and `get`;
//! - `find`: `find` and each field of its filter;
//! - `update_state`: `update_state`, every pair of states, and what a transition does to a job;
//! - `heartbeat`: `heartbeat` and its opt-in events;
//! - `assign`: `assign_to_job`;
//! - `release`: `release_from_job`, late and stale releases, `max_jobs`;
//! - `claim`: `claim`, its preference and its filter;
//! - `termination`: `find_for_termination` and `grant_grace`;
//! - `stats`: `stats` and `count`;
//! - `events`: `subscribe` and `publish`;
//! - `errors`: every error kind the registry produces, and the events after refused calls.

use std::collections::BTreeSet;
use std::time::Duration;

use hodei_workers::*;

mod assign;
mod claim;
mod errors;
mod events;
mod find;
mod heartbeat;
mod register;
mod release;
mod stats;
mod termination;
mod update_state;

pub(super) const MS: Duration = Duration::from_millis(1);

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn worker(registry: &dyn WorkerRegistry, id: &WorkerId) -> Worker {
    registry.get(id).unwrap().expect("worker present")
}

pub(super) fn ids(workers: &[Worker]) -> BTreeSet<WorkerId> {
    workers.iter().map(|w| w.id).collect()
}

pub(super) fn set<const N: usize>(ids: [WorkerId; N]) -> BTreeSet<WorkerId> {
    ids.into_iter().collect()
}
