//! `Resources` and `WorkerSpec`: what a worker needs and what it is made from.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hodei_workers::{
    Architecture, ResourceRequirements, WorkerSpec, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LIFETIME,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFrozenSet, PyString};

use crate::convert::{self, Float, Int, Seconds, StrArg};
use crate::errors::{invalid, OrRaise};

use super::{float_bits, non_negative, py_repr};

/// What a worker needs of its host: CPU cores (fractions allowed), memory and disk in bytes,
/// GPUs. Immutable; compares by value.
#[pyclass(
    frozen,
    eq,
    hash,
    name = "Resources",
    module = "hodei_workers",
    from_py_object
)]
#[derive(Clone, PartialEq)]
pub(crate) struct PyResources {
    pub(crate) inner: ResourceRequirements,
}

impl Hash for PyResources {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let r = &self.inner;
        float_bits(r.cpu_cores).hash(state);
        (r.memory_bytes, r.disk_bytes, r.gpu_count, &r.gpu_type).hash(state);
    }
}

#[pymethods]
impl PyResources {
    /// Resources asked for. Every amount must be >= 0 (InvalidArgumentError otherwise).
    #[new]
    #[pyo3(
        signature = (cpu_cores=Float(0.0), memory_bytes=Int(0), disk_bytes=Int(0), gpu_count=Int(0), gpu_type=None),
        text_signature = "(cpu_cores=0.0, memory_bytes=0, disk_bytes=0, gpu_count=0, gpu_type=None)"
    )]
    fn new(
        py: Python<'_>,
        cpu_cores: Float,
        memory_bytes: Int,
        disk_bytes: Int,
        gpu_count: Int,
        gpu_type: Option<&Bound<'_, PyString>>,
    ) -> PyResult<Self> {
        let Float(cpu_cores) = cpu_cores;
        let gpu_type = gpu_type
            .map(|t| convert::c_text(t, "gpu_type").map(str::to_owned))
            .transpose()?;
        if !cpu_cores.is_finite() || cpu_cores < 0.0 {
            return Err(invalid(
                py,
                format!("cpu_cores must be finite and >= 0, got {cpu_cores}"),
            ));
        }
        let gpu_count = non_negative(py, gpu_count.0, "gpu_count")?;
        Ok(PyResources {
            inner: ResourceRequirements {
                cpu_cores,
                memory_bytes: non_negative(py, memory_bytes.0, "memory_bytes")?,
                disk_bytes: non_negative(py, disk_bytes.0, "disk_bytes")?,
                gpu_count: u32::try_from(gpu_count)
                    .map_err(|_| invalid(py, format!("gpu_count is too large: {gpu_count}")))?,
                gpu_type,
            },
        })
    }

    /// CPU cores (fractions allowed).
    #[getter]
    fn cpu_cores(&self) -> f64 {
        self.inner.cpu_cores
    }

    /// Memory in bytes.
    #[getter]
    fn memory_bytes(&self) -> u64 {
        self.inner.memory_bytes
    }

    /// Disk in bytes.
    #[getter]
    fn disk_bytes(&self) -> u64 {
        self.inner.disk_bytes
    }

    /// Number of GPUs.
    #[getter]
    fn gpu_count(&self) -> u32 {
        self.inner.gpu_count
    }

    /// GPU model, if one is asked for.
    #[getter]
    fn gpu_type(&self) -> Option<String> {
        self.inner.gpu_type.clone()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let r = &self.inner;
        Ok(format!(
            "Resources(cpu_cores={}, memory_bytes={}, disk_bytes={}, gpu_count={}, gpu_type={})",
            py_repr(py, r.cpu_cores)?,
            r.memory_bytes,
            r.disk_bytes,
            r.gpu_count,
            py_repr(py, r.gpu_type.as_deref())?
        ))
    }
}

// ---------------------------------------------------------------------------------------------

/// What a worker is: image, resources, labels, environment, capabilities, architecture and
/// limits. Immutable and validated on construction; compares by value.
///
/// ``idle_timeout`` (default 300 s): a READY worker idle this long is cleaned up (heartbeats do
/// not reset it; a release does). ``max_lifetime`` (default 3600 s): a worker is retired this
/// long after creation (a busy one is drained first). ``max_jobs``: after that many jobs the
/// worker is drained (1 makes a one-shot ephemeral worker).
#[pyclass(
    frozen,
    eq,
    hash,
    name = "WorkerSpec",
    module = "hodei_workers",
    from_py_object
)]
#[derive(Clone, PartialEq)]
pub(crate) struct PyWorkerSpec {
    pub(crate) inner: Arc<WorkerSpec>,
}

impl Hash for PyWorkerSpec {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let s = &*self.inner;
        (&s.image, &s.labels, &s.environment, &s.capabilities).hash(state);
        (s.architecture, s.idle_timeout, s.max_lifetime, s.max_jobs).hash(state);
        PyResources {
            inner: s.resources.clone(),
        }
        .hash(state);
    }
}

#[pymethods]
impl PyWorkerSpec {
    /// A worker spec. Durations are float seconds or ``datetime.timedelta``; ``labels`` and
    /// ``environment`` map str to str; ``capabilities`` is an iterable of str; ``architecture``
    /// is ``"amd64"``, ``"arm64"`` or ``"arm"``.
    ///
    /// Raises InvalidArgumentError for a zero timeout, ``max_jobs < 1``, an unknown
    /// architecture; TypeError for values of the wrong type.
    #[new]
    #[pyo3(signature = (
        image = StrArg::Default(""),
        *,
        resources = None,
        labels = None,
        environment = None,
        capabilities = None,
        architecture = StrArg::Default("amd64"),
        idle_timeout = Seconds(DEFAULT_IDLE_TIMEOUT),
        max_lifetime = Seconds(DEFAULT_MAX_LIFETIME),
        max_jobs = None,
    ),
    text_signature = "(image='', *, resources=None, labels=None, environment=None, \
                      capabilities=None, architecture='amd64', idle_timeout=300.0, \
                      max_lifetime=3600.0, max_jobs=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        image: StrArg<'_, '_>,
        resources: Option<PyResources>,
        labels: Option<&Bound<'_, PyAny>>,
        environment: Option<&Bound<'_, PyAny>>,
        capabilities: Option<&Bound<'_, PyAny>>,
        architecture: StrArg<'_, '_>,
        idle_timeout: Seconds,
        max_lifetime: Seconds,
        max_jobs: Option<Int>,
    ) -> PyResult<Self> {
        let max_jobs =
            match max_jobs {
                None => None,
                Some(Int(n)) => Some(u32::try_from(n).map_err(|_| {
                    invalid(py, format!("max_jobs must be 1..=4294967295, got {n}"))
                })?),
            };
        let image = convert::no_nul(py, image.text("image")?, "image")?.to_owned();
        let architecture = architecture
            .text("architecture")?
            .parse::<Architecture>()
            .or_raise(py)?;
        let spec = WorkerSpec {
            image,
            resources: resources.map(|r| r.inner).unwrap_or_default(),
            labels: labels
                .map(|l| convert::str_map(l, "labels"))
                .transpose()?
                .unwrap_or_default(),
            environment: environment
                .map(|e| convert::str_map(e, "environment"))
                .transpose()?
                .unwrap_or_default(),
            capabilities: capabilities
                .map(|c| convert::str_set(c, "capabilities"))
                .transpose()?
                .unwrap_or_default(),
            architecture,
            idle_timeout: idle_timeout.0,
            max_lifetime: max_lifetime.0,
            max_jobs,
        };
        spec.validate().or_raise(py)?;
        Ok(PyWorkerSpec {
            inner: Arc::new(spec),
        })
    }

    /// A copy with some fields changed: ``spec.replace(max_jobs=1, labels={"pool": "gpu"})``.
    /// Takes the constructor's keyword arguments (and validates like it).
    #[pyo3(signature = (**changes))]
    fn replace(
        slf: &Bound<'_, Self>,
        changes: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyWorkerSpec>> {
        let py = slf.py();
        let this = slf.get();
        let fields = PyDict::new(py);
        fields.set_item("resources", this.resources())?;
        fields.set_item("labels", this.labels(py)?)?;
        fields.set_item("environment", this.environment(py)?)?;
        fields.set_item("capabilities", this.capabilities(py)?)?;
        fields.set_item("architecture", this.architecture())?;
        fields.set_item("idle_timeout", this.idle_timeout())?;
        fields.set_item("max_lifetime", this.max_lifetime())?;
        fields.set_item("max_jobs", this.max_jobs())?;
        let mut image = PyString::new(py, this.image()).into_any();
        if let Some(changes) = changes {
            for (key, value) in changes.iter() {
                // A keyword is a str; one that is not text (a lone surrogate) is no field.
                let name = key.cast::<PyString>()?.to_str().ok();
                if name == Some("image") {
                    image = value;
                } else if fields.contains(&key)? {
                    fields.set_item(key, value)?;
                } else {
                    return Err(pyo3::exceptions::PyTypeError::new_err(match name {
                        Some(name) => format!(
                            "WorkerSpec has no field {}",
                            hodei_workers::quote_input(name)
                        ),
                        None => format!("WorkerSpec has no field {}", convert::shown(&key)?),
                    }));
                }
            }
        }
        Ok(slf
            .get_type()
            .call((image,), Some(&fields))?
            .cast_into::<PyWorkerSpec>()?
            .unbind())
    }

    /// Container image (or AMI, function name…).
    #[getter]
    fn image(&self) -> &str {
        &self.inner.image
    }

    /// Resources asked for.
    #[getter]
    fn resources(&self) -> PyResources {
        PyResources {
            inner: self.inner.resources.clone(),
        }
    }

    /// Labels (a copy); a filter's ``labels=`` must match them exactly.
    #[getter]
    fn labels<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        str_dict(py, &self.inner.labels)
    }

    /// Environment for the worker process (a copy).
    #[getter]
    fn environment<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        str_dict(py, &self.inner.environment)
    }

    /// What the worker can do; a filter's ``capabilities=`` may require some.
    #[getter]
    fn capabilities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        PyFrozenSet::new(py, self.inner.capabilities.iter())
    }

    /// CPU architecture: ``"amd64"``, ``"arm64"`` or ``"arm"``.
    #[getter]
    fn architecture(&self) -> &'static str {
        self.inner.architecture.as_str()
    }

    /// Idle timeout in seconds.
    #[getter]
    fn idle_timeout(&self) -> f64 {
        convert::duration_secs(self.inner.idle_timeout)
    }

    /// Maximum lifetime in seconds.
    #[getter]
    fn max_lifetime(&self) -> f64 {
        convert::duration_secs(self.inner.max_lifetime)
    }

    /// Job limit, or None for no limit.
    #[getter]
    fn max_jobs(&self) -> Option<u32> {
        self.inner.max_jobs
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let s = &*self.inner;
        let mut out = format!("WorkerSpec({}", py_repr(py, s.image.as_str())?);
        if s.resources != ResourceRequirements::default() {
            out += &format!(", resources={}", self.resources().__repr__(py)?);
        }
        if !s.labels.is_empty() {
            out += &format!(", labels={}", self.labels(py)?.repr()?);
        }
        if !s.environment.is_empty() {
            out += &format!(", environment={}", self.environment(py)?.repr()?);
        }
        if !s.capabilities.is_empty() {
            let caps: Vec<&str> = s.capabilities.iter().map(String::as_str).collect();
            out += &format!(", capabilities={}", py_repr(py, caps)?);
        }
        if s.architecture != Architecture::default() {
            out += &format!(", architecture={}", py_repr(py, s.architecture.as_str())?);
        }
        out += &format!(
            ", idle_timeout={}, max_lifetime={}, max_jobs={})",
            py_repr(py, self.idle_timeout())?,
            py_repr(py, self.max_lifetime())?,
            py_repr(py, s.max_jobs)?
        );
        Ok(out)
    }
}

pub(crate) fn str_dict<'py>(
    py: Python<'py>,
    map: &std::collections::BTreeMap<String, String>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in map {
        dict.set_item(k, v)?;
    }
    Ok(dict)
}
