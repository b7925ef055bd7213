//! Events and subscriptions: the `Event` base class, one subclass per kind of event, and
//! `Subscription`.
//!
//! Each kind is its own class so that user code can dispatch with `isinstance` or `match`
//! (`case StateChanged(worker_id=w, to_state=WorkerState.READY)`); every event also carries
//! `seq`, `at` and `kind` (the stable snake_case name).

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hodei_workers::{EventKind, Subscription, WorkerLifecycleEvent, WorkerRegistry};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use pyo3::BoundObject;

use crate::convert::{self, Float, Int, Seconds};
use crate::errors::{drop_detached, invalid};
use crate::types::py_repr;

/// Something that happened to a worker or to the fleet, in order.
///
/// ``seq`` increases strictly per registry (a gap means this subscriber missed events: its
/// queue was full, which ``Subscription.dropped`` counts, or they were HeartbeatReceived
/// events, which it did not ask for and another subscription did; on PostgreSQL also a write
/// that failed after taking its number, or events pruned before it read them); ``at`` is the
/// time on the registry's clock (float seconds since the epoch); ``kind`` is the stable
/// snake_case name (``"state_changed"``, …). Each kind is a subclass with its own fields; an
/// event of a kind newer than this module is a plain Event. Registered, StateChanged,
/// AssignedToJob, ReleasedFromJob, JobLost and Unregistered are the registry's own: only a
/// change of its records emits them (``Registry.publish``, the host's way onto the stream,
/// refuses them), so each one read tells of a change that happened. The other kinds can be made
/// with their fields, to publish.
#[pyclass(frozen, subclass, eq, hash, name = "Event", module = "hodei_workers")]
#[derive(PartialEq)]
pub(crate) struct PyEvent {
    inner: WorkerLifecycleEvent,
}

impl Hash for PyEvent {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.inner.seq, self.inner.at, self.inner.kind.name()).hash(state);
    }
}

/// The fields of an event of `kind`, in declaration order, as Python values.
fn fields<'py>(py: Python<'py>, kind: &EventKind) -> PyResult<Vec<(&'static str, Py<PyAny>)>> {
    fn v<'py, T: IntoPyObject<'py>>(py: Python<'py>, value: T) -> PyResult<Py<PyAny>>
    where
        PyErr: From<T::Error>,
    {
        Ok(value.into_pyobject(py)?.into_any().unbind())
    }
    Ok(match kind {
        EventKind::Registered {
            worker_id,
            provider_id,
            provider_type,
        } => vec![
            ("worker_id", v(py, worker_id.to_string())?),
            ("provider_id", v(py, provider_id.as_str())?),
            ("provider_type", v(py, provider_type.to_string())?),
        ],
        EventKind::StateChanged {
            worker_id,
            from,
            to,
        } => vec![
            ("worker_id", v(py, worker_id.to_string())?),
            ("from_state", convert::state_to_py(py, *from)?),
            ("to_state", convert::state_to_py(py, *to)?),
        ],
        EventKind::AssignedToJob { worker_id, job_id }
        | EventKind::ReleasedFromJob { worker_id, job_id }
        | EventKind::JobLost { worker_id, job_id } => vec![
            ("worker_id", v(py, worker_id.to_string())?),
            ("job_id", v(py, job_id.as_str())?),
        ],
        EventKind::HeartbeatReceived { worker_id } => {
            vec![("worker_id", v(py, worker_id.to_string())?)]
        }
        EventKind::UnhealthyDetected {
            worker_id,
            last_heartbeat,
        } => vec![
            ("worker_id", v(py, worker_id.to_string())?),
            ("last_heartbeat", v(py, convert::seconds(*last_heartbeat))?),
        ],
        EventKind::Unregistered { worker_id, reason } => vec![
            ("worker_id", v(py, worker_id.to_string())?),
            ("reason", convert::reason_to_py(py, *reason)?),
        ],
        EventKind::ProvisionRequested { provider_id } => {
            vec![("provider_id", v(py, provider_id.as_str())?)]
        }
        EventKind::ProvisionFailed { provider_id, error } => vec![
            ("provider_id", v(py, provider_id.as_str())?),
            ("error", v(py, error.as_str())?),
        ],
        EventKind::DestroyFailed {
            worker_id,
            provider_id,
            error,
            attempts,
        } => vec![
            ("worker_id", v(py, worker_id.to_string())?),
            ("provider_id", v(py, provider_id.as_str())?),
            ("error", v(py, error.as_str())?),
            ("attempts", v(py, *attempts)?),
        ],
        EventKind::MassExpiryHeld { would_expire, live } => vec![
            ("would_expire", v(py, *would_expire)?),
            ("live", v(py, *live)?),
        ],
        EventKind::LeaderChanged { holder, term, by } => vec![
            ("holder", v(py, holder.as_deref())?),
            ("term", v(py, *term)?),
            ("by", v(py, by.as_str())?),
        ],
        // A kind added to the core after this module: its common fields still show.
        other => match other.worker_id() {
            Some(id) => vec![("worker_id", v(py, id.to_string())?)],
            None => Vec::new(),
        },
    })
}

fn field(py: Python<'_>, event: &PyEvent, name: &str) -> PyResult<Py<PyAny>> {
    fields(py, &event.inner.kind)?
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
        .ok_or_else(|| {
            pyo3::exceptions::PyAttributeError::new_err(format!(
                "{} event has no field {name}",
                event.inner.kind.name()
            ))
        })
}

fn class_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Registered { .. } => "Registered",
        EventKind::StateChanged { .. } => "StateChanged",
        EventKind::AssignedToJob { .. } => "AssignedToJob",
        EventKind::ReleasedFromJob { .. } => "ReleasedFromJob",
        EventKind::HeartbeatReceived { .. } => "HeartbeatReceived",
        EventKind::UnhealthyDetected { .. } => "UnhealthyDetected",
        EventKind::JobLost { .. } => "JobLost",
        EventKind::Unregistered { .. } => "Unregistered",
        EventKind::ProvisionRequested { .. } => "ProvisionRequested",
        EventKind::ProvisionFailed { .. } => "ProvisionFailed",
        EventKind::DestroyFailed { .. } => "DestroyFailed",
        EventKind::MassExpiryHeld { .. } => "MassExpiryHeld",
        EventKind::LeaderChanged { .. } => "LeaderChanged",
        _ => "Event",
    }
}

#[pymethods]
impl PyEvent {
    /// Strictly increasing per registry; a gap means this subscriber missed events.
    #[getter]
    fn seq(&self) -> u64 {
        self.inner.seq
    }

    /// When it happened, on the registry's clock (float seconds since the epoch).
    #[getter]
    fn at(&self) -> f64 {
        convert::seconds(self.inner.at)
    }

    /// The stable snake_case name of the kind (``"registered"``, ``"state_changed"``, …).
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.name()
    }

    /// The worker the event is about, or None for fleet events (provisioning, mass expiry).
    #[getter]
    fn worker_id(&self) -> Option<String> {
        self.inner.kind.worker_id().map(|id| id.to_string())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut out = format!(
            "{}(seq={}, at={}",
            class_name(&self.inner.kind),
            self.inner.seq,
            py_repr(py, convert::seconds(self.inner.at))?
        );
        if class_name(&self.inner.kind) == "Event" {
            out += &format!(", kind={}", py_repr(py, self.inner.kind.name())?);
        }
        for (name, value) in fields(py, &self.inner.kind)? {
            out += &format!(", {name}={}", value.bind(py).repr()?);
        }
        out.push(')');
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Events made in Python, for `Registry.publish`: one constructor per kind a host may publish,
// taking the kind's fields in the order of its `__match_args__`. The registry's own kinds have
// none (`publish` refuses them: only the registry emits them, as it changes its records).

type Made = PyResult<EventKind>;

fn made_heartbeat_received(_py: Python<'_>, worker_id: &Bound<'_, PyString>) -> Made {
    Ok(EventKind::HeartbeatReceived {
        worker_id: convert::worker_id(worker_id, "worker_id")?,
    })
}

fn made_unhealthy_detected(
    py: Python<'_>,
    worker_id: &Bound<'_, PyString>,
    last_heartbeat: Float,
) -> Made {
    Ok(EventKind::UnhealthyDetected {
        worker_id: convert::worker_id(worker_id, "worker_id")?,
        last_heartbeat: convert::timestamp(py, last_heartbeat.0, "last_heartbeat")?,
    })
}

fn made_provision_requested(_py: Python<'_>, provider_id: &Bound<'_, PyString>) -> Made {
    Ok(EventKind::ProvisionRequested {
        provider_id: convert::provider_id(provider_id, "provider_id")?,
    })
}

fn made_provision_failed(
    _py: Python<'_>,
    provider_id: &Bound<'_, PyString>,
    error: &Bound<'_, PyString>,
) -> Made {
    Ok(EventKind::ProvisionFailed {
        provider_id: convert::provider_id(provider_id, "provider_id")?,
        error: convert::text(error, "error")?.to_owned(),
    })
}

fn made_destroy_failed(
    py: Python<'_>,
    worker_id: &Bound<'_, PyString>,
    provider_id: &Bound<'_, PyString>,
    error: &Bound<'_, PyString>,
    attempts: Int,
) -> Made {
    Ok(EventKind::DestroyFailed {
        worker_id: convert::worker_id(worker_id, "worker_id")?,
        provider_id: convert::provider_id(provider_id, "provider_id")?,
        error: convert::text(error, "error")?.to_owned(),
        attempts: u32::try_from(attempts.0).map_err(|_| {
            invalid(
                py,
                format!("attempts must be in 0..=4294967295, got {}", attempts.0),
            )
        })?,
    })
}

fn made_mass_expiry_held(py: Python<'_>, would_expire: Int, live: Int) -> Made {
    Ok(EventKind::MassExpiryHeld {
        would_expire: convert::count(py, would_expire.0, "would_expire")?,
        live: convert::count(py, live.0, "live")?,
    })
}

fn made_leader_changed(
    py: Python<'_>,
    holder: Option<&Bound<'_, PyString>>,
    term: Int,
    by: &Bound<'_, PyString>,
) -> Made {
    Ok(EventKind::LeaderChanged {
        holder: holder
            .map(|h| convert::text(h, "holder").map(str::to_owned))
            .transpose()?,
        term: u64::try_from(term.0)
            .map_err(|_| invalid(py, format!("term must be >= 0, got {}", term.0)))?,
        by: convert::text(by, "by")?.to_owned(),
    })
}

/// The core's event of a Python event (any of the classes, one received included), for
/// `Registry.publish`; `TypeError` for anything else.
pub(crate) fn event_kind_of(event: &Bound<'_, PyAny>) -> PyResult<EventKind> {
    let event = event.cast::<PyEvent>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "publish takes an Event (ProvisionRequested(...), ...), not {}",
            event
                .get_type()
                .name()
                .map_or_else(|_| "that".to_owned(), |n| n.to_string())
        ))
    })?;
    Ok(event.get().inner.kind.clone())
}

macro_rules! event_classes {
    ($( $(#[doc = $doc:literal])* $Variant:ident [$($field:ident),*]
        $( new $made:ident ($($arg:ident : $ty:ty),*) )?; )*) => {
        $(
            $(#[doc = $doc])*
            #[pyclass(frozen, extends = PyEvent, module = "hodei_workers")]
            pub(crate) struct $Variant;

            #[pymethods]
            impl $Variant {
                $(
                    /// An event of this kind to give to ``Registry.publish``: ``seq`` 0 and
                    /// ``at`` 0.0 until then (the registry numbers and dates the event it puts
                    /// on the stream; this object does not change).
                    #[new]
                    fn __new__(py: Python<'_>, $($arg: $ty),*) -> PyResult<PyClassInitializer<Self>> {
                        let kind = $made(py, $($arg),*)?;
                        let event = WorkerLifecycleEvent { seq: 0, at: 0, kind };
                        Ok(PyClassInitializer::from(PyEvent { inner: event }).add_subclass($Variant))
                    }
                )?

                /// Field names for positional patterns in ``match`` statements.
                #[classattr]
                fn __match_args__(py: Python<'_>) -> PyResult<Py<PyTuple>> {
                    Ok(PyTuple::new(py, [$(stringify!($field)),*])?.unbind())
                }

                $(
                    #[doc = concat!("The event's ``", stringify!($field), "`` (see the class docstring).")]
                    #[getter]
                    fn $field(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
                        field(slf.py(), slf.as_super().get(), stringify!($field))
                    }
                )*
            }
        )*

        /// The Python object for `event`: an instance of its kind's class.
        pub(crate) fn event_to_py(py: Python<'_>, event: WorkerLifecycleEvent) -> PyResult<Py<PyAny>> {
            let name = class_name(&event.kind);
            let base = PyClassInitializer::from(PyEvent { inner: event });
            $(
                if name == stringify!($Variant) {
                    return Ok(Bound::new(py, base.add_subclass($Variant))?.into_any().unbind());
                }
            )*
            Ok(Bound::new(py, base)?.into_any().unbind())
        }

        /// Adds `Event` and every event class to the module.
        pub(crate) fn add_event_classes(m: &Bound<'_, PyModule>) -> PyResult<()> {
            m.add_class::<PyEvent>()?;
            $( m.add_class::<$Variant>()?; )*
            Ok(())
        }
    };
}

event_classes! {
    /// A worker was registered (it starts in CREATING).
    Registered [worker_id, provider_id, provider_type];
    /// A worker changed state: ``from_state`` -> ``to_state`` (WorkerState members).
    StateChanged [worker_id, from_state, to_state];
    /// A worker took a job.
    AssignedToJob [worker_id, job_id];
    /// A worker finished (released) a job.
    ReleasedFromJob [worker_id, job_id];
    /// A heartbeat arrived (only for subscriptions made with ``heartbeats=True``).
    HeartbeatReceived [worker_id]
        new made_heartbeat_received(worker_id: &Bound<'_, PyString>);
    /// A worker missed its heartbeat or startup deadline; ``last_heartbeat`` is float seconds.
    UnhealthyDetected [worker_id, last_heartbeat]
        new made_unhealthy_detected(worker_id: &Bound<'_, PyString>, last_heartbeat: Float);
    /// A worker holding a job left service: the host must requeue ``job_id``.
    JobLost [worker_id, job_id];
    /// A worker's record left the registry; ``reason`` is a TerminationReason.
    Unregistered [worker_id, reason];
    /// The manager asked a provider for a worker.
    ProvisionRequested [provider_id]
        new made_provision_requested(provider_id: &Bound<'_, PyString>);
    /// A provider failed to create a worker; ``error`` says what it said.
    ProvisionFailed [provider_id, error]
        new made_provision_failed(provider_id: &Bound<'_, PyString>, error: &Bound<'_, PyString>);
    /// A provider failed to destroy a worker; it stays TERMINATING and is retried with backoff.
    /// Not for an orphan instance (no record): its failed destroys are in the reports only.
    DestroyFailed [worker_id, provider_id, error, attempts]
        new made_destroy_failed(
            worker_id: &Bound<'_, PyString>,
            provider_id: &Bound<'_, PyString>,
            error: &Bound<'_, PyString>,
            attempts: Int
        );
    /// The health check would have declared too many workers unhealthy at once (a partition
    /// on the host's side, most likely) and declared none.
    MassExpiryHeld [would_expire, live]
        new made_mass_expiry_held(would_expire: Int, live: Int);
    /// A replica's manager took the leadership lease (``holder`` is then its own name) or found
    /// it lost (``holder`` is the new leader, or None when unknown); ``term`` is the lease's
    /// term (the fencing token), ``by`` the replica that published the event.
    LeaderChanged [holder, term, by]
        new made_leader_changed(holder: Option<&Bound<'_, PyString>>, term: Int, by: &Bound<'_, PyString>);
}

// ---------------------------------------------------------------------------------------------

/// How often a blocking ``recv()`` without timeout wakes up to let Ctrl-C (and other signal
/// handlers) run: the GIL is released while it waits.
pub(crate) const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// The next slice of a wait that ends at `deadline` (None: no end): at most [`SIGNAL_CHECK`],
/// so that the waiter checks for signals between slices. None once the deadline has passed.
pub(crate) fn wait_slice(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(SIGNAL_CHECK),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(SIGNAL_CHECK))
        }
    }
}

/// A subscriber's end of a registry's event stream (from ``Registry.subscribe``).
///
/// Events queue in a bounded buffer; when it is full the registry never waits: the event is
/// dropped for this subscriber, ``dropped`` grows and ``seq`` shows a gap. Iterating blocks for
/// each next event and ends when the registry is gone; use ``drain()`` or ``try_recv()`` to
/// read without waiting. Dropping the Subscription unsubscribes. Safe to share between threads.
#[pyclass(frozen, name = "Subscription", module = "hodei_workers")]
pub(crate) struct PySubscription {
    /// Always `Some` but in `drop`, which takes it to drop it without the GIL.
    inner: Option<Subscription>,
    /// Tells a registry that is gone (its event bus with it) from a quiet one.
    registry: Weak<dyn WorkerRegistry>,
    /// Fed from a shared outbox (PostgreSQL): every method may read the database first
    /// (`Subscription::fill`), so each releases the GIL. An in-memory subscription only reads
    /// its channel, shorter than releasing and taking back the GIL.
    shared: bool,
}

impl PySubscription {
    pub(crate) fn new(
        inner: Subscription,
        registry: &Arc<dyn WorkerRegistry>,
        shared: bool,
    ) -> Self {
        PySubscription {
            inner: Some(inner),
            registry: Arc::downgrade(registry),
            shared,
        }
    }

    fn sub(&self) -> &Subscription {
        self.inner
            .as_ref()
            .expect("a Subscription is taken only when dropped")
    }

    /// Runs a call that never waits for an event (`try_recv`, `drain`, `len`, `dropped`) on
    /// the subscription: with the GIL released when it may read a shared outbox first.
    fn brief<T: Send>(&self, py: Python<'_>, call: impl FnOnce(&Subscription) -> T + Send) -> T {
        if self.shared {
            py.detach(|| call(self.sub()))
        } else {
            call(self.sub())
        }
    }

    /// Waits for the next event until `deadline` (None: until one comes or the registry is
    /// gone), in slices of at most `SIGNAL_CHECK` with the GIL released, checking for signals
    /// between slices: Ctrl-C interrupts any wait within a slice (issue 10 item 19), not only
    /// when a long timeout ends. `None` on timeout, or when the registry is gone and the queue
    /// empty.
    fn recv_until(
        &self,
        py: Python<'_>,
        deadline: Option<Instant>,
    ) -> PyResult<Option<WorkerLifecycleEvent>> {
        loop {
            let Some(slice) = wait_slice(deadline) else {
                return Ok(self.brief(py, Subscription::try_recv));
            };
            if let Some(event) = py.detach(|| self.sub().recv(Some(slice))) {
                return Ok(Some(event));
            }
            if self.registry.strong_count() == 0 {
                // The senders are gone; whatever was queued before is still ours.
                return Ok(self.brief(py, Subscription::try_recv));
            }
            py.check_signals()?;
        }
    }
}

impl Drop for PySubscription {
    /// A shared subscription's reader gives its connection back to the database (a round
    /// trip): dropped with the GIL released, unless the interpreter is gone or finalizing.
    fn drop(&mut self) {
        if self.shared {
            drop_detached(self.inner.take());
        }
    }
}

#[pymethods]
impl PySubscription {
    /// The next event, waiting up to ``timeout`` (float seconds or timedelta; None: until one
    /// comes or the registry is gone). Returns None on timeout. The GIL is released while
    /// waiting, and Ctrl-C (any signal handler that raises) interrupts any wait promptly. On a
    /// PostgreSQL registry whose server stops answering, None comes up to 10 s after the
    /// timeout (each read waits up to 5 s more for the server).
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<Seconds>) -> PyResult<Option<Py<PyAny>>> {
        // A timeout too long to add to now (years) is a wait without timeout.
        let deadline = timeout.and_then(|Seconds(t)| Instant::now().checked_add(t));
        let event = match (timeout, deadline) {
            (Some(Seconds(t)), _) if t.is_zero() => self.brief(py, Subscription::try_recv),
            (Some(_), Some(deadline)) => self.recv_until(py, Some(deadline))?,
            _ => self.recv_until(py, None)?,
        };
        event.map(|e| event_to_py(py, e)).transpose()
    }

    /// The next event if one is queued, else None; never waits for one (on PostgreSQL it
    /// reads the events that have arrived, with the GIL released).
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.brief(py, Subscription::try_recv)
            .map(|e| event_to_py(py, e))
            .transpose()
    }

    /// Every event queued now, oldest first; never waits for one (on PostgreSQL it reads the
    /// events that have arrived, with the GIL released).
    fn drain(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        self.brief(py, Subscription::drain)
            .into_iter()
            .map(|e| event_to_py(py, e))
            .collect()
    }

    /// How many events were dropped for this subscriber because its queue was full.
    #[getter]
    fn dropped(&self, py: Python<'_>) -> u64 {
        self.brief(py, Subscription::dropped)
    }

    /// Events queued and not yet received.
    fn __len__(&self, py: Python<'_>) -> usize {
        self.brief(py, Subscription::len)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next event, waiting for it; StopIteration when the registry is gone.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.recv_until(py, None)?
            .map(|e| event_to_py(py, e))
            .transpose()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let (queued, dropped) = self.brief(py, |s| (s.len(), s.dropped()));
        format!("<Subscription queued={queued} dropped={dropped}>")
    }
}
