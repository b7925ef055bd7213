//! `LifecycleManager`: the lifecycle engine of a registry's fleet, from Python.

use std::sync::{Arc, Mutex};

use hodei_workers::{self as core, WorkerLifecycleManager, WorkerRegistry};
use pyo3::prelude::*;
use pyo3::types::PyString;
use pyo3::{PyTraverseError, PyVisit};

use crate::calls::HostObject;
use crate::convert::{self, Int, Seconds};
use crate::errors::run;
use crate::provider::{manager_call, ProviderObject, PythonProvider};
use crate::registry::PyRegistry;
use crate::types::{py_repr, PyWorker, PyWorkerSpec};

use super::config::PyLifecycleConfig;
use super::reports::*;

/// Runs a manager operation without the GIL, then re-raises a KeyboardInterrupt/SystemExit a
/// Python provider raised meanwhile (see `provider`). Operations that return a report go
/// through [`PyLifecycleManager::reporting`] instead, which keeps the report.
fn engine<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> core::Result<T> + Send,
{
    let (result, interrupt) = manager_call(|| run(py, work));
    match interrupt {
        Some(interrupt) => Err(interrupt),
        None => result,
    }
}

/// Locks a mutex of the manager, recovering from poisoning (a panic cannot leave these simple
/// values half-changed).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// An entry of `pending_orphans()`: `(provider_id, worker_id, resource_id, failed_attempts,
/// next_attempt_at)`.
type PendingOrphanTuple = (String, String, String, u32, f64);

fn pending(py: Python<'_>, pending_jobs: i64) -> PyResult<usize> {
    convert::count(py, pending_jobs, "pending_jobs")
}

/// The lifecycle engine of a registry's fleet: providers, provisioning, health checks,
/// cleanup, autoscaling. Tick-driven: call ``tick(pending_jobs)`` regularly (every second, say)
/// and everything due happens inside it, on the registry's clock; the TickReport says what and
/// why. Thread-safe; the GIL is released while the engine works.
///
/// Providers are plain Python objects (see ``hodei_workers.Provider``) with ``provider_id`` and
/// ``provider_type`` (str attributes, or methods returning them),
/// ``create_worker(worker_id, spec) -> resource_id`` (or ``(resource_id, metadata)``;
/// ``worker_id`` is the new worker's id as text, made by the manager first, for the instance's
/// agent to report in with), ``destroy_worker(handle)`` (raise a LookupError when the instance
/// is already gone) and optionally ``list_workers() -> iterable of resource ids`` (for
/// ``reconcile``). A provider may keep a reference to its manager: the garbage collector sees
/// through the cycle. An Exception they raise is a provider failure of the engine (in reports and
/// events; its text cut at 4096 bytes, ending ``"… (truncated)"``), never a crash. They are called on the thread that called the manager, never while
/// the engine holds a lock.
///
/// Interrupts: a BaseException that is not an Exception (KeyboardInterrupt, SystemExit,
/// asyncio.CancelledError, GeneratorExit, one of your own) raised inside a provider is not a
/// provider failure: it propagates, as Python's rule has it (to make a cancelled operation of
/// the provider's a failure, catch it there and raise an Exception). The engine finishes the
/// operation consistently without calling a provider again (the interrupted call and those it
/// skips count as failed: a destroy is retried by a later tick), then the exception reaches the
/// caller — and the report of the operation it cut short (``tick``, ``run_health_check``,
/// ``cleanup_workers``, ``terminate_worker``, ``reconcile``), with the jobs it lost, is not
/// lost: it is the exception's ``report`` attribute and ``manager.last_report``. A manager call
/// made meanwhile on that thread (by a finalizer, say) calls no provider either, and does not
/// raise it: the exception is for the call it cut short. Raised during a ``Ticker``'s tick
/// (no caller to reach), it goes to ``sys.unraisablehook`` instead.
#[pyclass(frozen, weakref, name = "LifecycleManager", module = "hodei_workers")]
pub(crate) struct PyLifecycleManager {
    inner: Arc<WorkerLifecycleManager>,
    registry: Py<PyRegistry>,
    /// The report of the last operation that made one (see `last_report`).
    last_report: Mutex<Option<Py<PyAny>>>,
    /// The Python objects of the registered providers, for `__traverse__` / `__clear__`
    /// (the core holds them too, out of the garbage collector's sight).
    providers: Mutex<Vec<(core::ProviderId, ProviderObject)>>,
}

impl PyLifecycleManager {
    /// Runs an operation that makes a report (like [`engine`]), keeps the report as
    /// `last_report`, and when a provider raised an interrupt meanwhile, raises that with the
    /// report attached as its `report` attribute (issue 10 item 3: the jobs the operation lost
    /// must reach the host even on Ctrl-C).
    fn reporting<C, P, F>(&self, py: Python<'_>, work: F) -> PyResult<Py<P>>
    where
        C: Send,
        P: pyo3::PyClass + From<C> + Into<pyo3::PyClassInitializer<P>>,
        F: FnOnce() -> core::Result<C> + Send,
    {
        let (result, interrupt) = manager_call(|| run(py, work));
        let report = match result {
            Ok(core) => Py::new(py, P::from(core))?,
            Err(error) => return Err(interrupt.unwrap_or(error)),
        };
        let previous = lock(&self.last_report).replace(report.clone_ref(py).into_any());
        // Dropped outside the lock: the last reference may run Python code.
        drop(previous);
        match interrupt {
            Some(interrupt) => {
                // An exception instance takes attributes; if this one refuses, the interrupt
                // still reaches the caller and `last_report` still has the report.
                let _ = interrupt.value(py).setattr("report", report.bind(py));
                Err(interrupt)
            }
            None => Ok(report),
        }
    }
}

#[pymethods]
impl PyLifecycleManager {
    /// A manager driving ``registry`` (it uses the registry's clock) with ``config``
    /// (LifecycleConfig() when None).
    #[new]
    #[pyo3(signature = (registry, config=None))]
    fn new(
        py: Python<'_>,
        registry: Bound<'_, PyRegistry>,
        config: Option<Bound<'_, PyLifecycleConfig>>,
    ) -> PyResult<Self> {
        let config = config.map(|c| c.get().inner.clone()).unwrap_or_default();
        let core_registry: Arc<dyn WorkerRegistry> = registry.get().inner.clone();
        // Reads the registry's clock: the database's, on PostgreSQL without a ManualClock.
        let inner = run(py, move || {
            WorkerLifecycleManager::new(core_registry, config)
        })?;
        Ok(PyLifecycleManager {
            inner: Arc::new(inner),
            registry: registry.unbind(),
            last_report: Mutex::new(None),
            providers: Mutex::new(Vec::new()),
        })
    }

    /// A manager that is one replica of several sharing ``registry``, named ``holder``
    /// (unique per process), on the registry's leadership lease lasting ``lease_ttl`` (float
    /// seconds or a timedelta) after each renewal: only the replica holding the lease acts,
    /// the others' ticks only try to take it (tick at least every ``lease_ttl / 3``, e.g. with
    /// ``ticker``). On a registry that is not shared between processes (the in-memory one) it
    /// is a plain manager that always leads. Raises InvalidArgumentError, on every registry,
    /// for a ``holder`` that is empty, longer than 128 bytes or holds a NUL, or a ``lease_ttl``
    /// under 3 ms or above 100 years (3153600000 s, the bound of the config's durations).
    #[staticmethod]
    #[pyo3(signature = (registry, holder, lease_ttl, config=None))]
    fn replicated(
        py: Python<'_>,
        registry: Bound<'_, PyRegistry>,
        holder: &Bound<'_, PyString>,
        lease_ttl: Seconds,
        config: Option<Bound<'_, PyLifecycleConfig>>,
    ) -> PyResult<Self> {
        let config = config.map(|c| c.get().inner.clone()).unwrap_or_default();
        let core_registry: Arc<dyn WorkerRegistry> = registry.get().inner.clone();
        let holder = convert::text(holder, "holder")?.to_owned();
        let inner = run(py, move || {
            WorkerLifecycleManager::replicated(core_registry, config, &holder, lease_ttl.0)
        })?;
        Ok(PyLifecycleManager {
            inner: Arc::new(inner),
            registry: registry.unbind(),
            last_report: Mutex::new(None),
            providers: Mutex::new(Vec::new()),
        })
    }

    /// The Registry the manager drives.
    #[getter]
    fn registry(&self, py: Python<'_>) -> Py<PyRegistry> {
        self.registry.clone_ref(py)
    }

    /// The configuration.
    #[getter]
    fn config(&self) -> PyLifecycleConfig {
        PyLifecycleConfig {
            inner: self.inner.config().clone(),
        }
    }

    /// Adds a provider (see the class docstring for its shape) under its ``provider_id``.
    /// Whether its ``create_worker`` and ``destroy_worker`` take a ``fencing_token`` keyword is
    /// read from their signatures now. Raises TypeError for an object of the wrong shape,
    /// InvalidArgumentError when a provider with that id is registered already.
    fn register_provider(&self, py: Python<'_>, provider: &Bound<'_, PyAny>) -> PyResult<()> {
        let provider = PythonProvider::new(provider)?;
        let entry = (provider.id().clone(), provider.object());
        let provider: Arc<dyn core::WorkerProvider> = Arc::new(provider);
        engine(py, || self.inner.register_provider(provider))?;
        lock(&self.providers).push(entry);
        Ok(())
    }

    /// Removes a provider. Its workers stay; their destroys retry until it is registered again.
    /// Raises ProviderNotFoundError.
    fn unregister_provider(
        &self,
        py: Python<'_>,
        provider_id: &Bound<'_, PyString>,
    ) -> PyResult<()> {
        let id = convert::provider_id(provider_id, "provider_id")?;
        engine(py, || self.inner.unregister_provider(&id))?;
        // Dropped outside the lock: the last reference may run the object's finalizer.
        let removed: Vec<_> = {
            let mut providers = lock(&self.providers);
            let (gone, kept) = providers.drain(..).partition(|(p, _)| *p == id);
            *providers = kept;
            gone
        };
        drop(removed);
        Ok(())
    }

    /// Shows the garbage collector what the manager holds: the registry, the last report, the
    /// providers' objects (held by the core, where the collector cannot see them). Takes no
    /// lock that may be held while Python code runs, and skips what is busy rather than wait.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.registry)?;
        if let Ok(last) = self.last_report.try_lock() {
            if let Some(report) = &*last {
                visit.call(report)?;
            }
        }
        if let Ok(providers) = self.providers.try_lock() {
            for (_, object) in providers.iter() {
                if let Ok(object) = object.try_lock() {
                    if let Some(object) = &*object {
                        visit.call(&**object)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Breaks a reference cycle through the manager (a provider holding its manager): takes the
    /// providers' objects and the last report. The references are dropped after every lock is
    /// released, since dropping them may run Python code.
    fn __clear__(&self) {
        let mut taken: Vec<HostObject> = Vec::new();
        for (_, object) in lock(&self.providers).drain(..) {
            taken.extend(lock(&object).take());
        }
        taken.extend(lock(&self.last_report).take().map(HostObject::new));
        drop(taken);
    }

    /// The registered providers' ids, sorted.
    fn providers(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(ids(&engine(py, || Ok(self.inner.providers()))?))
    }

    /// Asks ``provider_id`` for a worker made from ``spec`` and registers it (in CREATING; move
    /// it on when its agent reports in). Concurrent calls never exceed max_workers.
    ///
    /// Raises ProviderNotFoundError, CapacityExceededError at max_workers (provisions in flight
    /// count), ProviderError when the provider raised, NotLeaderError when another replica
    /// leads, or led while the create was in flight and the provider's ``list_workers`` no
    /// longer shows the new instance (neither registered nor destroyed again).
    fn provision_worker(
        &self,
        py: Python<'_>,
        provider_id: &Bound<'_, PyString>,
        spec: PyWorkerSpec,
    ) -> PyResult<PyWorker> {
        let id = convert::provider_id(provider_id, "provider_id")?;
        engine(py, || self.inner.provision_worker(&id, spec.inner)).map(PyWorker::new)
    }

    /// Providers that automatic provisioning leaves alone after consecutive create failures.
    fn provider_backoff(&self, py: Python<'_>) -> PyResult<Vec<ProviderBackoff>> {
        Ok(list(&engine(py, || Ok(self.inner.provider_backoff()))?))
    }

    /// Records a worker's heartbeat (WorkerNotFoundError: tell its agent to register again).
    fn process_heartbeat(&self, py: Python<'_>, worker_id: &Bound<'_, PyString>) -> PyResult<()> {
        let id = convert::worker_id(worker_id, "worker_id")?;
        engine(py, || self.inner.process_heartbeat(&id))
    }

    /// Runs the health check now: workers past their heartbeat or startup deadline are
    /// declared unhealthy, their jobs reported lost, then destroyed and unregistered (unless
    /// the mass-expiry brake holds).
    fn run_health_check(&self, py: Python<'_>) -> PyResult<Py<HealthCheckResult>> {
        self.reporting(py, || self.inner.run_health_check())
    }

    /// Retires what is due now: idle and over-age workers (a busy one is drained first),
    /// drained workers without a job, and destroy retries that are due.
    fn cleanup_workers(&self, py: Python<'_>) -> PyResult<Py<CleanupResult>> {
        self.reporting(py, || self.inner.cleanup_workers())
    }

    /// Moves a worker to DRAINING: it takes no new job and is retired once its job is done.
    fn drain_worker(&self, py: Python<'_>, worker_id: &Bound<'_, PyString>) -> PyResult<PyWorker> {
        let id = convert::worker_id(worker_id, "worker_id")?;
        engine(py, || self.inner.drain_worker(&id)).map(PyWorker::new)
    }

    /// Kills a worker now: TERMINATING (a job it held is reported lost), destroyed by its
    /// provider, unregistered with ``reason`` (default REQUESTED). A failed destroy shows in
    /// ``failed`` and is retried by later ticks.
    #[pyo3(signature = (worker_id, reason=None))]
    fn terminate_worker(
        &self,
        py: Python<'_>,
        worker_id: &Bound<'_, PyString>,
        reason: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<CleanupResult>> {
        let id = convert::worker_id(worker_id, "worker_id")?;
        let reason = reason
            .map(convert::reason_from_py)
            .transpose()?
            .unwrap_or(core::TerminationReason::Requested);
        self.reporting(py, || self.inner.terminate_worker(&id, reason))
    }

    /// Destroys queued or being retried: ``(worker_id, failed_attempts, next_attempt_at)``.
    fn pending_destroys(&self, py: Python<'_>) -> PyResult<Vec<(String, u32, f64)>> {
        Ok(engine(py, || Ok(self.inner.pending_destroys()))?
            .into_iter()
            .map(|(id, attempts, at)| (id.to_string(), attempts, convert::seconds(at)))
            .collect())
    }

    /// Workers under an interruption notice: ``(worker_id, deadline)``, in worker id order.
    /// Leader state: empty on a replica that does not lead.
    fn interruptions(&self, py: Python<'_>) -> PyResult<Vec<(String, f64)>> {
        Ok(engine(py, || Ok(self.inner.interruptions()))?
            .into_iter()
            .map(|(id, deadline)| (id.to_string(), convert::seconds(deadline)))
            .collect())
    }

    /// Orphan instances (listed by a provider, known to no record) the leader's ticks
    /// destroy — those whose destroy failed, and those a tick's reconcile found over its
    /// action cap: ``(provider_id, worker_id, resource_id, failed_attempts,
    /// next_attempt_at)``, by provider and instance; the worker id the one made for the
    /// listing (no record's). Two providers may list one resource id (two clusters, one pod
    /// name): the provider id tells them apart. Leader state: empty on a replica that does
    /// not lead.
    fn pending_orphans(&self, py: Python<'_>) -> PyResult<Vec<PendingOrphanTuple>> {
        Ok(engine(py, || Ok(self.inner.pending_orphans()))?
            .into_iter()
            .map(|o| {
                (
                    o.provider_id.to_string(),
                    o.worker_id.to_string(),
                    o.resource_id,
                    o.attempts,
                    convert::seconds(o.next_at),
                )
            })
            .collect())
    }

    /// The seed's predicate: no READY worker and jobs pending, or more than
    /// scale_up_threshold jobs pending and room under max_workers. Its READY workers are
    /// those plan_scaling counts: the scaling target's own (without a target, those of no
    /// pool), never those of other pools; the room counts every registered worker.
    fn should_scale_up(&self, py: Python<'_>, pending_jobs: Int) -> PyResult<bool> {
        let pending_jobs = pending(py, pending_jobs.0)?;
        engine(py, || Ok(self.inner.should_scale_up(pending_jobs)))
    }

    /// The seed's predicate: more than scale_down_threshold idle READY workers, and more than
    /// min_ready_workers; the scaling target's own (without a target, those of no pool), as
    /// plan_scaling counts them.
    fn should_scale_down(&self, py: Python<'_>) -> PyResult<bool> {
        engine(py, || Ok(self.inner.should_scale_down()))
    }

    /// Sets what ``tick`` provisions when scaling up: workers of ``provider_id`` made from
    /// ``spec``. Without a target, tick neither provisions nor scales down. Its workers are
    /// those of no pool (or of its spec's pool, if ``spec`` carries the label ``hodei.pool``):
    /// it neither counts nor retires the workers of pools (set on another replica), which
    /// count against max_workers all the same.
    fn set_scaling_target(
        &self,
        py: Python<'_>,
        provider_id: &Bound<'_, PyString>,
        spec: PyWorkerSpec,
    ) -> PyResult<()> {
        let id = convert::provider_id(provider_id, "provider_id")?;
        engine(py, || self.inner.set_scaling_target(&id, spec.inner))
    }

    /// Removes the scaling target.
    fn clear_scaling_target(&self, py: Python<'_>) -> PyResult<()> {
        engine(py, || {
            self.inner.clear_scaling_target();
            Ok(())
        })
    }

    /// The scaling target as ``(provider_id, spec)``, or None.
    fn scaling_target(&self, py: Python<'_>) -> PyResult<Option<(String, PyWorkerSpec)>> {
        Ok(engine(py, || Ok(self.inner.scaling_target()))?
            .map(|(id, spec)| (id.to_string(), PyWorkerSpec { inner: spec })))
    }

    /// The scaling policy's decision for ``pending_jobs``, without acting on it.
    fn plan_scaling(&self, py: Python<'_>, pending_jobs: Int) -> PyResult<ScalingPlan> {
        let pending_jobs = pending(py, pending_jobs.0)?;
        engine(py, || self.inner.plan_scaling(pending_jobs)).map(ScalingPlan::from)
    }

    /// Compares the registry with each provider's ``list_workers()``: unknown instances are
    /// destroyed (orphans after a host crash), records whose instance vanished are expired
    /// with reason VANISHED.
    fn reconcile(&self, py: Python<'_>) -> PyResult<Py<ReconcileReport>> {
        self.reporting(py, || self.inner.reconcile())
    }

    /// Does whatever is due, in one call: stall grace, health check (every
    /// health_check_interval), cleanup and destroy retries, ``reconcile()`` (every
    /// reconcile_interval after the last complete one: "periodic reconcile" in
    /// ``decisions``), scaling toward the target for ``pending_jobs``. Never raises for the engine's own troubles (they are lines in
    /// ``decisions``); a call while another thread ticks returns at once with ``skipped``.
    ///
    /// ``pending_jobs`` is a number of jobs that need nothing in particular, or a ``Demand``
    /// (jobs by requirement, scaled over the pools).
    #[pyo3(signature = (pending_jobs=None), text_signature = "($self, pending_jobs=0)")]
    fn tick(
        &self,
        py: Python<'_>,
        pending_jobs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<TickReport>> {
        let demand = match pending_jobs {
            None => core::Demand::new(),
            Some(obj) => match obj.cast::<crate::pools::PyDemand>() {
                Ok(d) => d.get().inner.clone(),
                Err(_) => core::Demand::from(pending(py, obj.extract::<Int>()?.0)?),
            },
        };
        self.reporting(py, || Ok(self.inner.tick(demand)))
    }

    /// Replaces the pools (a list of Pool). Pools with a known name keep their cooldown
    /// clocks; pools no longer listed are removed and their workers drain, and so do the
    /// workers of a pool listed again with a template that asks more than theirs offers (a
    /// label, capability, architecture or resource); the ids of the workers taken out of
    /// service are returned. While any pool is set, ``tick`` scales the pools, not the
    /// scaling target. On a replicated manager each replica has its own pools, but only the
    /// leader drains: a follower drains nothing (returns ``[]``) and drains what its pools
    /// removed at its ticks once it leads. A tick running meanwhile provisions nothing for a
    /// job that a reshaped pool's new template no longer satisfies (its decisions say so).
    /// Raises InvalidArgumentError for two pools with one name, ProviderNotFoundError for a
    /// pool whose provider is not registered; nothing changes then. A registry error (or
    /// NotLeaderError, the lease lost midway) after the pools were set names what was
    /// drained; the leader's ticks drain the rest.
    fn set_pools(&self, py: Python<'_>, pools: crate::pools::Pools) -> PyResult<Vec<String>> {
        let pools: Vec<core::Pool> = pools.0.into_iter().map(|p| p.inner).collect();
        Ok(ids(&engine(py, || self.inner.set_pools(pools))?))
    }

    /// Adds a pool. Raises InvalidArgumentError for a name in use, ProviderNotFoundError.
    fn add_pool(&self, py: Python<'_>, pool: crate::pools::PyPool) -> PyResult<()> {
        engine(py, || self.inner.add_pool(pool.inner))
    }

    /// Removes a pool: nothing more is provisioned for it, its workers drain (their ids are
    /// returned; a follower of a replicated set drains nothing and returns ``[]``: the leader
    /// drains; a create of the pool's spec still in flight, a tick's or your own
    /// ``provision_worker``'s, is taken out of service by the next tick once registered).
    /// Raises InvalidArgumentError when no pool has that name; a registry error (or
    /// NotLeaderError, the lease lost midway) after the pool was removed: the leader's ticks
    /// drain the rest.
    fn remove_pool(&self, py: Python<'_>, name: &Bound<'_, PyString>) -> PyResult<Vec<String>> {
        let name = convert::text(name, "name")?;
        Ok(ids(&engine(py, || self.inner.remove_pool(name))?))
    }

    /// The pools, highest priority first.
    fn pools(&self, py: Python<'_>) -> PyResult<Vec<crate::pools::PyPool>> {
        Ok(engine(py, || Ok(self.inner.pools()))?
            .into_iter()
            .map(|inner| crate::pools::PyPool { inner })
            .collect())
    }

    /// The pools' decisions for ``demand`` (a Demand), without acting on them: per pool what
    /// it would provision or retire and why, the requirements no pool can run
    /// (``unschedulable``, with the reason).
    fn plan_pools(
        &self,
        py: Python<'_>,
        demand: crate::pools::PyDemand,
    ) -> PyResult<crate::pools::PoolPlan> {
        engine(py, || self.inner.plan_pools(&demand.inner)).map(crate::pools::PoolPlan::from)
    }

    /// A notice that the worker's instance goes away at ``deadline`` (float seconds since the
    /// epoch, registry clock): a spot reclaim, a node drain. The worker drains now; while it
    /// runs a job, its pool (for a worker of no pool: the scaling target on its provider;
    /// while pools are set, for a worker none of them owns: the pools that satisfy its spec;
    /// without pools, for a worker the scaling target does not own: the target, if its spec
    /// satisfies the worker's) gets a replacement ahead of the deadline; a job still running at
    /// the deadline is reported lost by the tick that reaches it. Returns the worker after the
    /// notice. Leader-only: a replica that does not lead raises NotLeaderError and changes
    /// nothing (send the notice to the leader). Raises WorkerNotFoundError,
    /// InvalidTransitionError for a worker on its way out.
    fn notify_interruption(
        &self,
        py: Python<'_>,
        worker_id: &Bound<'_, PyString>,
        deadline: convert::Float,
    ) -> PyResult<PyWorker> {
        let id = convert::worker_id(worker_id, "worker_id")?;
        let deadline = convert::timestamp(py, deadline.0, "deadline")?;
        engine(py, || self.inner.notify_interruption(&id, deadline)).map(PyWorker::new)
    }

    /// The report of the last ``tick``, ``run_health_check``, ``cleanup_workers``,
    /// ``terminate_worker`` or ``reconcile`` on this manager (from any thread), or None before
    /// the first. After a KeyboardInterrupt raised by a provider it is the report of the
    /// interrupted operation (also the exception's ``report``): requeue its ``lost_jobs``.
    #[getter]
    fn last_report(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.last_report).as_ref().map(|r| r.clone_ref(py))
    }

    /// Starts a Ticker: a thread that calls ``tick(pending())`` every ``interval`` (float
    /// seconds or a timedelta; the first tick at once) and hands each report to
    /// ``on_report(report)`` (without it, read them with ``Ticker.next_report()``). Use it as
    /// a context manager: ``with manager.ticker(1.0, pending=queue.qsize) as t: ...`` stops
    /// and joins the thread on exit. ``pending`` (default: no demand, 0), ``on_report`` and
    /// the providers are called on the ticker's thread. The ticker keeps the manager alive.
    /// Raises InvalidArgumentError for a zero interval, TypeError for a callback that is not
    /// callable.
    #[pyo3(signature = (interval, pending=None, on_report=None))]
    fn ticker(
        slf: &Bound<'_, Self>,
        interval: Seconds,
        pending: Option<Py<PyAny>>,
        on_report: Option<Py<PyAny>>,
    ) -> PyResult<crate::ticker::PyTicker> {
        let owner = slf.clone().into_any().unbind();
        let manager = &slf.get().inner;
        crate::ticker::start(slf.py(), manager, owner, interval, pending, on_report)
    }

    /// Whether this manager leads now (always True on a single-process manager).
    fn is_leader(&self, py: Python<'_>) -> PyResult<bool> {
        engine(py, || Ok(self.inner.is_leader()))
    }

    /// Gives the leadership lease up (a clean shutdown of a replica): another replica takes
    /// over at its next tick. This manager follows (leader-only calls raise NotLeaderError)
    /// until a later tick takes the lease again.
    fn step_down(&self, py: Python<'_>) -> PyResult<()> {
        engine(py, || self.inner.step_down())
    }

    /// The leader as last seen by this manager's lease renewals, or None.
    fn leader(&self, py: Python<'_>) -> PyResult<Option<LeaderInfo>> {
        Ok(engine(py, || Ok(self.inner.leader()))?.map(LeaderInfo::from))
    }

    /// The registry's counts plus the manager's own (in flight, pending destroys, totals).
    fn stats(&self, py: Python<'_>) -> PyResult<LifecycleStats> {
        engine(py, || self.inner.stats()).map(LifecycleStats::from)
    }

    /// The metrics in the OpenMetrics text format (ending in ``# EOF``): workers by state and
    /// provider, jobs, provisions, destroys, failures, brake holds, back-off, durations,
    /// heartbeat ages, event drops. For ``prometheus_client``, see ``hodei_workers.metrics``.
    fn metrics_text(&self, py: Python<'_>) -> PyResult<String> {
        engine(py, || Ok(self.inner.metrics_text()))
    }

    /// Turns the metrics' duration histograms (``hodei_workers_tick_duration_seconds``,
    /// ``hodei_workers_health_check_duration_seconds``) on (the default) or off. Off, ticks
    /// and health checks read no clock for the metrics and the histograms stand still; they
    /// are still counted (``hodei_workers_ticks_total``, ``hodei_workers_health_checks_total``),
    /// and the rest of the metrics is read at scrape time as before. Takes effect from the
    /// next tick or health check; one relaxed atomic store. Raises TypeError for anything but
    /// a bool.
    fn set_metrics_timing(&self, on: bool) {
        self.inner.metrics().set_timing(on);
    }

    /// Whether the metrics' duration histograms are measured (``set_metrics_timing``).
    fn metrics_timing(&self) -> bool {
        self.inner.metrics().timing()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (providers, workers) = engine(py, || {
            Ok((self.inner.providers(), self.inner.registry().count()?))
        })?;
        Ok(format!(
            "<LifecycleManager providers={} workers={workers}>",
            py_repr(py, ids(&providers))?
        ))
    }
}
