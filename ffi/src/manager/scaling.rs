//! Autoscaling from C: the seed's predicates, the full plan (`hw_scaling_plan`, its JSON) and
//! the scaling target `hw_manager_tick` provisions toward.

use std::ffi::c_char;
use std::sync::Arc;

use super::{hw_manager, to_json};
use crate::boundary::{arg_out, arg_ref, arg_str, c_string, ffi_boundary, hw_status, into_handle};
use crate::spec::hw_worker_spec;
use crate::types::provider_id;

/// The seed's predicate: no ready worker and jobs pending, or more pending than
/// `scale_up_threshold` with room below `max_workers`. Its ready workers are those
/// `hw_manager_plan_scaling` counts: the scaling target's own (without a target, those of no
/// pool), never those of other pools; the room counts every registered worker.
#[no_mangle]
pub extern "C" fn hw_manager_should_scale_up(
    manager: *const hw_manager,
    pending_jobs: usize,
    out: *mut bool,
) -> hw_status {
    ffi_boundary!(hw_manager_should_scale_up, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        out.write(manager.inner.should_scale_up(pending_jobs));
        Ok(())
    })
}

/// The seed's predicate: more ready workers than `scale_down_threshold` and than
/// `min_ready_workers`; the scaling target's own (without a target, those of no pool), as
/// `hw_manager_plan_scaling` counts them.
#[no_mangle]
pub extern "C" fn hw_manager_should_scale_down(
    manager: *const hw_manager,
    out: *mut bool,
) -> hw_status {
    ffi_boundary!(hw_manager_should_scale_down, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        out.write(manager.inner.should_scale_down());
        Ok(())
    })
}

/// The counts of a scaling plan (the whole plan, with the workers to retire, the limits hit and
/// the explanation, is in the JSON form).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct hw_scaling_plan {
    /// The jobs this plan scales for: the `pending_jobs` given to
    /// `hw_manager_plan_scaling`. (A tick's scaling plan, in its report's JSON form, counts
    /// the jobs of the demand the target's spec satisfies plus the replacements of the
    /// interrupted workers it replaces: its own, and without pools any other whose offer its
    /// spec satisfies.)
    pub pending_jobs: usize,
    /// `READY` workers of the scaling target (not those of pools).
    pub ready: usize,
    /// `BUSY` workers of the scaling target (not those of pools).
    pub busy: usize,
    /// Workers of the scaling target still starting (`CREATING`/`CONNECTING`).
    pub starting: usize,
    /// Provisions in flight of the scaling target (not those of pools' specs): capacity on
    /// its way.
    pub in_flight: usize,
    /// Registered workers plus every provision in flight.
    pub total: usize,
    /// The capacity the policy wants.
    pub wanted: usize,
    /// Workers to provision now.
    pub provision: usize,
    /// Idle workers to retire now.
    pub scale_down: usize,
}

/// The autoscaling decision for `pending_jobs`, without acting on it: its counts in `out_plan`
/// and the whole plan as JSON in `out_json` (free with `hw_string_free`).
#[no_mangle]
pub extern "C" fn hw_manager_plan_scaling(
    manager: *const hw_manager,
    pending_jobs: usize,
    out_plan: *mut hw_scaling_plan,
    out_json: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_manager_plan_scaling, {
        let manager = arg_ref!(manager);
        let out_plan = arg_out!(out_plan);
        let out_json = arg_out!(out_json);
        let plan = manager.inner.plan_scaling(pending_jobs)?;
        let json = to_json(&plan, "scaling plan")?;
        out_plan.write(hw_scaling_plan {
            pending_jobs: plan.pending_jobs,
            ready: plan.ready,
            busy: plan.busy,
            starting: plan.starting,
            in_flight: plan.in_flight,
            total: plan.total,
            wanted: plan.wanted,
            provision: plan.provision,
            scale_down: plan.scale_down.len(),
        });
        out_json.write(json.into_raw());
        Ok(())
    })
}

/// What `hw_manager_tick` scales toward: workers of `spec` from provider `provider`. Without a
/// target, ticks never provision nor scale down. Its workers are those of no pool (or of its
/// spec's pool, if `spec` carries the label `hodei.pool`): it neither counts nor retires the
/// workers of pools (set on another replica), which count against `max_workers` all the same.
///
/// Errors: `HW_ERR_PROVIDER_NOT_FOUND`; `HW_ERR_INVALID_ARGUMENT` for a bad spec.
#[no_mangle]
pub extern "C" fn hw_manager_set_scaling_target(
    manager: *const hw_manager,
    provider: *const c_char,
    spec: *const hw_worker_spec,
) -> hw_status {
    ffi_boundary!(hw_manager_set_scaling_target, {
        let manager = arg_ref!(manager);
        let id = provider_id(arg_str!(provider))?;
        let spec = arg_ref!(spec);
        manager
            .inner
            .set_scaling_target(&id, Arc::clone(&spec.spec))?;
        Ok(())
    })
}

/// Removes the scaling target.
#[no_mangle]
pub extern "C" fn hw_manager_clear_scaling_target(manager: *const hw_manager) -> hw_status {
    ffi_boundary!(hw_manager_clear_scaling_target, {
        arg_ref!(manager).inner.clear_scaling_target();
        Ok(())
    })
}

/// The scaling target, if one is set: its provider id in `*out_provider` (free with
/// `hw_string_free`) and a copy of its spec in `*out_spec` (free with `hw_worker_spec_free`;
/// read it with `hw_worker_spec_to_json` and the `hw_worker_spec_get_*` calls). Writes NULL to
/// both when no target is set (not an error).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_manager_scaling_target(
    manager: *const hw_manager,
    out_provider: *mut *mut c_char,
    out_spec: *mut *mut hw_worker_spec,
) -> hw_status {
    ffi_boundary!(hw_manager_scaling_target, {
        let manager = arg_ref!(manager);
        let out_provider = arg_out!(out_provider);
        let out_spec = arg_out!(out_spec);
        match manager.inner.scaling_target() {
            Some((id, spec)) => {
                let provider = c_string(id.as_str(), "provider id")?;
                out_provider.write(provider.into_raw());
                out_spec.write(into_handle(hw_worker_spec { spec }));
            }
            None => {
                out_provider.write(std::ptr::null_mut());
                out_spec.write(std::ptr::null_mut());
            }
        }
        Ok(())
    })
}
