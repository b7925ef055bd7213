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
include!("lifecycle_suites.in");
