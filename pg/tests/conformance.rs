//! The registry conformance suite of `core/tests/registry/` on [`PostgresWorkerRegistry`]: the
//! same module files, included by path, with a `backend` that gives every test a registry in a
//! fresh schema (dropped when the test is done) on the test's manual clock.
//!
//! Needs `HODEI_PG_URL` (`make test` sets it); fails without it.

mod support;

mod backend {
    use std::sync::Arc;

    use hodei_workers::{ManualClock, WorkerRegistry};

    use crate::common::TestRegistry;

    /// The backend's name, for messages.
    pub const NAME: &str = "postgres";

    /// Cases of the model-based property test: every step of a case checks every record and
    /// index with several statements, so a case costs ~100x the in-memory one; the default
    /// keeps the suite within its time budget (`make test`'s PostgreSQL part < 5 min on 2 cores).
    /// `PROPTEST_CASES` in the environment overrides it for a longer hunt.
    pub const PROPTEST_CASES: u32 = 48;

    /// The stress tests' work, scaled down for database round trips.
    pub const STRESS_SCALE: f64 = 0.08;

    /// A registry in a fresh schema on `clock`; the schema is dropped with the registry.
    pub fn new_registry(clock: Arc<ManualClock>) -> Arc<dyn WorkerRegistry> {
        let guard = crate::support::SchemaGuard::new("conf");
        let registry = crate::support::connect(&guard.name, clock);
        Arc::new(TestRegistry::with_cleanup(Arc::new(registry), move || {
            drop(guard)
        }))
    }
}

#[path = "../../core/tests/registry/common.rs"]
mod common;

#[path = "../../core/tests/registry/contract.rs"]
mod contract;
#[path = "../../core/tests/registry/deadlines.rs"]
mod deadlines;
#[path = "../../core/tests/registry/model.rs"]
mod model;
#[path = "../../core/tests/registry/ops.rs"]
mod ops;
#[path = "../../core/tests/registry/snapshot.rs"]
mod snapshot;
#[path = "../../core/tests/registry/stress.rs"]
mod stress;
