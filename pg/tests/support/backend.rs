//! The `backend` of the shared suites (core/tests/registry, core/tests/lifecycle) on PostgreSQL:
//! every registry in a fresh schema on the test's manual clock, dropped when the registry is.
#![allow(dead_code)] // shared by the registry and lifecycle suites, which use different parts

use std::sync::Arc;

use hodei_workers::{ManualClock, WorkerRegistry};
use hodei_workers_postgres::PostgresWorkerRegistry;

use crate::test_registry::TestRegistry;

/// The backend's name, for messages.
pub const NAME: &str = "postgres";

/// Cases of the model-based property test: every step of a case checks every record and index
/// with several statements, so a case costs ~100x the in-memory one; this count keeps the
/// suite within its time budget (`make test`'s PostgreSQL part < 5 min on 2 cores).
/// `PROPTEST_CASES` in the environment overrides it for a longer hunt.
pub const PROPTEST_CASES: u32 = 48;

/// The stress tests' and bulk tests' work, scaled down for database round trips.
pub const STRESS_SCALE: f64 = 0.08;

/// A registry in a fresh schema on `clock`; the schema is dropped with the registry.
pub fn new_registry(clock: Arc<ManualClock>) -> Arc<dyn WorkerRegistry> {
    new_registry_remembering(clock, hodei_workers_postgres::DEFAULT_RETIRED_ID_LIMIT).0
}

/// A registry that remembers `limit` retired ids, and what makes it forget the older ones now
/// (`prune_retired_ids`: the registry itself prunes at most once a minute).
pub fn new_registry_remembering(
    clock: Arc<ManualClock>,
    limit: usize,
) -> (Arc<dyn WorkerRegistry>, Box<dyn Fn()>) {
    shown_through(clock, limit, |registry| {
        (Arc::clone(registry) as Arc<dyn WorkerRegistry>, ())
    })
}

/// As [`new_registry_remembering`], the registry as `view` shows it. What `view` returns beside
/// it is kept until the registry is dropped (then the schema is dropped too).
pub fn shown_through<K: Send + 'static>(
    clock: Arc<ManualClock>,
    limit: usize,
    view: impl FnOnce(&Arc<PostgresWorkerRegistry>) -> (Arc<dyn WorkerRegistry>, K),
) -> (Arc<dyn WorkerRegistry>, Box<dyn Fn()>) {
    let guard = crate::support::SchemaGuard::new("conf");
    let registry =
        Arc::new(crate::support::connect(&guard.name, clock).with_retired_id_limit(limit));
    let (shown, kept) = view(&registry);
    let forget = Box::new(move || {
        registry.prune_retired_ids().expect("prune the retired ids");
    });
    let shown = Arc::new(TestRegistry::with_cleanup(shown, move || {
        drop(kept);
        drop(guard)
    }));
    (shown, forget)
}
