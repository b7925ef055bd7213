//! `LifecycleConfig`: the manager's configuration, read and written through the core's serde
//! form (the constructor's keywords are its fields).

use std::hash::{Hash, Hasher};

use hodei_workers::WorkerLifecycleConfig;
use pyo3::prelude::*;

use crate::convert;
use crate::errors::{invalid, OrRaise};

/// The manager's timeouts, limits and scaling policy. Immutable; validated on construction
/// (InvalidArgumentError naming the field). Every argument is keyword-only and named as in the
/// core's JSON form (``to_json()``); None (or leaving it out) takes the default. Durations are
/// float seconds or ``timedelta``; a bool where a number is expected is a TypeError.
///
/// Defaults: heartbeat_timeout 60 s, health_check_interval 30 s, startup_timeout 300 s,
/// min_ready_workers 1, max_workers 10, scale_up_threshold 5, scale_down_threshold 3,
/// scale_up_cooldown 10 s, scale_down_cooldown 60 s, max_provision_per_tick 5,
/// max_actions_per_tick 100 (each orphan destroy of the tick's own reconcile counts; the host's
/// ``reconcile()`` is not capped), destroy_retry_initial 1 s, destroy_retry_max 300 s,
/// provider_backoff_initial 5 s, provider_backoff_max 300 s, max_unhealthy_fraction 0.55
/// and unhealthy_floor 1 (the brake; it also guards the ticks' reconcile: a provider's listing
/// that would expire more of its workers as vanished expires none of them, one that shows
/// more instances no record knows than its records allow destroys none of them, and the host's
/// ``reconcile()`` is not braked), max_mass_expiry_hold 300 s (the brake's bound: held continuously longer
/// than this, it lets go and the silent workers are declared unhealthy; 0 is refused),
/// reconcile_interval 600 s (how often the leader's ``tick`` runs ``reconcile()`` by itself,
/// counted from the last complete reconcile, so that orphan instances that appear later are
/// destroyed on a host that only ticks; 0 disables it; a tick's reconcile that could not list
/// every provider runs again after destroy_retry_initial, doubling up to reconcile_interval).
#[pyclass(frozen, eq, hash, name = "LifecycleConfig", module = "hodei_workers")]
#[derive(Clone, PartialEq)]
pub(crate) struct PyLifecycleConfig {
    pub(super) inner: WorkerLifecycleConfig,
}

impl Hash for PyLifecycleConfig {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Equal configurations serialise identically (fixed field order; the fraction is
        // validated into (0, 1], so no -0.0), which makes the JSON text a faithful hash key.
        serde_json::to_string(&self.inner)
            .unwrap_or_default()
            .hash(state);
    }
}

/// The configuration's fields and values as the core's serde form has them (the schema the
/// constructor reads, so a field added to the core is accepted here without a change).
fn config_fields(config: &WorkerLifecycleConfig) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        // A struct always serialises to an object.
        _ => serde_json::Map::new(),
    }
}

/// A keyword argument of `LifecycleConfig(...)` as JSON, for the core's deserialiser: numbers,
/// `timedelta` (as seconds), bools and strings go through as what they are (serde then refuses
/// what the field cannot take); an int beyond 64 bits is out of range for every field.
fn config_value(py: Python<'_>, key: &str, obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    use pyo3::types::{PyBool, PyFloat, PyInt, PyString};
    use serde_json::Value;
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(Value::from(v));
        }
        if let Ok(v) = obj.extract::<u64>() {
            return Ok(Value::from(v));
        }
        return Err(invalid(
            py,
            format!("config.{key} is out of range: {}", convert::shown(obj)?),
        ));
    }
    let secs: f64 = if obj.is_instance_of::<PyFloat>() {
        obj.extract()?
    } else if let Ok(s) = obj.cast::<PyString>() {
        let text = convert::text(s, format_args!("config.{key}"))?;
        return Ok(Value::String(text.to_owned()));
    } else if let Some(secs) = convert::timedelta_secs(obj)? {
        // Its seconds, read by the core as a number's: a negative one is refused naming the
        // field (an InvalidArgumentError, as `-1` is), and what the caller's `total_seconds`
        // raised (Ctrl-C, say) goes through as it is.
        secs
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "config.{key} must be a number (or a timedelta for a duration), not {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        )));
    };
    serde_json::Number::from_f64(secs)
        .map(Value::Number)
        .ok_or_else(|| invalid(py, format!("config.{key} must be finite, got {secs}")))
}

macro_rules! config_getters {
    (durations: [$($d:ident),*], counts: [$($n:ident),*], fractions: [$($f:ident),*]) => {
        #[pymethods]
        impl PyLifecycleConfig {
            $(
                #[doc = concat!("``", stringify!($d), "`` in float seconds.")]
                #[getter]
                fn $d(&self) -> f64 {
                    convert::duration_secs(self.inner.$d)
                }
            )*

            $(
                #[doc = concat!("``", stringify!($n), "``.")]
                #[getter]
                fn $n(&self) -> usize {
                    self.inner.$n
                }
            )*

            $(
                #[doc = concat!("``", stringify!($f), "`` (a fraction in (0, 1]).")]
                #[getter]
                fn $f(&self) -> f64 {
                    self.inner.$f
                }
            )*

            /// A configuration; see the class docstring for the fields and defaults.
            ///
            /// Each keyword is a field of the core's serde form: the core's deserialiser reads it (so
            /// its defaults, types and ranges rule), then ``validate()`` checks the whole.
            #[new]
            #[pyo3(signature = (**fields))]
            fn new(py: Python<'_>, fields: Option<&Bound<'_, pyo3::types::PyDict>>) -> PyResult<Self> {
                let mut map = config_fields(&WorkerLifecycleConfig::default());
                for (key, value) in fields.into_iter().flat_map(|f| f.iter()) {
                    // A keyword is a str; one that is not text (a lone surrogate) is no field.
                    let name = key.cast::<pyo3::types::PyString>()?.to_str().ok();
                    let Some(key) = name.filter(|k| map.contains_key(*k)).map(str::to_owned) else {
                        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                            "LifecycleConfig() got an unexpected keyword argument {}",
                            convert::shown(&key)?
                        )));
                    };
                    if value.is_none() {
                        continue;
                    }
                    let json = config_value(py, &key, &value)?;
                    // One field at a time, so that an error names the field it is about.
                    let mut trial = map.clone();
                    trial.insert(key.clone(), json.clone());
                    serde_json::from_value::<WorkerLifecycleConfig>(serde_json::Value::Object(trial))
                        .map_err(|e| convert::serde_error(py, format_args!("config.{key}"), &e))?;
                    map.insert(key, json);
                }
                let inner: WorkerLifecycleConfig =
                    serde_json::from_value(serde_json::Value::Object(map))
                        .map_err(|e| convert::serde_error(py, "config.*", &e))?;
                inner.validate().or_raise(py)?;
                Ok(PyLifecycleConfig { inner })
            }

            /// The configuration as JSON text (durations in seconds): the form the constructor's
            /// keywords follow.
            fn to_json(&self) -> PyResult<String> {
                serde_json::to_string(&self.inner)
                    .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
            }

            /// A field of the core's serde form without a typed getter above (one added in the
            /// core since), as its JSON value (a duration in seconds). The constructor already
            /// takes it; tests/python/test_schema.py fails until it has its getter and stub.
            fn __getattr__(
                &self,
                py: Python<'_>,
                name: &Bound<'_, pyo3::types::PyString>,
            ) -> PyResult<Py<PyAny>> {
                crate::lifecycle::serde_attribute(py, "LifecycleConfig", name, || {
                    Ok(config_fields(&self.inner))
                })
            }

            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                let mut parts = Vec::new();
                for key in config_fields(&slf.get().inner).keys() {
                    parts.push(format!("{key}={}", slf.getattr(key.as_str())?.repr()?));
                }
                Ok(format!("LifecycleConfig({})", parts.join(", ")))
            }
        }
    };
}

config_getters!(
    durations: [
        heartbeat_timeout, health_check_interval, startup_timeout, scale_up_cooldown,
        scale_down_cooldown, destroy_retry_initial, destroy_retry_max, provider_backoff_initial,
        provider_backoff_max, max_mass_expiry_hold, reconcile_interval
    ],
    counts: [
        min_ready_workers, max_workers, scale_up_threshold, scale_down_threshold,
        max_provision_per_tick, max_actions_per_tick, unhealthy_floor
    ],
    fractions: [max_unhealthy_fraction]
);
