//! Conversions between Python values and core values: ids, durations, timestamps, string
//! maps, the two Python `enum.Enum` classes (`WorkerState`, `TerminationReason`), and the
//! exception for serde's refusal of a dict or keyword argument ([`serde_error`]).
//!
//! Rules (DESIGN.md §8): ids are `str`; durations are float seconds or `datetime.timedelta`;
//! timestamps are float seconds since the Unix epoch. A value of the wrong type is a
//! `TypeError`; a value of the right type that is not acceptable is an `InvalidArgumentError`
//! (also a `ValueError`), a `str` that is not valid text (a lone surrogate) included: every str
//! is read through [`text`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::time::Duration;

use hodei_workers::{
    JobId, ProviderId, ProviderType, TerminationReason, Timestamp, WorkerId, WorkerState,
};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyUnicodeEncodeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};

use crate::calls;
use crate::errors::{invalid, OrRaise};

/// The text of a Python `str`, read in place: `PyUnicode_AsUTF8AndSize` (stable ABI >= 3.10)
/// gives the UTF-8 form CPython keeps beside the str (an ASCII str is its own UTF-8), so a
/// valid str costs no allocation and no copy; this is on the heartbeat's path.
///
/// A str that has no UTF-8 form, because it holds a lone surrogate (`'\udcff'`, what
/// `os.fsdecode` and `surrogateescape` make of undecodable bytes), is not text any API here
/// can take: `InvalidArgumentError` naming `what` (the parameter, or the place in it, as
/// `labels["pool"]`) and the first surrogate, rather than the `UnicodeEncodeError` CPython
/// raises (DESIGN.md §8: invalid values are `InvalidArgumentError`). `what` is only formatted
/// on that path: pass `format_args!` for a composed name.
pub(crate) fn text<'a>(arg: &'a Bound<'_, PyString>, what: impl Display) -> PyResult<&'a str> {
    arg.to_str().map_err(|err| not_text(arg, &what, err))
}

/// The `InvalidArgumentError` of [`text`], with CPython's `UnicodeEncodeError` as its cause.
/// Any other failure (a `MemoryError`) goes through as it is.
#[cold]
fn not_text(arg: &Bound<'_, PyString>, what: &dyn Display, err: PyErr) -> PyErr {
    let py = arg.py();
    if !err.is_instance_of::<PyUnicodeEncodeError>(py) {
        return err;
    }
    // `start` is the index (in code points) of the first character without a UTF-8 form.
    let value = err.value(py);
    let found = value
        .getattr("start")
        .and_then(|start| start.extract::<usize>())
        .and_then(|start| Ok((start, arg.get_item(start)?.repr()?)));
    let message = match found {
        Ok((start, surrogate)) => {
            format!("{what} is not valid text (lone surrogate {surrogate} at position {start})")
        }
        Err(_) => format!("{what} is not valid text (it holds a lone surrogate)"),
    };
    let invalid = invalid(py, message);
    invalid.set_cause(py, Some(err));
    invalid
}

/// A `str` argument that has a default: the default when it is left out, else the caller's
/// str, borrowed (anything else, `None` included, is a `TypeError`, as for a plain `&str`
/// argument). For the few str arguments with a default, which cannot be a `&Bound<PyString>`
/// (a default value of that type would need the interpreter).
#[derive(Debug)]
pub(crate) enum StrArg<'a, 'py> {
    /// Left out: the default.
    Default(&'static str),
    /// Given.
    Given(Borrowed<'a, 'py, PyString>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for StrArg<'a, 'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(StrArg::Given(obj.cast::<PyString>()?))
    }
}

impl StrArg<'_, '_> {
    /// Its text ([`text`]: `InvalidArgumentError` naming `what` when it is not text).
    pub(crate) fn text(&self, what: &str) -> PyResult<&str> {
        match self {
            StrArg::Default(text) => Ok(text),
            StrArg::Given(arg) => text(arg, what),
        }
    }
}

/// Parses a worker id from the argument `what` (`InvalidArgumentError` when it is not text or
/// not a worker id).
pub(crate) fn worker_id(arg: &Bound<'_, PyString>, what: &str) -> PyResult<WorkerId> {
    WorkerId::parse(text(arg, what)?).or_raise(arg.py())
}

/// Validates a job id from the argument `what`.
pub(crate) fn job_id(arg: &Bound<'_, PyString>, what: &str) -> PyResult<JobId> {
    JobId::new(text(arg, what)?).or_raise(arg.py())
}

/// Validates a provider id from the argument (or attribute) `what`.
pub(crate) fn provider_id(arg: &Bound<'_, PyString>, what: &str) -> PyResult<ProviderId> {
    ProviderId::new(text(arg, what)?).or_raise(arg.py())
}

/// Parses a provider type (`"docker"`, `"kubernetes"`, …, `"custom:NAME"`) from the argument
/// (or attribute) `what`.
pub(crate) fn provider_type(arg: &Bound<'_, PyString>, what: &str) -> PyResult<ProviderType> {
    let py = arg.py();
    no_nul(py, text(arg, what)?, what)?
        .parse::<ProviderType>()
        .or_raise(py)
}

/// The text of the argument `what` with no NUL in it (see [`no_nul`]): for the strings of a
/// worker that may reach a C provider (resource id, image, GPU type, …).
pub(crate) fn c_text<'a>(arg: &'a Bound<'_, PyString>, what: &str) -> PyResult<&'a str> {
    no_nul(arg.py(), text(arg, what)?, what)
}

/// `text`, or `InvalidArgumentError` when it holds a NUL character: a Python `str` can, a C
/// string cannot, and every string of a worker (image, labels, metadata, resource id, …) may
/// have to reach a C provider. Refused here, at the first boundary it crosses (issue 10 item
/// 17), rather than by a destroy that can never be called. `what` is formatted only on that
/// path (pass `format_args!` for a composed name).
pub(crate) fn no_nul<'t>(py: Python<'_>, text: &'t str, what: impl Display) -> PyResult<&'t str> {
    if text.contains('\0') {
        Err(invalid(
            py,
            format!(
                "{what} contains a NUL character, which C cannot carry: {}",
                hodei_workers::quote_input(text)
            ),
        ))
    } else {
        Ok(text)
    }
}

/// Timestamp (ms) to float seconds since the epoch.
pub(crate) fn seconds(at: Timestamp) -> f64 {
    at as f64 / 1000.0
}

/// Float seconds since the epoch to a timestamp (ms), refusing negative and non-finite values.
pub(crate) fn timestamp(py: Python<'_>, secs: f64, what: &str) -> PyResult<Timestamp> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(invalid(
            py,
            format!("{what} must be a finite number of seconds >= 0, got {secs}"),
        ));
    }
    let ms = (secs * 1000.0).round();
    if ms >= u64::MAX as f64 {
        return Err(invalid(py, format!("{what} is out of range: {secs}")));
    }
    Ok(ms as u64)
}

static TIMEDELTA: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// A duration given as float (or int) seconds or as a `datetime.timedelta`.
///
/// `bool` is refused (it is an `int` in Python, and `True` seconds is a bug, not a duration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seconds(pub(crate) Duration);

impl<'a, 'py> FromPyObject<'a, 'py> for Seconds {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let py = obj.py();
        // Numbers first: `datetime` is imported only for what may be a timedelta (whose
        // module is then already loaded). A first import runs Python code (importlib) under
        // this call, which a daemon thread must not be in when the interpreter exits (see
        // `calls`): `recv(timeout=...)` there crashed the exit now and then.
        let secs: f64 = if obj.is_instance_of::<PyBool>() {
            return Err(PyTypeError::new_err(
                "a duration must be float seconds or a datetime.timedelta, not bool",
            ));
        } else if obj.is_instance_of::<PyFloat>() || obj.is_instance_of::<PyInt>() {
            obj.extract::<Float>()?.0
        } else if let Some(secs) = timedelta_secs(&obj)? {
            secs
        } else {
            return Err(PyTypeError::new_err(format!(
                "a duration must be float seconds or a datetime.timedelta, not {}",
                obj.get_type().name()?
            )));
        };
        Duration::try_from_secs_f64(secs).map(Seconds).map_err(|_| {
            let message = if secs.is_finite() && secs >= 0.0 {
                // Finite and not negative: too long for a Duration (2**64 s), which the
                // message must say rather than deny what the caller gave.
                format!("a duration of {secs:e} seconds is out of range (2**64 s at most)")
            } else {
                format!("a duration must be a finite number of seconds >= 0, got {secs}")
            };
            invalid(py, message)
        })
    }
}

/// The seconds of a `datetime.timedelta` (None for anything else). An exact timedelta is read
/// as it is (its `total_seconds` is C code); for anything else the `isinstance` check (which
/// may read the object's `__class__`) and a subclass's `total_seconds` are the host's code,
/// run under the guard of `calls`, and so is the `__float__` of what that returned.
pub(crate) fn timedelta_secs(obj: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    let py = obj.py();
    let timedelta = TIMEDELTA.import(py, "datetime", "timedelta")?;
    if obj.get_type().is(timedelta) {
        return Ok(Some(obj.call_method0("total_seconds")?.extract()?));
    }
    if !is_instance(obj, timedelta.as_any())? {
        return Ok(None);
    }
    let secs = calls::call_method(obj, "total_seconds", &PyTuple::empty(py), None)?;
    Ok(Some(calls::float(&secs)?))
}

/// A float argument (float seconds, a timestamp, CPU cores): a `float` or an `int`. A `bool`
/// is refused with `TypeError` (it is an `int` in Python, and `True` is a bug, not a number);
/// an int too large for a float is an `InvalidArgumentError` (the type was right), not the
/// `OverflowError` a plain `f64` extraction raises.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Float(pub(crate) f64);

impl<'a, 'py> FromPyObject<'a, 'py> for Float {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<PyBool>() {
            return Err(PyTypeError::new_err("expected a float, not bool"));
        }
        // `__float__` (or `__index__`) of anything but a float, under the guard of `calls`.
        // Anything else than an int too large for the type (an int subclass's `__float__`
        // raising, Ctrl-C landing there) is not "out of range".
        calls::float(&obj)
            .map(Float)
            .map_err(|err| out_of_range_or(&obj, err))
    }
}

/// The error of converting `obj` that raised `err`: for an int too large for the type (the
/// `OverflowError` of its conversion), `InvalidArgumentError` "N is out of range"; else `err`
/// itself. The `OverflowError` is let go of under the guard of `calls`.
fn out_of_range_or(obj: &Bound<'_, PyAny>, err: PyErr) -> PyErr {
    let py = obj.py();
    if !(obj.is_instance_of::<PyInt>() && err.is_instance_of::<PyOverflowError>(py)) {
        return err;
    }
    calls::drop_err(py, err);
    match out_of_range_int(obj) {
        Ok(shown) => invalid(py, format!("{shown} is out of range")),
        Err(e) => e,
    }
}

/// An int too large for the library, as its message names it: its digits when they are few,
/// else its size in bits. `repr` of an int of more than 4300 digits raises Python's own
/// `ValueError` (the int-to-str limit), and thousands of digits are no message anyway.
///
/// An `int` subclass's `__repr__` and `bit_length` are the host's code: run under the guard of
/// `calls`; the sign is read from an exact copy (no code of the host's).
fn out_of_range_int(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    match shown(obj) {
        Ok(repr) if repr.len() <= hodei_workers::MAX_ECHO_CHARS => return Ok(repr),
        // Python's own refusal (the int-to-str limit), or a subclass's `__repr__` failing: the
        // size in bits says it. An interrupt raised there is the caller's, not a message.
        Err(err) if !err.is_instance_of::<pyo3::exceptions::PyException>(obj.py()) => {
            return Err(err)
        }
        Err(err) => calls::drop_err(obj.py(), err),
        Ok(_) => {}
    }
    let py = obj.py();
    let bits = calls::call_method(obj, "bit_length", &PyTuple::empty(py), None)?;
    let bits: u64 = calls::index(&bits)?.extract()?;
    let sign = if calls::index(obj)?.lt(0)? {
        "a negative"
    } else {
        "an"
    };
    Ok(format!("{sign} int of {bits} bits"))
}

/// `repr(obj)` for a message, under the guard of `calls`: the `__repr__` of a value the host
/// passed (an `int` or `float` subclass, say) is its code.
pub(crate) fn shown(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(calls::text(obj, true)?
        .cast::<PyString>()?
        .to_cow()?
        .into_owned())
}

/// A duration as float seconds.
pub(crate) fn duration_secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// An `int` argument. Unlike a plain `i64` extraction, an int too large for 64 bits is an
/// `InvalidArgumentError` (a `ValueError`: the type was right), not an `OverflowError`; and a
/// `bool` is refused (`limit=True` is a bug, not a number).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Int(pub(crate) i64);

impl<'a, 'py> FromPyObject<'a, 'py> for Int {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<PyBool>() {
            return Err(PyTypeError::new_err("expected an int, not bool"));
        }
        // `__index__` of anything but an int, under the guard of `calls`.
        // An int, a subclass included, runs no code here: its only error is being too large
        // for 64 bits.
        calls::index(&obj)
            .and_then(|int| int.extract::<i64>())
            .map(Int)
            .map_err(|err| out_of_range_or(&obj, err))
    }
}

/// A non-negative integer (a count, a limit): `InvalidArgumentError` when negative.
pub(crate) fn count(py: Python<'_>, value: i64, what: &str) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| invalid(py, format!("{what} must be >= 0, got {value}")))
}

/// The exception for serde's refusal of a value the caller gave as Python objects (a dict, a
/// keyword argument) and that was read through JSON: `TypeError` when the value's type does
/// not fit, `InvalidArgumentError` otherwise, with the message `{what}: {serde's message}`.
///
/// Serde's message is kept (an unknown key's list of known ones included) but for what only
/// makes sense to a Rust reader: the position in the JSON text (" at line L column C", a text
/// the caller never wrote) is dropped, and a Rust number type it expected is said in Python
/// terms ("expected usize" becomes "expected a non-negative int"; see [`python_number`]).
/// Not for JSON text the caller passed as a `str`: there the position points into their text.
pub(crate) fn serde_error(py: Python<'_>, what: impl Display, error: &serde_json::Error) -> PyErr {
    // The caller's key or string serde quotes is cut (a megabyte-long one would otherwise be
    // the message).
    // The position is dropped: not JSON text of the caller's (see above).
    let (mut message, _position) = hodei_workers::json_error_parts(error);
    // Serde ends "invalid type"/"invalid value" with ", expected {what it expected}"; only
    // the last such clause is serde's own (the value quoted before it is the caller's).
    if let Some(at) = message.rfind(", expected ") {
        let expected = &message[at + ", expected ".len()..];
        if let Some(python) = python_number(expected) {
            message.replace_range(at + ", expected ".len().., &python);
        }
    }
    if message.starts_with("invalid type") {
        PyTypeError::new_err(format!("{what}: {message}"))
    } else {
        invalid(py, format!("{what}: {message}"))
    }
}

/// A Rust number type serde names as what it expected, in Python terms (None for anything
/// else): an unsigned type is "a non-negative int", a signed one "an int", a float type "a
/// number". A type narrower than 64 bits says its bounds too, since an out-of-range value is
/// what broke them; the 64-bit bounds go unsaid because an int beyond 64 bits is refused
/// before serde sees it.
fn python_number(rust: &str) -> Option<String> {
    Some(match rust {
        "u64" | "usize" | "u128" => "a non-negative int".to_owned(),
        "u8" => format!("a non-negative int up to {}", u8::MAX),
        "u16" => format!("a non-negative int up to {}", u16::MAX),
        "u32" => format!("a non-negative int up to {}", u32::MAX),
        "i64" | "isize" | "i128" => "an int".to_owned(),
        "i8" => format!("an int from {} to {}", i8::MIN, i8::MAX),
        "i16" => format!("an int from {} to {}", i16::MIN, i16::MAX),
        "i32" => format!("an int from {} to {}", i32::MIN, i32::MAX),
        "f32" | "f64" => "a number".to_owned(),
        _ => return None,
    })
}

/// A `str -> str` mapping (any `collections.abc.Mapping`) from the caller: a NUL character is
/// refused here, where it enters (`InvalidArgumentError`).
pub(crate) fn str_map(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<BTreeMap<String, String>> {
    read_str_map(obj, what, true)
}

/// A `str -> str` mapping a provider returned with the instance it created. NUL is not refused
/// here: a failure inside the provider call would make the engine believe nothing was created,
/// and the instance would leak. The core refuses the handle when it registers it instead, and
/// then destroys the instance.
pub(crate) fn provider_str_map(
    obj: &Bound<'_, PyAny>,
    what: &str,
) -> PyResult<BTreeMap<String, String>> {
    read_str_map(obj, what, false)
}

fn read_str_map(
    obj: &Bound<'_, PyAny>,
    what: &str,
    refuse_nul: bool,
) -> PyResult<BTreeMap<String, String>> {
    let py = obj.py();
    let mut _host = None;
    let items = if let Ok(dict) = obj.cast::<PyDict>() {
        dict.items()
    } else if is_mapping(obj)? {
        // The host's `items()` (and the `collections.abc` code behind it: `__iter__`,
        // `__getitem__`), under the guard of `calls`: a provider's metadata is read on the
        // thread that ticks, which the interpreter's exit may end meanwhile.
        let view = calls::call_method(obj, "items", &PyTuple::empty(py), None)?;
        let list = calls::call(
            py.get_type::<PyList>().as_any(),
            &(&*view,).into_pyobject(py)?,
            None,
        )?;
        let items = list.cast::<PyList>()?.clone();
        // Let go of last (after `items`), under the guard of `calls`: the host's objects the
        // list and the view may hold the last references to.
        _host = Some((list, view));
        items
    } else {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a mapping of str to str, not {}",
            obj.get_type().name()?
        )));
    };
    let mut map = BTreeMap::new();
    for item in items.iter() {
        let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        let (Ok(key), Ok(value)) = (key.cast::<PyString>(), value.cast::<PyString>()) else {
            return Err(PyTypeError::new_err(format!(
                "{what} must map str to str, found {}: {}",
                key.get_type().name()?,
                value.get_type().name()?
            )));
        };
        let key = text(key, format_args!("a key of {what}"))?;
        let value = text(value, Entry(what, key))?;
        if refuse_nul {
            no_nul(py, key, format_args!("a key of {what}"))?;
            no_nul(py, value, Entry(what, key))?;
        }
        map.insert(key.to_owned(), value.to_owned());
    }
    Ok(map)
}

static MAPPING: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `collections.abc.Mapping`, imported when the module is ([`enum_classes`]): not on first
/// use, under the module's frames on whatever thread that is (see `calls`).
fn mapping_abc(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    MAPPING.import(py, "collections.abc", "Mapping")
}

/// `isinstance(obj, collections.abc.Mapping)`, under the guard of `calls`: the check may run
/// the ABC's Python code (`__subclasshook__`) and the host's (`__instancecheck__` of its
/// metaclass, a `register` done lazily).
fn is_mapping(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    is_instance(obj, mapping_abc(obj.py())?.as_any())
}

/// `isinstance(obj, class)`, under the guard of `calls`: for an object not of the class, the
/// check reads its `__class__` (the host's `__getattribute__`, a proxy's), and a class with a
/// metaclass may run its `__instancecheck__`.
fn is_instance(obj: &Bound<'_, PyAny>, class: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = obj.py();
    let isinstance = ISINSTANCE.import(py, "builtins", "isinstance")?;
    let args = (obj, class).into_pyobject(py)?;
    calls::call(isinstance, &args, None)?.is_truthy()
}

static ISINSTANCE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The name of a map's entry in a message, `what["key"]` (the key as
/// [`hodei_workers::quote_input`] quotes it); formatted only when a message is made.
struct Entry<'a>(&'a str, &'a str);

impl Display for Entry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.0, hodei_workers::quote_input(self.1))
    }
}

/// The error of `iter(obj)` for an argument that must be an iterable: the `TypeError` saying
/// what was expected (`message`) when `iter()` refused it (a `TypeError`), else what the
/// caller's `__iter__` raised, as it is (Ctrl-C, a config service that is down: not a wrong
/// type).
pub(crate) fn not_iterable(
    obj: &Bound<'_, PyAny>,
    err: PyErr,
    message: impl FnOnce() -> String,
) -> PyErr {
    if err.is_instance_of::<PyTypeError>(obj.py()) {
        calls::drop_err(obj.py(), err);
        PyTypeError::new_err(message())
    } else {
        err
    }
}

/// A set of strings from an iterable of `str`; a lone `str` counts as one item (not as its
/// characters, which is never what a caller means).
pub(crate) fn str_set(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<BTreeSet<String>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(BTreeSet::from([c_text(s, what)?.to_owned()]));
    }
    let iter = calls::iterate(obj).map_err(|err| {
        not_iterable(obj, err, || {
            format!(
                "{what} must be an iterable of str, not {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            )
        })
    })?;
    let mut set = BTreeSet::new();
    for item in iter {
        let item = item?;
        let Ok(s) = item.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "{what} must hold str, found {}",
                item.get_type().name()?
            )));
        };
        let s = text(s, format_args!("an item of {what}"))?;
        no_nul(obj.py(), s, format_args!("an item of {what}"))?;
        set.insert(s.to_owned());
    }
    Ok(set)
}

/// A Python `enum.Enum` class made once per interpreter from a core enum's stable names, with
/// its members cached in the core enum's `repr(u8)` order.
pub(crate) struct PyEnum {
    class: Py<PyType>,
    members: Vec<Py<PyAny>>,
    /// The members' values (the core's stable names), in the same order.
    names: Vec<&'static str>,
}

fn make_enum(
    py: Python<'_>,
    name: &str,
    doc: &str,
    values: impl Iterator<Item = &'static str>,
) -> PyResult<PyEnum> {
    let values: Vec<&'static str> = values.collect();
    let pairs: Vec<(String, &str)> = values
        .iter()
        .map(|v| (v.to_ascii_uppercase(), *v))
        .collect();
    let kwargs = PyDict::new(py);
    kwargs.set_item("module", "hodei_workers")?;
    kwargs.set_item("qualname", name)?;
    let class = py
        .import("enum")?
        .getattr("Enum")?
        .call((name, pairs), Some(&kwargs))?;
    class.setattr("__doc__", doc)?;
    let members = values
        .iter()
        .map(|v| class.call1((*v,)).map(Bound::unbind))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyEnum {
        class: class.cast_into::<PyType>()?.unbind(),
        members,
        names: values,
    })
}

static WORKER_STATE: PyOnceLock<PyEnum> = PyOnceLock::new();
static TERMINATION_REASON: PyOnceLock<PyEnum> = PyOnceLock::new();

fn worker_state_enum(py: Python<'_>) -> PyResult<&PyEnum> {
    WORKER_STATE.get_or_try_init(py, || {
        make_enum(
            py,
            "WorkerState",
            "Where a worker is in its life.\n\n\
             CREATING -> CONNECTING -> READY <-> BUSY; READY/BUSY -> DRAINING; any live state \
             -> TERMINATING -> TERMINATED. Only READY accepts jobs; only assign/claim enter \
             BUSY and only release leaves it. Values are the stable lowercase names \
             (WorkerState('ready') is WorkerState.READY); functions taking a state also \
             accept that name as a str.",
            WorkerState::ALL.into_iter().map(WorkerState::as_str),
        )
    })
}

fn termination_reason_enum(py: Python<'_>) -> PyResult<&PyEnum> {
    TERMINATION_REASON.get_or_try_init(py, || {
        make_enum(
            py,
            "TerminationReason",
            "Why a worker is (to be) terminated or was unregistered. Values are the stable \
             lowercase names; functions taking a reason also accept that name as a str.",
            TerminationReason::ALL
                .into_iter()
                .map(TerminationReason::as_str),
        )
    })
}

/// The `WorkerState` and `TerminationReason` classes, for the module.
pub(crate) fn enum_classes(py: Python<'_>) -> PyResult<[(&'static str, Bound<'_, PyType>); 2]> {
    // Imported here, with the module, rather than on first use (see `mapping_abc`).
    mapping_abc(py)?;
    Ok([
        ("WorkerState", worker_state_enum(py)?.class.bind(py).clone()),
        (
            "TerminationReason",
            termination_reason_enum(py)?.class.bind(py).clone(),
        ),
    ])
}

/// The `WorkerState` member for `state`.
pub(crate) fn state_to_py(py: Python<'_>, state: WorkerState) -> PyResult<Py<PyAny>> {
    Ok(worker_state_enum(py)?.members[state as usize].clone_ref(py))
}

/// The `TerminationReason` member for `reason`.
pub(crate) fn reason_to_py(py: Python<'_>, reason: TerminationReason) -> PyResult<Py<PyAny>> {
    Ok(termination_reason_enum(py)?.members[reason as usize].clone_ref(py))
}

/// The stable name of an enum member or a `str` naming one (`TypeError` for anything else).
///
/// A member is told by identity, not by reading its `.value`: that is `enum`'s Python code
/// (a descriptor), which would run under the module's frames, unguarded at interpreter exit
/// (see `calls`), on every call that takes a state.
fn enum_name(obj: &Bound<'_, PyAny>, e: &PyEnum, what: &str) -> PyResult<String> {
    let py = obj.py();
    let class = e.class.bind(py);
    if let Some(i) = e.members.iter().position(|m| m.bind(py).is(obj)) {
        return Ok(e.names[i].to_owned());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(text(s, what)?.to_owned());
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a {} or its name as str, not {}",
        class.name()?,
        obj.get_type().name()?
    )))
}

/// A `WorkerState` member or its name (`"ready"`, case-insensitive), from the argument `what`.
pub(crate) fn state_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<WorkerState> {
    let py = obj.py();
    enum_name(obj, worker_state_enum(py)?, what)?
        .parse::<WorkerState>()
        .or_raise(py)
}

/// A `TerminationReason` member or its name (`"idle"`, …).
pub(crate) fn reason_from_py(obj: &Bound<'_, PyAny>) -> PyResult<TerminationReason> {
    let py = obj.py();
    enum_name(obj, termination_reason_enum(py)?, "reason")?
        .parse::<TerminationReason>()
        .or_raise(py)
}

/// One state, or an iterable of states (members or names).
pub(crate) fn states_from_py(obj: &Bound<'_, PyAny>) -> PyResult<BTreeSet<WorkerState>> {
    let py = obj.py();
    let class = worker_state_enum(py)?.class.bind(py);
    if obj.is_instance_of::<PyString>() || is_instance(obj, class.as_any())? {
        return Ok(BTreeSet::from([state_from_py(obj, "states")?]));
    }
    let iter = calls::iterate(obj).map_err(|err| {
        not_iterable(obj, err, || {
            "states must be a WorkerState, a str, or an iterable of them".to_owned()
        })
    })?;
    iter.map(|item| state_from_py(&*item?, "an item of states"))
        .collect()
}
