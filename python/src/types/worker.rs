//! `Worker`: a snapshot of one worker's record.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hodei_workers::Worker;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert;

use super::{py_repr, str_dict, PyWorkerSpec};

/// A snapshot of one worker's record, taken at one instant: it never changes, and changing the
/// registry does not change it (ask the registry again for fresh data).
///
/// Ids are str; timestamps are float seconds since the Unix epoch on the registry's clock.
#[pyclass(frozen, eq, hash, name = "Worker", module = "hodei_workers")]
#[derive(Clone, PartialEq)]
pub(crate) struct PyWorker {
    pub(crate) inner: Worker,
}

impl Hash for PyWorker {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Every field that changes over a record's life, so equal snapshots hash alike and
        // snapshots at different moments rarely collide.
        let w = &self.inner;
        (w.id, w.state, &w.current_job, w.jobs_executed).hash(state);
        (w.updated_at, w.last_heartbeat, w.idle_since).hash(state);
    }
}

impl PyWorker {
    pub(crate) fn new(inner: Worker) -> Self {
        PyWorker { inner }
    }
}

#[pymethods]
impl PyWorker {
    /// The worker's id (a lowercase hyphenated UUID).
    #[getter]
    fn id(&self) -> String {
        self.inner.id.to_string()
    }

    /// The provider that owns the instance.
    #[getter]
    fn provider_id(&self) -> &str {
        self.inner.handle.provider_id.as_str()
    }

    /// The provider's type: ``"docker"``, ``"kubernetes"``, …, ``"custom:NAME"``.
    #[getter]
    fn provider_type(&self) -> String {
        self.inner.handle.provider_type.to_string()
    }

    /// The provider's id of the instance (container id, pod name, instance id…).
    #[getter]
    fn resource_id(&self) -> &str {
        &self.inner.handle.resource_id
    }

    /// What the provider remembers about the instance (a copy).
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        str_dict(py, &self.inner.handle.metadata)
    }

    /// What the worker is.
    #[getter]
    fn spec(&self) -> PyWorkerSpec {
        PyWorkerSpec {
            inner: Arc::clone(&self.inner.spec),
        }
    }

    /// Current state (a WorkerState).
    #[getter]
    fn state(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        convert::state_to_py(py, self.inner.state)
    }

    /// The job it holds (BUSY, or DRAINING while finishing it), or None.
    #[getter]
    fn current_job(&self) -> Option<&str> {
        self.inner.current_job.as_ref().map(|j| j.as_str())
    }

    /// Jobs released so far.
    #[getter]
    fn jobs_executed(&self) -> u64 {
        self.inner.jobs_executed
    }

    /// When it was registered.
    #[getter]
    fn created_at(&self) -> f64 {
        convert::seconds(self.inner.created_at)
    }

    /// Last change of any field but the heartbeat.
    #[getter]
    fn updated_at(&self) -> f64 {
        convert::seconds(self.inner.updated_at)
    }

    /// Last change of state.
    #[getter]
    fn state_changed_at(&self) -> f64 {
        convert::seconds(self.inner.state_changed_at)
    }

    /// Last heartbeat (registration counts as one).
    #[getter]
    fn last_heartbeat(&self) -> f64 {
        convert::seconds(self.inner.last_heartbeat)
    }

    /// When it last entered READY (the idle deadline starts there), or None.
    #[getter]
    fn idle_since(&self) -> Option<f64> {
        self.inner.idle_since.map(convert::seconds)
    }

    /// Whether it accepted jobs at the snapshot (READY, no job).
    #[getter]
    fn is_available(&self) -> bool {
        self.inner.is_available()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let w = &self.inner;
        Ok(format!(
            "Worker(id={}, state=WorkerState.{}, provider_id={}, provider_type={}, \
             resource_id={}, current_job={}, jobs_executed={})",
            py_repr(py, w.id.to_string())?,
            w.state.as_str().to_ascii_uppercase(),
            py_repr(py, w.handle.provider_id.as_str())?,
            py_repr(py, w.handle.provider_type.to_string())?,
            py_repr(py, w.handle.resource_id.as_str())?,
            py_repr(py, self.current_job())?,
            w.jobs_executed
        ))
    }
}
