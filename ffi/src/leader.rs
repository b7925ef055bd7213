//! The replicated manager from C: whether a manager leads, who leads (in a tick report, or as
//! the manager last saw it), and stepping down.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use engine::{WorkerLifecycleManager, WorkerRegistry};

use crate::boundary::{arg_out, arg_ref, arg_str, ffi_boundary, hw_status, into_handle};
use crate::manager::{fixed_text, hw_manager, hw_manager_config, hw_report};
use crate::registry::hw_registry;

/// Who holds the leadership lease, as a tick report saw it. `holder` is borrowed from the
/// report: valid until `hw_report_free`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hw_leader_info {
    /// The holder's name (one per replica; `"local"` for a single-process manager).
    pub holder: *const c_char,
    /// Its term: the fencing token, larger with every change of leader.
    pub term: u64,
    /// When this holder took this term (ms since the epoch, the registry's clock).
    pub since_ms: u64,
    /// When the lease expires unless renewed (`UINT64_MAX`: never).
    pub expires_at_ms: u64,
}

/// The leader as the tick saw it: this manager when `summary.leading`, another replica
/// otherwise. Writes `*found = false` (and leaves `*out` alone) when no replica ever led, or
/// for a report that is not a tick's.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_report_get_leader(
    report: *const hw_report,
    out: *mut hw_leader_info,
    found: *mut bool,
) -> hw_status {
    ffi_boundary!(hw_report_get_leader, {
        let report = arg_ref!(report);
        let out = arg_out!(out);
        let found = arg_out!(found);
        match &report.leader {
            Some((holder, info)) => {
                out.write(hw_leader_info {
                    holder: holder.as_ptr(),
                    term: info.term,
                    since_ms: info.since,
                    expires_at_ms: info.expires_at,
                });
                found.write(true);
            }
            None => found.write(false),
        }
        Ok(())
    })
}

/// Size of a buffer that holds any lease holder's name and its NUL: 128 bytes (the most
/// `hw_manager_new_replicated` accepts) plus one.
pub const HW_LEASE_HOLDER_SIZE: usize = 129;

const _: () = assert!(HW_LEASE_HOLDER_SIZE == engine::MAX_LEASE_HOLDER_LEN + 1);

/// Who holds the leadership lease, as a manager last saw it (`hw_manager_leader`): a copy,
/// with the holder's name in the struct (nothing to free).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hw_leader_state {
    /// The holder's name, NUL-terminated (one per replica; `"local"` for a single-process
    /// manager).
    pub holder: [c_char; HW_LEASE_HOLDER_SIZE],
    /// Its term: the fencing token, larger with every change of leader.
    pub term: u64,
    /// When this holder took this term (ms since the epoch, the registry's clock).
    pub since_ms: u64,
    /// When the lease expires unless renewed (`UINT64_MAX`: never).
    pub expires_at_ms: u64,
}

/// The leader as this manager's lease renewals last saw it, outside a tick report: this
/// manager when it leads, another replica when it follows (its ticks renew the view; until
/// its first tick a replica may have seen none). Writes `*found = false` (and leaves `*out`
/// alone) when it has seen no leader.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_manager_leader(
    manager: *const hw_manager,
    out: *mut hw_leader_state,
    found: *mut bool,
) -> hw_status {
    ffi_boundary!(hw_manager_leader, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        let found = arg_out!(found);
        match manager.inner.leader() {
            Some(info) => {
                out.write(hw_leader_state {
                    holder: fixed_text(&info.holder),
                    term: info.term,
                    since_ms: info.since,
                    expires_at_ms: info.expires_at,
                });
                found.write(true);
            }
            None => found.write(false),
        }
        Ok(())
    })
}

/// A manager that is one replica of several sharing `registry`, named `holder` (unique per
/// process, e.g. "host-1234"), on the registry's leadership lease lasting `lease_ttl_ms` after
/// each renewal. Only the replica holding the lease acts; the others' ticks only try to take
/// it (tick at least every `lease_ttl_ms / 3`, e.g. with `hw_ticker_start`). On a registry
/// that is not shared between processes (the in-memory one) this is `hw_manager_new`: the
/// manager always leads.
///
/// Errors: as `hw_manager_new`; `HW_ERR_INVALID_ARGUMENT` for an empty holder or one longer
/// than 128 bytes, or a `lease_ttl_ms` under 3 or above `HW_MAX_DURATION_MS` (100 years), on
/// every registry (the in-memory one too);
/// `HW_ERR_BACKEND` when the lease's store cannot be reached.
#[no_mangle]
pub extern "C" fn hw_manager_new_replicated(
    registry: *const hw_registry,
    config: *const hw_manager_config,
    holder: *const c_char,
    lease_ttl_ms: u64,
    out: *mut *mut hw_manager,
) -> hw_status {
    ffi_boundary!(hw_manager_new_replicated, {
        let registry = arg_ref!(registry);
        let config = arg_ref!(config);
        let holder = arg_str!(holder);
        let out = arg_out!(out);
        let shared: Arc<dyn WorkerRegistry> = registry.inner.clone();
        let manager = WorkerLifecycleManager::replicated(
            shared,
            config.to_core(),
            holder,
            Duration::from_millis(lease_ttl_ms),
        )?;
        out.write(into_handle(hw_manager {
            inner: Arc::new(manager),
        }));
        Ok(())
    })
}

/// Whether the manager leads now: it holds the leadership lease and trusts it (always true
/// for a single-process manager, unless it stepped down and has not ticked since).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_manager_is_leader(manager: *const hw_manager, out: *mut bool) -> hw_status {
    ffi_boundary!(hw_manager_is_leader, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        out.write(manager.inner.is_leader());
        Ok(())
    })
}

/// Gives the leadership lease up (a clean shutdown of a replica): another replica takes over
/// at its next tick. Leader-only calls on this manager then fail with `HW_ERR_NOT_LEADER`
/// until a later tick takes the lease again.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for NULL; `HW_ERR_BACKEND` when the lease's store
/// cannot be reached (the lease then expires by itself).
#[no_mangle]
pub extern "C" fn hw_manager_step_down(manager: *const hw_manager) -> hw_status {
    ffi_boundary!(hw_manager_step_down, {
        arg_ref!(manager).inner.step_down()
    })
}
