//! Pools and demand from Python (DESIGN.md §12): `Pool`, `Demand`, and the pool plan classes
//! (`PoolPlan`, `PoolDecision`, `Unschedulable`) that `plan_pools` and `TickReport.pools`
//! return.
//!
//! A requirement is a plain dict in the core's serde form,
//! `{"labels": {"gpu": "a100"}, "capabilities": ["cuda"], "resources": {"gpu_count": 1},
//! "architecture": "arm64", "count": 3}` (every key but `count` optional), read through the
//! `json` module so that unknown keys and bad values are refused exactly as everywhere else.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hodei_workers as core;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple};

use crate::calls;
use crate::convert::{self, Int, Seconds};
use crate::errors::{invalid, OrRaise};
use crate::lifecycle::{list, report_class, to_py};
use crate::types::{py_repr, PyWorkerSpec};

/// Deepest nesting a requirement has (`resources` in the requirement: 2); a cyclic dict
/// reaches it too.
const MAX_DEPTH: usize = 4;

/// What the `json` round trip would blur: a key that is not a `str` (`json` turns `1` into
/// `"1"`, a TypeError here as in every other mapping of str), an int beyond 64 bits (`json`
/// writes it, serde reads it back as a float: an InvalidArgumentError here, as for every
/// other int argument), a float that is not finite (`json` writes `NaN`, which serde refuses
/// as JSON text, not as a value), and nesting no requirement has (a cycle included).
fn check_plain(py: Python<'_>, what: &str, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<()> {
    if depth > MAX_DEPTH {
        return Err(invalid(
            py,
            format!("{what}: nested too deep for a requirement"),
        ));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        for (key, value) in dict.iter() {
            let Ok(key) = key.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "{what}: keys must be str, not {}",
                    key.get_type().name()?
                )));
            };
            // `json` would write a lone surrogate as an escape that serde then refuses with a
            // message about JSON; say what it is instead.
            convert::text(key, format_args!("a key in {what}"))?;
            check_plain(py, what, &value, depth + 1)?;
        }
    } else if let Ok(s) = obj.cast::<PyString>() {
        convert::text(s, format_args!("a str in {what}"))?;
    } else if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        if obj.extract::<i64>().is_err() && obj.extract::<u64>().is_err() {
            return Err(invalid(
                py,
                format!("{what}: {} is out of range", convert::shown(obj)?),
            ));
        }
    } else if obj.is_instance_of::<PyFloat>() && !obj.extract::<f64>()?.is_finite() {
        return Err(invalid(
            py,
            format!("{what}: {} is not a finite number", convert::shown(obj)?),
        ));
    } else if obj.is_instance_of::<PyList>()
        || obj.is_instance_of::<PyTuple>()
        || obj.is_instance_of::<PySet>()
        || obj.is_instance_of::<PyFrozenSet>()
    {
        // The containers `json` writes (sets through the `default` below); anything else it
        // refuses itself, unread here (an endless iterator included).
        for item in calls::iterate(obj)? {
            check_plain(py, what, &*item?, depth + 1)?;
        }
    }
    Ok(())
}

/// The `pools` of `set_pools`: a sequence of `Pool`, read as pyo3's `Vec<Pool>` reads one
/// (refused, with its errors, for a `str` or what is not a sequence), but a sequence of the
/// host's (its `__iter__`, `__getitem__`) is read under the guard of `calls`.
pub(crate) struct Pools(pub(crate) Vec<PyPool>);

impl<'a, 'py> FromPyObject<'a, 'py> for Pools {
    type Error = PyErr;

    #[allow(unsafe_code)]
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let builtin = obj.is_exact_instance_of::<PyList>() || obj.is_exact_instance_of::<PyTuple>();
        // SAFETY: attached; `obj` is a valid object. The check reads its type's slots only.
        let sequence = unsafe { pyo3::ffi::PySequence_Check(obj.as_ptr()) } != 0;
        if builtin || obj.is_instance_of::<PyString>() || !sequence {
            // No code of the host's runs: a list or tuple is read as it is; a str or what is
            // not a sequence is refused before anything is read.
            return obj.extract().map(Pools);
        }
        calls::iterate(&obj)?
            .map(|item| item?.extract::<PyPool>().map_err(PyErr::from))
            .collect::<PyResult<_>>()
            .map(Pools)
    }
}

static JSON: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The `json` module, imported when the module is (`add_pool_classes`): a first import runs
/// the import machinery's Python code, and the host's import hooks, which must not happen
/// under the module's frames on some thread as the interpreter exits (see `calls`).
fn json_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    JSON.get_or_try_init(py, || Ok::<_, PyErr>(py.import("json")?.unbind()))
        .map(|m| m.bind(py))
}

fn requirement_from_py(
    py: Python<'_>,
    json: &Bound<'_, PyModule>,
    item: &Bound<'_, PyAny>,
    index: usize,
) -> PyResult<core::Requirement> {
    if !item.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "demand[{index}]: a requirement is a dict like {{\"labels\": {{\"gpu\": \"a100\"}}, \
             \"count\": 3}}, not {}",
            item.get_type().name()?
        )));
    }
    let what = format!("demand[{index}]");
    check_plain(py, &what, item, 0)?;
    // Sets (of capabilities) become lists on the way.
    let kwargs = PyDict::new(py);
    kwargs.set_item("default", py.get_type::<PyList>())?;
    // `json.dumps` is Python code (and the host's, for the dict and set subclasses it walks):
    // run under the guard of `calls`.
    let text: String =
        calls::call_method(json, "dumps", &(item,).into_pyobject(py)?, Some(&kwargs))?.extract()?;
    let r: core::Requirement =
        serde_json::from_str(&text).map_err(|e| convert::serde_error(py, &what, &e))?;
    r.validate().map_err(|e| {
        // The inner message: the exception says "invalid argument" once.
        let message = match e {
            core::Error::InvalidArgument(m) => m,
            other => other.to_string(),
        };
        invalid(py, format!("{what}: {message}"))
    })?;
    Ok(r)
}

/// Pending jobs by what they need: a list of requirements, each a dict
/// ``{"labels": {...}, "capabilities": [...], "resources": {...}, "architecture": "arm64",
/// "count": n}`` (all keys but ``count`` optional; ``resources`` as in ``Resources``: at
/// least these, and this ``gpu_type`` when named). ``LifecycleManager.tick(demand)`` scales
/// the pools toward it; ``tick(5)`` is ``Demand([{"count": 5}])``.
///
/// Raises TypeError for a requirement that is not a dict, a key that is not a str, or a value
/// of the wrong type (a bool for a count, a list for ``resources`` included: a dict is read
/// as a dict only, never as the list of its values); InvalidArgumentError for an unknown key,
/// an invalid value (a label key, capability or ``gpu_type`` over 256 bytes, a label value
/// over 16 KiB, more than 1024 labels or capabilities: no worker holds them), an int beyond
/// 64 bits, or nesting deeper than a requirement has.
#[pyclass(frozen, eq, from_py_object, name = "Demand", module = "hodei_workers")]
#[derive(Clone, PartialEq)]
pub(crate) struct PyDemand {
    pub(crate) inner: core::Demand,
}

#[pymethods]
impl PyDemand {
    #[new]
    #[pyo3(signature = (requirements=None))]
    fn new(py: Python<'_>, requirements: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut demand = core::Demand::new();
        if let Some(items) = requirements {
            if items.is_instance_of::<PyString>() || items.is_instance_of::<PyDict>() {
                return Err(PyTypeError::new_err(
                    "requirements must be a list of dicts (one per kind of job)",
                ));
            }
            let json = json_module(py)?;
            for (index, item) in calls::iterate(items)?.enumerate() {
                demand.push(requirement_from_py(py, json, &*item?, index)?);
            }
        }
        Ok(PyDemand { inner: demand })
    }

    /// The requirements, as dicts (every key present).
    #[getter]
    fn requirements(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let text = serde_json::to_string(&self.inner)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        let loaded =
            calls::call_method(json_module(py)?, "loads", &(text,).into_pyobject(py)?, None)?;
        Ok(loaded.into_bound().unbind())
    }

    /// Pending jobs in all.
    #[getter]
    fn total(&self) -> usize {
        self.inner.total()
    }

    /// The demand as JSON text.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> PyResult<String> {
        Ok(format!("Demand({})", self.to_json()?))
    }
}

/// One kind of worker the manager scales: workers of ``provider_id`` made from ``template``
/// (a WorkerSpec; the manager adds the label ``hodei.pool=<name>``), ``min_ready`` idle ones
/// kept warm, at most ``max_workers`` (None: only the manager's global cap), tried before pools
/// of lower ``priority`` when several satisfy a demand, with its own cooldowns (float seconds
/// or timedelta; 10 s and 60 s by default).
///
/// Raises InvalidArgumentError for a bad name (1..=64 letters, digits, ``-_.``),
/// ``min_ready > max_workers``, a ``priority`` outside a 32-bit signed int, or a template that
/// sets ``hodei.pool`` itself; TypeError for a bool where a number is expected.
#[pyclass(
    frozen,
    eq,
    hash,
    from_py_object,
    name = "Pool",
    module = "hodei_workers"
)]
#[derive(Clone, PartialEq)]
pub(crate) struct PyPool {
    pub(crate) inner: core::Pool,
}

impl Hash for PyPool {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.name.hash(state);
        self.inner.provider_id.hash(state);
        self.inner.priority.hash(state);
    }
}

#[pymethods]
impl PyPool {
    #[new]
    #[pyo3(signature = (name, provider_id, template, *, min_ready=Int(0), max_workers=None,
        priority=Int(0), scale_up_cooldown=None, scale_down_cooldown=None),
        text_signature = "(name, provider_id, template, *, min_ready=0, max_workers=None, \
                          priority=0, scale_up_cooldown=None, scale_down_cooldown=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &Bound<'_, PyString>,
        provider_id: &Bound<'_, PyString>,
        template: PyWorkerSpec,
        min_ready: Int,
        max_workers: Option<Int>,
        priority: Int,
        scale_up_cooldown: Option<Seconds>,
        scale_down_cooldown: Option<Seconds>,
    ) -> PyResult<Self> {
        let name = convert::text(name, "name")?;
        let provider = convert::provider_id(provider_id, "provider_id")?;
        let priority = i32::try_from(priority.0).map_err(|_| {
            invalid(
                py,
                format!(
                    "priority must be in {}..={}, got {}",
                    i32::MIN,
                    i32::MAX,
                    priority.0
                ),
            )
        })?;
        let min_ready = convert::count(py, min_ready.0, "min_ready")?;
        let max_workers = match max_workers {
            Some(n) => convert::count(py, n.0, "max_workers")?,
            None => usize::MAX,
        };
        let mut pool = core::Pool::new(name, provider, Arc::clone(&template.inner))
            .or_raise(py)?
            .with_min_ready(min_ready)
            .with_max_workers(max_workers)
            .with_priority(priority);
        if let Some(s) = scale_up_cooldown {
            pool.scale_up_cooldown = s.0;
        }
        if let Some(s) = scale_down_cooldown {
            pool.scale_down_cooldown = s.0;
        }
        pool.validate().or_raise(py)?;
        Ok(PyPool { inner: pool })
    }

    /// The pool's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name.clone()
    }

    /// Its provider's id.
    #[getter]
    fn provider_id(&self) -> String {
        self.inner.provider_id.to_string()
    }

    /// What its workers are made from (without the pool label).
    #[getter]
    fn template(&self) -> PyWorkerSpec {
        PyWorkerSpec {
            inner: Arc::clone(&self.inner.template),
        }
    }

    /// Idle workers kept warm.
    #[getter]
    fn min_ready(&self) -> usize {
        self.inner.min_ready
    }

    /// The pool's cap, or None (only the manager's global cap).
    #[getter]
    fn max_workers(&self) -> Option<usize> {
        (self.inner.max_workers != usize::MAX).then_some(self.inner.max_workers)
    }

    /// Higher first.
    #[getter]
    fn priority(&self) -> i32 {
        self.inner.priority
    }

    /// Minimum time between two automatic scale-ups of the pool (float seconds).
    #[getter]
    fn scale_up_cooldown(&self) -> f64 {
        convert::duration_secs(self.inner.scale_up_cooldown)
    }

    /// Minimum time after a scaling action of the pool before it scales down (float seconds).
    #[getter]
    fn scale_down_cooldown(&self) -> f64 {
        convert::duration_secs(self.inner.scale_down_cooldown)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Pool({}, {}, min_ready={}, max_workers={}, priority={})",
            py_repr(py, self.inner.name.clone())?,
            py_repr(py, self.inner.provider_id.to_string())?,
            self.inner.min_ready,
            py_repr(py, self.max_workers())?,
            self.inner.priority
        ))
    }
}

report_class! {
    /// Jobs of a requirement no pool will ever run, and which constraint no pool meets.
    Unschedulable(core::Unschedulable) {
        /// Index of the requirement in the demand (past its end, a Replacement's).
        requirement: |c, py| c.requirement,
        /// Jobs affected.
        count: |c, py| c.count,
        /// The requirement, compactly (``gpu=h100,arm64``).
        description: |c, py| c.description.clone(),
        /// Why (``no pool offers label gpu=h100``).
        reason: |c, py| c.reason.clone(),
    }

    /// Jobs of interrupted workers of a pool that a tick replaces: their requirement (the
    /// pool's template; for workers no pool of the manager owns, what they offered), added
    /// after the demand's, has an index of its own.
    Replacement(core::Replacement) {
        /// Index of the requirement in the plan: the demand's length plus the position in
        /// PoolPlan.replacements.
        requirement: |c, py| c.requirement,
        /// The pool of the interrupted workers (a pool the manager no longer has, or empty
        /// for workers of no pool).
        pool: |c, py| c.pool.clone(),
        /// Jobs to replace.
        count: |c, py| c.count,
        /// The requirement, compactly (``gpu=a100,amd64,cpu>=16``).
        description: |c, py| c.description.clone(),
    }

    /// Jobs of a schedulable requirement left without capacity for now (every pool that
    /// satisfies it is blocked or full).
    UnmetDemand(core::UnmetDemand) {
        /// Index of the requirement in the demand (past its end, a Replacement's).
        requirement: |c, py| c.requirement,
        /// Jobs without capacity.
        count: |c, py| c.count,
        /// Why, pool by pool.
        reason: |c, py| c.reason.clone(),
    }

    /// What a pool's workers do for one requirement of the demand.
    Serving(core::Serving) {
        /// Index of the requirement in the demand (past its end, a Replacement's).
        requirement: |c, py| c.requirement,
        /// Jobs served by the pool's existing capacity.
        existing: |c, py| c.existing,
        /// New workers wanted for it (before the caps).
        wanted: |c, py| c.wanted,
        /// New workers provisioned for it now.
        provisioned: |c, py| c.provisioned,
    }

    /// Demand passed over by a pool that could not provide, to the pool that takes it.
    Spill(core::Spill) {
        /// Index of the requirement in the demand (past its end, a Replacement's).
        requirement: |c, py| c.requirement,
        /// The pool passed over.
        source: |c, py| c.source.clone(),
        /// The pool that takes it.
        target: |c, py| c.target.clone(),
        /// Jobs spilled.
        count: |c, py| c.count,
        /// Why ``from`` could not provide (``backed off 40 s``, ``at max_workers 4``).
        reason: |c, py| c.reason.clone(),
    }

    /// One pool's scaling decision with its inputs.
    PoolDecision(core::PoolDecision) {
        /// The pool.
        pool: |c, py| c.pool.clone(),
        /// Its provider's id.
        provider_id: |c, py| c.provider_id.as_ref().map(ToString::to_string),
        /// Its priority.
        priority: |c, py| c.priority,
        /// Jobs it serves (from existing capacity and new workers).
        demand: |c, py| c.demand,
        /// Idle READY workers of the pool.
        ready: |c, py| c.ready,
        /// BUSY workers of the pool.
        busy: |c, py| c.busy,
        /// CREATING + CONNECTING workers of the pool.
        starting: |c, py| c.starting,
        /// Provisions in flight of the pool's spec, whoever asked (its tick, or the host's own
        /// provision_worker).
        in_flight: |c, py| c.in_flight,
        /// Registered workers of the pool plus provisions in flight.
        total: |c, py| c.total,
        /// The pool's max_workers.
        max_workers: |c, py| c.max_workers,
        /// The pool's min_ready.
        min_ready: |c, py| c.min_ready,
        /// New workers wanted before the caps.
        wanted: |c, py| c.wanted,
        /// Workers provisioned now.
        provision: |c, py| c.provision,
        /// Of ``provision``, those for the warm pool (min_ready).
        warm: |c, py| c.warm,
        /// Per requirement served (a list of Serving).
        serves: |c, py| list::<_, Serving>(&c.serves),
        /// Idle workers retired now.
        retire: |c, py| c.retire,
        /// Which ones (ids), longest idle first.
        scale_down: |c, py| c.scale_down.iter().map(ToString::to_string).collect::<Vec<_>>(),
        /// Why it cannot provide now: ``"backed_off"``, ``"no_capacity"``,
        /// ``"no_provider"``, or None (the explanation line says for how long).
        blocked: |c, py| c.blocked.as_ref().map(|b| match b {
            core::PoolBlock::BackedOff { .. } => "backed_off",
            core::PoolBlock::NoCapacity { .. } => "no_capacity",
            core::PoolBlock::NoProvider => "no_provider",
        }),
        /// Demand it took from pools that could not provide (a list of Spill).
        spilled_in: |c, py| list::<_, Spill>(&c.spilled_in),
        /// Demand it passed to other pools (a list of Spill).
        spilled_out: |c, py| list::<_, Spill>(&c.spilled_out),
        /// Demand it takes back from lower-priority pools whose idle workers served it, now
        /// that it can provide (a list of Spill; ``source`` gives it back).
        taken_back: |c, py| list::<_, Spill>(&c.taken_back),
        /// Demand it gives back to a higher-priority pool that can provide again (a list of
        /// Spill; its idle workers keep serving until the taker's new workers are up, then
        /// retire as surplus).
        given_back: |c, py| list::<_, Spill>(&c.given_back),
        /// What limited it.
        limits: |c, py| c.limits.clone(),
        /// One line with its inputs.
        explanation: |c, py| c.explanation.clone(),
    }

    /// The decision over every pool: ``LifecycleManager.plan_pools(demand)``, and
    /// ``TickReport.pools`` of a tick with pools.
    PoolPlan(core::PoolPlan) {
        /// When it was computed (float seconds since the epoch).
        at: |c, py| convert::seconds(c.at),
        /// The jobs of every requirement planned, unschedulable ones included: the demand's
        /// and, in a tick, one per job of an interrupted worker that needs a replacement
        /// (``replacements``). So a tick's may exceed its ``TickReport.pending_jobs``, which
        /// counts the host's demand only; from ``plan_pools`` it is the demand's total.
        pending_jobs: |c, py| c.pending_jobs,
        /// Every registered worker plus provisions in flight (in a pool or not).
        total: |c, py| c.total,
        /// The global max_workers.
        max_workers: |c, py| c.max_workers,
        /// One PoolDecision per pool, highest priority first.
        pools: |c, py| list::<_, PoolDecision>(&c.pools),
        /// Requirements no pool satisfies.
        unschedulable: |c, py| list::<_, Unschedulable>(&c.unschedulable),
        /// Demand waiting for capacity (a list of UnmetDemand).
        unmet: |c, py| list::<_, UnmetDemand>(&c.unmet),
        /// The requirements a tick added after the demand's for the replacements of
        /// interrupted workers (a list of Replacement; empty from plan_pools): a requirement
        /// index at or past the demand's length is one of these.
        replacements: |c, py| list::<_, Replacement>(&c.replacements),
        /// One line per pool, then per unschedulable and waiting requirement.
        explanation: |c, py| c.explanation.clone(),
    }
}

/// Adds the pool classes, and the constant ``POOL_LABEL``, to the module.
pub(crate) fn add_pool_classes(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("POOL_LABEL", core::POOL_LABEL)?;
    json_module(m.py())?;
    m.add_class::<PyDemand>()?;
    m.add_class::<PyPool>()?;
    m.add_class::<Unschedulable>()?;
    m.add_class::<UnmetDemand>()?;
    m.add_class::<Replacement>()?;
    m.add_class::<Serving>()?;
    m.add_class::<Spill>()?;
    m.add_class::<PoolDecision>()?;
    m.add_class::<PoolPlan>()?;
    Ok(())
}
