//! Value classes: `Resources`, `WorkerSpec`, `Worker`, `RegistryStats`, and the `ManualClock`
//! handle. Values are frozen, compare by content and hash consistently with `==`.

mod clock;
mod spec;
mod stats;
mod worker;

use pyo3::prelude::*;
use pyo3::BoundObject;

use crate::errors::invalid;

pub(crate) use clock::PyManualClock;
pub(crate) use spec::{str_dict, PyResources, PyWorkerSpec};
pub(crate) use stats::PyRegistryStats;
pub(crate) use worker::PyWorker;

/// `repr()` of a Python value, for hand-written `__repr__`s that read like Python.
pub(crate) fn py_repr<'py, T>(py: Python<'py>, value: T) -> PyResult<String>
where
    T: IntoPyObject<'py>,
    PyErr: From<T::Error>,
{
    Ok(value
        .into_pyobject(py)?
        .into_bound()
        .into_any()
        .repr()?
        .to_string())
}

/// `-0.0` and `0.0` compare equal, so they must hash alike.
fn float_bits(x: f64) -> u64 {
    (x + 0.0).to_bits()
}

fn non_negative(py: Python<'_>, value: i64, what: &str) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| invalid(py, format!("{what} must be >= 0, got {value}")))
}
