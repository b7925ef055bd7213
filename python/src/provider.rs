//! Python providers: a plain Python object with ``provider_id``, ``provider_type``,
//! ``create_worker(worker_id, spec)``, ``destroy_worker(handle)`` and optionally ``list_workers()``, seen
//! by the core as a [`WorkerProvider`]. A ``create_worker`` or ``destroy_worker`` that takes a
//! ``fencing_token`` keyword (read from its signature at registration) is called with the
//! call's fencing token (see [`WorkerProvider::create_worker_fenced`]).
//!
//! The core calls a provider only from the thread that called the manager, and never while it
//! holds a lock; the manager's Python methods release the GIL around the core call, so the
//! adapter re-attaches (`Python::attach`) for each provider call. An exception the provider
//! raises becomes a [`ProviderError`] (visible in reports and events), never a crash:
//! - a `LookupError` (e.g. `KeyError`) from `destroy_worker` means "already gone", which the
//!   engine counts as destroyed;
//! - `NotImplementedError` from `list_workers` means "not supported";
//! - anything else that is an `Exception` is a failure.
//!
//! The failure's text shows the exception's `str()`, the whole text cut at
//! [`MAX_PROVIDER_MESSAGE_LEN`](hodei_workers::MAX_PROVIDER_MESSAGE_LEN) (4096 bytes, ending
//! `"… (truncated)"`: a whole HTTP response body in an exception would otherwise be copied
//! into every report and event); one whose `str()` raises is shown as
//! `<exception str() failed>`, as Python's traceback printer shows it, and what that `str()`
//! raised, when it is an interrupt (below), is one of the call's own interrupts.
//!
//! A `BaseException` that is not an `Exception` is not a provider failure (the Python rule:
//! only `Exception` may be caught as "something went wrong"): `KeyboardInterrupt`,
//! `SystemExit`, `asyncio.CancelledError` (swallowing it would break the cancellation that
//! raised it), `GeneratorExit`, another extension's `PanicException`, a host's own. Called
//! "an interrupt" here: the adapter reports the call to the engine as interrupted
//! ([`ProviderErrorKind::Interrupted`](hodei_workers::ProviderErrorKind::Interrupted): the engine
//! carries on consistently, and does not count it toward the provider's back-off), parks the
//! exception, and the manager method re-raises it, the very
//! object, when the engine returns. Until then no provider is called
//! on this thread: each further call fails at once, "not called (interrupted)". The interrupt
//! belongs to the manager call that called the provider: a manager call nested in it that
//! returns meanwhile (made by a finalizer or a weakref callback the garbage collector runs
//! there) calls no provider either, but leaves it parked for the call it cut short. On a thread where
//! no manager method runs (a `Ticker`'s, ticking), nobody would re-raise it: it goes to
//! `sys.unraisablehook` at once, like the ticker's callbacks' exceptions, and the call is a
//! failure of the provider (backed off): no signal handler runs on that thread, so the
//! provider raised it itself (`sys.exit()`, its own event loop's cancellation).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use hodei_workers::{
    quote_input, ProviderError, ProviderId, ProviderResult, ProviderType, Term, WorkerHandle,
    WorkerId, WorkerProvider, WorkerSpec,
};
use pyo3::exceptions::{
    PyAttributeError, PyException, PyLookupError, PyNotImplementedError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::calls::{self, HostObject, HostRef};
use crate::convert;
use crate::errors::exception_text;
use crate::types::{py_repr, str_dict, PyWorkerSpec};

thread_local! {
    /// A `KeyboardInterrupt`/`SystemExit` raised inside a provider on this thread, to re-raise
    /// when the manager call that led to it returns (provider calls run on the caller's thread),
    /// with the depth of that call (`MANAGER_CALLS` when the provider raised): a nested call
    /// made meanwhile (a finalizer run by the garbage collector, a weakref callback) must not
    /// take it, or the call the interrupt cut short would go on as if nothing happened.
    static INTERRUPT: RefCell<Option<(usize, PyErr)>> = const { RefCell::new(None) };
    /// How many manager methods run on this thread (more than one when a provider or a
    /// callback calls the manager again): while there is one, an interrupt is parked for it.
    static MANAGER_CALLS: Cell<usize> = const { Cell::new(0) };
}

/// Whether a provider raised an interrupt on this thread that a manager method has yet to
/// re-raise.
fn interrupted() -> bool {
    INTERRUPT.with(|slot| slot.borrow().is_some())
}

/// An interrupt raised on this thread by a provider call (or by showing its exception):
/// parked for the manager method that runs, or, where none runs (a `Ticker`'s tick), handed to
/// `sys.unraisablehook` with `object` as the context. See the module docs.
fn interrupt_raised(py: Python<'_>, object: &Bound<'_, PyAny>, err: PyErr) {
    let depth = MANAGER_CALLS.with(Cell::get);
    if depth == 0 {
        // A Ticker's tick: parked, it would never reach anyone (and would keep its frames
        // alive, and shadow the thread's later interrupts).
        calls::write_unraisable(py, err, Some(object));
        return;
    }
    // The first one parked wins. Another is dropped only once the slot is no longer
    // borrowed: dropping it frees what its traceback kept, which may run Python code (a
    // finalizer) that calls the manager, which reads the slot.
    let second = INTERRUPT.with(|slot| {
        let mut slot = slot.borrow_mut();
        match *slot {
            None => {
                *slot = Some((depth, err));
                None
            }
            Some(_) => Some(err),
        }
    });
    drop(second);
}

/// Runs `work` as (the engine part of) a manager method, and returns its result with the
/// interrupt a provider raised meanwhile on this thread, for this very call to re-raise. An
/// interrupt parked by an enclosing call stays parked for that call, even when this one is
/// nested in it (made by a finalizer or a callback that ran in between). Outside such a call
/// (a `Ticker`'s own tick) an interrupt goes to `sys.unraisablehook` instead.
pub(crate) fn manager_call<T>(work: impl FnOnce() -> T) -> (T, Option<PyErr>) {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            MANAGER_CALLS.with(|n| n.set(n.get() - 1));
        }
    }
    let depth = MANAGER_CALLS.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    let _leave = Leave;
    let result = work();
    let interrupt = INTERRUPT.with(|slot| {
        let mut slot = slot.borrow_mut();
        // Parked here or deeper (a nested call always takes its own before it returns, so
        // deeper is only belt and braces): ours. Shallower: an enclosing call's.
        if slot.as_ref().is_some_and(|(parked, _)| *parked >= depth) {
            slot.take().map(|(_, err)| err)
        } else {
            None
        }
    });
    (result, interrupt)
}

/// How a provider knows one of its workers: passed to ``destroy_worker``. For an orphan
/// instance (one ``list_workers`` yielded that no record holds) it is made from the listing:
/// ``worker_id`` is an id made up for it (no worker's) and ``metadata`` is empty; destroy by
/// ``resource_id``.
#[pyclass(frozen, eq, hash, name = "WorkerHandle", module = "hodei_workers")]
#[derive(PartialEq)]
pub(crate) struct PyWorkerHandle {
    inner: WorkerHandle,
}

impl Hash for PyWorkerHandle {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let h = &self.inner;
        (h.worker_id, &h.provider_id, &h.resource_id, &h.metadata).hash(state);
    }
}

#[pymethods]
impl PyWorkerHandle {
    /// The worker's id in the registry; for an orphan instance, an id made up for the listing
    /// (no worker's).
    #[getter]
    fn worker_id(&self) -> String {
        self.inner.worker_id.to_string()
    }

    /// The provider that owns the instance.
    #[getter]
    fn provider_id(&self) -> &str {
        self.inner.provider_id.as_str()
    }

    /// The provider's type (``"docker"``, …, ``"custom:NAME"``).
    #[getter]
    fn provider_type(&self) -> String {
        self.inner.provider_type.to_string()
    }

    /// The provider's id of the instance, as ``create_worker`` returned it.
    #[getter]
    fn resource_id(&self) -> &str {
        &self.inner.resource_id
    }

    /// The metadata ``create_worker`` returned with it (a copy); empty for an orphan
    /// instance.
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        str_dict(py, &self.inner.metadata)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "WorkerHandle(worker_id={}, provider_id={}, resource_id={})",
            py_repr(py, self.worker_id())?,
            py_repr(py, self.provider_id())?,
            py_repr(py, self.resource_id())?
        ))
    }
}

/// The Python object of a provider, shared by the core's adapter ([`PythonProvider`]) and the
/// `LifecycleManager` that registered it: the manager's `__traverse__` shows it to the garbage
/// collector and its `__clear__` takes it, so that a provider holding a reference to its
/// manager (a cycle through Rust the collector cannot see by itself) is collected. A provider
/// whose object was taken fails every call as a provider error.
pub(crate) type ProviderObject = Arc<Mutex<Option<HostObject>>>;

/// The core's view of a Python provider object.
pub(crate) struct PythonProvider {
    object: ProviderObject,
    id: ProviderId,
    kind: ProviderType,
    /// Whether `create_worker` and `destroy_worker` take the `fencing_token` keyword (asked
    /// once, at registration).
    create_takes_token: bool,
    destroy_takes_token: bool,
}

/// Whether `method` takes a `fencing_token` keyword: a parameter of that name that may be
/// passed by keyword, or `**kwargs`. A callable whose signature Python cannot tell (some
/// builtins; any `Exception` reading it) is called without it.
///
/// # Errors
/// A `BaseException` that is not an `Exception` (Ctrl-C landing there), as it was raised.
fn takes_fencing_token(method: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = method.py();
    // `hodei_workers.provider._takes_fencing_token`: one guarded call for all the Python code
    // it runs (a daemon thread registering a provider as the interpreter exits).
    let answer = py
        .import("hodei_workers.provider")
        .and_then(|m| m.getattr("_takes_fencing_token"))
        .and_then(|helper| calls::call(&helper, &(method,).into_pyobject(py)?, None))
        .and_then(|takes| takes.is_truthy());
    match answer {
        Ok(takes) => Ok(takes),
        Err(err) if err.is_instance_of::<PyException>(py) => {
            calls::drop_err(py, err);
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// `object.name`, with a missing attribute (an `AttributeError`) reported as `missing()`.
/// Any other exception its lookup raises (a bug in a property, `KeyboardInterrupt`) is the
/// provider's own and propagates as it is.
fn member<'py>(
    object: &Bound<'py, PyAny>,
    name: &str,
    missing: impl FnOnce() -> PyErr,
) -> PyResult<HostRef<'py>> {
    calls::getattr(object, name).map_err(|err| {
        if err.is_instance_of::<PyAttributeError>(object.py()) {
            calls::drop_err(object.py(), err);
            missing()
        } else {
            err
        }
    })
}

/// Reads an attribute that may be a plain value or a method returning it.
fn attribute<'py>(object: &Bound<'py, PyAny>, name: &str) -> PyResult<HostRef<'py>> {
    let value = member(object, name, || {
        PyTypeError::new_err(format!(
            "a provider must have a `{name}` attribute (provider_id, provider_type, \
             create_worker(worker_id, spec), destroy_worker(handle); optionally list_workers())"
        ))
    })?;
    if value.is_callable() {
        calls::call(&value, &PyTuple::empty(object.py()), None)
    } else {
        Ok(value)
    }
}

impl PythonProvider {
    /// Checks the object's shape and reads its id and type once (the core asks for them only
    /// at registration; reading them here keeps that free of Python calls).
    pub(crate) fn new(object: &Bound<'_, PyAny>) -> PyResult<Self> {
        for method in ["create_worker", "destroy_worker"] {
            let missing =
                || PyTypeError::new_err(format!("a provider must have a `{method}` method"));
            if !member(object, method, missing)?.is_callable() {
                return Err(missing());
            }
        }
        let id = attribute(object, "provider_id")?;
        let id = id
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("provider_id must be a str"))?;
        let kind = attribute(object, "provider_type")?;
        let kind = kind
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("provider_type must be a str such as \"docker\""))?;
        Ok(PythonProvider {
            object: Arc::new(Mutex::new(Some(HostObject::new(object.clone().unbind())))),
            id: convert::provider_id(id, "provider_id")?,
            kind: convert::provider_type(kind, "provider_type")?,
            create_takes_token: takes_fencing_token(&*calls::getattr(object, "create_worker")?)?,
            destroy_takes_token: takes_fencing_token(&*calls::getattr(object, "destroy_worker")?)?,
        })
    }

    /// The provider's own exception as a `ProviderError` (parking interrupts, or handing them
    /// to `sys.unraisablehook` with `object` as the context; see the module docs). An
    /// exception whose `str()` raises is shown as `<exception str() failed>`, as Python's
    /// traceback printer shows it; when what `str()` raised is an interrupt, it is one of the
    /// call's own, parked (or handed over) as if the provider had raised it.
    fn failure(
        &self,
        py: Python<'_>,
        object: &Bound<'_, PyAny>,
        method: &str,
        err: PyErr,
    ) -> ProviderError {
        // The last references to the exception and its traceback are usually the module's:
        // the traceback keeps the provider's frames, whose locals' `__del__` (a session
        // closing its connections) runs when they go. These are let go of last, as `calls`
        // releases a host's object.
        let last = [
            Some(err.value(py).clone().into_any().unbind()),
            err.traceback(py).map(|t| t.into_any().unbind()),
        ]
        .map(|object| object.map(HostObject::new));
        let error = self.classify(py, object, method, err);
        drop(last);
        error
    }

    /// [`failure`](Self::failure)'s work.
    fn classify(
        &self,
        py: Python<'_>,
        object: &Bound<'_, PyAny>,
        method: &str,
        err: PyErr,
    ) -> ProviderError {
        let value = err.value(py);
        let (shown, str_interrupt) = exception_text(py, &err);
        let text = format!(
            "{}.{method} raised {}: {shown}",
            self.id,
            value
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "an exception".into()),
        );
        let raised_interrupt = !err.is_instance_of::<PyException>(py);
        if raised_interrupt || str_interrupt.is_some() {
            // The provider's own first: the first one parked wins.
            if raised_interrupt {
                interrupt_raised(py, object, err);
            }
            if let Some(interrupt) = str_interrupt {
                interrupt_raised(py, object, interrupt);
            }
            if MANAGER_CALLS.with(Cell::get) == 0 {
                // A Ticker's tick: no signal handler runs on its thread (Python runs them on
                // the main thread only), so the provider raised it itself (`sys.exit()`, its
                // own event loop's cancellation): its failure, backed off like any other, or
                // a provider that always raises it would be called every tick.
                return ProviderError::new(format!("{text} (interrupted)"));
            }
            // Cut short by the host (Ctrl-C landing in the provider): not the provider's
            // failure, no back-off for it.
            return ProviderError::interrupted(text);
        }
        if method == "create_worker" && is_provider_exception(py, &err, "NoCapacity") {
            return ProviderError::no_capacity(text);
        }
        if matches!(method, "create_worker" | "destroy_worker")
            && is_provider_exception(py, &err, "Fenced")
        {
            return ProviderError::fenced(text);
        }
        if method == "destroy_worker" && err.is_instance_of::<PyLookupError>(py) {
            return ProviderError::not_found(text);
        }
        if method == "list_workers" && err.is_instance_of::<PyNotImplementedError>(py) {
            return ProviderError::unsupported(format!("{}.list_workers", self.id));
        }
        ProviderError::new(text)
    }

    fn handle(&self, resource_id: String, metadata: BTreeMap<String, String>) -> WorkerHandle {
        let mut handle = WorkerHandle::new(self.id.clone(), self.kind.clone(), resource_id);
        handle.metadata = metadata;
        handle
    }

    /// `create_worker`'s answer: a resource id, or `(resource_id, metadata)`.
    ///
    /// # Errors
    /// The reason the answer cannot be read, and the handle of the instance when its resource
    /// id could be (the metadata could not): the instance exists, so the caller destroys it
    /// rather than leak it.
    fn created(
        &self,
        answer: &Bound<'_, PyAny>,
    ) -> Result<WorkerHandle, Box<(PyErr, Option<WorkerHandle>)>> {
        let unreadable = |e| Box::new((e, None));
        if let Ok(id) = answer.cast::<PyString>() {
            let id =
                convert::text(id, "the resource id create_worker returned").map_err(unreadable)?;
            return Ok(self.handle(id.to_owned(), BTreeMap::new()));
        }
        if let Ok(pair) = answer.cast::<PyTuple>() {
            if pair.len() == 2 {
                let first = pair.get_item(0).map_err(unreadable)?;
                if let Ok(id) = first.cast::<PyString>() {
                    let id = convert::text(id, "the resource id create_worker returned")
                        .map_err(unreadable)?
                        .to_owned();
                    let metadata = pair
                        .get_item(1)
                        .and_then(|m| convert::provider_str_map(&m, "metadata"));
                    return match metadata {
                        Ok(metadata) => Ok(self.handle(id, metadata)),
                        Err(e) => Err(Box::new((e, Some(self.handle(id, BTreeMap::new()))))),
                    };
                }
            }
        }
        let kind = answer
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        Err(unreadable(PyTypeError::new_err(format!(
            "create_worker must return the instance's resource id (str) or (resource_id, \
             metadata), not {kind}"
        ))))
    }

    /// The error of a create whose answer could not be read (`err`), after destroying the
    /// instance when `handle` says which it is: a `TypeError` (when `err` is one) or a
    /// `ValueError` saying what became of the instance. An interrupt (`KeyboardInterrupt`
    /// raised while the answer was read) stays itself, to be parked as any other.
    fn unreadable_answer(
        &self,
        py: Python<'_>,
        object: &Bound<'_, PyAny>,
        token: Option<Term>,
        err: PyErr,
        handle: Option<WorkerHandle>,
    ) -> PyErr {
        let (reason, str_interrupt) = exception_text(py, &err);
        let fate = match handle {
            None => "no resource id could be read to destroy the instance by, if one was \
                     created (reconcile finds it when the provider has list_workers())"
                .to_owned(),
            Some(handle) => {
                let resource_id = handle.resource_id.clone();
                match self.call_destroy(py, object, token, handle) {
                    Ok(()) => format!("its instance {} was destroyed", quote_input(&resource_id)),
                    Err(e) => {
                        let e = self.failure(py, object, "destroy_worker", e);
                        if e.is_not_found() {
                            format!("its instance {} was destroyed", quote_input(&resource_id))
                        } else {
                            format!(
                                "destroying its instance {} failed too: {e}",
                                quote_input(&resource_id)
                            )
                        }
                    }
                }
            }
        };
        if !err.is_instance_of::<PyException>(py) {
            return err;
        }
        if let Some(interrupt) = str_interrupt {
            // Raised by the exception's `str()`: as if raised while the answer was read.
            calls::drop_err(py, err);
            return interrupt;
        }
        let message = format!("{reason}; {fate}");
        let replaced = if err.is_instance_of::<PyTypeError>(py) {
            PyTypeError::new_err(message)
        } else {
            PyValueError::new_err(message)
        };
        calls::drop_err(py, err);
        replaced
    }

    fn call<T>(
        &self,
        method: &str,
        call: impl FnOnce(Python<'_>, &Bound<'_, PyAny>) -> PyResult<T>,
    ) -> ProviderResult<T> {
        if MANAGER_CALLS.with(Cell::get) == 0 && crate::ticker::shutting_down() {
            // A Ticker's tick while the interpreter exits: no Python code starts on this
            // thread any more (it may not be able to attach once finalization begins).
            return Err(ProviderError::interrupted(format!(
                "{}.{method} was not called (the interpreter is shutting down)",
                self.id
            )));
        }
        Python::attach(|py| {
            if interrupted() {
                // Ctrl-C (or SystemExit) is on its way to the caller: the operation finishes
                // without calling the provider again, so that it reaches the caller now rather
                // than after every remaining call (minutes against a slow cloud API). Failed
                // like the interrupted call: a destroy is retried by a later tick.
                return Err(ProviderError::interrupted(format!(
                    "{}.{method} was not called",
                    self.id
                )));
            }
            // The lock is held only to take a new reference: never while Python code runs.
            let object = self
                .object
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|o| o.clone_ref(py));
            let Some(object) = object else {
                return Err(ProviderError::new(format!(
                    "{}.{method}: the provider object was cleared by the garbage collector",
                    self.id
                )));
            };
            let object = object.bind(py);
            call(py, object).map_err(|err| self.failure(py, object, method, err))
        })
    }

    /// The provider's id.
    pub(crate) fn id(&self) -> &ProviderId {
        &self.id
    }

    /// The shared slot of the provider's object (see [`ProviderObject`]).
    pub(crate) fn object(&self) -> ProviderObject {
        Arc::clone(&self.object)
    }
}

impl WorkerProvider for PythonProvider {
    fn provider_id(&self) -> ProviderId {
        self.id.clone()
    }

    fn provider_type(&self) -> ProviderType {
        self.kind.clone()
    }

    fn create_worker(&self, id: WorkerId, spec: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        self.create(None, id, spec)
    }

    fn create_worker_fenced(
        &self,
        token: Term,
        id: WorkerId,
        spec: &WorkerSpec,
    ) -> ProviderResult<WorkerHandle> {
        self.create(Some(token), id, spec)
    }

    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
        self.destroy(None, handle)
    }

    fn destroy_worker_fenced(&self, token: Term, handle: &WorkerHandle) -> ProviderResult<()> {
        self.destroy(Some(token), handle)
    }

    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        self.call("list_workers", |py, object| {
            // Only a missing member means "not supported": anything else its lookup raises
            // (a bug in a property, Ctrl-C) is the provider's own.
            let method = member(object, "list_workers", || {
                PyNotImplementedError::new_err("no list_workers")
            })?;
            // Read to the end by `list()` under `calls::call`: a generator's code runs while
            // it is iterated, as much the provider's own as the call's.
            let answer = calls::call(&method, &PyTuple::empty(py), None)?;
            let items = calls::call(
                py.get_type::<PyList>().as_any(),
                &(&*answer,).into_pyobject(py)?,
                None,
            )?;
            let mut handles = Vec::new();
            for item in items.try_iter()? {
                let item = item?;
                let id = item.cast::<PyString>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "list_workers must yield resource ids (str), not {}",
                        item.get_type()
                            .name()
                            .map(|n| n.to_string())
                            .unwrap_or_default()
                    ))
                })?;
                let id = convert::text(id, "a resource id list_workers yielded")?;
                handles.push(self.handle(id.to_owned(), BTreeMap::new()));
            }
            Ok(handles)
        })
    }
}

impl PythonProvider {
    /// The keyword arguments of a call told `token`: `fencing_token=token` when the method
    /// takes it (`takes`), else none.
    fn token_kwargs<'py>(
        py: Python<'py>,
        takes: bool,
        token: Option<Term>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        match token.filter(|_| takes) {
            Some(token) => {
                let kwargs = PyDict::new(py);
                kwargs.set_item("fencing_token", token)?;
                Ok(Some(kwargs))
            }
            None => Ok(None),
        }
    }

    fn create(
        &self,
        token: Option<Term>,
        id: WorkerId,
        spec: &WorkerSpec,
    ) -> ProviderResult<WorkerHandle> {
        self.call("create_worker", |py, object| {
            let spec = PyWorkerSpec {
                inner: Arc::new(spec.clone()),
            };
            let kwargs = Self::token_kwargs(py, self.create_takes_token, token)?;
            // The id the manager made: the instance starts knowing it, its agent reports in
            // and heartbeats with it.
            let args = (id.to_string(), Py::new(py, spec)?).into_pyobject(py)?;
            let answer = calls::call_method(object, "create_worker", &args, kwargs.as_ref())?;
            // The instance exists from here on: an answer that cannot be read must not leak it.
            match self.created(&answer) {
                Ok(mut handle) => {
                    handle.worker_id = id;
                    Ok(handle)
                }
                Err(unreadable) => {
                    let (err, handle) = *unreadable;
                    let handle = handle.map(|mut h| {
                        h.worker_id = id;
                        h
                    });
                    Err(self.unreadable_answer(py, object, token, err, handle))
                }
            }
        })
    }

    fn destroy(&self, token: Option<Term>, handle: &WorkerHandle) -> ProviderResult<()> {
        self.call("destroy_worker", |py, object| {
            self.call_destroy(py, object, token, handle.clone())
        })
    }

    /// Calls `destroy_worker(handle)` on the provider's object.
    fn call_destroy(
        &self,
        py: Python<'_>,
        object: &Bound<'_, PyAny>,
        token: Option<Term>,
        handle: WorkerHandle,
    ) -> PyResult<()> {
        let handle = PyWorkerHandle { inner: handle };
        let kwargs = Self::token_kwargs(py, self.destroy_takes_token, token)?;
        let args = (Py::new(py, handle)?,).into_pyobject(py)?;
        calls::call_method(object, "destroy_worker", &args, kwargs.as_ref())?;
        Ok(())
    }
}

/// Whether `err` is a `hodei_workers.<class_name>` defined in Python, in `provider.py`
/// (`NoCapacity`, `Fenced`).
fn is_provider_exception(py: Python<'_>, err: &PyErr, class_name: &str) -> bool {
    py.import("hodei_workers.provider")
        .and_then(|m| m.getattr(class_name))
        .and_then(|class| err.value(py).is_instance(&class))
        .unwrap_or(false)
}
