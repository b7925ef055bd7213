//! A registry on the test server (`HODEI_PG_URL`) in a schema of its own, dropped at the end.
#![allow(dead_code)]

use std::sync::Arc;

use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;

pub const T0: Timestamp = 1_700_000_000_000;

/// The server's connection string: `HODEI_PG_URL`, required (no test is skipped silently).
pub fn url() -> String {
    std::env::var("HODEI_PG_URL").expect(
        "HODEI_PG_URL must point at a PostgreSQL server (make test starts one), \
         e.g. HODEI_PG_URL='host=/tmp/pg user=postgres dbname=postgres'",
    )
}

/// A fresh registry name for `test`.
pub fn name(test: &str) -> String {
    let id = WorkerId::new().to_string();
    format!("t_{}_{}", test, &id[..8]).to_lowercase()
}

/// Drops the registry's schema when the test ends (pass or fail).
pub struct Schema(pub String);

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = PostgresWorkerRegistry::drop_schema(&url(), &self.0);
    }
}

pub fn registry(test: &str) -> (Arc<ManualClock>, PostgresWorkerRegistry, Schema) {
    let clock = Arc::new(ManualClock::new(T0));
    let name = name(test);
    let schema = Schema(name.clone());
    let registry =
        PostgresWorkerRegistry::connect_with_clock(&url(), &name, clock.clone()).expect("connect");
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
