//! `hw_clock`: the system clock or a manual one that tests and simulations move by hand.

use std::sync::Arc;

use engine::{Clock, Error, ManualClock, SystemClock, Timestamp};

use crate::boundary::{arg_out, arg_ref, ffi_boundary, free_handle, hw_status, into_handle};
use crate::types::ms;

/// A clock: the monotonic system clock or a manual clock. A registry made with
/// `hw_registry_new_with_clock` shares it: advancing the clock moves the registry's time. The
/// handle may be freed while registries still use the clock.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct hw_clock {
    pub(crate) kind: ClockKind,
}

#[derive(Debug, Clone)]
pub(crate) enum ClockKind {
    System(Arc<SystemClock>),
    Manual(Arc<ManualClock>),
}

impl hw_clock {
    pub(crate) fn as_dyn(&self) -> Arc<dyn Clock> {
        match &self.kind {
            ClockKind::System(c) => c.clone(),
            ClockKind::Manual(c) => c.clone(),
        }
    }

    fn manual(&self) -> Result<&ManualClock, Error> {
        match &self.kind {
            ClockKind::Manual(c) => Ok(c),
            ClockKind::System(_) => Err(Error::invalid(
                "the system clock cannot be set or advanced; use hw_clock_new_manual",
            )),
        }
    }
}

/// A new monotonic system clock (wall time at creation, then advanced by a monotonic timer, so
/// that a wall-clock jump never expires a worker early).
#[no_mangle]
pub extern "C" fn hw_clock_new_system(out: *mut *mut hw_clock) -> hw_status {
    ffi_boundary!(hw_clock_new_system, {
        let out = arg_out!(out);
        out.write(into_handle(hw_clock {
            kind: ClockKind::System(Arc::new(SystemClock::new())),
        }));
        Ok(())
    })
}

/// A new manual clock reading `start_ms` (milliseconds since the Unix epoch). It moves only with
/// `hw_clock_advance` / `hw_clock_set`.
#[no_mangle]
pub extern "C" fn hw_clock_new_manual(start_ms: u64, out: *mut *mut hw_clock) -> hw_status {
    ffi_boundary!(hw_clock_new_manual, {
        let out = arg_out!(out);
        out.write(into_handle(hw_clock {
            kind: ClockKind::Manual(Arc::new(ManualClock::new(start_ms))),
        }));
        Ok(())
    })
}

/// The clock's time in milliseconds since the Unix epoch.
#[no_mangle]
pub extern "C" fn hw_clock_now(clock: *const hw_clock, out_ms: *mut u64) -> hw_status {
    ffi_boundary!(hw_clock_now, {
        let clock = arg_ref!(clock);
        let out_ms = arg_out!(out_ms);
        out_ms.write(clock.as_dyn().now());
        Ok(())
    })
}

/// Moves a manual clock forward by `by_ms` (saturating) and writes the new time.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for the system clock.
#[no_mangle]
pub extern "C" fn hw_clock_advance(
    clock: *const hw_clock,
    by_ms: u64,
    out_now_ms: *mut u64,
) -> hw_status {
    ffi_boundary!(hw_clock_advance, {
        let clock = arg_ref!(clock);
        let out_now_ms = arg_out!(out_now_ms);
        let now: Timestamp = clock.manual()?.advance(ms(by_ms));
        out_now_ms.write(now);
        Ok(())
    })
}

/// Sets a manual clock to `at_ms`; a time earlier than the current one is ignored (the clock
/// never goes backwards). Writes the time now in force.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for the system clock.
#[no_mangle]
pub extern "C" fn hw_clock_set(
    clock: *const hw_clock,
    at_ms: u64,
    out_now_ms: *mut u64,
) -> hw_status {
    ffi_boundary!(hw_clock_set, {
        let clock = arg_ref!(clock);
        let out_now_ms = arg_out!(out_now_ms);
        out_now_ms.write(clock.manual()?.set(at_ms));
        Ok(())
    })
}

/// Frees a clock handle (registries using the clock keep it alive). NULL does nothing.
#[no_mangle]
pub extern "C" fn hw_clock_free(clock: *mut hw_clock) {
    free_handle(clock)
}
