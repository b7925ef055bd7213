//! The exception tree rooted at `HodeiWorkersError`, and the newtype that turns a core
//! [`hodei_workers::Error`] into the matching Python exception (DESIGN.md §6).
//!
//! The orphan rule forbids `impl From<hodei_workers::Error> for PyErr`, so a core error goes
//! through [`CoreError`]. Several exceptions have two bases (`WorkerNotFoundError` is also a
//! `LookupError`, `InvalidArgumentError` also a `ValueError`), which `create_exception!` cannot
//! express: the classes are made once per interpreter with `type(name, bases, namespace)`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use hodei_workers::Error;
use pyo3::exceptions::{PyException, PyLookupError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// One Python exception class: its name, docstring and extra builtin base.
struct Spec {
    name: &'static str,
    doc: &'static str,
    /// A builtin base besides `HodeiWorkersError` (None: only the root).
    extra_base: Option<fn(Python<'_>) -> Bound<'_, PyType>>,
}

fn lookup_error(py: Python<'_>) -> Bound<'_, PyType> {
    py.get_type::<PyLookupError>()
}
fn value_error(py: Python<'_>) -> Bound<'_, PyType> {
    py.get_type::<PyValueError>()
}
fn runtime_error(py: Python<'_>) -> Bound<'_, PyType> {
    py.get_type::<PyRuntimeError>()
}

/// Index of each exception in [`SPECS`]; the root is 0.
#[derive(Clone, Copy)]
#[repr(usize)]
pub(crate) enum Exc {
    Root = 0,
    NotFound,
    AlreadyExists,
    InvalidTransition,
    NotAvailable,
    NotBusy,
    JobAlreadyAssigned,
    ProviderNotFound,
    Provider,
    Capacity,
    InvalidArgument,
    Snapshot,
    Backend,
    Internal,
    NotLeader,
}

const SPECS: [Spec; 15] = [
    Spec {
        name: "HodeiWorkersError",
        doc: "Base class of every error raised by hodei_workers.\n\n\
              Attributes: ``kind`` (stable snake_case name of the error kind, e.g. \
              ``\"not_found\"``), ``worker_id``, ``job_id``, ``provider_id`` (the ids the \
              error is about, or None).",
        extra_base: None,
    },
    Spec {
        name: "WorkerNotFoundError",
        doc: "No worker with this id is registered (or it was unregistered: ids are never \
              reused). Also a LookupError.",
        extra_base: Some(lookup_error),
    },
    Spec {
        name: "WorkerAlreadyExistsError",
        doc: "A worker with this id is already registered.",
        extra_base: None,
    },
    Spec {
        name: "InvalidTransitionError",
        doc: "The worker state machine does not allow this move (for instance \
              update_state to or from BUSY, which only assign/claim and release do).",
        extra_base: None,
    },
    Spec {
        name: "WorkerNotAvailableError",
        doc: "The worker cannot take a job: it is not READY.",
        extra_base: None,
    },
    Spec {
        name: "WorkerNotBusyError",
        doc: "The worker holds no job, or holds another job than the one being released.",
        extra_base: None,
    },
    Spec {
        name: "JobAlreadyAssignedError",
        doc: "The job is already held by a worker (a job runs on at most one worker).",
        extra_base: None,
    },
    Spec {
        name: "ProviderNotFoundError",
        doc: "No provider with this id is registered with the manager. Also a LookupError.",
        extra_base: Some(lookup_error),
    },
    Spec {
        name: "ProviderError",
        doc: "A provider call failed (the provider raised, or returned something unusable).",
        extra_base: None,
    },
    Spec {
        name: "CapacityExceededError",
        doc: "The fleet is at max_workers (counting provisions in flight).",
        extra_base: None,
    },
    Spec {
        name: "InvalidArgumentError",
        doc: "An argument had the right type but an invalid value: a malformed id, a \
              negative duration, a nonsense configuration. Also a ValueError.",
        extra_base: Some(value_error),
    },
    Spec {
        name: "SnapshotError",
        doc: "A snapshot could not be read: corrupt, truncated, foreign or inconsistent. \
              Also a ValueError. The registry is left untouched.",
        extra_base: Some(value_error),
    },
    Spec {
        name: "BackendError",
        doc: "A storage backend failed (reserved for shared-database backends).",
        extra_base: None,
    },
    Spec {
        name: "InternalError",
        doc: "A bug in hodei_workers: a Rust panic caught at the boundary. Also a \
              RuntimeError. Please report it with the message.",
        extra_base: Some(runtime_error),
    },
    Spec {
        name: "NotLeaderError",
        doc: "A leader-only operation (provisioning, terminating, a health check, cleanup, \
              reconcile) on a replica whose manager does not hold the leadership lease, or \
              whose lease was not renewed in time: another replica acts on the fleet.",
        extra_base: None,
    },
];

static TYPES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

fn build_types(py: Python<'_>) -> PyResult<Vec<Py<PyType>>> {
    let type_ = py.get_type::<PyType>();
    let mut types: Vec<Py<PyType>> = Vec::with_capacity(SPECS.len());
    for spec in SPECS.iter() {
        let namespace = PyDict::new(py);
        namespace.set_item("__module__", "hodei_workers")?;
        namespace.set_item("__doc__", spec.doc)?;
        if types.is_empty() {
            // Defaults on the root, so that every instance answers these attributes.
            namespace.set_item("kind", "error")?;
            for attr in ["worker_id", "job_id", "provider_id"] {
                namespace.set_item(attr, py.None())?;
            }
        }
        let bases = match (types.first(), spec.extra_base) {
            (None, _) => PyTuple::new(py, [py.get_type::<PyException>()])?,
            (Some(root), None) => PyTuple::new(py, [root.bind(py).clone()])?,
            (Some(root), Some(extra)) => PyTuple::new(py, [root.bind(py).clone(), extra(py)])?,
        };
        let class = type_.call1((spec.name, bases, namespace))?;
        types.push(class.cast_into::<PyType>()?.unbind());
    }
    Ok(types)
}

/// The exception class `which`.
pub(crate) fn exception_type(py: Python<'_>, which: Exc) -> PyResult<Bound<'_, PyType>> {
    let types = TYPES.get_or_try_init(py, || build_types(py))?;
    Ok(types[which as usize].bind(py).clone())
}

/// Adds every exception class to the module.
pub(crate) fn add_exceptions(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let types = TYPES.get_or_try_init(py, || build_types(py))?;
    for (spec, ty) in SPECS.iter().zip(types) {
        module.add(spec.name, ty.bind(py))?;
    }
    Ok(())
}

/// Builds an exception of class `which` with `message` and the id attributes.
pub(crate) fn new_error(
    py: Python<'_>,
    which: Exc,
    kind: &str,
    message: String,
    ids: Ids,
) -> PyErr {
    let build = move || -> PyResult<PyErr> {
        let value = exception_type(py, which)?.call1((message,))?;
        value.setattr("kind", kind)?;
        value.setattr("worker_id", ids.worker_id)?;
        value.setattr("job_id", ids.job_id)?;
        value.setattr("provider_id", ids.provider_id)?;
        Ok(PyErr::from_value(value))
    };
    // Building the exception can only fail on a broken interpreter (out of memory): raise that.
    build().unwrap_or_else(|e| e)
}

/// The ids an error is about, for the exception's attributes.
#[derive(Default)]
pub(crate) struct Ids {
    worker_id: Option<String>,
    job_id: Option<String>,
    provider_id: Option<String>,
}

/// A core error on its way to Python (the orphan rule forbids `From<Error> for PyErr`).
#[derive(Debug)]
pub(crate) struct CoreError(pub(crate) Error);

impl From<Error> for CoreError {
    fn from(error: Error) -> Self {
        CoreError(error)
    }
}

/// So that `?` works on a `Result<_, CoreError>` in a function returning `PyResult`. Code
/// that holds a `Python` token uses [`CoreError::into_pyerr`] / [`OrRaise`] directly.
impl From<CoreError> for PyErr {
    fn from(error: CoreError) -> Self {
        Python::attach(|py| error.into_pyerr(py))
    }
}

impl CoreError {
    /// The Python exception for this error.
    pub(crate) fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let error = self.0;
        let message = error.to_string();
        let kind = error.kind_name();
        let mut ids = Ids::default();
        let which = match &error {
            Error::NotFound(id) => {
                ids.worker_id = Some(id.to_string());
                Exc::NotFound
            }
            Error::AlreadyExists(id) => {
                ids.worker_id = Some(id.to_string());
                Exc::AlreadyExists
            }
            Error::InvalidTransition { worker_id, .. } => {
                ids.worker_id = Some(worker_id.to_string());
                Exc::InvalidTransition
            }
            Error::NotAvailable { worker_id, .. } => {
                ids.worker_id = Some(worker_id.to_string());
                Exc::NotAvailable
            }
            Error::NotBusy {
                worker_id,
                expected,
            } => {
                ids.worker_id = Some(worker_id.to_string());
                ids.job_id = expected.as_ref().map(|j| j.to_string());
                Exc::NotBusy
            }
            Error::JobAlreadyAssigned { job_id, worker_id } => {
                ids.worker_id = Some(worker_id.to_string());
                ids.job_id = Some(job_id.to_string());
                Exc::JobAlreadyAssigned
            }
            Error::ProviderNotFound(id) => {
                ids.provider_id = Some(id.to_string());
                Exc::ProviderNotFound
            }
            Error::Provider { provider_id, .. } => {
                ids.provider_id = Some(provider_id.to_string());
                Exc::Provider
            }
            Error::CapacityExceeded(_) => Exc::Capacity,
            Error::InvalidArgument(_) => Exc::InvalidArgument,
            Error::Snapshot(_) => Exc::Snapshot,
            Error::Backend(_) => Exc::Backend,
            Error::NotLeader(_) => Exc::NotLeader,
            // `Error` is non-exhaustive: a kind added later is still a HodeiWorkersError.
            _ => Exc::Root,
        };
        new_error(py, which, kind, message, ids)
    }
}

/// `InvalidArgumentError(message)`: a value of the right type that is not acceptable.
pub(crate) fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    CoreError(Error::InvalidArgument(message.into())).into_pyerr(py)
}

/// Converts a core result into a Python one.
pub(crate) trait OrRaise<T> {
    /// The value, or the matching Python exception.
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrRaise<T> for hodei_workers::Result<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| CoreError(e).into_pyerr(py))
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_owned())
}

/// Runs core work with the GIL released (so other Python threads run meanwhile, and no Python
/// code can run while the core holds a lock), turning its error into the matching exception
/// and a panic into `InternalError` (a `RuntimeError`) instead of pyo3's `PanicException`,
/// which is a `BaseException` that `except Exception` would not catch.
pub(crate) fn run<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> hodei_workers::Result<T> + Send,
{
    // AssertUnwindSafe: the core keeps its state behind parking_lot locks (no poisoning) and a
    // panic there is a bug that the error message reports; nothing here observes a broken value.
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(result) => result.or_raise(py),
        Err(payload) => Err(new_error(
            py,
            Exc::Internal,
            "internal",
            format!(
                "internal error (a bug in hodei_workers): {}",
                panic_message(&*payload)
            ),
            Ids::default(),
        )),
    }
}
