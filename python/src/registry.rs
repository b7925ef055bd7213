//! `Registry`: the Python face of a `WorkerRegistry` (in memory, or PostgreSQL: `postgres.rs`).

use std::sync::{Arc, OnceLock};

use hodei_workers::{
    InMemoryWorkerRegistry, Snapshot, SubscribeOptions, SystemClock, TerminationReason,
    WorkerFilter, WorkerHandle, WorkerId, WorkerRegistry, WorkerSpec,
};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::convert::{self, Float, Int, Seconds, StrArg};
use crate::errors::{drop_detached, invalid, run, run_brief, OrRaise};
use crate::events::PySubscription;
use crate::types::{PyManualClock, PyRegistryStats, PyResources, PyWorker, PyWorkerSpec};

/// Adds the fit filters (`fits`, `architecture`) of `find` and `claim`.
fn with_fit(
    py: Python<'_>,
    mut filter: WorkerFilter,
    fits: Option<PyRef<'_, PyResources>>,
    architecture: Option<&Bound<'_, PyString>>,
) -> PyResult<WorkerFilter> {
    if let Some(r) = fits {
        filter.fits = Some(r.inner.clone());
    }
    if let Some(a) = architecture {
        filter.architecture = Some(
            convert::text(a, "architecture")?
                .parse::<hodei_workers::Architecture>()
                .or_raise(py)?,
        );
    }
    Ok(filter)
}

/// The keyword filters shared by `find` and `claim`, converted from Python.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_filter(
    py: Python<'_>,
    states: Option<&Bound<'_, PyAny>>,
    provider_id: Option<&Bound<'_, PyString>>,
    provider_type: Option<&Bound<'_, PyString>>,
    accepting_jobs: Option<bool>,
    idle_for: Option<Seconds>,
    unhealthy_for: Option<Seconds>,
    labels: Option<&Bound<'_, PyAny>>,
    capabilities: Option<&Bound<'_, PyAny>>,
    limit: Option<Int>,
) -> PyResult<WorkerFilter> {
    Ok(WorkerFilter {
        states: states
            .map(convert::states_from_py)
            .transpose()?
            .unwrap_or_default(),
        provider_id: provider_id
            .map(|p| convert::provider_id(p, "provider_id"))
            .transpose()?,
        provider_type: provider_type
            .map(|t| convert::provider_type(t, "provider_type"))
            .transpose()?,
        accepting_jobs,
        idle_for: idle_for.map(|s| s.0),
        unhealthy_for: unhealthy_for.map(|s| s.0),
        labels: labels
            .map(|l| convert::str_map(l, "labels"))
            .transpose()?
            .unwrap_or_default(),
        capabilities: capabilities
            .map(|c| convert::str_set(c, "capabilities"))
            .transpose()?
            .unwrap_or_default(),
        limit: limit
            .map(|n| convert::count(py, n.0, "limit"))
            .transpose()?,
        // Fit and architecture filters are not exposed here yet.
        ..WorkerFilter::default()
    })
}

fn workers(list: Vec<hodei_workers::Worker>) -> Vec<PyWorker> {
    list.into_iter().map(PyWorker::new).collect()
}

/// The registry of a fleet's workers: who they are, what state each is in, which job each
/// holds. Thread-safe: share one Registry between threads freely; the GIL is released while
/// it works (in memory, ``heartbeat`` keeps it: shorter than releasing it; on PostgreSQL every
/// call that may reach the database releases it).
///
/// ``Registry()`` runs on the system's monotonic clock; ``Registry(clock=ManualClock())`` on a
/// clock that moves only when told to (tests, simulations).
///
/// Ids are str (worker ids are UUIDs), durations float seconds or ``timedelta``, timestamps
/// float seconds since the epoch. Unknown workers raise WorkerNotFoundError (a LookupError),
/// malformed ids and values InvalidArgumentError (a ValueError), wrong types TypeError.
/// ``len(registry)`` counts the workers; ``worker_id in registry`` tests one.
#[pyclass(frozen, name = "Registry", module = "hodei_workers")]
pub(crate) struct PyRegistry {
    /// Any backend: in memory, or shared (`Registry.postgres`).
    pub(crate) inner: Arc<dyn WorkerRegistry>,
    pub(crate) clock: Option<Py<PyManualClock>>,
    /// The in-memory backend: its calls never leave the process (the brief ones keep the GIL,
    /// `run_brief`). `false` for PostgreSQL, where every call may be a database round trip
    /// and must release the GIL (`run`), however brief it is in memory.
    pub(crate) in_memory: bool,
}

impl Drop for PyRegistry {
    /// The last handle of a PostgreSQL registry reads its subscriptions' events to the end and
    /// closes its connections (round trips): dropped with the GIL released, unless the
    /// interpreter is gone or finalizing. The field is swapped for a shared empty registry,
    /// never used, so that the real one can leave it.
    fn drop(&mut self) {
        if self.in_memory {
            return;
        }
        static PLACEHOLDER: OnceLock<Arc<dyn WorkerRegistry>> = OnceLock::new();
        let placeholder = PLACEHOLDER
            .get_or_init(|| Arc::new(InMemoryWorkerRegistry::new()))
            .clone();
        drop_detached(std::mem::replace(&mut self.inner, placeholder));
    }
}

/// The ``retired_id_limit`` argument: None (the backend's default), or a count.
fn retired_limit(py: Python<'_>, limit: Option<Int>) -> PyResult<Option<usize>> {
    limit
        .map(|Int(n)| convert::count(py, n, "retired_id_limit"))
        .transpose()
}

#[pymethods]
impl PyRegistry {
    /// An empty registry on ``clock`` (a ManualClock), or on the system's monotonic clock,
    /// remembering ``retired_id_limit`` unregistered ids (None: the default, 2**20).
    #[new]
    #[pyo3(signature = (clock=None, *, retired_id_limit=None))]
    fn new(
        py: Python<'_>,
        clock: Option<Bound<'_, PyManualClock>>,
        retired_id_limit: Option<Int>,
    ) -> PyResult<Self> {
        let limit = retired_limit(py, retired_id_limit)?;
        let inner = match &clock {
            Some(c) => InMemoryWorkerRegistry::with_clock(c.get().inner.clone()),
            None => InMemoryWorkerRegistry::with_clock(Arc::new(SystemClock::new())),
        };
        if let Some(limit) = limit {
            inner.set_retired_id_limit(limit);
        }
        Ok(PyRegistry {
            inner: Arc::new(inner),
            clock: clock.map(Bound::unbind),
            in_memory: true,
        })
    }

    /// The registry named ``name`` on the PostgreSQL server at ``url``, shared by every process
    /// that opens the same name on the same database (scheduler replicas: one fleet).
    ///
    /// ``url`` is any libpq connection string: a URL (``"postgresql://user@host/db"``) or
    /// ``key=value`` pairs (``"host=/tmp user=postgres dbname=postgres"``). ``name`` (1 to 48
    /// characters of ``[a-z0-9_]``, not starting with a digit) is the PostgreSQL schema the
    /// registry lives in, created with its tables on first use. Deadlines are judged on the
    /// database's clock, or on ``clock`` (a ManualClock, for tests) when given.
    ///
    /// Raises InvalidArgumentError for a malformed ``url`` (a NUL in it included) or ``name``,
    /// BackendError when the server cannot be reached. Later calls raise BackendError while it is unreachable (and
    /// apply nothing).
    ///
    /// A process forked after this (``multiprocessing``, a pre-forking server) opens
    /// connections of its own and leaves the parent's alone: fork while no call of the registry
    /// is in flight.
    #[staticmethod]
    #[pyo3(
        signature = (url, *, name=StrArg::Default("hodei_workers"), clock=None, retired_id_limit=None),
        text_signature = "(url, *, name='hodei_workers', clock=None, retired_id_limit=None)"
    )]
    fn postgres(
        py: Python<'_>,
        url: &Bound<'_, PyString>,
        name: StrArg<'_, '_>,
        clock: Option<Bound<'_, PyManualClock>>,
        retired_id_limit: Option<Int>,
    ) -> PyResult<PyRegistry> {
        let url = convert::text(url, "url")?;
        let name = name.text("name")?;
        let limit = retired_limit(py, retired_id_limit)?;
        crate::postgres::open(py, url, name, clock, limit)
    }

    /// Drops the registry ``name`` from the PostgreSQL server at ``url``: its schema with every
    /// record and event (tests clean up with it). Registries still open on it raise
    /// BackendError afterwards. Raises InvalidArgumentError for a malformed ``url`` (a NUL in it
    /// included) or ``name``.
    #[staticmethod]
    #[pyo3(signature = (url, *, name))]
    fn drop_postgres(
        py: Python<'_>,
        url: &Bound<'_, PyString>,
        name: &Bound<'_, PyString>,
    ) -> PyResult<()> {
        let url = convert::text(url, "url")?;
        let name = convert::text(name, "name")?;
        crate::postgres::drop(py, url, name)
    }

    /// The ManualClock given at construction, or None on the system clock.
    #[getter]
    fn clock(&self, py: Python<'_>) -> Option<Py<PyManualClock>> {
        self.clock.as_ref().map(|c| c.clone_ref(py))
    }

    /// The time on the registry's clock (float seconds since the epoch). On PostgreSQL
    /// without a ManualClock it is the database's clock: the GIL is released while it asks.
    fn now(&self, py: Python<'_>) -> PyResult<f64> {
        let now = if self.in_memory {
            self.inner.now()
        } else {
            run(py, || Ok(self.inner.now()))?
        };
        Ok(convert::seconds(now))
    }

    /// Registers a worker that a provider started; it begins in CREATING.
    ///
    /// ``provider_type`` is ``"docker"``, ``"kubernetes"``, ``"fargate"``, ``"cloud_run"``,
    /// ``"container_apps"``, ``"lambda"``, ``"cloud_functions"``, ``"azure_functions"``,
    /// ``"ec2"``, ``"compute_engine"``, ``"azure_vms"``, ``"bare_metal"`` or ``"custom:NAME"``.
    /// ``resource_id`` is the provider's id of the instance. ``spec`` defaults to
    /// ``WorkerSpec()``. ``worker_id`` (a UUID str) is generated when not given.
    ///
    /// Raises WorkerAlreadyExistsError for a known id, InvalidArgumentError for a malformed id
    /// or an unknown provider type.
    #[pyo3(signature = (provider_id, provider_type, resource_id, spec=None, *, worker_id=None, metadata=None))]
    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        py: Python<'_>,
        provider_id: &Bound<'_, PyString>,
        provider_type: &Bound<'_, PyString>,
        resource_id: &Bound<'_, PyString>,
        spec: Option<PyWorkerSpec>,
        worker_id: Option<&Bound<'_, PyString>>,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyWorker> {
        let mut handle = WorkerHandle::new(
            convert::provider_id(provider_id, "provider_id")?,
            convert::provider_type(provider_type, "provider_type")?,
            convert::c_text(resource_id, "resource_id")?,
        );
        if let Some(id) = worker_id {
            handle.worker_id = convert::worker_id(id, "worker_id")?;
        }
        if let Some(m) = metadata {
            handle.metadata = convert::str_map(m, "metadata")?;
        }
        let spec = spec
            .map(|s| s.inner)
            .unwrap_or_else(|| Arc::new(WorkerSpec::default()));
        run(py, || self.inner.register(handle, spec)).map(PyWorker::new)
    }

    /// Removes a worker's record and returns its last snapshot. A job it held is reported lost
    /// (a JobLost event). ``reason`` is a TerminationReason or its name.
    #[pyo3(signature = (worker_id, reason=None))]
    fn unregister(
        &self,
        py: Python<'_>,
        worker_id: &Bound<'_, PyString>,
        reason: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyWorker> {
        let id = convert::worker_id(worker_id, "worker_id")?;
        let reason = reason
            .map(convert::reason_from_py)
            .transpose()?
            .unwrap_or(TerminationReason::Requested);
        run(py, || self.inner.unregister(&id, reason)).map(PyWorker::new)
    }

    /// A snapshot of one worker, or None when unknown.
    fn get(&self, py: Python<'_>, worker_id: &Bound<'_, PyString>) -> PyResult<Option<PyWorker>> {
        let id = convert::worker_id(worker_id, "worker_id")?;
        Ok(run(py, || self.inner.get(&id))?.map(PyWorker::new))
    }

    /// Snapshots of the workers matching every filter given (none given: every worker).
    ///
    /// ``states``: a WorkerState, its name, or an iterable of them. ``provider_id``,
    /// ``provider_type``: exact match. ``accepting_jobs``: True for READY workers only, False
    /// for the others. ``idle_for``: READY and idle at least this long. ``unhealthy_for``: no
    /// heartbeat for longer than this (any state; a grace period does not count as one). ``labels``: every one of these labels with these values.
    /// ``capabilities``: every one of these. ``limit``: at most this many. ``fits``: a
    /// Resources the worker's resources cover (at least as much of each, the same ``gpu_type``
    /// when one is named): claim for a job exactly as its demand describes it.
    /// ``architecture``: ``"amd64"``, ``"arm64"`` or ``"arm"``.
    #[pyo3(signature = (*, states=None, provider_id=None, provider_type=None, accepting_jobs=None,
                        idle_for=None, unhealthy_for=None, labels=None, capabilities=None, limit=None,
                        fits=None, architecture=None))]
    #[allow(clippy::too_many_arguments)]
    fn find(
        &self,
        py: Python<'_>,
        states: Option<&Bound<'_, PyAny>>,
        provider_id: Option<&Bound<'_, PyString>>,
        provider_type: Option<&Bound<'_, PyString>>,
        accepting_jobs: Option<bool>,
        idle_for: Option<Seconds>,
        unhealthy_for: Option<Seconds>,
        labels: Option<&Bound<'_, PyAny>>,
        capabilities: Option<&Bound<'_, PyAny>>,
        limit: Option<Int>,
        fits: Option<PyRef<'_, PyResources>>,
        architecture: Option<&Bound<'_, PyString>>,
    ) -> PyResult<Vec<PyWorker>> {
        let filter = build_filter(
            py,
            states,
            provider_id,
            provider_type,
            accepting_jobs,
            idle_for,
            unhealthy_for,
            labels,
            capabilities,
            limit,
        )?;
        let filter = with_fit(py, filter, fits, architecture)?;
        run(py, || self.inner.find(&filter)).map(workers)
    }

    /// Workers that accept jobs now (READY).
    fn find_available(&self, py: Python<'_>) -> PyResult<Vec<PyWorker>> {
        run(py, || self.inner.find_available()).map(workers)
    }

    /// The ``n`` longest-idle READY workers, longest idle first: a host's scale-in
    /// candidates, answered from the ready index (no fleet scan). Each worker is listed once;
    /// one claimed, or whose idle time restarted, during the call may be left out. Raises
    /// InvalidArgumentError for a negative ``n``, TypeError for a non-int (a bool included).
    fn longest_idle(&self, py: Python<'_>, n: Int) -> PyResult<Vec<PyWorker>> {
        let n = convert::count(py, n.0, "n")?;
        run(py, || self.inner.longest_idle(n)).map(workers)
    }

    /// Workers of one provider.
    fn find_by_provider(
        &self,
        py: Python<'_>,
        provider_id: &Bound<'_, PyString>,
    ) -> PyResult<Vec<PyWorker>> {
        let provider = convert::provider_id(provider_id, "provider_id")?;
        run(py, || self.inner.find_by_provider(&provider)).map(workers)
    }

    /// Moves a worker to ``state`` (a WorkerState or its name) and returns the new snapshot.
    /// The state it is already in is a no-op (no event).
    ///
    /// Never enters or leaves BUSY (that is assign/claim and release): asking for it raises
    /// InvalidTransitionError, as does any move the state machine refuses.
    fn update_state(
        &self,
        py: Python<'_>,
        worker_id: &Bound<'_, PyString>,
        state: &Bound<'_, PyAny>,
    ) -> PyResult<PyWorker> {
        let id = convert::worker_id(worker_id, "worker_id")?;
        let state = convert::state_from_py(state, "state")?;
        run(py, || self.inner.update_state(&id, state)).map(PyWorker::new)
    }

    /// Records a heartbeat of the worker's agent (updates ``last_heartbeat`` only; changes no
    /// state). In memory it keeps the GIL (shorter than releasing it); on PostgreSQL it
    /// releases it for the round trip. Raises WorkerNotFoundError for an unknown worker: tell
    /// its agent to register again.
    fn heartbeat(&self, py: Python<'_>, worker_id: &Bound<'_, PyString>) -> PyResult<()> {
        // Read in place (`convert::text`): no allocation for the id on this hot path.
        let id = convert::worker_id(worker_id, "worker_id")?;
        if self.in_memory {
            // Keeps the GIL: an in-memory heartbeat is shorter than releasing and taking it
            // back (BENCHMARKS.md, the Python rows).
            run_brief(py, || self.inner.heartbeat(&id))
        } else {
            // A database round trip: other Python threads run meanwhile.
            run(py, || self.inner.heartbeat(&id))
        }
    }

    /// Records a heartbeat of each worker of ``worker_ids`` (an iterable of id str), as
    /// ``heartbeat`` does for one: the bulk form for a host that gathers its agents'
    /// heartbeats (PostgreSQL makes it one statement). The GIL is released while it works.
    ///
    /// Returns the ids the registry does not hold, in the order given: tell their agents to
    /// register again. Raises InvalidArgumentError for a malformed id and TypeError for an
    /// item that is not a str (or a lone str for ``worker_ids``): then no heartbeat is
    /// recorded.
    fn heartbeat_many(
        &self,
        py: Python<'_>,
        worker_ids: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<String>> {
        if worker_ids.is_instance_of::<PyString>() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "worker_ids must be an iterable of str, not a str",
            ));
        }
        let items = crate::calls::iterate(worker_ids).map_err(|err| {
            convert::not_iterable(worker_ids, err, || {
                format!(
                    "worker_ids must be an iterable of str, not {}",
                    worker_ids
                        .get_type()
                        .name()
                        .map_or_else(|_| "that".to_owned(), |n| n.to_string())
                )
            })
        })?;
        let mut ids = Vec::new();
        for item in items {
            let item = item?;
            let Ok(id) = item.cast::<PyString>() else {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "worker_ids must hold str, found {}",
                    item.get_type().name()?
                )));
            };
            ids.push(convert::worker_id(id, "an item of worker_ids")?);
        }
        let answers = run(py, || self.inner.heartbeat_many(&ids))?;
        let mut unknown = Vec::new();
        for (id, answer) in ids.iter().zip(answers) {
            match answer {
                Ok(()) => {}
                Err(e) if e.kind() == hodei_workers::ErrorKind::NotFound => {
                    unknown.push(id.to_string())
                }
                Err(e) => return Err(e).or_raise(py),
            }
        }
        Ok(unknown)
    }

    /// After a stall of the host (the process was suspended, the machine slept): no heartbeat
    /// or startup deadline that started before ``since`` (float seconds on the registry's
    /// clock; None: now) expires before ``since`` plus its timeout. A LifecycleManager does
    /// this itself when it notices a stall; a host driving the registry alone may.
    ///
    /// Raises InvalidArgumentError for a negative, non-finite or huge ``since``; TypeError for
    /// a non-number (a bool included).
    #[pyo3(signature = (since=None))]
    fn grant_grace(&self, py: Python<'_>, since: Option<Float>) -> PyResult<()> {
        let since = match since {
            Some(Float(secs)) => Some(convert::timestamp(py, secs, "since")?),
            None => None,
        };
        run(py, || {
            let since = since.unwrap_or_else(|| self.inner.now());
            self.inner.grant_grace(since)
        })
    }

    /// Gives ``job_id`` to a READY worker, which becomes BUSY.
    ///
    /// Raises WorkerNotAvailableError when it is not READY, JobAlreadyAssignedError when
    /// another worker holds the job.
    fn assign_to_job(
        &self,
        py: Python<'_>,
        worker_id: &Bound<'_, PyString>,
        job_id: &Bound<'_, PyString>,
    ) -> PyResult<PyWorker> {
        let id = convert::worker_id(worker_id, "worker_id")?;
        let job = convert::job_id(job_id, "job_id")?;
        run(py, || self.inner.assign_to_job(&id, job)).map(PyWorker::new)
    }

    /// Takes the job back and returns its id: BUSY -> READY (the idle clock restarts), or the
    /// worker stays DRAINING; ``jobs_executed`` grows, and reaching ``spec.max_jobs`` drains it.
    ///
    /// With ``expected_job``, a worker holding another job is left alone: a late release from
    /// an old assignment never frees a new one. Raises WorkerNotBusyError when it holds no job
    /// or another job than ``expected_job``.
    #[pyo3(signature = (worker_id, expected_job=None))]
    fn release_from_job(
        &self,
        py: Python<'_>,
        worker_id: &Bound<'_, PyString>,
        expected_job: Option<&Bound<'_, PyString>>,
    ) -> PyResult<String> {
        let id = convert::worker_id(worker_id, "worker_id")?;
        let expected = expected_job
            .map(|j| convert::job_id(j, "expected_job"))
            .transpose()?;
        let job = run(py, || self.inner.release_from_job(&id, expected.as_ref()))?;
        Ok(job.as_str().to_owned())
    }

    /// Picks a READY worker matching the filters (the keywords of ``find``) and gives it
    /// ``job_id``, in one atomic step: two threads never get the same worker, and a job is never
    /// given twice. Prefers the most recently idle worker, so that surplus workers idle out.
    /// Returns the now BUSY worker, or None when none matches.
    ///
    /// Raises JobAlreadyAssignedError when a worker already holds ``job_id``.
    #[pyo3(signature = (job_id, *, states=None, provider_id=None, provider_type=None, accepting_jobs=None,
                        idle_for=None, unhealthy_for=None, labels=None, capabilities=None, limit=None,
                        fits=None, architecture=None))]
    #[allow(clippy::too_many_arguments)]
    fn claim(
        &self,
        py: Python<'_>,
        job_id: &Bound<'_, PyString>,
        states: Option<&Bound<'_, PyAny>>,
        provider_id: Option<&Bound<'_, PyString>>,
        provider_type: Option<&Bound<'_, PyString>>,
        accepting_jobs: Option<bool>,
        idle_for: Option<Seconds>,
        unhealthy_for: Option<Seconds>,
        labels: Option<&Bound<'_, PyAny>>,
        capabilities: Option<&Bound<'_, PyAny>>,
        limit: Option<Int>,
        fits: Option<PyRef<'_, PyResources>>,
        architecture: Option<&Bound<'_, PyString>>,
    ) -> PyResult<Option<PyWorker>> {
        let job = convert::job_id(job_id, "job_id")?;
        let filter = build_filter(
            py,
            states,
            provider_id,
            provider_type,
            accepting_jobs,
            idle_for,
            unhealthy_for,
            labels,
            capabilities,
            limit,
        )?;
        let filter = with_fit(py, filter, fits, architecture)?;
        Ok(run(py, || self.inner.claim(&filter, job))?.map(PyWorker::new))
    }

    /// Workers past their heartbeat deadline: CONNECTING, READY, BUSY or DRAINING and silent
    /// for longer than ``timeout`` (float seconds or timedelta).
    fn find_unhealthy(&self, py: Python<'_>, timeout: Seconds) -> PyResult<Vec<PyWorker>> {
        run(py, || self.inner.find_unhealthy(timeout.0)).map(workers)
    }

    /// Workers past their startup deadline: still CREATING or CONNECTING longer than
    /// ``timeout`` after registration.
    fn find_startup_expired(&self, py: Python<'_>, timeout: Seconds) -> PyResult<Vec<PyWorker>> {
        run(py, || self.inner.find_startup_expired(timeout.0)).map(workers)
    }

    /// Workers due for retirement, each with its TerminationReason: LIFETIME (past
    /// ``max_lifetime``; a BUSY one is to be drained, not killed), IDLE (READY past
    /// ``idle_timeout``), DRAINED / MAX_JOBS (DRAINING without a job).
    fn find_for_termination(&self, py: Python<'_>) -> PyResult<Vec<(PyWorker, Py<PyAny>)>> {
        run(py, || self.inner.find_for_termination())?
            .into_iter()
            .map(|(w, reason)| Ok((PyWorker::new(w), convert::reason_to_py(py, reason)?)))
            .collect()
    }

    /// Counts per state, provider and provider type (constant cost, whatever the fleet size).
    fn stats(&self, py: Python<'_>) -> PyResult<PyRegistryStats> {
        run(py, || self.inner.stats()).map(|inner| PyRegistryStats { inner })
    }

    /// A new subscription to the registry's events. ``capacity`` bounds its queue (when full,
    /// events are dropped for this subscriber: the registry never waits). Heartbeat events are
    /// sent only with ``heartbeats=True``.
    #[pyo3(
        signature = (capacity=Int(4096), heartbeats=false),
        text_signature = "($self, capacity=4096, heartbeats=False)"
    )]
    fn subscribe(
        &self,
        py: Python<'_>,
        capacity: Int,
        heartbeats: bool,
    ) -> PyResult<PySubscription> {
        // One bound for every value below it: "must be >= 0" for a negative one sent the
        // caller to 0, which is refused as well.
        let capacity = match usize::try_from(capacity.0) {
            Ok(capacity) if capacity >= 1 => capacity,
            _ => {
                return Err(invalid(
                    py,
                    format!("capacity must be at least 1, got {}", capacity.0),
                ))
            }
        };
        let options = SubscribeOptions::default()
            .capacity(capacity)
            .heartbeats(heartbeats);
        let subscription = run(py, || self.inner.subscribe(options))?;
        Ok(PySubscription::new(
            subscription,
            &self.inner,
            !self.in_memory,
        ))
    }

    /// Puts an event of the host on the registry's stream, with the next ``seq`` and the
    /// registry's time: every subscriber reads it (on PostgreSQL, those of every process
    /// sharing the registry), as it reads the manager's. ``event`` is one of the classes a
    /// Subscription yields, made with the kind's fields (``ProvisionFailed("docker-local",
    /// "quota exceeded")``) or as received; its own ``seq`` and ``at`` are not used.
    ///
    /// Publishable: HeartbeatReceived (to subscriptions with ``heartbeats=True`` only; it
    /// records no heartbeat), UnhealthyDetected, ProvisionRequested, ProvisionFailed,
    /// DestroyFailed, MassExpiryHeld, LeaderChanged.
    ///
    /// Raises InvalidArgumentError for the registry's own kinds (Registered, StateChanged,
    /// AssignedToJob, ReleasedFromJob, JobLost, Unregistered: only a change of its records
    /// emits them); WorkerNotFoundError for an event about a worker the registry does not hold;
    /// TypeError for anything but an Event. Nothing is published then.
    fn publish(&self, py: Python<'_>, event: &Bound<'_, PyAny>) -> PyResult<()> {
        let kind = crate::events::event_kind_of(event)?;
        run(py, || self.inner.publish(kind))
    }

    /// Every record plus the event ``seq``, consistent at one instant, as JSON text.
    fn snapshot(&self, py: Python<'_>) -> PyResult<String> {
        run(py, || self.inner.snapshot()?.to_json())
    }

    /// Loads a JSON snapshot (from ``snapshot()``) into this registry, which must be empty.
    /// The snapshot is checked whole first: on any error nothing changes. A snapshot dated
    /// after this registry's clock (taken on a host whose clock is ahead) has every time
    /// clamped to this clock's now, so that none of its workers escapes its heartbeat
    /// deadline; one dated more than an hour after now is refused.
    ///
    /// Raises SnapshotError for corrupt, truncated, foreign or inconsistent text, or a
    /// snapshot dated more than an hour after this registry's clock; InvalidArgumentError when
    /// the registry is not empty, one of the snapshot's workers was registered in this
    /// registry before (ids are never reused), for a ``snapshot`` that is not valid text (a
    /// lone surrogate: no snapshot's text), or (PostgreSQL) when the database's encoding
    /// cannot store one of its strings.
    fn restore(&self, py: Python<'_>, snapshot: &Bound<'_, PyString>) -> PyResult<()> {
        let snapshot = convert::text(snapshot, "snapshot")?;
        run(py, || self.inner.restore(Snapshot::from_json(snapshot)?))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        run(py, || self.inner.count())
    }

    fn __contains__(&self, py: Python<'_>, worker_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let text = worker_id.cast::<PyString>().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "a worker id is a str, not {}",
                worker_id
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        // A string that is not a worker id names no worker: `in` answers False, not an error
        // (one that is not even valid text, a lone surrogate, included).
        let Ok(text) = text.to_str() else {
            return Ok(false);
        };
        let Ok(id) = WorkerId::parse(text) else {
            return Ok(false);
        };
        Ok(run(py, || self.inner.get(&id))?.is_some())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let stats = run(py, || self.inner.stats())?;
        Ok(format!(
            "<Registry workers={} ready={} busy={}>",
            stats.total, stats.by_state.ready, stats.by_state.busy
        ))
    }
}
