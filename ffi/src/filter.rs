//! `hw_worker_filter`: which workers a find or claim is about. Every condition must hold; the
//! empty filter matches every worker.

use std::ffi::c_char;

use engine::{Error, WorkerFilter};

use crate::boundary::{
    arg_mut, arg_out, arg_str, ffi_boundary, free_handle, hw_status, into_handle,
};
use crate::types::{ms, provider_id, provider_type, state_from_c};

/// Makes `edit` to the filter and keeps it only when the filter still passes the core's check
/// ([`WorkerFilter::validate`]: no string or number of entries a worker cannot hold, the
/// limits `HW_MAX_KEY_LEN`, `HW_MAX_VALUE_LEN`, `HW_MAX_ENTRIES`); otherwise `undo` puts the
/// filter back as it was and the core's error is returned. So a C filter is refused at the
/// call that breaks a limit, by the one check every binding uses (`find` and `claim` repeat
/// it). The filter was valid before (every change comes through here), so the check only
/// rejects what `edit` did.
pub(crate) fn checked_edit<U>(
    filter: &mut WorkerFilter,
    edit: impl FnOnce(&mut WorkerFilter) -> U,
    undo: impl FnOnce(&mut WorkerFilter, U),
) -> Result<(), Error> {
    let undo_data = edit(filter);
    filter.validate().inspect_err(|_| undo(filter, undo_data))
}

/// A filter under construction. Not thread-safe to change; once built, pass it (`const`) to any
/// number of calls on any threads.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Default)]
pub struct hw_worker_filter {
    pub(crate) filter: WorkerFilter,
}

/// A new filter that matches every worker.
#[no_mangle]
pub extern "C" fn hw_worker_filter_new(out: *mut *mut hw_worker_filter) -> hw_status {
    ffi_boundary!(hw_worker_filter_new, {
        let out = arg_out!(out);
        out.write(into_handle(hw_worker_filter::default()));
        Ok(())
    })
}

/// Accepts workers in `state` (a `hw_worker_state`); called several times, any of the states.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for an out-of-range state.
#[no_mangle]
pub extern "C" fn hw_worker_filter_add_state(
    filter: *mut hw_worker_filter,
    state: u32,
) -> hw_status {
    ffi_boundary!(hw_worker_filter_add_state, {
        let filter = arg_mut!(filter);
        let state = state_from_c(state)?;
        filter.filter.states.insert(state);
        Ok(())
    })
}

/// Only workers of this provider.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for an invalid provider id (empty, over 128 bytes,
/// control characters).
#[no_mangle]
pub extern "C" fn hw_worker_filter_set_provider_id(
    filter: *mut hw_worker_filter,
    provider: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_worker_filter_set_provider_id, {
        let filter = arg_mut!(filter);
        filter.filter.provider_id = Some(provider_id(arg_str!(provider))?);
        Ok(())
    })
}

/// Only workers of this provider type (`"docker"`, …, `"custom:NAME"`).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for an unknown type.
#[no_mangle]
pub extern "C" fn hw_worker_filter_set_provider_type(
    filter: *mut hw_worker_filter,
    provider_type_name: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_worker_filter_set_provider_type, {
        let filter = arg_mut!(filter);
        filter.filter.provider_type = Some(provider_type(arg_str!(provider_type_name))?);
        Ok(())
    })
}

/// Only workers that accept jobs now (`true`: `READY`) or only those that do not (`false`).
#[no_mangle]
pub extern "C" fn hw_worker_filter_set_accepting_jobs(
    filter: *mut hw_worker_filter,
    accepting: bool,
) -> hw_status {
    ffi_boundary!(hw_worker_filter_set_accepting_jobs, {
        arg_mut!(filter).filter.accepting_jobs = Some(accepting);
        Ok(())
    })
}

/// Only `READY` workers idle for at least `idle_ms`.
#[no_mangle]
pub extern "C" fn hw_worker_filter_set_idle_for_ms(
    filter: *mut hw_worker_filter,
    idle_ms: u64,
) -> hw_status {
    ffi_boundary!(hw_worker_filter_set_idle_for_ms, {
        arg_mut!(filter).filter.idle_for = Some(ms(idle_ms));
        Ok(())
    })
}

/// Only workers without a heartbeat for longer than `silent_ms` (strictly), judged on their last
/// heartbeat alone: in any state, and not moved by a grace period (unlike
/// `hw_registry_find_unhealthy`).
#[no_mangle]
pub extern "C" fn hw_worker_filter_set_unhealthy_for_ms(
    filter: *mut hw_worker_filter,
    silent_ms: u64,
) -> hw_status {
    ffi_boundary!(hw_worker_filter_set_unhealthy_for_ms, {
        arg_mut!(filter).filter.unhealthy_for = Some(ms(silent_ms));
        Ok(())
    })
}

/// Requires the label `key` with exactly `value` (a key given again replaces its value).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a key over `HW_MAX_KEY_LEN` bytes, a value over
/// `HW_MAX_VALUE_LEN`, or a label beyond `HW_MAX_ENTRIES` (no worker holds such labels); the
/// filter is unchanged.
#[no_mangle]
pub extern "C" fn hw_worker_filter_add_label(
    filter: *mut hw_worker_filter,
    key: *const c_char,
    value: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_worker_filter_add_label, {
        let filter = arg_mut!(filter);
        let (key, value) = (arg_str!(key), arg_str!(value));
        checked_edit(
            &mut filter.filter,
            |f| f.labels.insert(key.to_owned(), value.to_owned()),
            |f, old| match old {
                Some(old) => {
                    f.labels.insert(key.to_owned(), old);
                }
                None => {
                    f.labels.remove(key);
                }
            },
        )
    })
}

/// Requires a capability.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a capability over `HW_MAX_KEY_LEN` bytes, or one
/// beyond `HW_MAX_ENTRIES` (no worker holds such capabilities); the filter is unchanged.
#[no_mangle]
pub extern "C" fn hw_worker_filter_add_capability(
    filter: *mut hw_worker_filter,
    capability: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_worker_filter_add_capability, {
        let filter = arg_mut!(filter);
        let capability = arg_str!(capability);
        checked_edit(
            &mut filter.filter,
            |f| f.capabilities.insert(capability.to_owned()),
            |f, new| {
                if new {
                    f.capabilities.remove(capability);
                }
            },
        )
    })
}

/// At most `limit` results.
#[no_mangle]
pub extern "C" fn hw_worker_filter_set_limit(
    filter: *mut hw_worker_filter,
    limit: usize,
) -> hw_status {
    ffi_boundary!(hw_worker_filter_set_limit, {
        arg_mut!(filter).filter.limit = Some(limit);
        Ok(())
    })
}

/// Frees a filter. NULL does nothing.
#[no_mangle]
pub extern "C" fn hw_worker_filter_free(filter: *mut hw_worker_filter) {
    free_handle(filter)
}
