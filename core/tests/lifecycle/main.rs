//! The lifecycle manager's suite, written once against `crate::backend::new_registry` so that
//! it runs on every registry backend: this binary on the in-memory registry, the PostgreSQL
//! crate's `tests/lifecycle.rs` (the same module files, included by path) on PostgreSQL.
//!
//! Every module here is backend-neutral. (The few registries built directly in memory, e.g. for
//! a config check in `contract.rs`, test the manager's own validation, not a backend.)

#[path = "../registry/backend.rs"]
mod backend;
mod common;
#[path = "../support/lease_contract.rs"]
mod lease_contract;
#[path = "../support/rng.rs"]
mod rng;
#[path = "../support/test_registry.rs"]
mod test_registry;

mod brake_bound;
mod cleanup;
mod contract;
mod flaky_registry;
mod health;
mod metrics_reads;
mod pools;
mod pools_reads;
mod pools_seeds;
mod provisioning;
mod reconcile;
mod reentrancy;
mod scaling;
mod stress;

// Not included by the PostgreSQL crate: the replicated manager on an in-memory lease
// (pg/tests/failover.rs runs the failover on PostgreSQL), its leadership gauges, and the
// ticker.
mod leadership;
mod metrics_leader;
mod replicated_seeds;
mod ticker;
