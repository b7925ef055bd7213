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
include!("registry_suites.in");
