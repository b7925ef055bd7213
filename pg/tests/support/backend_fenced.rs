//! The `backend` of the shared suites (core/tests/registry, core/tests/lifecycle) on a
//! store-fenced view (`WorkerRegistry::fenced`): every registry is the view of a lease term held
//! for the whole test, so every write the suite makes goes through the view's fenced
//! transactions. While its term holds, the view must behave exactly as the registry does.
#![allow(dead_code)] // shared by the registry and lifecycle suites, which use different parts

use std::sync::Arc;
use std::time::Duration;

use hodei_workers::{Leadership, LeaseStatus, ManualClock, WorkerRegistry};

#[allow(unused_imports)] // the lifecycle suite uses neither
pub use crate::plain::{PROPTEST_CASES, STRESS_SCALE};

/// The backend's name, for messages.
pub const NAME: &str = "postgres, fenced view";

/// A fenced view of a registry in a fresh schema on `clock`, its term held by a lease that
/// nobody else competes for (the fence checks holder and term, not expiry).
pub fn new_registry(clock: Arc<ManualClock>) -> Arc<dyn WorkerRegistry> {
    new_registry_remembering(clock, hodei_workers_postgres::DEFAULT_RETIRED_ID_LIMIT).0
}

/// As [`crate::plain::new_registry_remembering`], through the fenced view.
pub fn new_registry_remembering(
    clock: Arc<ManualClock>,
    limit: usize,
) -> (Arc<dyn WorkerRegistry>, Box<dyn Fn()>) {
    crate::plain::shown_through(clock, limit, |registry| {
        let lease = registry
            .leadership("conformance", Duration::from_secs(3600))
            .expect("lease");
        let LeaseStatus::Held(info) = lease.acquire_or_renew(None).expect("acquire") else {
            panic!("a fresh registry's lease is free");
        };
        let view = registry
            .fenced(&lease, info.term)
            .expect("the lease of the registry's own store");
        (view, lease)
    })
}
