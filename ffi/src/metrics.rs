//! `hw_manager_metrics_text`: the manager's metrics in the OpenMetrics text format, for a
//! `/metrics` endpoint written in C; `hw_manager_metrics_set_timing` / `_timing`: the duration
//! histograms on or off (Rust's `Metrics::set_timing` / `timing`).

use std::ffi::c_char;

use crate::boundary::{arg_out, arg_ref, c_string, ffi_boundary, hw_status};
use crate::manager::hw_manager;

/// The manager's metrics (workers by state and provider, jobs assigned and released,
/// provisions, destroys, failures, unhealthy detections, lost jobs, brake holds, provider
/// back-off, tick and health-check durations, heartbeat ages, event drops) in the OpenMetrics
/// text format, ending in `# EOF`. Serve it with the content type
/// `application/openmetrics-text; version=1.0.0; charset=utf-8`. Reading costs O(1) in the
/// fleet size. Free with `hw_string_free`.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_manager_metrics_text(
    manager: *const hw_manager,
    out: *mut *mut c_char,
) -> hw_status {
    ffi_boundary!(hw_manager_metrics_text, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        let text = manager.inner.metrics_text();
        out.write(c_string(&text, "metrics text")?.into_raw());
        Ok(())
    })
}

/// Turns the metrics' duration histograms (`hodei_workers_tick_duration_seconds`,
/// `hodei_workers_health_check_duration_seconds`) on (`true`, the default) or off. Off, ticks
/// and health checks read no clock for the metrics and the histograms stand still; they are
/// still counted (`hodei_workers_ticks_total`, `hodei_workers_health_checks_total`: one relaxed
/// atomic add a call either way), and the rest of `hw_manager_metrics_text` is read at scrape
/// time as before. Takes effect from the next tick or health check (one already running keeps
/// its choice); one relaxed atomic store, callable from any thread.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL `manager`.
#[no_mangle]
pub extern "C" fn hw_manager_metrics_set_timing(manager: *const hw_manager, on: bool) -> hw_status {
    ffi_boundary!(hw_manager_metrics_set_timing, {
        arg_ref!(manager).inner.metrics().set_timing(on);
        Ok(())
    })
}

/// Whether the metrics' duration histograms are measured (`hw_manager_metrics_set_timing`), in
/// `*out`.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument (nothing written).
#[no_mangle]
pub extern "C" fn hw_manager_metrics_timing(
    manager: *const hw_manager,
    out: *mut bool,
) -> hw_status {
    ffi_boundary!(hw_manager_metrics_timing, {
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        out.write(manager.inner.metrics().timing());
        Ok(())
    })
}
