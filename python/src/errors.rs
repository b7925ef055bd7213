//! The newtype that turns a core [`hodei_workers::Error`] into the matching Python exception
//! (DESIGN.md §6).
//!
//! The exception classes are defined in Python (`hodei_workers/_errors.py`: real classes with
//! docstrings, picklable, with the builtin second bases DESIGN asks for) and imported from here,
//! as pyca/cryptography does. The orphan rule forbids `impl From<hodei_workers::Error> for
//! PyErr`, so a core error goes through [`CoreError`]. The kind-to-class mapping is one
//! exhaustive `match` over [`ErrorKind`]: a kind added to the core fails this build until it has
//! its class.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use hodei_workers::{Error, ErrorKind};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule, PyString, PyType};

/// The module that defines the exception classes.
const ERRORS_MODULE: &str = "hodei_workers._errors";

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    ERRORS
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import(ERRORS_MODULE)?.unbind()))
        .map(|m| m.bind(py))
}

/// The name of the exception class of each kind (and of a caught panic: `None`).
fn class_name(kind: Option<ErrorKind>) -> &'static str {
    match kind {
        Some(ErrorKind::NotFound) => "WorkerNotFoundError",
        Some(ErrorKind::AlreadyExists) => "WorkerAlreadyExistsError",
        Some(ErrorKind::InvalidTransition) => "InvalidTransitionError",
        Some(ErrorKind::NotAvailable) => "WorkerNotAvailableError",
        Some(ErrorKind::NotBusy) => "WorkerNotBusyError",
        Some(ErrorKind::JobAlreadyAssigned) => "JobAlreadyAssignedError",
        Some(ErrorKind::ProviderNotFound) => "ProviderNotFoundError",
        Some(ErrorKind::Provider) => "ProviderError",
        Some(ErrorKind::CapacityExceeded) => "CapacityExceededError",
        Some(ErrorKind::InvalidArgument) => "InvalidArgumentError",
        Some(ErrorKind::Snapshot) => "SnapshotError",
        Some(ErrorKind::Backend) => "BackendError",
        Some(ErrorKind::NotLeader) => "NotLeaderError",
        None => "InternalError",
    }
}

fn exception_class(py: Python<'_>, kind: Option<ErrorKind>) -> PyResult<Bound<'_, PyType>> {
    Ok(errors_module(py)?
        .getattr(class_name(kind))?
        .cast_into::<PyType>()?)
}

/// Adds every exception class to the module (so `_native.WorkerNotFoundError` is the class
/// `hodei_workers.WorkerNotFoundError`), and `_error_classes` for the tests.
pub(crate) fn add_exceptions(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let errors = errors_module(module.py())?;
    let names: Vec<String> = errors.getattr("__all__")?.extract()?;
    for name in names {
        module.add(name.as_str(), errors.getattr(name.as_str())?)?;
    }
    // `setattr`, not `add_function`: a private helper stays out of `__all__`.
    module.setattr("_error_classes", wrap_pyfunction!(_error_classes, module)?)?;
    Ok(())
}

/// ``[(kind, exception class)]`` for every core error kind, each made by the same conversion
/// the API uses (for the tests: every kind has its own class).
#[pyfunction]
fn _error_classes(py: Python<'_>) -> PyResult<Vec<(&'static str, Py<PyType>)>> {
    ErrorKind::ALL
        .into_iter()
        .map(|kind| {
            let err = CoreError(kind.sample()).into_pyerr(py);
            Ok((kind.name(), err.get_type(py).unbind()))
        })
        .collect()
}

/// Builds an exception of `kind`'s class with `message` and the id attributes.
fn new_error(py: Python<'_>, kind: Option<ErrorKind>, message: String, ids: Ids) -> PyErr {
    let build = move || -> PyResult<PyErr> {
        let kwargs = PyDict::new(py);
        kwargs.set_item("worker_id", ids.worker_id)?;
        kwargs.set_item("job_id", ids.job_id)?;
        kwargs.set_item("provider_id", ids.provider_id)?;
        // The class's `__init__` is Python code (`_errors.py`): under the guard of `calls`, for
        // a thread that meets errors in a loop (a heartbeat to a worker that may be gone) as
        // the interpreter exits.
        let class = exception_class(py, kind)?;
        let args = (message,).into_pyobject(py)?;
        let value = crate::calls::call(class.as_any(), &args, Some(&kwargs))?;
        Ok(PyErr::from_value(value.into_bound()))
    };
    // Building the exception can only fail on a broken interpreter (out of memory, the package
    // half-deleted): raise that.
    build().unwrap_or_else(|e| e)
}

/// The ids an error is about, for the exception's attributes.
#[derive(Default)]
struct Ids {
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
        let mut ids = Ids::default();
        // Only the ids are read here (`Error` is non-exhaustive, so this match needs its
        // catch-all); the class comes from the exhaustive `ErrorKind` mapping.
        match &error {
            Error::NotFound(id) | Error::AlreadyExists(id) => {
                ids.worker_id = Some(id.to_string());
            }
            Error::InvalidTransition { worker_id, .. } | Error::NotAvailable { worker_id, .. } => {
                ids.worker_id = Some(worker_id.to_string());
            }
            Error::NotBusy {
                worker_id,
                expected,
            } => {
                ids.worker_id = Some(worker_id.to_string());
                ids.job_id = expected.as_ref().map(|j| j.to_string());
            }
            Error::JobAlreadyAssigned { job_id, worker_id } => {
                ids.worker_id = Some(worker_id.to_string());
                ids.job_id = Some(job_id.to_string());
            }
            Error::ProviderNotFound(id)
            | Error::Provider {
                provider_id: id, ..
            } => {
                ids.provider_id = Some(id.to_string());
            }
            _ => {}
        }
        new_error(py, Some(error.kind()), message, ids)
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
            None,
            format!(
                "internal error (a bug in hodei_workers): {}",
                panic_message(&*payload)
            ),
            Ids::default(),
        )),
    }
}

/// How an exception is shown in a message: its `str()`, or, when that raises, what Python's
/// traceback printer writes then (`<exception str() failed>`). What `str()` raised is returned
/// too when it is not an `Exception` (`KeyboardInterrupt` landing there, `SystemExit`): that
/// one must not be lost, the caller raises or reports it. An `Exception` it raised is dropped,
/// as the traceback printer drops it.
pub(crate) fn exception_text(py: Python<'_>, err: &PyErr) -> (String, Option<PyErr>) {
    shown(py, err.value(py).as_any(), false)
}

/// `repr(value)` when `repr` is true, else `str(value)`, for a message about an exception
/// `value`, as [`exception_text`] shows it: `<exception repr() failed>` (or `str()`) in its
/// place when it raises, and what it raised when that is not an `Exception`.
pub(crate) fn shown(
    py: Python<'_>,
    value: &Bound<'_, PyAny>,
    repr: bool,
) -> (String, Option<PyErr>) {
    // Under the guard of `calls`: the exception's `__str__` / `__repr__` is the host's code.
    // Read as it is (a `str`, maybe of a subclass): no further code of the host's runs here.
    let text = crate::calls::text(value, repr)
        .and_then(|t| Ok(t.cast::<PyString>()?.to_string_lossy().into_owned()));
    match text {
        Ok(text) => (text, None),
        Err(err) => {
            let which = if repr { "repr" } else { "str" };
            let interrupt = if err.is_instance_of::<PyException>(py) {
                crate::calls::drop_err(py, err);
                None
            } else {
                Some(err)
            };
            (format!("<exception {which}() failed>"), interrupt)
        }
    }
}

/// Drops `value` with the GIL released (dropping it may wait for the database: a PostgreSQL
/// reader giving its connection back, a registry reading its subscriptions to the end), unless
/// no interpreter is there to detach from (finalizing): then it is dropped as it is.
pub(crate) fn drop_detached<T: Send>(value: T) {
    let mut value = Some(value);
    Python::try_attach(|py| py.detach(|| drop(value.take())));
    drop(value);
}

/// Like [`run`], but keeps the GIL: for calls that never wait for anything but a shard's
/// lock, which no thread holds for long nor while it needs the GIL (an in-memory heartbeat;
/// never a call that may reach a database, however brief: `PyRegistry::in_memory`). Releasing
/// and taking back the GIL costs more than such a call; a heartbeat that meets a writer
/// (`restore` holds every shard) waits with the GIL held, stalling other Python threads for
/// that long, never deadlocking (the writer does not need the GIL).
pub(crate) fn run_brief<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    F: FnOnce() -> hodei_workers::Result<T>,
{
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result.or_raise(py),
        Err(payload) => Err(new_error(
            py,
            None,
            format!(
                "internal error (a bug in hodei_workers): {}",
                panic_message(&*payload)
            ),
            Ids::default(),
        )),
    }
}
