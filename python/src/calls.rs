//! Calls into Python code that runs under the module's frames (a provider's method, a
//! ticker's callback), made so that interpreter exit cannot crash the process through them.
//!
//! On CPython before 3.14, a thread other than the one finalizing the interpreter that needs
//! the GIL once finalization began is ended with `pthread_exit`: a forced unwind through every
//! frame under it. A thread busy in such Python code when the main thread returns (a daemon
//! thread's `tick()` whose provider polls its cloud with short sleeps; a ticker whose callback
//! does) gets there as soon as that code takes the GIL back. Unwinding pyo3's and the module's
//! frames runs their destructors, which touch Python objects without the GIL: a fatal error or a
//! segfault, and the exit status is lost. pyo3 guards its own re-attaching
//! (`PyEval_RestoreThread`, `PyGILState_Ensure`: the return of a call that released the GIL) by
//! parking the thread for good instead, as CPython 3.14 does; [`call`] does the same for the
//! Python code it calls: the unwind meets its guard before any other Rust frame, and the thread
//! waits there until the process exits. Letting go of a host's object (a provider, a callback)
//! may run its code too (`__del__`, a weakref callback, when it is the last reference: a
//! manager dropped on a daemon thread): a [`HostObject`] is let go of under the same guard,
//! and so is what the host's code hands the module ([`HostRef`]: a call's answer, an item of
//! an iterable, an exception read and dropped: [`drop_err`]). Converting an argument runs the
//! host's code too (its `__float__`, `__index__`): [`float`] and [`index`] make pyo3's own C
//! calls under the guard.

use std::mem::ManuallyDrop;
use std::ops::Deref;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyDict, PyFloat, PyFrozenSet, PyInt, PyIterator, PyList, PySet, PyString, PyTuple,
};

mod raw {
    use pyo3::ffi::PyObject;

    // `C-unwind`, not pyo3's `C`: the call may end in a forced unwind (above), which must
    // reach the guard in `call` (an `extern "C"` import is assumed not to unwind, and its
    // caller may have no landing pad for it).
    extern "C-unwind" {
        pub(super) fn PyObject_Call(
            callable: *mut PyObject,
            args: *mut PyObject,
            kwargs: *mut PyObject,
        ) -> *mut PyObject;
        pub(super) fn Py_DecRef(object: *mut PyObject);
        pub(super) fn PyErr_WriteUnraisable(object: *mut PyObject);
        pub(super) fn PyFloat_AsDouble(object: *mut PyObject) -> std::os::raw::c_double;
        pub(super) fn PyNumber_Index(object: *mut PyObject) -> *mut PyObject;
    }
}

/// Dropped only by a forced unwind out of the Python call it guards (a call that returns
/// forgets it): the thread is being ended by the interpreter's finalization. It parks for good
/// (the process is exiting), before any other frame's destructor runs without the GIL.
struct ParkIfEnded;

impl Drop for ParkIfEnded {
    fn drop(&mut self) {
        loop {
            std::thread::park();
        }
    }
}

/// `callable(*args, **kwargs)`, parking the thread for good if the interpreter's finalization
/// ends it meanwhile (see the module docs).
#[allow(unsafe_code)]
pub(crate) fn call<'py>(
    callable: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<HostRef<'py>> {
    let py = callable.py();
    let kwargs = kwargs.map_or(std::ptr::null_mut(), |k| k.as_ptr());
    // Declared last: the first local a forced unwind out of the call drops.
    let guard = ParkIfEnded;
    // SAFETY: attached (`py`); the callable, the tuple and the dict (or NULL) are valid
    // objects, borrowed for the call; the result is a new reference or NULL with an exception
    // set, as `from_owned_ptr_or_err` takes it.
    let result = unsafe { raw::PyObject_Call(callable.as_ptr(), args.as_ptr(), kwargs) };
    std::mem::forget(guard);
    // SAFETY: see above.
    unsafe { Bound::from_owned_ptr_or_err(py, result) }.map(HostRef::new)
}

/// Hands `err` to `sys.unraisablehook` with `object` as the context (`PyErr::write_unraisable`),
/// under the guard of [`call`]: the hook may be the host's Python code (sending it to a log
/// service), and the default one writes to `sys.stderr`, releasing the GIL meanwhile.
#[allow(unsafe_code)]
pub(crate) fn write_unraisable(py: Python<'_>, err: PyErr, object: Option<&Bound<'_, PyAny>>) {
    let object = object.map_or(std::ptr::null_mut(), |o| o.as_ptr());
    err.restore(py);
    // Declared last: the first local a forced unwind out of the hook drops.
    let guard = ParkIfEnded;
    // SAFETY: attached (`py`), with the exception just set; `object` is NULL or a valid
    // object, borrowed for the call.
    unsafe { raw::PyErr_WriteUnraisable(object) };
    std::mem::forget(guard);
}

/// The `float` value of a number the host passed, as pyo3's `f64` extraction reads it
/// (`PyFloat_AsDouble`, same result, same errors), under the guard of [`call`]: for anything
/// but a `float` (a subclass included) that runs its `__float__` (or `__index__`), the host's
/// code when it is a class of its own or an `int` subclass that defines one.
#[allow(unsafe_code, clippy::float_cmp)]
pub(crate) fn float(object: &Bound<'_, PyAny>) -> PyResult<f64> {
    if let Ok(float) = object.cast::<PyFloat>() {
        // Its value as it is stored: no code runs.
        return Ok(float.value());
    }
    // Declared last: the first local a forced unwind out of the conversion drops.
    let guard = ParkIfEnded;
    // SAFETY: attached (`object.py()`); `object` is a valid object, borrowed for the call.
    let value = unsafe { raw::PyFloat_AsDouble(object.as_ptr()) };
    std::mem::forget(guard);
    // -1.0 is also a value: an error only when one is set.
    if value == -1.0 {
        if let Some(err) = PyErr::take(object.py()) {
            return Err(err);
        }
    }
    Ok(value)
}

/// The `int` a number the host passed stands for, as an exact `int` (`operator.index`: its
/// `__index__`; an `int` subclass is copied, which runs none of its code), under the guard of
/// [`call`]. Reading a Rust integer from the result, or comparing it, runs no code. The error
/// for anything without `__index__` is the `TypeError` pyo3's integer extraction raises
/// ("'X' object cannot be interpreted as an integer").
#[allow(unsafe_code)]
pub(crate) fn index<'py>(object: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyInt>> {
    if let Ok(int) = object.cast_exact::<PyInt>() {
        return Ok(int.clone());
    }
    let py = object.py();
    // Declared last: the first local a forced unwind out of `__index__` drops.
    let guard = ParkIfEnded;
    // SAFETY: attached (`py`); `object` is a valid object, borrowed for the call; the result
    // is a new reference (an exact `int`) or NULL with an exception set.
    let result = unsafe { raw::PyNumber_Index(object.as_ptr()) };
    std::mem::forget(guard);
    // SAFETY: see above.
    Ok(unsafe { Bound::from_owned_ptr_or_err(py, result) }?.cast_into::<PyInt>()?)
}

/// `object.name(*args, **kwargs)`, as [`call`] calls it (the lookup too: [`getattr`]).
pub(crate) fn call_method<'py>(
    object: &Bound<'py, PyAny>,
    name: &str,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<HostRef<'py>> {
    call(&*getattr(object, name)?, args, kwargs)
}

static GETATTR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `object.name`, as [`call`] calls code: reading an attribute of the host's object may run
/// its code (a property, `__getattr__`).
pub(crate) fn getattr<'py>(object: &Bound<'py, PyAny>, name: &str) -> PyResult<HostRef<'py>> {
    let py = object.py();
    let getattr = GETATTR.import(py, "builtins", "getattr")?;
    call(getattr, &(object, name).into_pyobject(py)?, None)
}

/// `str(object)`, or `repr(object)` when `repr` is true, as [`call`] calls code: the host's
/// `__str__` / `__repr__` (an exception's, say) may run any code.
pub(crate) fn text<'py>(object: &Bound<'py, PyAny>, repr: bool) -> PyResult<HostRef<'py>> {
    let py = object.py();
    let args = (object,).into_pyobject(py)?;
    if repr {
        call(REPR.import(py, "builtins", "repr")?, &args, None)
    } else {
        call(py.get_type::<PyString>().as_any(), &args, None)
    }
}

static REPR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The items of an iterable the host passed (a generator, a class of its own), read one by
/// one as a `for` loop reads them, each step under the guard of [`call`]: `iter()` and
/// `next()` run the host's code. A `list`, `tuple`, `set` or `frozenset` (not a subclass) is
/// read directly: no code of the host's runs then.
///
/// # Errors
/// What `iter(object)` raised (not an iterable): the caller says what it expected.
pub(crate) fn iterate<'py>(object: &Bound<'py, PyAny>) -> PyResult<Items<'py>> {
    let py = object.py();
    if object.is_exact_instance_of::<PyList>()
        || object.is_exact_instance_of::<PyTuple>()
        || object.is_exact_instance_of::<PySet>()
        || object.is_exact_instance_of::<PyFrozenSet>()
    {
        return Ok(Items::Builtin(object.try_iter()?));
    }
    let iter = ITER.import(py, "builtins", "iter")?;
    Ok(Items::Host(call(
        iter,
        &(object,).into_pyobject(py)?,
        None,
    )?))
}

/// See [`iterate`].
pub(crate) enum Items<'py> {
    Builtin(Bound<'py, PyIterator>),
    Host(HostRef<'py>),
}

impl<'py> Iterator for Items<'py> {
    type Item = PyResult<HostRef<'py>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Items::Builtin(items) => items.next().map(|item| item.map(HostRef::new)),
            Items::Host(iterator) => {
                let py = iterator.py();
                let step = || -> PyResult<Option<HostRef<'py>>> {
                    let next = NEXT.import(py, "builtins", "next")?;
                    let end = END.get_or_init(py, || PyList::empty(py).into_any().unbind());
                    // `next(iterator, end)`: `end` (a list of the module's own, never an item)
                    // when the iterator is exhausted.
                    let item = call(next, &(&**iterator, end.bind(py)).into_pyobject(py)?, None)?;
                    Ok((!item.is(end.bind(py))).then_some(item))
                };
                step().transpose()
            }
        }
    }
}

static ITER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static NEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static END: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// What the host's code handed the module (what a call returned, an item of an iterable), as
/// the module holds it while it reads it (a `Bound`, through `Deref`). The module's reference
/// may be the last one (a session the answer holds, a dict of the host's class made for the
/// call), and letting go of it runs the object's `__del__` or a weakref callback: it is released
/// under the guard of [`call`], as a [`HostObject`] is.
pub(crate) struct HostRef<'py>(ManuallyDrop<Bound<'py, PyAny>>);

impl<'py> HostRef<'py> {
    pub(crate) fn new(object: Bound<'py, PyAny>) -> Self {
        HostRef(ManuallyDrop::new(object))
    }

    /// The reference itself, for a caller that hands it on to Python (the result of a method
    /// of the module's): no longer released here.
    pub(crate) fn into_bound(self) -> Bound<'py, PyAny> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: taken once; `this` is never dropped, so the field is never used again.
        #[allow(unsafe_code)]
        unsafe {
            ManuallyDrop::take(&mut this.0)
        }
    }
}

impl<'py> Deref for HostRef<'py> {
    type Target = Bound<'py, PyAny>;

    fn deref(&self) -> &Bound<'py, PyAny> {
        &self.0
    }
}

impl Drop for HostRef<'_> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: taken once, here; the field is never used again.
        let object = unsafe { ManuallyDrop::take(&mut self.0) }.into_ptr();
        // Declared last: the first local a forced unwind out of the release drops.
        let guard = ParkIfEnded;
        // SAFETY: attached (the `Bound` was); `object` is a strong reference, given up here.
        unsafe { raw::Py_DecRef(object) };
        std::mem::forget(guard);
    }
}

/// Lets go of `err`, an exception the module read and does not raise (it replaces it by its
/// own, or it answers without it): its exception and traceback are held as [`HostRef`]s while
/// `err` goes, so that the last references to them are released under the guard of [`call`].
/// The traceback keeps the frames of the host's code that raised it, whose locals' `__del__`
/// runs then (a session closing its connections).
pub(crate) fn drop_err(py: Python<'_>, err: PyErr) {
    let held = (
        HostRef::new(err.value(py).clone().into_any()),
        err.traceback(py).map(|t| HostRef::new(t.into_any())),
    );
    drop(err);
    drop(held);
}

/// A strong reference to an object of the host's (a provider, a callback), which the module
/// keeps: its last release may run the host's code (`__del__`, a weakref callback) under the
/// module's frames, so it is released under the guard of [`call`]. Released on the thread that
/// lets go of it, attaching to the interpreter if need be (only a ticker's joining thread lets go
/// of one without being attached, holding no lock); without an interpreter to attach to
/// (finalizing, since 3.13) it is left to pyo3, which releases it when a thread next attaches.
pub(crate) struct HostObject(ManuallyDrop<Py<PyAny>>);

impl HostObject {
    pub(crate) fn new(object: Py<PyAny>) -> Self {
        HostObject(ManuallyDrop::new(object))
    }

    /// A new strong reference to the same object.
    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Self {
        HostObject::new(self.0.clone_ref(py))
    }
}

impl Deref for HostObject {
    type Target = Py<PyAny>;

    fn deref(&self) -> &Py<PyAny> {
        &self.0
    }
}

impl Drop for HostObject {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: taken once, here; the field is never used again.
        let mut object = Some(unsafe { ManuallyDrop::take(&mut self.0) });
        Python::try_attach(|_py| {
            if let Some(object) = object.take() {
                let object = object.into_ptr();
                // Declared last: the first local a forced unwind out of the release drops.
                let guard = ParkIfEnded;
                // SAFETY: attached (`_py`); `object` is a strong reference, given up here.
                unsafe { raw::Py_DecRef(object) };
                std::mem::forget(guard);
            }
        });
        drop(object);
    }
}
