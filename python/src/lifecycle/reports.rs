//! The report classes of the lifecycle operations (`TickReport`, `HealthCheckResult`, …):
//! frozen views of the core's plain-data reports — ids as str, timestamps as float seconds
//! since the epoch, states and reasons as the enum members — with `to_json()` for logs.
//!
//! The attributes follow the core's serde schema: the typed getters below convert the fields
//! that need it (times, enums, nested reports), and any other field of the core's serde form
//! is an attribute too (`__getattr__`, as JSON-shaped Python values), so a field added in the
//! core shows up without a change here; tests/python/test_schema.py fails until the stub
//! declares it (and says whether it deserves a typed getter).

use hodei_workers as core;
use pyo3::prelude::*;
use pyo3::BoundObject;

use crate::convert;
use crate::types::PyRegistryStats;

pub(crate) fn to_py<'py, T>(py: Python<'py>, value: T) -> PyResult<Py<PyAny>>
where
    T: IntoPyObject<'py>,
    PyErr: From<T::Error>,
{
    Ok(value.into_pyobject(py)?.into_any().unbind())
}

pub(crate) fn ids<T: ToString>(items: &[T]) -> Vec<String> {
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

            /// A field of the core's serde form without a typed getter above (one added in the
            /// core since), as its JSON-shaped value.
            fn __getattr__(
                &self,
                py: Python<'_>,
                name: &Bound<'_, pyo3::types::PyString>,
            ) -> PyResult<Py<PyAny>> {
                $crate::lifecycle::serde_attribute(py, stringify!($Name), name, || {
                    $crate::lifecycle::serde_fields(serde_json::to_value(&self.inner))
                })
            }

            fn __dir__(slf: &Bound<'_, Self>) -> PyResult<Vec<String>> {
                let mut names: Vec<String> = pyo3::types::PyType::new::<pyo3::types::PyAny>(slf.py())
                    .getattr("__dir__")?
                    .call1((slf,))?
                    .extract()?;
                names.extend($crate::lifecycle::serde_fields(serde_json::to_value(&slf.get().inner))?.keys().cloned());
                names.sort();
                names.dedup();
                Ok(names)
            }

            /// Every field of the core's serde form through the attributes: the typed ones in
            /// the core's order, then any the core added since.
            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                const TYPED: &[&str] = &[$(stringify!($field)),*];
                let fields = $crate::lifecycle::serde_fields(serde_json::to_value(&slf.get().inner))?;
                let keys = TYPED
                    .iter()
                    .copied()
                    .filter(|key| fields.contains_key(*key))
                    .chain(fields.keys().map(String::as_str).filter(|key| !TYPED.contains(key)));
                let mut parts = Vec::new();
                for key in keys {
                    parts.push(format!("{key}={}", slf.getattr(key)?.repr()?));
                }
                Ok(format!("{}({})", stringify!($Name), parts.join(", ")))
            }
        }
    )*};
}

pub(crate) use report_class;

/// `__getattr__` of a class that reads the attributes it has no getter for from its serde form
/// (`fields`, made only when asked): the field `name` as its Python value, or the
/// `AttributeError` Python raises for a missing attribute. A dunder names no field, nor does a
/// name that is not text (a lone surrogate), so that `hasattr` answers False as for any object.
pub(crate) fn serde_attribute(
    py: Python<'_>,
    class: &str,
    name: &Bound<'_, pyo3::types::PyString>,
    fields: impl FnOnce() -> PyResult<serde_json::Map<String, serde_json::Value>>,
) -> PyResult<Py<PyAny>> {
    let missing = |shown: String| {
        pyo3::exceptions::PyAttributeError::new_err(format!(
            "'{class}' object has no attribute {shown}"
        ))
    };
    let Ok(text) = name.to_str() else {
        return Err(missing(crate::convert::shown(name)?));
    };
    if text.starts_with("__") {
        return Err(missing(format!("'{text}'")));
    }
    match fields()?.get(text) {
        Some(value) => json_to_py(py, value),
        None => Err(missing(format!("'{text}'"))),
    }
}

/// The fields of a report's serde form (`serde_json::to_value` of it: a report is a struct, so
/// an object), by name (not in the struct's order).
pub(crate) fn serde_fields(
    value: serde_json::Result<serde_json::Value>,
) -> PyResult<serde_json::Map<String, serde_json::Value>> {
    match value {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "a report serialised to {other}, not to an object"
        ))),
        Err(e) => Err(pyo3::exceptions::PyRuntimeError::new_err(e.to_string())),
    }
}

/// A JSON value as the Python value of the same shape (None, bool, int, float, str, list,
/// dict).
pub(crate) fn json_to_py(py: Python<'_>, value: &serde_json::Value) -> PyResult<Py<PyAny>> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => py.None(),
        Value::Bool(b) => to_py(py, *b)?,
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => to_py(py, u)?,
            (None, Some(i)) => to_py(py, i)?,
            _ => to_py(py, n.as_f64().unwrap_or(f64::NAN))?,
        },
        Value::String(s) => to_py(py, s.as_str())?,
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|v| json_to_py(py, v))
                .collect::<PyResult<Vec<_>>>()?;
            to_py(py, items)?
        }
        Value::Object(map) => {
            let dict = pyo3::types::PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any().unbind()
        }
    })
}

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
        /// What went wrong (for a Python provider: the exception's type and message), at most
        /// 4096 bytes (a longer message is cut and ends with ``"… (truncated)"``).
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
        /// ``"failed"``, ``"not_found"``, ``"unsupported"``, ``"panicked"``, ``"no_capacity"``
        /// or ``"interrupted"`` (a KeyboardInterrupt, or another BaseException that is not an
        /// Exception, cut the create short during a manager call: reported, but not counted toward
        /// the provider's back-off).
        kind: |c, py| c.kind.as_str(),
        /// What went wrong, at most 4096 bytes (a longer message is cut and ends with
        /// ``"… (truncated)"``).
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

    /// A provider's listing that the ticks' reconcile brake held: nothing of that side was done
    /// for it (also a ``held by the brake`` line among the decisions).
    ReconcileHold(core::ReconcileHold) {
        /// The provider.
        provider_id: |c, py| c.provider_id.to_string(),
        /// ``"expire"`` (records the listing missed, not expired) or ``"orphans"`` (instances
        /// no record knows, not destroyed: only the host's reconcile() ends that).
        kind: |c, py| c.kind.as_str(),
        /// How many were held back.
        held: |c, py| c.held,
        /// The provider's records the brake measured against.
        records: |c, py| c.records,
        /// The most the brake allows.
        allowed: |c, py| c.allowed,
    }

    /// The brake's counts: too many workers under heartbeat watch were silent at once (most
    /// likely a partition on the host's side), so none was declared unhealthy for its
    /// heartbeat.
    MassExpiryHold(core::MassExpiryHold) {
        /// How many are past their heartbeat deadline now (held back).
        would_expire: |c, py| c.would_expire,
        /// How many are silent for more than half the heartbeat timeout: the brake's count (at
        /// least would_expire), but those past their startup deadline (expired regardless).
        suspect: |c, py| c.suspect,
        /// Workers under heartbeat watch (CONNECTING, READY, BUSY, DRAINING), but those past
        /// their startup deadline.
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
        /// Workers due but left for later: because of the per-tick action cap, or because
        /// the lease was lost during the check.
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
        /// Work left for later: because of the per-tick action cap, or because the lease
        /// was lost meanwhile.
        deferred: |c, py| c.deferred,
    }

    /// The autoscaler's decision with its inputs; ``explanation`` says it in one line.
    ScalingPlan(core::ScalingPlan) {
        /// When it was computed (float seconds since the epoch).
        at: |c, py| convert::seconds(c.at),
        /// The jobs this plan scales for. From ``plan_scaling(n)``: n. In a tick: the jobs of
        /// the host's demand that the target's spec satisfies (the others are unschedulable,
        /// not counted) plus one per job of an interrupted worker that needs a replacement —
        /// of the target's, or any other whose offer the target's spec satisfies (without
        /// pools) — so it may differ from ``TickReport.pending_jobs`` either way.
        pending_jobs: |c, py| c.pending_jobs,
        /// Idle READY workers of the scaling target (not those of pools).
        ready: |c, py| c.ready,
        /// BUSY workers of the scaling target (not those of pools).
        busy: |c, py| c.busy,
        /// CREATING + CONNECTING workers of the scaling target (not those of pools): capacity
        /// on its way.
        starting: |c, py| c.starting,
        /// Provider calls in flight of the scaling target (not those of pools' specs): capacity
        /// on its way.
        in_flight: |c, py| c.in_flight,
        /// Registered workers plus every provision in flight: what counts against max_workers.
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
        /// The jobs of the demand the host passed to this tick (every requirement's,
        /// unschedulable ones included), 0 for a tick without a demand. The replacements of
        /// interrupted workers are not counted here: they are in the plan's own count
        /// (``pools.pending_jobs``, ``scaling.pending_jobs``).
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
        /// The providers whose listing the tick's reconcile held by the brake, and which side
        /// (a list of ReconcileHold; counted in hodei_workers_reconcile_holds_total).
        reconcile_held: |c, py| list::<_, ReconcileHold>(&c.reconcile_held),
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
        /// The message of the panic that cut this tick short (a bug of a Rust registry, clock
        /// or lease, or of the library), else None. The report then holds what the tick did
        /// before the panic (requeue its lost_jobs as always); a line of decisions names the
        /// phase, and the next tick does the rest.
        panicked: |c, py| c.panicked.clone(),
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
        /// None when destroyed; the error otherwise (the leader's ticks destroy it again after
        /// a back-off).
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
        /// Providers not wholly reconciled, with what happened: ``list_workers`` failed, the
        /// registry read failed or could not unregister a vanished worker, or the lease was lost
        /// before their listing or among their orphans.
        errors: |c, py| c.errors.iter().map(|(p, e)| (p.to_string(), e.clone())).collect::<Vec<_>>(),
        /// Instances unknown to the registry, destroyed (or attempted).
        orphans: |c, py| list::<_, OrphanInstance>(&c.orphans),
        /// Providers whose orphan check waited (a provision in flight, a destroy confirmed meanwhile).
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
