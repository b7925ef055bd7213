//! `ManualClock`: the clock tests and simulations move by hand.

use std::sync::Arc;

use hodei_workers::ManualClock;
use pyo3::prelude::*;

use crate::convert::{self, Float, Seconds};

use super::py_repr;

/// A clock that moves only when told to: tests and simulations. Give it to
/// ``Registry(clock=...)``; every deadline of that registry (and of its manager) is then
/// measured on it. Times are float seconds since the Unix epoch; it never goes backwards.
#[pyclass(frozen, name = "ManualClock", module = "hodei_workers")]
#[derive(Debug)]
pub(crate) struct PyManualClock {
    pub(crate) inner: Arc<ManualClock>,
}

#[pymethods]
impl PyManualClock {
    /// A clock reading ``start`` (float seconds since the epoch; default 1_700_000_000.0,
    /// a fixed instant so that runs are reproducible).
    #[new]
    #[pyo3(
        signature = (start = Float(1_700_000_000.0)),
        text_signature = "(start=1700000000.0)"
    )]
    fn new(py: Python<'_>, start: Float) -> PyResult<Self> {
        Ok(PyManualClock {
            inner: Arc::new(ManualClock::new(convert::timestamp(py, start.0, "start")?)),
        })
    }

    /// The time now, in float seconds since the epoch (millisecond resolution).
    fn now(&self) -> f64 {
        use hodei_workers::Clock;
        convert::seconds(self.inner.now())
    }

    /// Sets the time. An earlier time than now is ignored (the clock never goes backwards).
    /// Returns the time now in force.
    fn set(&self, py: Python<'_>, at: Float) -> PyResult<f64> {
        let at = convert::timestamp(py, at.0, "at")?;
        Ok(convert::seconds(self.inner.set(at)))
    }

    /// Moves the clock forward by ``by`` (float seconds or timedelta); returns the new time.
    fn advance(&self, by: Seconds) -> f64 {
        convert::seconds(self.inner.advance(by.0))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("ManualClock({})", py_repr(py, self.now())?))
    }
}
