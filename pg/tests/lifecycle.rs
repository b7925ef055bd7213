//! The lifecycle manager's suite of `core/tests/lifecycle/` on [`PostgresWorkerRegistry`]: the
//! same module files, included by path, with the PostgreSQL `backend` (a fresh schema per
//! registry, dropped with it, on the test's manual clock).
//!
//! Needs `HODEI_PG_URL` (`make test` sets it); fails without it.
//!
//! [`PostgresWorkerRegistry`]: hodei_workers_postgres::PostgresWorkerRegistry

mod support;

#[path = "support/backend.rs"]
mod backend;
#[path = "../../core/tests/support/test_registry.rs"]
mod test_registry;

#[path = "../../core/tests/lifecycle/common.rs"]
mod common;

#[path = "../../core/tests/lifecycle/brake_bound.rs"]
mod brake_bound;
#[path = "../../core/tests/lifecycle/cleanup.rs"]
mod cleanup;
#[path = "../../core/tests/lifecycle/contract.rs"]
mod contract;
#[path = "../../core/tests/lifecycle/flaky_registry.rs"]
mod flaky_registry;
#[path = "../../core/tests/lifecycle/health.rs"]
mod health;
#[path = "../../core/tests/lifecycle/pools.rs"]
mod pools;
#[path = "../../core/tests/lifecycle/pools_reads.rs"]
mod pools_reads;
#[path = "../../core/tests/lifecycle/provisioning.rs"]
mod provisioning;
#[path = "../../core/tests/lifecycle/reconcile.rs"]
mod reconcile;
#[path = "../../core/tests/lifecycle/scaling.rs"]
mod scaling;
#[path = "../../core/tests/lifecycle/stress.rs"]
mod stress;
