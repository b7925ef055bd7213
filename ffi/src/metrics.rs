//! `hw_manager_metrics_text`: the manager's metrics in the OpenMetrics text format, for a
//! `/metrics` endpoint written in C.

use std::ffi::c_char;

use crate::boundary::{arg_out, arg_ref, c_string, ffi_boundary, hw_status};
use crate::manager::hw_manager;

/// The manager's metrics (workers by state and provider, jobs assigned and released,
/// provisions, destroys, failures, unhealthy detections, lost jobs, brake holds, provider
/// back-off, tick and health-check durations, heartbeat ages, event drops) in the OpenMetrics
/// text format, ending in `# EOF`. Serve it with the content type
/// `application/openmetrics-text; version=1.0.0; charset=utf-8`. Reading costs O(1) in the
/// fleet size. Free with `hw_string_free`.
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
