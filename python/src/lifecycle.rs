//! The lifecycle engine from Python: `LifecycleConfig`, `LifecycleManager` and the report
//! classes its operations return (`TickReport`, `HealthCheckResult`, …).
//!
//! The reports are frozen views of the core's plain-data reports: ids as str, timestamps as
//! float seconds since the epoch, states and reasons as the enum members. Each has `to_json()`
//! for logs.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use hodei_workers::{self as core, WorkerLifecycleConfig, WorkerLifecycleManager, WorkerRegistry};
use pyo3::prelude::*;
use pyo3::BoundObject;
use pyo3::{PyTraverseError, PyVisit};

use crate::convert::{self, Int, Seconds};
use crate::errors::{invalid, run, OrRaise};
use crate::provider::{take_interrupt, ProviderObject, PythonProvider};
use crate::registry::PyRegistry;
use crate::types::{py_repr, PyRegistryStats, PyWorker, PyWorkerSpec};

pub(crate) fn to_py<'py, T>(py: Python<'py>, value: T) -> PyResult<Py<PyAny>>
where
    T: IntoPyObject<'py>,
    PyErr: From<T::Error>,
{
    Ok(value.into_pyobject(py)?.into_any().unbind())
}

fn ids<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

pub(crate) fn list<C: Clone, P: From<C>>(items: &[C]) -> Vec<P> {
    items.iter().cloned().map(P::from).collect()
}

macro_rules! report_class {
    ($(
        $(#[doc = $doc:literal])*
        $Name:ident($Core:path) {
            $( $(#[doc = $fdoc:literal])* $field:ident: |$c:ident, $py:ident| $conv:expr ),* $(,)?
        }
    )*) => {$(
        $(#[doc = $doc])*
        #[pyclass(frozen, eq, module = "hodei_workers")]
        #[derive(Clone, PartialEq)]
        pub(crate) struct $Name {
            inner: $Core,
        }

        impl From<$Core> for $Name {
            fn from(inner: $Core) -> Self {
                $Name { inner }
            }
        }

        impl $Name {
            /// Never called: an exhaustive pattern over the core struct, so that a field added
            /// to the core's report fails this build until the class has its getter (issue 10
            /// item 13; tests/python/test_schema.py checks the serde names at run time).
            #[allow(dead_code)]
            fn every_core_field_has_a_getter(core: &$Core) {
                let $Core { $($field: _,)* } = core;
            }
        }

        #[pymethods]
        impl $Name {
            $(
                $(#[doc = $fdoc])*
                #[getter]
                #[allow(unused_variables)]
                fn $field(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                    let $c = &self.inner;
                    let $py = py;
                    to_py(py, $conv)
                }
            )*

            /// The report as JSON text (ids as str, timestamps in milliseconds since the
            /// epoch), for logs.
            fn to_json(&self) -> PyResult<String> {
                // Serialising plain data cannot fail; say so if it ever does.
                serde_json::to_string(&self.inner)
                    .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
            }

            fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
                let parts: Vec<String> = vec![$(
                    format!("{}={}", stringify!($field), self.$field(py)?.bind(py).repr()?),
                )*];
                Ok(format!("{}({})", stringify!($Name), parts.join(", ")))
            }
        }
    )*};
}

pub(crate) use report_class;

report_class! {
    /// A job that was running on a worker taken out of service: requeue it.
    LostJob(core::LostJob) {
        /// The worker that held it.
        worker_id: |c, py| c.worker_id.to_string(),
        /// The job.
        job_id: |c, py| c.job_id.to_string(),
    }

    /// A worker declared unhealthy by a health check.
    UnhealthyWorker(core::UnhealthyWorker) {
        /// The worker.
        worker_id: |c, py| c.worker_id.to_string(),
        /// Its provider.
        provider_id: |c, py| c.provider_id.to_string(),
        /// The WorkerState it was in.
        state: |c, py| convert::state_to_py(py, c.state)?,
        /// TerminationReason.UNHEALTHY (heartbeat deadline) or STARTUP_TIMEOUT (never READY).
        reason: |c, py| convert::reason_to_py(py, c.reason)?,
        /// Its last heartbeat (float seconds since the epoch).
        last_heartbeat: |c, py| convert::seconds(c.last_heartbeat),
    }

    /// A worker whose instance the provider confirmed destroyed and whose record left the
    /// registry.
    TerminatedWorker(core::TerminatedWorker) {
        /// The worker.
        worker_id: |c, py| c.worker_id.to_string(),
        /// Its provider.
        provider_id: |c, py| c.provider_id.to_string(),
        /// The provider's instance id.
        resource_id: |c, py| c.resource_id.clone(),
        /// Why (a TerminationReason).
        reason: |c, py| convert::reason_to_py(py, c.reason)?,
    }

    /// A destroy the provider failed: the worker stays TERMINATING and is retried with
    /// back-off (no instance is leaked).
    DestroyFailure(core::DestroyFailure) {
        /// The worker.
        worker_id: |c, py| c.worker_id.to_string(),
        /// Its provider.
        provider_id: |c, py| c.provider_id.to_string(),
        /// The provider's instance id.
        resource_id: |c, py| c.resource_id.clone(),
        /// What went wrong (for a Python provider: the exception's type and message).
        error: |c, py| c.error.clone(),
        /// Failed attempts so far.
        attempts: |c, py| c.attempts,
        /// When the next attempt is due (float seconds since the epoch).
        next_retry_at: |c, py| convert::seconds(c.next_retry_at),
    }

    /// A worker the manager asked a provider for (registered in CREATING).
    ProvisionedWorker(core::ProvisionedWorker) {
        /// The new worker.
        worker_id: |c, py| c.worker_id.to_string(),
        /// Its provider.
        provider_id: |c, py| c.provider_id.to_string(),
        /// The provider's instance id.
        resource_id: |c, py| c.resource_id.clone(),
    }

    /// A create the provider failed (for a Python provider: it raised).
    ProvisionFailure(core::ProvisionFailure) {
        /// The provider.
        provider_id: |c, py| c.provider_id.to_string(),
        /// ``"failed"``, ``"not_found"``, ``"unsupported"`` or ``"panicked"``.
        kind: |c, py| c.kind.as_str(),
        /// What went wrong.
        error: |c, py| c.error.clone(),
        /// Consecutive failures of this provider so far.
        consecutive_failures: |c, py| c.consecutive_failures,
        /// Until when automatic provisioning from it is suspended (float seconds).
        backoff_until: |c, py| convert::seconds(c.backoff_until),
    }

    /// A provider that automatic provisioning leaves alone after consecutive failures.
    ProviderBackoff(core::ProviderBackoff) {
        /// The provider.
        provider_id: |c, py| c.provider_id.to_string(),
        /// Consecutive create failures.
        consecutive_failures: |c, py| c.consecutive_failures,
        /// When it may be asked again (float seconds since the epoch).
        until: |c, py| convert::seconds(c.until),
    }

    /// The brake's counts: too many workers under heartbeat watch were silent at once (most
    /// likely a partition on the host's side), so none was declared unhealthy for its
    /// heartbeat.
    MassExpiryHold(core::MassExpiryHold) {
        /// How many are past their heartbeat deadline now (held back).
        would_expire: |c, py| c.would_expire,
        /// How many are silent for more than half the heartbeat timeout: the brake's count (at
        /// least would_expire).
        suspect: |c, py| c.suspect,
        /// Workers under heartbeat watch (CONNECTING, READY, BUSY, DRAINING).
        live: |c, py| c.live,
        /// The most that may be silent at once: max(unhealthy_floor, floor(fraction * live)).
        allowed: |c, py| c.allowed,
    }

    /// The brake gave up: it had held continuously for longer than max_mass_expiry_hold, so
    /// the silent workers were declared unhealthy after all (most of the fleet really died).
    MassExpiryGiveUp(core::MassExpiryGiveUp) {
        /// How long the brake had held (float seconds), from the first check that held.
        held_for: |c, py| convert::seconds(c.held_for),
        /// The counts the brake would have held with now (a MassExpiryHold).
        hold: |c, py| MassExpiryHold::from(c.hold),
    }

    /// What ``run_health_check`` found and did.
    HealthCheckResult(core::HealthCheckResult) {
        /// When it ran (float seconds since the epoch).
        checked_at: |c, py| convert::seconds(c.checked_at),
        /// Workers declared unhealthy (list of UnhealthyWorker).
        unhealthy: |c, py| list::<_, UnhealthyWorker>(&c.unhealthy),
        /// Jobs they held: requeue them (list of LostJob).
        lost_jobs: |c, py| list::<_, LostJob>(&c.lost_jobs),
        /// Unhealthy workers destroyed and unregistered.
        terminated: |c, py| list::<_, TerminatedWorker>(&c.terminated),
        /// Destroys that failed (retried later).
        failed: |c, py| list::<_, DestroyFailure>(&c.failed),
        /// Set when the mass-expiry brake held (a MassExpiryHold), else None: no worker was
        /// declared unhealthy for its heartbeat (startup expiries still were).
        held: |c, py| c.held.map(MassExpiryHold::from),
        /// Workers due but left for later because of the per-tick action cap.
        deferred: |c, py| c.deferred,
        /// The brake held at the previous check and lets go now: every worker got a fresh
        /// grace period.
        brake_released: |c, py| c.brake_released,
        /// Set when the brake gave up in this check (a MassExpiryGiveUp), else None: the
        /// silent workers past their deadline are in ``unhealthy``, without a grace period.
        brake_gave_up: |c, py| c.brake_gave_up.map(MassExpiryGiveUp::from),
    }

    /// What ``cleanup_workers`` (and ``terminate_worker``) did.
    CleanupResult(core::CleanupResult) {
        /// Workers destroyed and unregistered, with the reason.
        terminated: |c, py| list::<_, TerminatedWorker>(&c.terminated),
        /// Busy workers past their lifetime moved to DRAINING (ids).
        drained: |c, py| ids(&c.drained),
        /// Destroys that failed: those workers stay TERMINATING and are retried.
        failed: |c, py| list::<_, DestroyFailure>(&c.failed),
        /// Jobs lost by workers taken out of service: requeue them.
        lost_jobs: |c, py| list::<_, LostJob>(&c.lost_jobs),
        /// Work left for later because of the per-tick action cap.
        deferred: |c, py| c.deferred,
    }

    /// The autoscaler's decision with its inputs; ``explanation`` says it in one line.
    ScalingPlan(core::ScalingPlan) {
        /// When it was computed (float seconds since the epoch).
        at: |c, py| convert::seconds(c.at),
        /// Jobs waiting, as told by the host.
        pending_jobs: |c, py| c.pending_jobs,
        /// Idle READY workers.
        ready: |c, py| c.ready,
        /// BUSY workers.
        busy: |c, py| c.busy,
        /// CREATING + CONNECTING workers: capacity on its way.
        starting: |c, py| c.starting,
        /// Provider calls in flight: capacity on its way.
        in_flight: |c, py| c.in_flight,
        /// Registered workers plus those in flight: what counts against max_workers.
        total: |c, py| c.total,
        /// Workers wanted beyond what is ready or on its way.
        wanted: |c, py| c.wanted,
        /// Workers to provision now, after the caps.
        provision: |c, py| c.provision,
        /// Idle READY workers to retire now, longest idle first (ids).
        scale_down: |c, py| ids(&c.scale_down),
        /// What limited the decision, if anything (e.g. ``"max_workers 10"``).
        limits: |c, py| c.limits.clone(),
        /// One line explaining the decision with its inputs.
        explanation: |c, py| c.explanation.clone(),
    }

    /// Everything one ``tick`` did, and why. ``decisions`` explains it in words.
    TickReport(core::TickReport) {
        /// When it ran (float seconds since the epoch).
        at: |c, py| convert::seconds(c.at),
        /// Pending jobs as told by the host.
        pending_jobs: |c, py| c.pending_jobs,
        /// The length of the host's pause (float seconds) when the previous tick was longer
        /// ago than heartbeat_timeout: every worker got a fresh grace period. Else None.
        stall_grace: |c, py| c.stall_grace.map(convert::seconds),
        /// Whether the health check ran in this tick (every health_check_interval).
        health_checked: |c, py| c.health_checked,
        /// Workers declared unhealthy.
        unhealthy: |c, py| list::<_, UnhealthyWorker>(&c.unhealthy),
        /// Jobs lost by workers taken out of service: requeue them.
        lost_jobs: |c, py| list::<_, LostJob>(&c.lost_jobs),
        /// Set when the mass-expiry brake held (a MassExpiryHold), else None.
        mass_expiry_held: |c, py| c.mass_expiry_held.map(MassExpiryHold::from),
        /// The brake let go in this tick: every worker got a fresh grace period.
        brake_released: |c, py| c.brake_released,
        /// Set when the brake gave up in this tick (a MassExpiryGiveUp), else None: the silent
        /// workers were declared unhealthy after all.
        brake_gave_up: |c, py| c.brake_gave_up.map(MassExpiryGiveUp::from),
        /// Workers destroyed and unregistered.
        terminated: |c, py| list::<_, TerminatedWorker>(&c.terminated),
        /// Destroys that failed (retried later with back-off).
        failed: |c, py| list::<_, DestroyFailure>(&c.failed),
        /// Workers moved to DRAINING (ids).
        drained: |c, py| ids(&c.drained),
        /// Workers provisioned.
        provisioned: |c, py| list::<_, ProvisionedWorker>(&c.provisioned),
        /// Creates that failed (a provider that raised shows here).
        provision_failures: |c, py| list::<_, ProvisionFailure>(&c.provision_failures),
        /// Providers backing off after consecutive create failures.
        provider_backoff: |c, py| list::<_, ProviderBackoff>(&c.provider_backoff),
        /// The scaling decision (None when no scaling target is set, or pools are set).
        scaling: |c, py| c.scaling.clone().map(ScalingPlan::from),
        /// The pools' decisions (a PoolPlan) when pools are set, else None.
        pools: |c, py| c.pools.clone().map(crate::pools::PoolPlan::from),
        /// Pending jobs no pool (or, without pools, the scaling target's spec) can ever run,
        /// with the reason (a list of Unschedulable).
        unschedulable: |c, py| list::<_, crate::pools::Unschedulable>(&c.unschedulable),
        /// Lines explaining the decisions taken (scaling, brake, stall, cap, errors).
        decisions: |c, py| c.decisions.clone(),
        /// Actions performed (state changes and provider calls).
        actions: |c, py| c.actions,
        /// Whether the action cap stopped this tick early (the next ticks do the rest).
        capped: |c, py| c.capped,
        /// Whether another thread was ticking, so this call did nothing.
        skipped: |c, py| c.skipped,
        /// Whether this manager leads (a follower's tick does nothing but try for the lease).
        leading: |c, py| c.leading,
        /// The leader as last seen (a LeaderInfo: this replica when leading), or None.
        leader: |c, py| c.leader.clone().map(LeaderInfo::from),
    }

    /// Who holds a replicated manager's leadership lease: the holder's name, its term (the
    /// fencing token), since when.
    LeaderInfo(core::LeaderInfo) {
        /// The holder's name (one per replica).
        holder: |c, py| c.holder.clone(),
        /// The term it holds (grows with every change of leader).
        term: |c, py| c.term,
        /// When this holder took this term (float seconds since the epoch).
        since: |c, py| convert::seconds(c.since),
        /// When the lease expires unless renewed (float seconds), None if never.
        expires_at: |c, py| (c.expires_at != u64::MAX).then(|| convert::seconds(c.expires_at)),
    }

    /// A provider instance the registry does not know, found by ``reconcile``.
    OrphanInstance(core::OrphanInstance) {
        /// The provider.
        provider_id: |c, py| c.provider_id.to_string(),
        /// The instance id.
        resource_id: |c, py| c.resource_id.clone(),
        /// None when destroyed; the error otherwise (tried again by the next reconcile).
        error: |c, py| c.error.clone(),
    }

    /// What ``reconcile`` found and did.
    ReconcileReport(core::ReconcileReport) {
        /// When it ran (float seconds since the epoch).
        at: |c, py| convert::seconds(c.at),
        /// Providers whose instances were compared with the registry.
        checked: |c, py| ids(&c.checked),
        /// Providers without ``list_workers`` (skipped).
        unsupported: |c, py| ids(&c.unsupported),
        /// Providers whose ``list_workers`` failed, with the error (skipped).
        errors: |c, py| c.errors.iter().map(|(p, e)| (p.to_string(), e.clone())).collect::<Vec<_>>(),
        /// Instances unknown to the registry, destroyed (or attempted).
        orphans: |c, py| list::<_, OrphanInstance>(&c.orphans),
        /// Providers whose orphan check waited because a provision was in flight.
        orphan_check_skipped: |c, py| ids(&c.orphan_check_skipped),
        /// Records whose instance vanished, unregistered with reason VANISHED (ids).
        vanished: |c, py| ids(&c.vanished),
        /// Jobs lost with them: requeue them.
        lost_jobs: |c, py| list::<_, LostJob>(&c.lost_jobs),
        /// TERMINATING records now queued for destruction (e.g. after a restore).
        adopted_terminating: |c, py| ids(&c.adopted_terminating),
    }

    /// The manager's view of the fleet: the registry's counts plus its own.
    LifecycleStats(core::LifecycleStats) {
        /// The registry's counts (a RegistryStats).
        registry: |c, py| PyRegistryStats { inner: c.registry.clone() },
        /// Provider calls to create a worker in flight.
        in_flight: |c, py| c.in_flight,
        /// TERMINATING workers whose destroy is queued or being retried.
        pending_destroys: |c, py| c.pending_destroys,
        /// Registered providers.
        providers: |c, py| c.providers,
        /// Workers provisioned since the manager was made.
        provisioned_total: |c, py| c.provisioned_total,
        /// Failed creates since the manager was made.
        provision_failures_total: |c, py| c.provision_failures_total,
        /// Workers destroyed and unregistered since the manager was made.
        terminated_total: |c, py| c.terminated_total,
        /// Failed destroy attempts since the manager was made.
        destroy_failures_total: |c, py| c.destroy_failures_total,
        /// Workers declared unhealthy since the manager was made.
        unhealthy_total: |c, py| c.unhealthy_total,
        /// Jobs reported lost since the manager was made.
        lost_jobs_total: |c, py| c.lost_jobs_total,
        /// Health checks held by the mass-expiry brake since the manager was made.
        mass_expiry_holds_total: |c, py| c.mass_expiry_holds_total,
    }
}

// ---------------------------------------------------------------------------------------------

/// The manager's timeouts, limits and scaling policy. Immutable; validated on construction
/// (InvalidArgumentError naming the field). Every argument is keyword-only and named as in the
/// core's JSON form (``to_json()``); None (or leaving it out) takes the default. Durations are
/// float seconds or ``timedelta``; a bool where a number is expected is a TypeError.
///
/// Defaults: heartbeat_timeout 60 s, health_check_interval 30 s, startup_timeout 300 s,
/// min_ready_workers 1, max_workers 10, scale_up_threshold 5, scale_down_threshold 3,
/// scale_up_cooldown 10 s, scale_down_cooldown 60 s, max_provision_per_tick 5,
/// max_actions_per_tick 100, destroy_retry_initial 1 s, destroy_retry_max 300 s,
/// provider_backoff_initial 5 s, provider_backoff_max 300 s, max_unhealthy_fraction 0.55,
/// unhealthy_floor 1, max_mass_expiry_hold 300 s (the brake's bound: held continuously longer
/// than this, it lets go and the silent workers are declared unhealthy; 0 is refused).
#[pyclass(frozen, eq, hash, name = "LifecycleConfig", module = "hodei_workers")]
#[derive(Clone, PartialEq)]
pub(crate) struct PyLifecycleConfig {
    inner: WorkerLifecycleConfig,
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
            format!("config.{key} is out of range: {}", obj.repr()?),
        ));
    }
    let secs: f64 = if obj.is_instance_of::<PyFloat>() {
        obj.extract()?
    } else if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    } else {
        let Seconds(d) = obj.extract().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "config.{key} must be a number (or a timedelta for a duration), not {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        d.as_secs_f64()
    };
    serde_json::Number::from_f64(secs)
        .map(Value::Number)
        .ok_or_else(|| invalid(py, format!("config.{key} must be finite, got {secs}")))
}

/// `config.{key}: {serde's message}` as TypeError (the value's type does not fit the field) or
/// InvalidArgumentError (the type fits, the value does not).
fn config_error(py: Python<'_>, key: &str, error: serde_json::Error) -> PyErr {
    let message = error.to_string();
    // serde_json's messages carry a position in the (made-up) JSON text; it means nothing here.
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    if message.starts_with("invalid type") {
        pyo3::exceptions::PyTypeError::new_err(format!("config.{key}: {message}"))
    } else {
        invalid(py, format!("config.{key}: {message}"))
    }
}

macro_rules! config_getters {
    (durations: [$($d:ident),*], counts: [$($n:ident),*], fractions: [$($f:ident),*]) => {
        impl PyLifecycleConfig {
            /// Never called: an exhaustive pattern over the core struct, so that a field added
            /// to the core's configuration fails this build until it has its getter (the
            /// constructor and `__repr__` follow the serde schema on their own).
            #[allow(dead_code)]
            fn every_core_field_has_a_getter(core: &WorkerLifecycleConfig) {
                let WorkerLifecycleConfig { $($d: _,)* $($n: _,)* $($f: _,)* } = core;
            }
        }

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
                    let key: String = key.extract()?;
                    if !map.contains_key(&key) {
                        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                            "LifecycleConfig() got an unexpected keyword argument '{key}'"
                        )));
                    }
                    if value.is_none() {
                        continue;
                    }
                    let json = config_value(py, &key, &value)?;
                    // One field at a time, so that an error names the field it is about.
                    let mut trial = map.clone();
                    trial.insert(key.clone(), json.clone());
                    serde_json::from_value::<WorkerLifecycleConfig>(serde_json::Value::Object(trial))
                        .map_err(|e| config_error(py, &key, e))?;
                    map.insert(key, json);
                }
                let inner: WorkerLifecycleConfig =
                    serde_json::from_value(serde_json::Value::Object(map))
                        .map_err(|e| config_error(py, "*", e))?;
                inner.validate().or_raise(py)?;
                Ok(PyLifecycleConfig { inner })
            }

            /// The configuration as JSON text (durations in seconds): the form the constructor's
            /// keywords follow.
            fn to_json(&self) -> PyResult<String> {
                serde_json::to_string(&self.inner)
                    .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
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
        provider_backoff_max, max_mass_expiry_hold
    ],
    counts: [
        min_ready_workers, max_workers, scale_up_threshold, scale_down_threshold,
        max_provision_per_tick, max_actions_per_tick, unhealthy_floor
    ],
    fractions: [max_unhealthy_fraction]
);

// ---------------------------------------------------------------------------------------------

/// Runs a manager operation without the GIL, then re-raises a KeyboardInterrupt/SystemExit a
/// Python provider raised meanwhile (see `provider`). Operations that return a report go
/// through [`PyLifecycleManager::reporting`] instead, which keeps the report.
fn engine<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> core::Result<T> + Send,
{
    let result = run(py, work);
    match take_interrupt() {
        Some(interrupt) => Err(interrupt),
        None => result,
    }
}

/// Locks a mutex of the manager, recovering from poisoning (a panic cannot leave these simple
/// values half-changed).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn pending(py: Python<'_>, pending_jobs: i64) -> PyResult<usize> {
    convert::count(py, pending_jobs, "pending_jobs")
}

/// The lifecycle engine of a registry's fleet: providers, provisioning, health checks,
/// cleanup, autoscaling. Tick-driven: call ``tick(pending_jobs)`` regularly (every second, say)
/// and everything due happens inside it, on the registry's clock; the TickReport says what and
/// why. Thread-safe; the GIL is released while the engine works.
///
/// Providers are plain Python objects (see ``hodei_workers.Provider``) with ``provider_id`` and
/// ``provider_type`` (str attributes, or methods returning them),
/// ``create_worker(worker_id, spec) -> resource_id`` (or ``(resource_id, metadata)``;
/// ``worker_id`` is the new worker's id as text, made by the manager first, for the instance's
/// agent to report in with), ``destroy_worker(handle)`` (raise a LookupError when the instance
/// is already gone) and optionally ``list_workers() -> iterable of resource ids`` (for
/// ``reconcile``). A provider may keep a reference to its manager: the garbage collector sees
/// through the cycle. An exception they raise is a provider failure of the engine (in reports and
/// events), never a crash. They are called on the thread that called the manager, never while
/// the engine holds a lock.
///
/// Interrupts: a KeyboardInterrupt (or SystemExit) raised inside a provider is not a provider
/// failure. The engine finishes the operation consistently (the interrupted call counts as
/// failed), then the interrupt reaches the caller — and the report of the operation it cut
/// short (``tick``, ``run_health_check``, ``cleanup_workers``, ``terminate_worker``,
/// ``reconcile``), with the jobs it lost, is not lost: it is the exception's ``report``
/// attribute and ``manager.last_report``.
#[pyclass(frozen, weakref, name = "LifecycleManager", module = "hodei_workers")]
pub(crate) struct PyLifecycleManager {
    inner: Arc<WorkerLifecycleManager>,
    registry: Py<PyRegistry>,
    /// The report of the last operation that made one (see `last_report`).
    last_report: Mutex<Option<Py<PyAny>>>,
    /// The Python objects of the registered providers, for `__traverse__` / `__clear__`
    /// (the core holds them too, out of the garbage collector's sight).
    providers: Mutex<Vec<(core::ProviderId, ProviderObject)>>,
}

impl PyLifecycleManager {
    /// Runs an operation that makes a report (like [`engine`]), keeps the report as
    /// `last_report`, and when a provider raised an interrupt meanwhile, raises that with the
    /// report attached as its `report` attribute (issue 10 item 3: the jobs the operation lost
    /// must reach the host even on Ctrl-C).
    fn reporting<C, P, F>(&self, py: Python<'_>, work: F) -> PyResult<Py<P>>
    where
        C: Send,
        P: pyo3::PyClass + From<C> + Into<pyo3::PyClassInitializer<P>>,
        F: FnOnce() -> core::Result<C> + Send,
    {
        let result = run(py, work);
        let interrupt = take_interrupt();
        let report = match result {
            Ok(core) => Py::new(py, P::from(core))?,
            Err(error) => return Err(interrupt.unwrap_or(error)),
        };
        let previous = lock(&self.last_report).replace(report.clone_ref(py).into_any());
        // Dropped outside the lock: the last reference may run Python code.
        drop(previous);
        match interrupt {
            Some(interrupt) => {
                // An exception instance takes attributes; if this one refuses, the interrupt
                // still reaches the caller and `last_report` still has the report.
                let _ = interrupt.value(py).setattr("report", report.bind(py));
                Err(interrupt)
            }
            None => Ok(report),
        }
    }
}

#[pymethods]
impl PyLifecycleManager {
    /// A manager driving ``registry`` (it uses the registry's clock) with ``config``
    /// (LifecycleConfig() when None).
    #[new]
    #[pyo3(signature = (registry, config=None))]
    fn new(
        py: Python<'_>,
        registry: Bound<'_, PyRegistry>,
        config: Option<Bound<'_, PyLifecycleConfig>>,
    ) -> PyResult<Self> {
        let config = config.map(|c| c.get().inner.clone()).unwrap_or_default();
        let core_registry: Arc<dyn WorkerRegistry> = registry.get().inner.clone();
        let inner = WorkerLifecycleManager::new(core_registry, config).or_raise(py)?;
        Ok(PyLifecycleManager {
            inner: Arc::new(inner),
            registry: registry.unbind(),
            last_report: Mutex::new(None),
            providers: Mutex::new(Vec::new()),
        })
    }

    /// A manager that is one replica of several sharing ``registry``, named ``holder``
    /// (unique per process), on the registry's leadership lease lasting ``lease_ttl`` (float
    /// seconds or a timedelta) after each renewal: only the replica holding the lease acts,
    /// the others' ticks only try to take it (tick at least every ``lease_ttl / 3``, e.g. with
    /// ``ticker``). On a registry that is not shared between processes (the in-memory one) it
    /// is a plain manager that always leads.
    #[staticmethod]
    #[pyo3(signature = (registry, holder, lease_ttl, config=None))]
    fn replicated(
        py: Python<'_>,
        registry: Bound<'_, PyRegistry>,
        holder: &str,
        lease_ttl: Seconds,
        config: Option<Bound<'_, PyLifecycleConfig>>,
    ) -> PyResult<Self> {
        let config = config.map(|c| c.get().inner.clone()).unwrap_or_default();
        let core_registry: Arc<dyn WorkerRegistry> = registry.get().inner.clone();
        let holder = holder.to_owned();
        let inner = run(py, move || {
            WorkerLifecycleManager::replicated(core_registry, config, &holder, lease_ttl.0)
        })?;
        Ok(PyLifecycleManager {
            inner: Arc::new(inner),
            registry: registry.unbind(),
            last_report: Mutex::new(None),
            providers: Mutex::new(Vec::new()),
        })
    }

    /// The Registry the manager drives.
    #[getter]
    fn registry(&self, py: Python<'_>) -> Py<PyRegistry> {
        self.registry.clone_ref(py)
    }

    /// The configuration.
    #[getter]
    fn config(&self) -> PyLifecycleConfig {
        PyLifecycleConfig {
            inner: self.inner.config().clone(),
        }
    }

    /// Adds a provider (see the class docstring for its shape) under its ``provider_id``.
    /// Raises TypeError for an object of the wrong shape, InvalidArgumentError when a provider
    /// with that id is registered already.
    fn register_provider(&self, py: Python<'_>, provider: &Bound<'_, PyAny>) -> PyResult<()> {
        let provider = PythonProvider::new(provider)?;
        let entry = (provider.id().clone(), provider.object());
        let provider: Arc<dyn core::WorkerProvider> = Arc::new(provider);
        engine(py, || self.inner.register_provider(provider))?;
        lock(&self.providers).push(entry);
        Ok(())
    }

    /// Removes a provider. Its workers stay; their destroys retry until it is registered again.
    /// Raises ProviderNotFoundError.
    fn unregister_provider(&self, py: Python<'_>, provider_id: &str) -> PyResult<()> {
        let id = convert::provider_id(py, provider_id)?;
        engine(py, || self.inner.unregister_provider(&id))?;
        // Dropped outside the lock: the last reference may run the object's finalizer.
        let removed: Vec<_> = {
            let mut providers = lock(&self.providers);
            let (gone, kept) = providers.drain(..).partition(|(p, _)| *p == id);
            *providers = kept;
            gone
        };
        drop(removed);
        Ok(())
    }

    /// Shows the garbage collector what the manager holds: the registry, the last report, the
    /// providers' objects (held by the core, where the collector cannot see them). Takes no
    /// lock that may be held while Python code runs, and skips what is busy rather than wait.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.registry)?;
        if let Ok(last) = self.last_report.try_lock() {
            if let Some(report) = &*last {
                visit.call(report)?;
            }
        }
        if let Ok(providers) = self.providers.try_lock() {
            for (_, object) in providers.iter() {
                if let Ok(object) = object.try_lock() {
                    if let Some(object) = &*object {
                        visit.call(object)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Breaks a reference cycle through the manager (a provider holding its manager): takes the
    /// providers' objects and the last report. The references are dropped after every lock is
    /// released, since dropping them may run Python code.
    fn __clear__(&self) {
        let mut taken: Vec<Py<PyAny>> = Vec::new();
        for (_, object) in lock(&self.providers).drain(..) {
            taken.extend(lock(&object).take());
        }
        taken.extend(lock(&self.last_report).take());
        drop(taken);
    }

    /// The registered providers' ids, sorted.
    fn providers(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(ids(&engine(py, || Ok(self.inner.providers()))?))
    }

    /// Asks ``provider_id`` for a worker made from ``spec`` and registers it (in CREATING; move
    /// it on when its agent reports in). Concurrent calls never exceed max_workers.
    ///
    /// Raises ProviderNotFoundError, CapacityExceededError at max_workers (provisions in flight
    /// count), ProviderError when the provider raised.
    fn provision_worker(
        &self,
        py: Python<'_>,
        provider_id: &str,
        spec: PyWorkerSpec,
    ) -> PyResult<PyWorker> {
        let id = convert::provider_id(py, provider_id)?;
        engine(py, || self.inner.provision_worker(&id, spec.inner)).map(PyWorker::new)
    }

    /// Providers that automatic provisioning leaves alone after consecutive create failures.
    fn provider_backoff(&self, py: Python<'_>) -> PyResult<Vec<ProviderBackoff>> {
        Ok(list(&engine(py, || Ok(self.inner.provider_backoff()))?))
    }

    /// Records a worker's heartbeat (WorkerNotFoundError: tell its agent to register again).
    fn process_heartbeat(&self, py: Python<'_>, worker_id: &str) -> PyResult<()> {
        let id = convert::worker_id(py, worker_id)?;
        engine(py, || self.inner.process_heartbeat(&id))
    }

    /// Runs the health check now: workers past their heartbeat or startup deadline are
    /// declared unhealthy, their jobs reported lost, then destroyed and unregistered (unless
    /// the mass-expiry brake holds).
    fn run_health_check(&self, py: Python<'_>) -> PyResult<Py<HealthCheckResult>> {
        self.reporting(py, || self.inner.run_health_check())
    }

    /// Retires what is due now: idle and over-age workers (a busy one is drained first),
    /// drained workers without a job, and destroy retries that are due.
    fn cleanup_workers(&self, py: Python<'_>) -> PyResult<Py<CleanupResult>> {
        self.reporting(py, || self.inner.cleanup_workers())
    }

    /// Moves a worker to DRAINING: it takes no new job and is retired once its job is done.
    fn drain_worker(&self, py: Python<'_>, worker_id: &str) -> PyResult<PyWorker> {
        let id = convert::worker_id(py, worker_id)?;
        engine(py, || self.inner.drain_worker(&id)).map(PyWorker::new)
    }

    /// Kills a worker now: TERMINATING (a job it held is reported lost), destroyed by its
    /// provider, unregistered with ``reason`` (default REQUESTED). A failed destroy shows in
    /// ``failed`` and is retried by later ticks.
    #[pyo3(signature = (worker_id, reason=None))]
    fn terminate_worker(
        &self,
        py: Python<'_>,
        worker_id: &str,
        reason: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<CleanupResult>> {
        let id = convert::worker_id(py, worker_id)?;
        let reason = reason
            .map(convert::reason_from_py)
            .transpose()?
            .unwrap_or(core::TerminationReason::Requested);
        self.reporting(py, || self.inner.terminate_worker(&id, reason))
    }

    /// Destroys queued or being retried: ``(worker_id, failed_attempts, next_attempt_at)``.
    fn pending_destroys(&self, py: Python<'_>) -> PyResult<Vec<(String, u32, f64)>> {
        Ok(engine(py, || Ok(self.inner.pending_destroys()))?
            .into_iter()
            .map(|(id, attempts, at)| (id.to_string(), attempts, convert::seconds(at)))
            .collect())
    }

    /// The seed's predicate: no READY worker and jobs pending, or more than
    /// scale_up_threshold jobs pending and room under max_workers.
    fn should_scale_up(&self, py: Python<'_>, pending_jobs: Int) -> PyResult<bool> {
        let pending_jobs = pending(py, pending_jobs.0)?;
        engine(py, || Ok(self.inner.should_scale_up(pending_jobs)))
    }

    /// The seed's predicate: more than scale_down_threshold idle READY workers, and more than
    /// min_ready_workers.
    fn should_scale_down(&self, py: Python<'_>) -> PyResult<bool> {
        engine(py, || Ok(self.inner.should_scale_down()))
    }

    /// Sets what ``tick`` provisions when scaling up: workers of ``provider_id`` made from
    /// ``spec``. Without a target, tick neither provisions nor scales down.
    fn set_scaling_target(
        &self,
        py: Python<'_>,
        provider_id: &str,
        spec: PyWorkerSpec,
    ) -> PyResult<()> {
        let id = convert::provider_id(py, provider_id)?;
        engine(py, || self.inner.set_scaling_target(&id, spec.inner))
    }

    /// Removes the scaling target.
    fn clear_scaling_target(&self, py: Python<'_>) -> PyResult<()> {
        engine(py, || {
            self.inner.clear_scaling_target();
            Ok(())
        })
    }

    /// The scaling target as ``(provider_id, spec)``, or None.
    fn scaling_target(&self, py: Python<'_>) -> PyResult<Option<(String, PyWorkerSpec)>> {
        Ok(engine(py, || Ok(self.inner.scaling_target()))?
            .map(|(id, spec)| (id.to_string(), PyWorkerSpec { inner: spec })))
    }

    /// The scaling policy's decision for ``pending_jobs``, without acting on it.
    fn plan_scaling(&self, py: Python<'_>, pending_jobs: Int) -> PyResult<ScalingPlan> {
        let pending_jobs = pending(py, pending_jobs.0)?;
        engine(py, || self.inner.plan_scaling(pending_jobs)).map(ScalingPlan::from)
    }

    /// Compares the registry with each provider's ``list_workers()``: unknown instances are
    /// destroyed (orphans after a host crash), records whose instance vanished are expired
    /// with reason VANISHED.
    fn reconcile(&self, py: Python<'_>) -> PyResult<Py<ReconcileReport>> {
        self.reporting(py, || self.inner.reconcile())
    }

    /// Does whatever is due, in one call: stall grace, health check (every
    /// health_check_interval), cleanup and destroy retries, scaling toward the target for
    /// ``pending_jobs``. Never raises for the engine's own troubles (they are lines in
    /// ``decisions``); a call while another thread ticks returns at once with ``skipped``.
    ///
    /// ``pending_jobs`` is a number of jobs that need nothing in particular, or a ``Demand``
    /// (jobs by requirement, scaled over the pools).
    #[pyo3(signature = (pending_jobs=None), text_signature = "($self, pending_jobs=0)")]
    fn tick(
        &self,
        py: Python<'_>,
        pending_jobs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<TickReport>> {
        let demand = match pending_jobs {
            None => core::Demand::new(),
            Some(obj) => match obj.cast::<crate::pools::PyDemand>() {
                Ok(d) => d.get().inner.clone(),
                Err(_) => core::Demand::from(pending(py, obj.extract::<Int>()?.0)?),
            },
        };
        self.reporting(py, || Ok(self.inner.tick(demand)))
    }

    /// Replaces the pools (a list of Pool). Pools with a known name keep their cooldown
    /// clocks; pools no longer listed are removed and their workers drain (their ids are
    /// returned). While any pool is set, ``tick`` scales the pools, not the scaling target.
    /// Raises InvalidArgumentError for two pools with one name, ProviderNotFoundError for a
    /// pool whose provider is not registered; nothing changes then.
    fn set_pools(&self, py: Python<'_>, pools: Vec<crate::pools::PyPool>) -> PyResult<Vec<String>> {
        let pools: Vec<core::Pool> = pools.into_iter().map(|p| p.inner).collect();
        Ok(ids(&engine(py, || self.inner.set_pools(pools))?))
    }

    /// Adds a pool. Raises InvalidArgumentError for a name in use, ProviderNotFoundError.
    fn add_pool(&self, py: Python<'_>, pool: crate::pools::PyPool) -> PyResult<()> {
        engine(py, || self.inner.add_pool(pool.inner))
    }

    /// Removes a pool: nothing more is provisioned for it, its workers drain (their ids are
    /// returned). Raises InvalidArgumentError when no pool has that name.
    fn remove_pool(&self, py: Python<'_>, name: &str) -> PyResult<Vec<String>> {
        Ok(ids(&engine(py, || self.inner.remove_pool(name))?))
    }

    /// The pools, highest priority first.
    fn pools(&self, py: Python<'_>) -> PyResult<Vec<crate::pools::PyPool>> {
        Ok(engine(py, || Ok(self.inner.pools()))?
            .into_iter()
            .map(|inner| crate::pools::PyPool { inner })
            .collect())
    }

    /// The pools' decisions for ``demand`` (a Demand), without acting on them: per pool what
    /// it would provision or retire and why, the requirements no pool can run
    /// (``unschedulable``, with the reason).
    fn plan_pools(
        &self,
        py: Python<'_>,
        demand: crate::pools::PyDemand,
    ) -> PyResult<crate::pools::PoolPlan> {
        engine(py, || self.inner.plan_pools(&demand.inner)).map(crate::pools::PoolPlan::from)
    }

    /// A notice that the worker's instance goes away at ``deadline`` (float seconds since the
    /// epoch, registry clock): a spot reclaim, a node drain. The worker drains now; while it
    /// runs a job, its pool gets a replacement ahead of the deadline; a job still running at
    /// the deadline is reported lost by the tick that reaches it. Returns the worker after the
    /// notice. Raises WorkerNotFoundError, InvalidTransitionError for a worker on its way out.
    fn notify_interruption(
        &self,
        py: Python<'_>,
        worker_id: &str,
        deadline: f64,
    ) -> PyResult<PyWorker> {
        let id = convert::worker_id(py, worker_id)?;
        let deadline = convert::timestamp(py, deadline, "deadline")?;
        engine(py, || self.inner.notify_interruption(&id, deadline)).map(PyWorker::new)
    }

    /// The report of the last ``tick``, ``run_health_check``, ``cleanup_workers``,
    /// ``terminate_worker`` or ``reconcile`` on this manager (from any thread), or None before
    /// the first. After a KeyboardInterrupt raised by a provider it is the report of the
    /// interrupted operation (also the exception's ``report``): requeue its ``lost_jobs``.
    #[getter]
    fn last_report(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.last_report).as_ref().map(|r| r.clone_ref(py))
    }

    /// Starts a Ticker: a thread that calls ``tick(pending())`` every ``interval`` (float
    /// seconds or a timedelta; the first tick at once) and hands each report to
    /// ``on_report(report)`` (without it, read them with ``Ticker.next_report()``). Use it as
    /// a context manager: ``with manager.ticker(1.0, pending=queue.qsize) as t: ...`` stops
    /// and joins the thread on exit. ``pending`` (default: no demand, 0), ``on_report`` and
    /// the providers are called on the ticker's thread. Raises InvalidArgumentError for a
    /// zero interval, TypeError for a callback that is not callable.
    #[pyo3(signature = (interval, pending=None, on_report=None))]
    fn ticker(
        &self,
        py: Python<'_>,
        interval: Seconds,
        pending: Option<Py<PyAny>>,
        on_report: Option<Py<PyAny>>,
    ) -> PyResult<crate::ticker::PyTicker> {
        crate::ticker::start(py, &self.inner, interval, pending, on_report)
    }

    /// Whether this manager leads now (always True on a single-process manager).
    fn is_leader(&self, py: Python<'_>) -> PyResult<bool> {
        engine(py, || Ok(self.inner.is_leader()))
    }

    /// Gives the leadership lease up (a clean shutdown of a replica): another replica takes
    /// over at its next tick. This manager follows (leader-only calls raise NotLeaderError)
    /// until a later tick takes the lease again.
    fn step_down(&self, py: Python<'_>) -> PyResult<()> {
        engine(py, || self.inner.step_down())
    }

    /// The leader as last seen by this manager's lease renewals, or None.
    fn leader(&self, py: Python<'_>) -> PyResult<Option<LeaderInfo>> {
        Ok(engine(py, || Ok(self.inner.leader()))?.map(LeaderInfo::from))
    }

    /// The registry's counts plus the manager's own (in flight, pending destroys, totals).
    fn stats(&self, py: Python<'_>) -> PyResult<LifecycleStats> {
        engine(py, || self.inner.stats()).map(LifecycleStats::from)
    }

    /// The metrics in the OpenMetrics text format (ending in ``# EOF``): workers by state and
    /// provider, jobs, provisions, destroys, failures, brake holds, back-off, durations,
    /// heartbeat ages, event drops. For ``prometheus_client``, see ``hodei_workers.metrics``.
    fn metrics_text(&self, py: Python<'_>) -> PyResult<String> {
        engine(py, || Ok(self.inner.metrics_text()))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (providers, workers) = engine(py, || {
            Ok((self.inner.providers(), self.inner.registry().count()?))
        })?;
        Ok(format!(
            "<LifecycleManager providers={} workers={workers}>",
            py_repr(py, ids(&providers))?
        ))
    }
}

/// Adds the lifecycle classes to the module.
pub(crate) fn add_lifecycle_classes(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLifecycleConfig>()?;
    m.add_class::<PyLifecycleManager>()?;
    m.add_class::<crate::provider::PyWorkerHandle>()?;
    m.add_class::<LostJob>()?;
    m.add_class::<UnhealthyWorker>()?;
    m.add_class::<TerminatedWorker>()?;
    m.add_class::<DestroyFailure>()?;
    m.add_class::<ProvisionedWorker>()?;
    m.add_class::<ProvisionFailure>()?;
    m.add_class::<ProviderBackoff>()?;
    m.add_class::<MassExpiryHold>()?;
    m.add_class::<MassExpiryGiveUp>()?;
    m.add_class::<HealthCheckResult>()?;
    m.add_class::<CleanupResult>()?;
    m.add_class::<ScalingPlan>()?;
    m.add_class::<TickReport>()?;
    m.add_class::<OrphanInstance>()?;
    m.add_class::<LeaderInfo>()?;
    m.add_class::<ReconcileReport>()?;
    m.add_class::<LifecycleStats>()?;
    Ok(())
}
