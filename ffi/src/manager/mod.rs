//! `hw_manager`: the lifecycle engine of one registry, from C. One module per C type family, in
//! the style of rustls-ffi:
//!
//! - this module: the `hw_manager` handle and its operations (provision, heartbeat, health
//!   check, cleanup, drain, terminate, reconcile, tick, statistics);
//! - `config`: `hw_manager_config`;
//! - `provider`: providers written in C (`hw_provider_callbacks`, `hw_provider_call`,
//!   `hw_provider_result`);
//! - `scaling`: the autoscaling predicates, plan (`hw_scaling_plan`) and target;
//! - `readouts`: what the manager holds, as arrays for C (providers, back-off, pending
//!   destroys and orphans, interruption notices);
//! - `report`: `hw_report`, what any of the operations found and did, with its
//!   `hw_report_summary`.

mod config;
mod provider;
mod readouts;
mod report;
mod scaling;

use std::ffi::{c_char, CString};
use std::sync::Arc;

use engine::{Error, WorkerLifecycleConfig, WorkerLifecycleManager, WorkerRegistry};
use serde::Serialize;

use crate::boundary::{
    arg_out, arg_ref, arg_str, c_string, ffi_boundary, free_handle, hw_status, into_handle,
};
use crate::registry::hw_registry;
use crate::spec::hw_worker_spec;
use crate::types::{hw_worker_id, provider_id, reason_from_c};
use crate::worker::hw_worker;

pub use config::hw_manager_config;
pub use provider::{hw_provider_call, hw_provider_callbacks, hw_provider_result};
pub(crate) use readouts::fixed_text;
pub use readouts::{
    hw_interruption, hw_pending_destroy, hw_pending_orphan, hw_provider_backoff, hw_provider_name,
    HW_PROVIDER_ID_SIZE,
};
pub use report::{hw_mass_expiry_hold, hw_report, hw_report_kind, hw_report_summary};
pub use scaling::hw_scaling_plan;

/// The lifecycle manager of one registry. Thread-safe: every function may be called from any
/// number of threads; a `hw_manager_tick` running while another thread ticks returns at once
/// with `skipped` set. C provider callbacks run on the calling thread.
#[derive(Debug)]
pub struct hw_manager {
    pub(crate) inner: Arc<WorkerLifecycleManager>,
}

impl hw_manager {
    /// The engine, held by the call that asks: for every call that runs user code (provider
    /// callbacks, `release`). Such code may call `hw_manager_free` on this handle (nothing
    /// else runs on it), and with a mere reference the handle's `Arc`, the last one, would
    /// drop the engine under the call still running on it; held, the engine goes when the
    /// call returns ("once no call on it runs any more").
    pub(crate) fn held(&self) -> Arc<WorkerLifecycleManager> {
        Arc::clone(&self.inner)
    }
}

fn new_manager(registry: &hw_registry, config: WorkerLifecycleConfig) -> Result<hw_manager, Error> {
    let registry: Arc<dyn WorkerRegistry> = registry.inner.clone();
    Ok(hw_manager {
        inner: Arc::new(WorkerLifecycleManager::new(registry, config)?),
    })
}

/// A manager for `registry` (which it shares: the registry handle may be freed afterwards).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a nonsense configuration (zero timeouts, min ready
/// above max workers, a fraction outside (0, 1], …), naming the field.
#[no_mangle]
pub extern "C" fn hw_manager_new(
    registry: *const hw_registry,
    config: *const hw_manager_config,
    out: *mut *mut hw_manager,
) -> hw_status {
    ffi_boundary!(hw_manager_new, {
        let registry = arg_ref!(registry);
        let config = arg_ref!(config);
        let out = arg_out!(out);
        out.write(into_handle(new_manager(registry, config.to_core())?));
        Ok(())
    })
}

/// A manager configured from JSON (`{"heartbeat_timeout": 60, "max_workers": 10, …}`:
/// durations in seconds, missing fields take their defaults, unknown fields are refused).
/// Only the object form is accepted: an array of the field values is refused.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for malformed JSON, an array where the object is
/// expected, or a nonsense configuration.
#[no_mangle]
pub extern "C" fn hw_manager_new_from_json(
    registry: *const hw_registry,
    config_json: *const c_char,
    out: *mut *mut hw_manager,
) -> hw_status {
    ffi_boundary!(hw_manager_new_from_json, {
        let registry = arg_ref!(registry);
        let json = arg_str!(config_json);
        let out = arg_out!(out);
        let config: WorkerLifecycleConfig = serde_json::from_str(json).map_err(|e| {
            Error::invalid(format!(
                "invalid manager config JSON: {}",
                engine::json_error_message(&e)
            ))
        })?;
        out.write(into_handle(new_manager(registry, config)?));
        Ok(())
    })
}

/// The configuration in force.
#[no_mangle]
pub extern "C" fn hw_manager_get_config(
    manager: *const hw_manager,
    out: *mut hw_manager_config,
) -> hw_status {
    ffi_boundary!(hw_manager_get_config, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        out.write(hw_manager_config::from_core(manager.inner.config()));
        Ok(())
    })
}

/// Frees the manager handle: it is invalid afterwards, for every thread and callback. The
/// manager itself goes once no call on it runs any more and no ticker runs it; its providers
/// are then dropped (their `release` callbacks run) on the thread that lets it go: this one,
/// or, while a ticker started on it still runs, the thread whose `hw_ticker_stop` /
/// `hw_ticker_free` stops that ticker (never the ticker's own thread). A provider callback (or
/// `release`) may free the manager that runs it: the call in progress finishes, and the
/// manager goes when that call returns, on its thread. NULL does nothing.
#[no_mangle]
pub extern "C" fn hw_manager_free(manager: *mut hw_manager) {
    free_handle(manager)
}

/// Asks provider `provider` for a worker made from `spec`, registers it (`CREATING`) and
/// writes its snapshot. The request counts against `max_workers` while in flight.
///
/// Errors: `HW_ERR_PROVIDER_NOT_FOUND`; `HW_ERR_CAPACITY` at `max_workers`; `HW_ERR_PROVIDER`
/// when the provider's `create_worker` failed (or panicked, or returned a handle for another
/// worker; an instance it set a resource id for before failing is destroyed first, see
/// `hw_provider_callbacks`); `HW_ERR_NOT_LEADER` when another replica leads (this manager's lease, the store,
/// or the provider's `HW_PROVIDER_RESULT_FENCED` says so: not counted as a provider failure),
/// or led while the create was in flight and the provider's `list_workers` no longer shows the
/// new instance (neither registered nor destroyed again: that leader destroyed it);
/// `HW_ERR_INVALID_ARGUMENT` for a bad spec, or when `create_worker` returned OK with a
/// handle the registry refuses (a resource id or metadata over their limits,
/// `HW_MAX_RESOURCE_ID_LEN`, `HW_MAX_ENTRIES`, …): the new instance is then destroyed
/// (`destroy_worker` is called) and nothing is registered; a registry error (e.g.
/// `HW_ERR_BACKEND`) when the handle could not be registered otherwise (the instance is
/// destroyed too).
#[no_mangle]
pub extern "C" fn hw_manager_provision(
    manager: *const hw_manager,
    provider: *const c_char,
    spec: *const hw_worker_spec,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_manager_provision, {
        let manager = arg_ref!(manager).held();
        let id = provider_id(arg_str!(provider))?;
        let spec = arg_ref!(spec);
        let out = arg_out!(out);
        let worker = manager.provision_worker(&id, Arc::clone(&spec.spec))?;
        out.write(hw_worker::boxed(worker));
        Ok(())
    })
}

/// A heartbeat of worker `id` (the registry's heartbeat).
///
/// Errors: `HW_ERR_NOT_FOUND` (tell the agent to register again).
#[no_mangle]
pub extern "C" fn hw_manager_process_heartbeat(
    manager: *const hw_manager,
    id: hw_worker_id,
) -> hw_status {
    ffi_boundary!(hw_manager_process_heartbeat, {
        let manager = arg_ref!(manager);
        manager.inner.process_heartbeat(&id.to_core()?)?;
        Ok(())
    })
}

/// Runs the health check now: workers past their heartbeat or startup deadline are declared
/// unhealthy (unless the mass-expiry brake holds), the jobs they held are reported lost, and
/// they are destroyed through their provider and unregistered. Writes what happened.
#[no_mangle]
pub extern "C" fn hw_manager_run_health_check(
    manager: *const hw_manager,
    out: *mut *mut hw_report,
) -> hw_status {
    ffi_boundary!(hw_manager_run_health_check, {
        let manager = arg_ref!(manager).held();
        let out = arg_out!(out);
        let result = manager.run_health_check()?;
        out.write(into_handle(hw_report::from_health(&result)?));
        Ok(())
    })
}

/// Retires what is due now (idle, lifetime, drained, max jobs) and retries due destroys.
/// Writes what happened.
#[no_mangle]
pub extern "C" fn hw_manager_cleanup(
    manager: *const hw_manager,
    out: *mut *mut hw_report,
) -> hw_status {
    ffi_boundary!(hw_manager_cleanup, {
        let manager = arg_ref!(manager).held();
        let out = arg_out!(out);
        let result = manager.cleanup_workers()?;
        let now = manager.registry().now();
        out.write(into_handle(hw_report::from_cleanup(
            &result,
            now,
            hw_report_kind::Cleanup,
        )?));
        Ok(())
    })
}

/// Moves worker `id` to `DRAINING` (it finishes its job, takes no new one, and is then
/// retired by cleanup). Writes the new snapshot.
///
/// Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_INVALID_TRANSITION`.
#[no_mangle]
pub extern "C" fn hw_manager_drain(
    manager: *const hw_manager,
    id: hw_worker_id,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_manager_drain, {
        let manager = arg_ref!(manager);
        let id = id.to_core()?;
        let out = arg_out!(out);
        out.write(hw_worker::boxed(manager.inner.drain_worker(&id)?));
        Ok(())
    })
}

/// Terminates worker `id` now (`reason`: a `hw_termination_reason`): `TERMINATING` (a held job
/// is reported lost), destroyed through its provider, unregistered. A failed destroy shows in
/// the report and is retried by later ticks.
///
/// Errors: `HW_ERR_NOT_FOUND`; `HW_ERR_INVALID_ARGUMENT` for a bad reason.
#[no_mangle]
pub extern "C" fn hw_manager_terminate(
    manager: *const hw_manager,
    id: hw_worker_id,
    reason: u32,
    out: *mut *mut hw_report,
) -> hw_status {
    ffi_boundary!(hw_manager_terminate, {
        let manager = arg_ref!(manager).held();
        let id = id.to_core()?;
        let reason = reason_from_c(reason)?;
        let out = arg_out!(out);
        let result = manager.terminate_worker(&id, reason)?;
        let now = manager.registry().now();
        out.write(into_handle(hw_report::from_cleanup(
            &result,
            now,
            hw_report_kind::Terminate,
        )?));
        Ok(())
    })
}

/// Compares the registry with each provider's `list_workers`: instances the registry does not
/// know are destroyed; records whose instance vanished are unregistered (reason `VANISHED`,
/// listed as terminated; their jobs as lost), however many: this call is not braked (the
/// host asked; the way to clean up after losing a registry), unlike the ticks' own reconciles
/// (see `max_unhealthy_fraction`). The JSON form
/// has the whole reconcile report.
#[no_mangle]
pub extern "C" fn hw_manager_reconcile(
    manager: *const hw_manager,
    out: *mut *mut hw_report,
) -> hw_status {
    ffi_boundary!(hw_manager_reconcile, {
        let manager = arg_ref!(manager).held();
        let out = arg_out!(out);
        let report = manager.reconcile()?;
        out.write(into_handle(hw_report::from_reconcile(&report)?));
        Ok(())
    })
}

/// Does whatever is due: health check (per its interval), cleanup, destroy retries, scaling
/// toward the target for `pending_jobs`. Never fails on the engine's side: problems show as
/// lines in the report's decisions. Call it regularly (every second, say). A tick that
/// panicked midway (a bug of the library) answers `HW_OK` with the report of what it did
/// before the panic (its lost jobs to requeue), which `hw_report_get_panicked` says (ABI 1.4;
/// before, `HW_ERR_PANIC` and no report).
#[no_mangle]
pub extern "C" fn hw_manager_tick(
    manager: *const hw_manager,
    pending_jobs: usize,
    out: *mut *mut hw_report,
) -> hw_status {
    ffi_boundary!(hw_manager_tick, {
        let manager = arg_ref!(manager).held();
        let out = arg_out!(out);
        let report = manager.tick(pending_jobs);
        out.write(into_handle(hw_report::from_tick(&report)?));
        Ok(())
    })
}

/// The manager's statistics as JSON (registry counts, in flight, pending destroys, totals of
/// provisions, terminations, failures, lost jobs); free with `hw_string_free`.
#[no_mangle]
pub extern "C" fn hw_manager_stats_json(
    manager: *const hw_manager,
    out: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_manager_stats_json, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        let stats = manager.inner.stats()?;
        out.write(to_json(&stats, "manager stats")?.into_raw());
        Ok(())
    })
}

fn to_json<T: Serialize>(value: &T, what: &str) -> Result<CString, Error> {
    let json = serde_json::to_string(value)
        .map_err(|e| Error::invalid(format!("cannot write {what}: {e}")))?;
    c_string(&json, what)
}
