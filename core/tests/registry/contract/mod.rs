//! The registry contract of issue 10 (conditional transitions, longest idle, bulk heartbeats,
//! ids never reused, grace on restore, ...), written against `dyn WorkerRegistry`: every test
//! gets its registry from [`new_registry`], so these files can run against every backend.
//!
//! One file per item of the contract (numbered as in the issue), with the helpers they share
//! here:
//!
//! - `transition_if`: conditional transitions, and their races with claims;
//! - `claim_races`: a claim racing a release of its job, or calls that change nothing on its
//!   candidates, answers as at one moment (never "no worker" while one stays free);
//! - `longest_idle`: ready workers longest idle first, and ties at one instant;
//! - `heartbeat_many`: bulk heartbeats;
//! - `max_jobs` (4): a one-shot worker is not made ready again;
//! - `resource_ids`: the records of one provider holding given resource ids (the orphan
//!   retries' look), as `find_by_provider` would give them;
//! - `restore_grace` (6): restore grants grace from now;
//! - `restore_clock`: a snapshot dated after the registry's clock is clamped to its now, or
//!   refused beyond `MAX_SNAPSHOT_CLOCK_SKEW`;
//! - `health_checks` (7): concurrent health checks each see every due worker;
//! - `event_times` (8): timestamps follow the event order;
//! - `filter_parity`: filters with unusual strings (pattern characters, quotes, NUL) are judged
//!   alike by every backend;
//! - `filtered_claims` (10): claims with filters that match few or none of a large ready set,
//!   and a filter judged worker by worker over shared specs;
//! - `durations` (16): durations that cannot round-trip are refused;
//! - `handles`: every call hands back the handle as registered, whatever its shape;
//! - `strings` (17): strings that may reach C: no NUL, bounded lengths;
//! - `snapshot_times` (18): a snapshot's times may not lie after its own `taken_at`;
//! - `retired_ids` (20): ids are never reused;
//! - `after_unregister` (21): no event about a worker after its `Unregistered`;
//! - `subscription_capacity` (22): a subscription of capacity 0 is refused;
//! - `published_kinds` (23): `publish` refuses the kinds of a change of the registry's records.

use std::sync::Arc;
use std::time::Duration;

use hodei_workers::*;

mod after_unregister;
mod claim_races;
mod durations;
mod event_times;
mod filter_parity;
mod filtered_claims;
mod handles;
mod health_checks;
mod heartbeat_many;
mod longest_idle;
mod max_jobs;
mod published_kinds;
mod resource_ids;
mod restore_clock;
mod restore_grace;
mod retired_ids;
mod snapshot_times;
mod strings;
mod subscription_capacity;
mod transition_if;

/// Where the manual clock starts: far enough from zero that `now - timeout` never saturates.
pub(super) const T0: Timestamp = 1_700_000_000_000;

/// The registry under test: the backend of the binary that includes this module.
pub(super) fn new_registry(clock: Arc<ManualClock>) -> Arc<dyn WorkerRegistry> {
    crate::backend::new_registry(clock)
}

pub(super) fn setup() -> (Arc<ManualClock>, Arc<dyn WorkerRegistry>) {
    let clock = Arc::new(ManualClock::new(T0));
    (clock.clone(), new_registry(clock))
}

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn job(name: &str) -> JobId {
    JobId::new(name).unwrap()
}

pub(super) fn handle() -> WorkerHandle {
    WorkerHandle::new(
        ProviderId::new("docker-local").unwrap(),
        ProviderType::Docker,
        "c",
    )
}

pub(super) fn spec() -> Arc<WorkerSpec> {
    Arc::new(WorkerSpec::new("img"))
}

pub(super) fn register(registry: &dyn WorkerRegistry) -> WorkerId {
    registry.register(handle(), spec()).unwrap().id
}

pub(super) fn ready(registry: &dyn WorkerRegistry) -> WorkerId {
    let id = register(registry);
    registry.update_state(&id, WorkerState::Ready).unwrap();
    id
}

pub(super) fn get(registry: &dyn WorkerRegistry, id: &WorkerId) -> Worker {
    registry.get(id).unwrap().expect("registered")
}

pub(super) fn kinds(events: &[WorkerLifecycleEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}
