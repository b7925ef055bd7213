//! `RegistryStats`: the registry's maintained counts.

use std::hash::{Hash, Hasher};

use hodei_workers::{WorkerRegistryStats, WorkerState};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert;

/// Counts of the registry's workers, per state, provider, provider type and pool, taken at one
/// instant (maintained counters: reading them costs nothing however large the fleet).
#[pyclass(frozen, eq, hash, name = "RegistryStats", module = "hodei_workers")]
#[derive(Clone, PartialEq)]
pub(crate) struct PyRegistryStats {
    pub(crate) inner: WorkerRegistryStats,
}

impl Hash for PyRegistryStats {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let s = &self.inner;
        s.total.hash(state);
        for st in WorkerState::ALL {
            s.by_state.get(st).hash(state);
        }
        s.by_provider.hash(state);
        s.by_provider_type.hash(state);
        for (pool, counts) in &s.by_pool {
            pool.hash(state);
            for st in WorkerState::ALL {
                counts.get(st).hash(state);
            }
        }
    }
}

#[pymethods]
impl PyRegistryStats {
    /// Registered workers.
    #[getter]
    fn total(&self) -> usize {
        self.inner.total
    }

    /// Workers per state: a dict with every WorkerState as a key.
    #[getter]
    fn by_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for st in WorkerState::ALL {
            dict.set_item(convert::state_to_py(py, st)?, self.inner.by_state.get(st))?;
        }
        Ok(dict)
    }

    /// Workers per provider id (providers with none are absent).
    #[getter]
    fn by_provider<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (p, n) in &self.inner.by_provider {
            dict.set_item(p.as_str(), n)?;
        }
        Ok(dict)
    }

    /// Workers per provider type (types with none are absent).
    #[getter]
    fn by_provider_type<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (t, n) in &self.inner.by_provider_type {
            dict.set_item(t.to_string(), n)?;
        }
        Ok(dict)
    }

    /// Workers per pool (the value of their ``POOL_LABEL`` label), each a dict with every
    /// WorkerState as a key; pools with no worker are absent. Maintained counters, like the
    /// rest: what a pool-mode manager reads every tick.
    #[getter]
    fn by_pool<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (pool, counts) in &self.inner.by_pool {
            let per_state = PyDict::new(py);
            for st in WorkerState::ALL {
                per_state.set_item(convert::state_to_py(py, st)?, counts.get(st))?;
            }
            dict.set_item(pool, per_state)?;
        }
        Ok(dict)
    }

    /// Workers not on their way out (every state but TERMINATING and TERMINATED).
    #[getter]
    fn live(&self) -> usize {
        self.inner.by_state.live()
    }

    /// Workers still starting (CREATING + CONNECTING): capacity on its way.
    #[getter]
    fn starting(&self) -> usize {
        self.inner.by_state.starting()
    }

    /// Workers in CREATING.
    #[getter]
    fn creating(&self) -> usize {
        self.inner.by_state.creating
    }

    /// Workers in CONNECTING.
    #[getter]
    fn connecting(&self) -> usize {
        self.inner.by_state.connecting
    }

    /// Workers in READY.
    #[getter]
    fn ready(&self) -> usize {
        self.inner.by_state.ready
    }

    /// Workers in BUSY.
    #[getter]
    fn busy(&self) -> usize {
        self.inner.by_state.busy
    }

    /// Workers in DRAINING.
    #[getter]
    fn draining(&self) -> usize {
        self.inner.by_state.draining
    }

    /// Workers in TERMINATING.
    #[getter]
    fn terminating(&self) -> usize {
        self.inner.by_state.terminating
    }

    /// Workers in TERMINATED.
    #[getter]
    fn terminated(&self) -> usize {
        self.inner.by_state.terminated
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let c = &self.inner.by_state;
        Ok(format!(
            "RegistryStats(total={}, creating={}, connecting={}, ready={}, busy={}, \
             draining={}, terminating={}, terminated={}, by_provider={}, by_provider_type={}, \
             by_pool={})",
            self.inner.total,
            c.creating,
            c.connecting,
            c.ready,
            c.busy,
            c.draining,
            c.terminating,
            c.terminated,
            self.by_provider(py)?.repr()?,
            self.by_provider_type(py)?.repr()?,
            self.by_pool(py)?.repr()?
        ))
    }
}
