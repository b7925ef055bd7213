//! The lifecycle manager's suite of `core/tests/lifecycle/` on the store-fenced view of a
//! [`PostgresWorkerRegistry`] (`WorkerRegistry::fenced`, a term held for the whole test): every
//! write of the managers and of the tests goes through the view's fenced transactions, and the
//! suite must pass as on the registry itself.
//!
//! Needs `HODEI_PG_URL` (`make test` sets it); fails without it.
//!
//! [`PostgresWorkerRegistry`]: hodei_workers_postgres::PostgresWorkerRegistry

mod support;

#[path = "support/backend_fenced.rs"]
mod backend;
#[path = "support/backend.rs"]
mod plain;
include!("lifecycle_suites.in");
