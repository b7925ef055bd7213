//! The registry conformance suite: every behavioural test of [`WorkerRegistry`] (operations and
//! error paths, deadlines, the model-based property test, multi-threaded stress, snapshots),
//! written once against `crate::backend::new_registry` so that every backend runs the same
//! tests. This binary runs them on the in-memory registry; the PostgreSQL crate's
//! `tests/conformance.rs` includes these module files with `#[path]` and its own `backend`.
//!
//! A module of this directory must stay backend-neutral: a test that inspects what only the
//! in-memory registry has goes into `memory_only.rs`, which the other backends do not include.
//!
//! [`WorkerRegistry`]: hodei_workers::WorkerRegistry

mod backend;
mod common;
#[path = "../support/invariants.rs"]
mod invariants;
#[path = "../support/rng.rs"]
mod rng;
#[path = "../support/test_registry.rs"]
mod test_registry;

mod contract;
mod deadlines;
mod fit;
mod model;
mod ops;
mod pool_counts;
mod snapshot;
mod stress;
mod telemetry;

// Not part of the shared suite (see the module).
mod memory_only;
