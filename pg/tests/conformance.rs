//! The registry conformance suite of `core/tests/registry/` on [`PostgresWorkerRegistry`]: the
//! same module files, included by path, with a `backend` that gives every test a registry in a
//! fresh schema (dropped when the test is done) on the test's manual clock.
//!
//! Needs `HODEI_PG_URL` (`make test` sets it); fails without it.
//!
//! [`PostgresWorkerRegistry`]: hodei_workers_postgres::PostgresWorkerRegistry

mod support;

#[path = "support/backend.rs"]
mod backend;
#[path = "../../core/tests/support/test_registry.rs"]
mod test_registry;

#[path = "../../core/tests/registry/common.rs"]
mod common;

#[path = "../../core/tests/registry/contract/mod.rs"]
mod contract;
#[path = "../../core/tests/registry/deadlines.rs"]
mod deadlines;
#[path = "../../core/tests/registry/model.rs"]
mod model;
#[path = "../../core/tests/registry/ops/mod.rs"]
mod ops;
#[path = "../../core/tests/registry/pool_counts.rs"]
mod pool_counts;
#[path = "../../core/tests/registry/snapshot.rs"]
mod snapshot;
#[path = "../../core/tests/registry/stress.rs"]
mod stress;
