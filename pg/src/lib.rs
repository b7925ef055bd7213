//! # hodei-workers-postgres
//!
//! The [`WorkerRegistry`](hodei_workers::WorkerRegistry) of
//! [hodei-workers](hodei_workers) on **PostgreSQL** (≥ 13): several scheduler replicas share
//! one fleet, and the fleet outlives them. Behind the same trait as the in-memory registry, so
//! the lifecycle manager, the C ABI and the Python module work on it unchanged.
//!
//! ```no_run
//! use std::sync::Arc;
//! use hodei_workers::*;
//! use hodei_workers_postgres::PostgresWorkerRegistry;
//!
//! let registry = PostgresWorkerRegistry::connect("host=/tmp user=postgres dbname=postgres", "fleet")?;
//! let handle = WorkerHandle::new(ProviderId::new("docker-local")?, ProviderType::Docker, "c-1");
//! let worker = registry.register(handle, Arc::new(WorkerSpec::new("ubuntu:24.04")))?;
//! registry.update_state(&worker.id, WorkerState::Ready)?;
//! let busy = registry.claim(&WorkerFilter::new(), JobId::new("job-1")?)?;
//! assert!(busy.is_some());
//! # Ok::<(), hodei_workers::Error>(())
//! ```
//!
//! Modules, one per concern: [`schema`] (the tables and their migrations), `registry` (the type
//! and the trait: its changes, records, jobs), `claim`, `deadlines`, `stats`, `heartbeat` (coalesced heartbeats), [`events`] (the
//! outbox and its readers: read it for the ordering rule and what a `seq` gap means),
//! `snapshot`, `retention` (what the registry forgets: the oldest events and retired ids),
//! `error` (SQL errors to the core's kinds), `pool`, `leadership`
//! ([`PostgresLeadership`]: the [`Leadership`](hodei_workers::Leadership) lease with a term that
//! the replicated manager uses).
//!
//! The client is the synchronous `postgres` crate. It cannot block inside an async runtime:
//! a call from there returns `Error::Backend` saying to use a blocking thread
//! (`spawn_blocking`), never a panic.
#![forbid(unsafe_code)]

mod claim;
mod deadlines;
mod error;
pub mod events;
mod heartbeat;
mod leadership;
mod pool;
mod registry;
mod retention;
pub mod schema;
mod snapshot;
mod sql;
mod stats;
#[cfg(test)]
mod test_support;

pub use leadership::{PostgresLeadership, MAX_HOLDER_LEN};
pub use registry::PostgresWorkerRegistry;
pub use retention::DEFAULT_RETIRED_ID_LIMIT;
pub use schema::validate_name;
