//! Fixtures of the smaller PostgreSQL tests (a registry in a schema of its own on a manual
//! clock, ids, specs), on top of `support` (the server, unique schema names dropped at the end,
//! bounded waits), which every PostgreSQL test shares.
#![allow(dead_code)]

use std::sync::Arc;

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;

pub const T0: Timestamp = 1_700_000_000_000;

#[path = "../support/mod.rs"]
pub mod support;

#[allow(unused_imports)] // each test binary uses a different part of it
pub use support::{url, SchemaGuard};

/// A new registry for `test`, in a schema of its own (dropped with the guard), on a manual
/// clock at [`T0`].
pub fn registry(test: &str) -> (Arc<ManualClock>, PostgresWorkerRegistry, SchemaGuard) {
    let clock = Arc::new(ManualClock::new(T0));
    let schema = SchemaGuard::new(test);
    let registry = support::connect(&schema.name, clock.clone());
    (clock, registry, schema)
}

pub fn provider(name: &str) -> ProviderId {
    ProviderId::new(name).unwrap()
}

pub fn job(name: &str) -> JobId {
    JobId::new(name).unwrap()
}

pub fn handle() -> WorkerHandle {
    WorkerHandle::new(provider("docker-local"), ProviderType::Docker, "c")
}

pub fn spec() -> Arc<WorkerSpec> {
    Arc::new(WorkerSpec::new("img"))
}

pub fn ready(registry: &dyn WorkerRegistry, spec: Arc<WorkerSpec>) -> WorkerId {
    let id = registry.register(handle(), spec).unwrap().id;
    registry.update_state(&id, WorkerState::Ready).unwrap();
    id
}

pub fn kinds(sub: &Subscription) -> Vec<EventKind> {
    sub.drain().into_iter().map(|e| e.kind).collect()
}

/// The invariants of DESIGN.md §3 over the whole registry: the conformance suite's checker.
#[path = "../../../core/tests/support/invariants.rs"]
mod invariants;
#[allow(unused_imports)] // as the module's dead code: not every test crate checks them
pub use invariants::assert_invariants;
