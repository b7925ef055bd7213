//! The backend under test in this binary: the in-memory registry. (The PostgreSQL crate's
//! `tests/conformance.rs` includes the same suite with a `backend` module of its own.)
#![allow(dead_code)] // shared by the registry and lifecycle suites, which use different parts

use std::sync::Arc;

use hodei_workers::{InMemoryWorkerRegistry, ManualClock, WorkerRegistry};

/// The backend's name, for messages.
pub const NAME: &str = "in-memory";

/// Cases per property test (the model test): cheap here.
pub const PROPTEST_CASES: u32 = 1_000;

/// How much work the multi-threaded stress tests do (1.0 = the full amount).
pub const STRESS_SCALE: f64 = 1.0;

/// A fresh, empty registry on `clock`.
pub fn new_registry(clock: Arc<ManualClock>) -> Arc<dyn WorkerRegistry> {
    Arc::new(InMemoryWorkerRegistry::with_clock(clock))
}

/// A fresh registry that remembers `limit` retired ids, and what makes it forget the older ones
/// now: nothing here (the in-memory registry forgets as it retires).
pub fn new_registry_remembering(
    clock: Arc<ManualClock>,
    limit: usize,
) -> (Arc<dyn WorkerRegistry>, Box<dyn Fn()>) {
    let registry = InMemoryWorkerRegistry::with_clock(clock).with_retired_id_limit(limit);
    (Arc::new(registry), Box::new(|| {}))
}
