//! The registry conformance suite of `core/tests/registry/` on the store-fenced view of a
//! [`PostgresWorkerRegistry`] (`WorkerRegistry::fenced`, a term held for the whole test): the
//! suite of `conformance.rs`, run through the view's fenced transactions. While its term holds,
//! the view is the registry.
//!
//! Needs `HODEI_PG_URL` (`make test` sets it); fails without it.
//!
//! [`PostgresWorkerRegistry`]: hodei_workers_postgres::PostgresWorkerRegistry

mod support;

#[path = "support/backend_fenced.rs"]
mod backend;
#[path = "support/backend.rs"]
mod plain;
include!("registry_suites.in");
