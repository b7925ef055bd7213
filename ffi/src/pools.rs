//! Pools and demand from C (DESIGN.md §12): the pool set, demand-driven ticks, the pool plan,
//! interruption notices, and the fit filters a scheduler claims with.
//!
//! Pools and demands cross the boundary as JSON, in the core's serde forms, so that C code
//! does not have to build nested structures field by field:
//! - a demand: `[{"labels": {"gpu": "a100"}, "resources": {"gpu_count": 1}, "count": 3}]`
//!   (every field but `count` optional: `labels`, `capabilities`, `resources`,
//!   `architecture`);
//! - a pool: `{"name": "gpu-spot", "provider_id": "ec2-spot", "template": {WorkerSpec},
//!   "min_ready": 0, "max_workers": 8, "priority": 10, "scale_up_cooldown": 10,
//!   "scale_down_cooldown": 60}` (durations in seconds; all but `name`, `provider_id` and
//!   `template` optional).
//!
//! A requirement, a pool, its template and their `resources` are JSON objects, and only
//! objects: an array of their field values (serde's positional form) is refused.

use std::ffi::c_char;
use std::sync::Arc;

use engine::{Architecture, Demand, Error, Pool, StateCounts};

use crate::boundary::{
    arg_mut, arg_out, arg_ref, arg_str, c_string, ffi_boundary, hw_status, into_handle,
};
use crate::filter::hw_worker_filter;
use crate::manager::{hw_manager, hw_report};
use crate::registry::{hw_registry, hw_worker_counts};
use crate::spec::hw_worker_spec;
use crate::types::{hw_worker_id, provider_id};
use crate::worker::hw_worker;

fn parse<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|e| {
        Error::invalid(format!(
            "invalid {what} JSON: {}",
            engine::json_error_message(&e)
        ))
    })
}

pub(crate) fn demand(json: &str) -> Result<Demand, Error> {
    let demand: Demand = parse(json, "demand")?;
    demand.validate()?;
    Ok(demand)
}

fn json_string<T: serde::Serialize>(value: &T, what: &str) -> Result<*mut c_char, Error> {
    let text = serde_json::to_string(value)
        .map_err(|e| Error::invalid(format!("cannot write {what}: {e}")))?;
    Ok(c_string(&text, what)?.into_raw())
}

/// Replaces the manager's pools with the JSON array `pools_json` (see the module notes for a
/// pool's form: each pool, template and `resources` a JSON object, never an array of its
/// values). Pools no longer listed are removed and their workers drain (as in
/// `hw_manager_remove_pool`); so do the workers of a pool listed again with a template that
/// asks more of them than theirs offers (a label, capability, architecture or resource a job of
/// the new template needs). The number of workers taken out of service is written to
/// `out_drained`. While any pool is set, ticks scale the pools, not the scaling target.
/// On a replicated manager each replica has its own pools, but draining is leader work: a
/// follower drains nothing (writes 0) and drains what its pools removed at its ticks once it
/// leads. A tick running meanwhile makes each of its provisions from a pool as it is then, and
/// none for a requirement that a reshaped pool's new template no longer satisfies (its
/// decisions say so; its next plan counts that demand again).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for malformed JSON (an array where an object is expected
/// included), an invalid pool or two pools with one name; `HW_ERR_PROVIDER_NOT_FOUND` for a
/// pool whose provider is not registered: nothing changes on those. `HW_ERR_BACKEND` (the
/// registry's status) when the workers of a pool to drain could not be listed or drained, or
/// `HW_ERR_NOT_LEADER` when the lease was lost midway: the pools are set all the same,
/// `hw_last_error_message()` names the workers taken out of service and the pools left, and
/// the leader's ticks drain those (so does the next call).
#[no_mangle]
pub extern "C" fn hw_manager_set_pools_json(
    manager: *const hw_manager,
    pools_json: *const c_char,
    out_drained: *mut usize,
) -> hw_status {
    ffi_boundary!(hw_manager_set_pools_json, {
        let manager = arg_ref!(manager).held();
        let pools: Vec<Pool> = parse(arg_str!(pools_json), "pools")?;
        let out_drained = arg_out!(out_drained);
        let drained = manager.set_pools(pools)?;
        out_drained.write(drained.len());
        Ok(())
    })
}

/// Adds a pool `name` of workers from `provider` made from `template` (the manager adds the
/// label `hodei.pool=NAME`), keeping `min_ready` idle workers warm, at most `max_workers`
/// (`SIZE_MAX`: only the global cap), tried before pools of lower `priority`. Cooldowns are
/// 10 s up and 60 s down (use `hw_manager_set_pools_json` to choose them).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a bad name (1..=64 letters, digits, `-_.`), a name in
/// use, `min_ready > max_workers` or a bad template; `HW_ERR_PROVIDER_NOT_FOUND`.
#[no_mangle]
pub extern "C" fn hw_manager_add_pool(
    manager: *const hw_manager,
    name: *const c_char,
    provider: *const c_char,
    template_spec: *const hw_worker_spec,
    min_ready: usize,
    max_workers: usize,
    priority: i32,
) -> hw_status {
    ffi_boundary!(hw_manager_add_pool, {
        let manager = arg_ref!(manager);
        let name = arg_str!(name);
        let provider = provider_id(arg_str!(provider))?;
        let template_spec = arg_ref!(template_spec);
        let pool = Pool::new(name, provider, Arc::clone(&template_spec.spec))?
            .with_max_workers(max_workers)
            .with_min_ready(min_ready)
            .with_priority(priority);
        manager.inner.add_pool(pool)?;
        Ok(())
    })
}

/// Removes pool `name`: nothing more is provisioned for it and its workers drain (idle ones
/// are retired by the next tick, busy ones after their job; ones still starting are terminated
/// now, through their provider's `destroy_worker`, on this thread). Writes how many were taken
/// out of service (0 on a follower of a replicated set: the leader drains; this replica
/// drains them at its ticks once it leads; 0 too for a pool removed earlier whose workers a
/// tick is draining at that moment: the tick reports them). A create of the pool's spec still
/// in flight (a tick's, or the host's own `hw_manager_provision` of a spec with its
/// `hodei.pool` label) registers its worker after this look: the leader's next tick takes it
/// out of service, whoever started it.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` when no pool has that name (nor is any left to drain
/// under it); `HW_ERR_BACKEND` (the
/// registry's status) when its workers could not be listed or drained, or `HW_ERR_NOT_LEADER`
/// when the lease was lost midway: the pool is removed all the same, and the leader's ticks
/// drain them (so does calling this again with the name).
#[no_mangle]
pub extern "C" fn hw_manager_remove_pool(
    manager: *const hw_manager,
    name: *const c_char,
    out_drained: *mut usize,
) -> hw_status {
    ffi_boundary!(hw_manager_remove_pool, {
        let manager = arg_ref!(manager).held();
        let name = arg_str!(name);
        let out_drained = arg_out!(out_drained);
        let drained = manager.remove_pool(name)?;
        out_drained.write(drained.len());
        Ok(())
    })
}

/// The pools as a JSON array, highest priority first (free with `hw_string_free`).
#[no_mangle]
pub extern "C" fn hw_manager_get_pools_json(
    manager: *const hw_manager,
    out: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_manager_get_pools_json, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        out.write(json_string(&manager.inner.pools(), "pools")?);
        Ok(())
    })
}

/// The pool plan for `demand_json`, without acting on it, as JSON (free with
/// `hw_string_free`): one decision per pool with its explanation line, the requirements no
/// pool satisfies (`unschedulable`, with the reason) and the demand waiting for capacity
/// (`unmet`).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a malformed or invalid demand (a requirement or its
/// `resources` written as an array instead of an object included; a label, capability or GPU
/// model over `HW_MAX_KEY_LEN` / `HW_MAX_VALUE_LEN`, or more than `HW_MAX_ENTRIES` of them).
#[no_mangle]
pub extern "C" fn hw_manager_plan_pools_json(
    manager: *const hw_manager,
    demand_json: *const c_char,
    out: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_manager_plan_pools_json, {
        let manager = arg_ref!(manager);
        let demand = demand(arg_str!(demand_json))?;
        let out = arg_out!(out);
        let plan = manager.inner.plan_pools(&demand)?;
        out.write(json_string(&plan, "pool plan")?);
        Ok(())
    })
}

/// `hw_manager_tick` toward a demand by requirement (`demand_json`, see the module notes)
/// instead of a number of jobs. The report's decisions hold one line per pool and one per
/// unschedulable requirement; its JSON holds the whole pool plan (`pools`) and the
/// `unschedulable` list. A requirement index in the plan at or past the demand's length names
/// the replacement of interrupted workers listed under `pools.replacements` with that
/// `requirement`.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a malformed or invalid demand (a requirement or its
/// `resources` written as an array instead of an object included; a label, capability or GPU
/// model over `HW_MAX_KEY_LEN` / `HW_MAX_VALUE_LEN`, or more than `HW_MAX_ENTRIES` of them;
/// no tick runs).
#[no_mangle]
pub extern "C" fn hw_manager_tick_demand(
    manager: *const hw_manager,
    demand_json: *const c_char,
    out: *mut *mut hw_report,
) -> hw_status {
    ffi_boundary!(hw_manager_tick_demand, {
        let manager = arg_ref!(manager).held();
        let demand = demand(arg_str!(demand_json))?;
        let out = arg_out!(out);
        let report = manager.tick(demand);
        out.write(into_handle(hw_report::from_tick(&report)?));
        Ok(())
    })
}

/// Worker `id` is going away at `deadline_ms` (registry clock, ms since the epoch): a spot
/// reclaim, a node drain. It drains now; while it runs a job its pool (for a worker of no
/// pool: the scaling target on its provider; while pools are set, for a worker none of them
/// owns: the pools that satisfy its spec; without pools, for a worker the scaling target does
/// not own: the target, if its spec satisfies the worker's) gets a replacement ahead of the
/// deadline; a job still running at the deadline is reported lost by the tick that reaches
/// it. Writes the worker's snapshot after the notice.
///
/// Leader-only (a replicated manager): a replica that does not lead refuses it and changes
/// nothing; send the notice to the leader.
///
/// Errors: `HW_ERR_NOT_LEADER` on a replica that does not lead; `HW_ERR_NOT_FOUND`;
/// `HW_ERR_INVALID_TRANSITION` for a worker already on its way out.
#[no_mangle]
pub extern "C" fn hw_manager_notify_interruption(
    manager: *const hw_manager,
    id: hw_worker_id,
    deadline_ms: u64,
    out: *mut *mut hw_worker,
) -> hw_status {
    ffi_boundary!(hw_manager_notify_interruption, {
        let manager = arg_ref!(manager).held();
        let id = id.to_core()?;
        let out = arg_out!(out);
        let worker = manager.notify_interruption(&id, deadline_ms)?;
        out.write(into_handle(hw_worker::new(worker)));
        Ok(())
    })
}

/// Only workers whose resources cover those of `needs` (a spec used for its resources only:
/// at least its CPU, memory, disk and GPUs, and its GPU model if it names one) — claim a
/// worker for a job exactly as its demand describes it. Answered from the ready index by
/// `hw_registry_claim`, like labels.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a GPU model over `HW_MAX_KEY_LEN` bytes (no worker
/// has one); the filter is unchanged.
#[no_mangle]
pub extern "C" fn hw_worker_filter_set_fits(
    filter: *mut hw_worker_filter,
    needs: *const hw_worker_spec,
) -> hw_status {
    ffi_boundary!(hw_worker_filter_set_fits, {
        let filter = arg_mut!(filter);
        let needs = arg_ref!(needs);
        crate::filter::checked_edit(
            &mut filter.filter,
            |f| f.fits.replace(needs.spec.resources.clone()),
            |f, old| f.fits = old,
        )
    })
}

/// Only workers of this architecture (a `hw_architecture` value).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for an out-of-range value.
#[no_mangle]
pub extern "C" fn hw_worker_filter_set_architecture(
    filter: *mut hw_worker_filter,
    architecture: u32,
) -> hw_status {
    ffi_boundary!(hw_worker_filter_set_architecture, {
        let filter = arg_mut!(filter);
        filter.filter.architecture = Some(match architecture {
            0 => Architecture::Amd64,
            1 => Architecture::Arm64,
            2 => Architecture::Arm,
            other => {
                return Err(Error::invalid(format!(
                    "{other} is not a hw_architecture (0..=2)"
                )))
            }
        });
        Ok(())
    })
}

/// The counts of one pool's workers (those labelled `hodei.pool=NAME`), per state and in all,
/// from the registry's maintained counters: O(pools), never a fleet scan. A pool with no
/// worker (or a name no worker carries) has all counts zero. Every pool's counts at once:
/// `"by_pool"` of `hw_registry_stats_json`.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a null argument or a name that is not UTF-8.
#[no_mangle]
pub extern "C" fn hw_registry_pool_counts(
    registry: *const hw_registry,
    pool: *const c_char,
    out: *mut hw_worker_counts,
) -> hw_status {
    ffi_boundary!(hw_registry_pool_counts, {
        let registry = arg_ref!(registry);
        let pool = arg_str!(pool);
        let out = arg_out!(out);
        let stats = registry.inner.stats()?;
        // Exhaustive on purpose, as hw_worker_counts::from_core: a new state fails the build.
        let StateCounts {
            creating,
            connecting,
            ready,
            busy,
            draining,
            terminating,
            terminated,
        } = stats.by_pool.get(pool).copied().unwrap_or_default();
        out.write(hw_worker_counts {
            total: creating + connecting + ready + busy + draining + terminating + terminated,
            creating,
            connecting,
            ready,
            busy,
            draining,
            terminating,
            terminated,
        });
        Ok(())
    })
}
