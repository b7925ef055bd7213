//! # hodei-workers
//!
//! The registry of a job system's **ephemeral workers** (containers, pods, VMs, functions)
//! and the engine that drives their lifecycle: registration, heartbeats, job assignment,
//! health checks, cleanup, provisioning through pluggable providers, autoscaling.
//!
//! Synchronous and runtime-agnostic: state lives behind `parking_lot` locks, and no thread is
//! started behind your back.
//!
//! - [`WorkerRegistry`] / [`InMemoryWorkerRegistry`]: who the workers are, their
//!   [`WorkerState`], which [`JobId`] each holds. Sharded; `heartbeat` and `get` take no
//!   exclusive lock; `claim` picks and assigns a worker atomically; `stats` is O(1); finding
//!   what expired costs what is due, not the fleet size.
//! - [`Clock`]: [`SystemClock`] (monotonic) in production, [`ManualClock`] in tests.
//! - Events: [`WorkerRegistry::subscribe`] gives a [`Subscription`] on a bounded channel that
//!   never blocks the registry.
//! - [`WorkerLifecycleManager`]: the tick-driven engine on a registry — [`WorkerProvider`]s,
//!   provisioning within `max_workers`, health checks with a stall grace and a mass-expiry
//!   brake, cleanup that drains rather than kills, destroy retries (no leaked instances),
//!   reconcile, and autoscaling; [`tick`](WorkerLifecycleManager::tick) returns a
//!   [`TickReport`] that explains each decision and lists the jobs to requeue.
//! - [`Ticker`]: the opt-in thread that ticks every interval
//!   ([`start_ticker`](WorkerLifecycleManager::start_ticker)); without it, no thread exists.
//! - Replicas: several managers may share one registry (on PostgreSQL); one leads, under a
//!   lease with a term ([`Leadership`]), and every leader-only write is fenced by it
//!   ([`WorkerLifecycleManager::replicated`]).
//! - [`metrics`]: the manager's Prometheus/OpenMetrics metrics
//!   ([`WorkerLifecycleManager::metrics`], [`metrics_text`](WorkerLifecycleManager::metrics_text)),
//!   read at scrape time from what is already maintained; with the `tracing` cargo feature,
//!   spans for tick, health check, cleanup, provision and destroy.
//! - `sim` (cargo feature `sim`, off by default): a seeded, deterministic fleet simulation with
//!   fault injection, for the tests and for policy what-if runs (`examples/simulate.rs`). Not
//!   compiled into the C library or the Python module.
//!
//! ```
//! use std::sync::Arc;
//! use hodei_workers::*;
//!
//! let clock = Arc::new(ManualClock::new(1_700_000_000_000));
//! let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
//! let docker = ProviderId::new("docker-local")?;
//! let spec = Arc::new(WorkerSpec::new("ubuntu:24.04"));
//!
//! // The provider started a container; its agent reports in.
//! let worker = registry.register(WorkerHandle::new(docker, ProviderType::Docker, "c-1"), spec)?;
//! registry.update_state(&worker.id, WorkerState::Ready)?;
//!
//! // The scheduler hands out a job.
//! let job = JobId::new("build-1234")?;
//! let busy = registry.claim(&WorkerFilter::new(), job.clone())?.expect("a ready worker");
//! assert_eq!(busy.current_job.as_ref(), Some(&job));
//!
//! // The agent goes silent for two minutes: it shows up as unhealthy.
//! clock.advance(std::time::Duration::from_secs(120));
//! let silent = registry.find_unhealthy(std::time::Duration::from_secs(60))?;
//! assert_eq!(silent[0].id, worker.id);
//! # Ok::<(), hodei_workers::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

mod clock;
mod error;
mod events;
mod filter;
mod ids;
mod lifecycle;
pub mod metrics;
mod registry;
#[cfg(feature = "sim")]
pub mod sim;
mod state;
mod trace;
mod worker;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{Error, ErrorKind, Result};
pub use events::{
    EventFeed, EventKind, EventSource, SubscribeOptions, Subscription, WorkerLifecycleEvent,
};
pub use filter::WorkerFilter;
pub use ids::{JobId, ProviderId, WorkerId, MAX_JOB_ID_LEN, MAX_PROVIDER_ID_LEN};
pub use lifecycle::{
    AlwaysLeader, InMemoryLease, LeaderInfo, Leadership, LeaseStatus, Term, Ticker, TickerStats,
    TICKER_REPORTS_CAPACITY,
};
pub use lifecycle::{
    CleanupResult, DestroyFailure, HealthCheckResult, LifecycleStats, LostJob, MassExpiryGiveUp,
    MassExpiryHold, OrphanInstance, ProviderBackoff, ProviderError, ProviderErrorKind,
    ProviderResult, ProvisionFailure, ProvisionedWorker, ReconcileReport, ScalingPlan,
    TerminatedWorker, TickReport, UnhealthyWorker, WorkerLifecycleConfig, WorkerLifecycleManager,
    WorkerProvider, MAX_CONFIG_DURATION,
};
pub use lifecycle::{
    Demand, Pool, PoolBlock, PoolDecision, PoolPlan, Requirement, Serving, Spill, UnmetDemand,
    Unschedulable, DEFAULT_POOL_SCALE_DOWN_COOLDOWN, DEFAULT_POOL_SCALE_UP_COOLDOWN,
    MAX_POOL_NAME_LEN, POOL_LABEL,
};
pub use registry::{
    HeartbeatAges, InMemoryWorkerRegistry, JobTotals, Snapshot, StateCounts, SubscriberDrops,
    TransitionGuard, Transitioned, WorkerRegistry, WorkerRegistryStats, SNAPSHOT_FORMAT,
};
pub use state::WorkerState;
pub use worker::{
    Architecture, ProviderCategory, ProviderType, ResourceRequirements, TerminationReason, Worker,
    WorkerHandle, WorkerSpec, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LIFETIME, MAX_ENTRIES,
    MAX_IMAGE_LEN, MAX_KEY_LEN, MAX_RESOURCE_ID_LEN, MAX_SPEC_DURATION, MAX_VALUE_LEN,
};

#[allow(dead_code)]
fn assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<InMemoryWorkerRegistry>();
    check::<WorkerLifecycleManager>();
    check::<Subscription>();
    check::<Ticker>();
    check::<std::sync::Arc<dyn WorkerRegistry>>();
}

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
