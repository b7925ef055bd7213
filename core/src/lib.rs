//! # hodei-workers
//!
//! The registry of a job system's **ephemeral workers** (containers, pods, VMs, functions)
//! and the engine that drives their lifecycle: registration, heartbeats, job assignment,
//! health checks, cleanup, provisioning through pluggable providers, autoscaling.
//!
//! Synchronous and runtime-agnostic: state lives behind `parking_lot` locks, no call blocks
//! on I/O of its own (a PostgreSQL backend does), and no thread is started behind your back.
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
//!
//! The sections below walk through the crate in the order a host meets it: the
//! [registry](#the-registry), [claiming](#claiming), [heartbeats and
//! deadlines](#heartbeats-and-deadlines), [events](#events), the [manager and
//! `tick`](#the-manager-and-tick), [providers](#providers), [snapshots](#snapshots),
//! [errors](#errors), [thread safety and cost](#thread-safety-and-cost). How it works inside
//! (the lock order, the heartbeat column, why `claim` re-checks) is in [`implementation`].
//!
//! # The registry
//!
//! A [`WorkerRegistry`] knows every worker: its [`WorkerId`], the [`WorkerHandle`] its
//! provider gave it (provider, type, resource id), its [`WorkerSpec`] (image, labels,
//! capabilities, resources, idle timeout, lifetime — shared by `Arc` between the workers made
//! from it), its [`WorkerState`] and the one [`JobId`] it may hold. [`InMemoryWorkerRegistry`]
//! is the in-process backend; the `hodei-workers-postgres` crate is a shared one. Both pass
//! the same conformance suite.
//!
//! A worker moves along `Creating → Connecting → Ready ⇄ Busy → Draining → Terminating →
//! Terminated` (and from any live state to `Terminating`); [`update_state`] refuses any other
//! move. Records are read as [`Worker`] snapshots; [`find`](WorkerRegistry::find) takes a
//! [`WorkerFilter`]; [`stats`](WorkerRegistry::stats) counts by state and provider in O(1).
//!
//! ```
//! use std::sync::Arc;
//! use hodei_workers::*;
//!
//! let registry = InMemoryWorkerRegistry::new();
//! let k8s = ProviderId::new("k8s-eu")?;
//! let spec = Arc::new(WorkerSpec::new("runner:3").with_label("pool", "ci"));
//! let w = registry.register(WorkerHandle::new(k8s, ProviderType::Kubernetes, "pod-7"), spec)?;
//! assert_eq!(w.state, WorkerState::Creating);
//! registry.update_state(&w.id, WorkerState::Connecting)?;
//! registry.update_state(&w.id, WorkerState::Ready)?;
//!
//! let ci = registry.find(&WorkerFilter::new().label("pool", "ci").state(WorkerState::Ready))?;
//! assert_eq!(ci.len(), 1);
//! assert_eq!(registry.stats()?.by_state.ready, 1);
//! # Ok::<(), hodei_workers::Error>(())
//! ```
//!
//! # Claiming
//!
//! [`claim`](WorkerRegistry::claim) picks a `Ready` worker that matches a filter — the most
//! recently idle one, so that surplus workers idle out — and assigns the job to it in one
//! atomic step: two schedulers claiming at once
//! never get the same worker, and a job is never held twice
//! ([`Error::JobAlreadyAssigned`]). `Ok(None)` says no worker matches now.
//! [`release_from_job`](WorkerRegistry::release_from_job) hands the job back (with the job
//! expected, so that a stale release cannot free the next job); the worker is `Ready` again,
//! or `Draining` once it ran `max_jobs`.
//!
//! ```
//! use std::sync::Arc;
//! use hodei_workers::*;
//!
//! let registry = InMemoryWorkerRegistry::new();
//! let p = ProviderId::new("aws")?;
//! for (res, gpu) in [("i-1", "no"), ("i-2", "yes")] {
//!     let spec = Arc::new(WorkerSpec::new("trainer").with_label("gpu", gpu));
//!     let w = registry.register(WorkerHandle::new(p.clone(), ProviderType::Ec2, res), spec)?;
//!     registry.update_state(&w.id, WorkerState::Ready)?;
//! }
//!
//! let job = JobId::new("train-1")?;
//! let gpu = registry.claim(&WorkerFilter::new().label("gpu", "yes"), job.clone())?.unwrap();
//! assert_eq!(gpu.handle.resource_id, "i-2");
//! // The same job again: an error, not a second worker.
//! let again = registry.claim(&WorkerFilter::new(), job.clone());
//! assert_eq!(again.unwrap_err().kind(), ErrorKind::JobAlreadyAssigned);
//! // No other GPU worker is free.
//! assert!(registry.claim(&WorkerFilter::new().label("gpu", "yes"), JobId::new("train-2")?)?.is_none());
//!
//! assert_eq!(registry.release_from_job(&gpu.id, Some(&job))?, job);
//! # Ok::<(), hodei_workers::Error>(())
//! ```
//!
//! # Heartbeats and deadlines
//!
//! An agent calls [`heartbeat`](WorkerRegistry::heartbeat) (or a host batches them with
//! [`heartbeat_many`](WorkerRegistry::heartbeat_many)); it moves the worker's heartbeat
//! deadline and nothing else. Every deadline is measured on the registry's [`Clock`]
//! ([`SystemClock`], monotonic, in production; [`ManualClock`] in tests):
//!
//! - silent longer than a timeout: [`find_unhealthy`](WorkerRegistry::find_unhealthy)
//!   (`Connecting`, `Ready`, `Busy`, `Draining` workers; reporting in counts as a heartbeat);
//! - still `Creating`/`Connecting` too long after registration:
//!   [`find_startup_expired`](WorkerRegistry::find_startup_expired);
//! - idle past `spec.idle_timeout`, past `spec.max_lifetime`, drained:
//!   [`find_for_termination`](WorkerRegistry::find_for_termination).
//!
//! Each costs what is due, not the fleet's size. After a stall of the host,
//! [`grant_grace`](WorkerRegistry::grant_grace) gives every worker a fresh heartbeat and
//! startup deadline in O(1).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use hodei_workers::*;
//!
//! let clock = Arc::new(ManualClock::new(1_700_000_000_000));
//! let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
//! let spec = Arc::new(WorkerSpec::new("img").with_idle_timeout(Duration::from_secs(300)));
//! let handle = WorkerHandle::new(ProviderId::new("local")?, ProviderType::BareMetal, "p-1");
//! let w = registry.register(handle, spec)?;
//! registry.update_state(&w.id, WorkerState::Ready)?;
//!
//! clock.advance(Duration::from_secs(50));
//! registry.heartbeat(&w.id)?;
//! clock.advance(Duration::from_secs(50));
//! assert!(registry.find_unhealthy(Duration::from_secs(60))?.is_empty(), "heard 50 s ago");
//! clock.advance(Duration::from_secs(50));
//! assert_eq!(registry.find_unhealthy(Duration::from_secs(60))?.len(), 1, "silent 100 s");
//!
//! // Heartbeats do not make a worker busy: it is idle past its 300 s.
//! clock.advance(Duration::from_secs(200));
//! let due = registry.find_for_termination()?;
//! assert_eq!(due[0].1, TerminationReason::Idle);
//! # Ok::<(), hodei_workers::Error>(())
//! ```
//!
//! # Events
//!
//! [`subscribe`](WorkerRegistry::subscribe) gives a [`Subscription`]: a bounded channel of
//! [`WorkerLifecycleEvent`]s that never blocks the registry. A subscriber that falls behind
//! loses events (counted by [`Subscription::dropped`]) and sees a gap in `seq`, which follows
//! the order of the changes. Heartbeat events are off unless asked for
//! ([`SubscribeOptions::heartbeats`]). The lifecycle manager adds its own events (provisions,
//! failed destroys, a held mass expiry) to the same stream.
//!
//! ```
//! use std::sync::Arc;
//! use hodei_workers::*;
//!
//! let registry = InMemoryWorkerRegistry::new();
//! let events = registry.subscribe(SubscribeOptions::default().capacity(1024))?;
//! let handle = WorkerHandle::new(ProviderId::new("local")?, ProviderType::BareMetal, "p-1");
//! let w = registry.register(handle, Arc::new(WorkerSpec::new("img")))?;
//! registry.update_state(&w.id, WorkerState::Ready)?;
//!
//! let seen: Vec<&str> = events.drain().iter().map(|e| e.kind.name()).collect();
//! assert_eq!(seen, ["registered", "state_changed"]);
//! # Ok::<(), hodei_workers::Error>(())
//! ```
//!
//! # The manager and `tick`
//!
//! A [`WorkerLifecycleManager`] drives a registry: the host calls
//! [`tick`](WorkerLifecycleManager::tick) regularly (every second, say) with the demand
//! (pending jobs), and everything due happens inside that call — the health check, cleanup
//! of idle, expired and drained workers, destroy retries, provisioning up to the scaling
//! target within `max_workers`. The [`TickReport`] explains each decision and lists the jobs
//! lost with a worker, for the host to requeue. Every step can also be called on its own
//! ([`run_health_check`](WorkerLifecycleManager::run_health_check),
//! [`cleanup_workers`](WorkerLifecycleManager::cleanup_workers),
//! [`provision_worker`](WorkerLifecycleManager::provision_worker),
//! [`terminate_worker`](WorkerLifecycleManager::terminate_worker),
//! [`reconcile`](WorkerLifecycleManager::reconcile)). A [`Ticker`] is the opt-in thread that
//! ticks for you; replicas of the manager on one shared registry elect one leader
//! ([`Leadership`], [`WorkerLifecycleManager::replicated`]).
//!
//! ```
//! use std::sync::Arc;
//! use hodei_workers::*;
//!
//! # #[derive(Debug)] struct Local;
//! # impl WorkerProvider for Local {
//! #     fn provider_id(&self) -> ProviderId { ProviderId::new("local").unwrap() }
//! #     fn provider_type(&self) -> ProviderType { ProviderType::BareMetal }
//! #     fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
//! #         let h = WorkerHandle::new(self.provider_id(), self.provider_type(), id.to_string());
//! #         Ok(WorkerHandle { worker_id: id, ..h })
//! #     }
//! #     fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> { Ok(()) }
//! # }
//! let registry: Arc<dyn WorkerRegistry> = Arc::new(InMemoryWorkerRegistry::new());
//! let manager = WorkerLifecycleManager::new(registry.clone(), WorkerLifecycleConfig::default())?;
//! manager.register_provider(Arc::new(Local))?;
//! manager.set_scaling_target(&ProviderId::new("local")?, Arc::new(WorkerSpec::new("img")))?;
//!
//! let report = manager.tick(4); // four jobs wait
//! assert!(!report.provisioned.is_empty());
//! println!("{}", report.decisions.join("\n"));
//! assert_eq!(manager.stats()?.registry.total, report.provisioned.len());
//! # Ok::<(), hodei_workers::Error>(())
//! ```
//!
//! # Providers
//!
//! A [`WorkerProvider`] creates and destroys instances (Docker, Kubernetes, a cloud API...):
//! `create_worker` starts an agent that reports in with the id it is given, `destroy_worker`
//! removes it, the optional `list_workers` lets [`reconcile`](WorkerLifecycleManager::reconcile)
//! find orphans. The manager calls them outside every lock, on the thread that called it; a
//! panic is caught and becomes a [`ProviderError`]; failing creates back off per provider.
//! A worker's record leaves the registry only once its provider confirmed the destroy
//! (`Ok`, or [`ProviderError::not_found`]): a failed destroy is retried with back-off, so no
//! instance is leaked.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::time::Duration;
//! use hodei_workers::*;
//!
//! /// A provider whose API is down until `up` is set.
//! #[derive(Debug, Default)]
//! struct Flaky { up: AtomicBool }
//! impl WorkerProvider for Flaky {
//!     fn provider_id(&self) -> ProviderId { ProviderId::new("flaky").unwrap() }
//!     fn provider_type(&self) -> ProviderType { ProviderType::Docker }
//!     fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
//!         let h = WorkerHandle::new(self.provider_id(), self.provider_type(), id.to_string());
//!         Ok(WorkerHandle { worker_id: id, ..h })
//!     }
//!     fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
//!         if self.up.load(Ordering::SeqCst) { Ok(()) } else { Err(ProviderError::new("API down")) }
//!     }
//! }
//!
//! let clock = Arc::new(ManualClock::new(1_700_000_000_000));
//! let registry: Arc<dyn WorkerRegistry> =
//!     Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
//! let manager = WorkerLifecycleManager::new(registry.clone(), WorkerLifecycleConfig::default())?;
//! let provider = Arc::new(Flaky::default());
//! manager.register_provider(provider.clone())?;
//!
//! let w = manager.provision_worker(&ProviderId::new("flaky")?, Arc::new(WorkerSpec::new("img")))?;
//! let r = manager.terminate_worker(&w.id, TerminationReason::Requested)?;
//! assert_eq!(r.failed.len(), 1, "the destroy failed...");
//! assert_eq!(registry.get(&w.id)?.unwrap().state, WorkerState::Terminating, "...the record stays");
//!
//! provider.up.store(true, Ordering::SeqCst);
//! clock.advance(Duration::from_secs(5));
//! let report = manager.tick(0);
//! assert_eq!(report.terminated[0].worker_id, w.id, "retried and confirmed");
//! assert!(registry.get(&w.id)?.is_none());
//! # Ok::<(), hodei_workers::Error>(())
//! ```
//!
//! # Snapshots
//!
//! [`snapshot`](WorkerRegistry::snapshot) takes every record, the event `seq` and the retired
//! ids at one instant; a [`Snapshot`] is serde data ([`Snapshot::to_json`], format
//! [`SNAPSHOT_FORMAT`]) that [`restore`](WorkerRegistry::restore) loads into an empty registry
//! of any backend — after a restart, the host was away: restoring grants every worker a fresh
//! heartbeat deadline. A snapshot dated after the restoring registry's clock has its times
//! clamped to that clock's now, or is refused beyond [`MAX_SNAPSHOT_CLOCK_SKEW`]
//! ([`Snapshot::fit_to_clock`]).
//!
//! ```
//! use std::sync::Arc;
//! use hodei_workers::*;
//!
//! let before = InMemoryWorkerRegistry::new();
//! let handle = WorkerHandle::new(ProviderId::new("local")?, ProviderType::BareMetal, "p-1");
//! let w = before.register(handle, Arc::new(WorkerSpec::new("img")))?;
//! let text = before.snapshot()?.to_json()?;
//!
//! let after = InMemoryWorkerRegistry::new();
//! after.restore(Snapshot::from_json(&text)?)?;
//! assert_eq!(after.get(&w.id)?.unwrap().state, WorkerState::Creating);
//! // Ids are never reused: the restored worker's id is taken.
//! let again = WorkerHandle::new(ProviderId::new("local")?, ProviderType::BareMetal, "p-1");
//! let again = WorkerHandle { worker_id: w.id, ..again };
//! assert!(after.register(again, Arc::new(WorkerSpec::new("img"))).is_err());
//! # Ok::<(), hodei_workers::Error>(())
//! ```
//!
//! # Errors
//!
//! One [`Error`] enum (`#[non_exhaustive]`) for the whole crate, with messages that name the
//! worker, the states and the provider; [`Error::kind`] gives its [`ErrorKind`], the stable
//! code the C and Python bindings map to. Absence is not an error where a caller expects it:
//! [`get`](WorkerRegistry::get) of an unknown id is `Ok(None)`, a `claim` that finds no worker
//! is `Ok(None)`; an operation on a worker that must exist is [`Error::NotFound`].
//!
//! ```
//! use std::sync::Arc;
//! use hodei_workers::*;
//!
//! let registry = InMemoryWorkerRegistry::new();
//! let handle = WorkerHandle::new(ProviderId::new("local")?, ProviderType::BareMetal, "p-1");
//! let w = registry.register(handle, Arc::new(WorkerSpec::new("img")))?;
//!
//! let e = registry.update_state(&w.id, WorkerState::Busy).unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::InvalidTransition);
//! assert!(e.to_string().contains("creating -> busy"), "{e}");
//!
//! let ghost = WorkerId::new();
//! assert!(registry.get(&ghost)?.is_none());
//! assert_eq!(registry.heartbeat(&ghost).unwrap_err().kind(), ErrorKind::NotFound);
//! assert!(ProviderId::new("").is_err(), "bad input is an error, never a panic");
//! # Ok::<(), hodei_workers::Error>(())
//! ```
//!
//! # Thread safety and cost
//!
//! [`InMemoryWorkerRegistry`], [`WorkerLifecycleManager`], [`Subscription`] and [`Ticker`] are
//! `Send + Sync`: share them with an `Arc` and call from any thread. No user code runs under
//! a lock of the crate (subscribers are channels; providers are called outside every lock).
//! In the in-memory registry:
//!
//! | operation | cost |
//! |---|---|
//! | `get`, `heartbeat` | one shard's *shared* lock; a heartbeat is one atomic store |
//! | `register`, `update_state`, `assign_to_job`, `release_from_job` | one shard's write lock and one short registry-wide lock, O(log n) |
//! | `claim` | O(log n) plus the ready workers the filter passes over (bounded per lock hold) |
//! | `stats`, `count` | O(1) |
//! | `find_unhealthy`, `find_startup_expired`, `find_for_termination` | what is due (plus one pass over the heartbeat column when the cutoff moved past its cache) |
//! | `find`, `snapshot` | the fleet |
//!
//! The manager's `tick` makes at most `max_actions_per_tick` state changes and provider calls.
//!
//! ```
//! use std::sync::Arc;
//! use hodei_workers::*;
//!
//! let registry = Arc::new(InMemoryWorkerRegistry::new());
//! let p = ProviderId::new("local")?;
//! let mut ids = Vec::new();
//! for i in 0..8 {
//!     let h = WorkerHandle::new(p.clone(), ProviderType::BareMetal, format!("p-{i}"));
//!     let w = registry.register(h, Arc::new(WorkerSpec::new("img")))?;
//!     registry.update_state(&w.id, WorkerState::Ready)?;
//!     ids.push(w.id);
//! }
//! // Agents heartbeat while schedulers claim, from many threads at once.
//! std::thread::scope(|s| {
//!     for id in &ids {
//!         let registry = &registry;
//!         s.spawn(move || registry.heartbeat(id).unwrap());
//!     }
//!     for n in 0..8 {
//!         let registry = &registry;
//!         s.spawn(move || {
//!             let job = JobId::new(format!("job-{n}")).unwrap();
//!             registry.claim(&WorkerFilter::new(), job).unwrap().expect("one each");
//!         });
//!     }
//! });
//! assert_eq!(registry.stats()?.by_state.busy, 8);
//! # Ok::<(), hodei_workers::Error>(())
//! ```
//!
//! # Crate features
//!
//! - `tracing` (off by default): spans for tick, health check, cleanup, provision and
//!   destroy, and events for the decisions a tick report explains.
//! - `sim` (off by default): a seeded, deterministic fleet simulation with fault injection,
//!   for the tests and for policy what-if runs (`examples/simulate.rs`). Not compiled into the
//!   C library or the Python module.
//!
//! [`metrics`] gives the manager's Prometheus/OpenMetrics metrics
//! ([`WorkerLifecycleManager::metrics`]), read at scrape time from what is already maintained.
//!
//! [`update_state`]: WorkerRegistry::update_state
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

mod clock;
mod error;
mod events;
mod filter;
mod ids;
pub mod implementation;
mod lifecycle;
pub mod metrics;
mod mint;
mod object_form;
mod registry;
#[cfg(feature = "sim")]
pub mod sim;
mod state;
mod trace;
mod worker;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{
    json_error_message, json_error_parts, quote_input, Error, ErrorKind, Result, MAX_ECHO_CHARS,
};
pub use events::{
    EventFeed, EventKind, EventSource, SubscribeOptions, Subscription, SubscriptionMonitor,
    WorkerLifecycleEvent,
};
pub use filter::WorkerFilter;
pub use ids::{JobId, ProviderId, WorkerId, MAX_JOB_ID_LEN, MAX_PROVIDER_ID_LEN};
pub use lifecycle::{cut_provider_message, MAX_PROVIDER_MESSAGE_LEN};
pub use lifecycle::{
    validate_lease, AlwaysLeader, InMemoryLease, LeaderInfo, Leadership, LeaseStatus, Term, Ticker,
    TickerStats, MAX_LEASE_HOLDER_LEN, MIN_LEASE_TTL, TICKER_REPORTS_CAPACITY,
};
pub use lifecycle::{
    CleanupResult, DestroyFailure, HealthCheckResult, LifecycleStats, LostJob, MassExpiryGiveUp,
    MassExpiryHold, OrphanInstance, PendingOrphan, ProviderBackoff, ProviderError,
    ProviderErrorKind, ProviderResult, ProvisionFailure, ProvisionedWorker, ReconcileHold,
    ReconcileHoldKind, ReconcileReport, ScalingPlan, TerminatedWorker, TickReport, UnhealthyWorker,
    WorkerLifecycleConfig, WorkerLifecycleManager, WorkerProvider, MAX_CONFIG_DURATION,
};
pub use lifecycle::{
    Demand, Pool, PoolBlock, PoolDecision, PoolPlan, Replacement, Requirement, Serving, Spill,
    UnmetDemand, Unschedulable, DEFAULT_POOL_SCALE_DOWN_COOLDOWN, DEFAULT_POOL_SCALE_UP_COOLDOWN,
    MAX_POOL_NAME_LEN, POOL_LABEL,
};
pub use registry::{
    HeartbeatAges, InMemoryWorkerRegistry, JobTotals, Snapshot, StateCounts, SubscriberDrops,
    TransitionGuard, Transitioned, WorkerRegistry, WorkerRegistryStats, MAX_SNAPSHOT_CLOCK_SKEW,
    SNAPSHOT_FORMAT,
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
    check::<SubscriptionMonitor>();
    check::<Ticker>();
    check::<std::sync::Arc<dyn WorkerRegistry>>();
}

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
