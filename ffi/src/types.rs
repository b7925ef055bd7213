//! Value types shared by every part of the API: ids, enums, strings, status names.

use std::ffi::{c_char, CString};

use engine::{Error, JobId, ProviderId, ProviderType, TerminationReason, WorkerId, WorkerState};

use crate::boundary::{arg_out, arg_str, ffi_boundary, hw_status, run_quiet};

/// A worker's id: the 16 bytes of a UUID v4. Passed by value. The all-zero (nil) id is never a
/// worker: functions taking one answer `HW_ERR_INVALID_ARGUMENT`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct hw_worker_id {
    /// The UUID bytes, in RFC 4122 order.
    pub bytes: [u8; 16],
}

impl hw_worker_id {
    pub(crate) fn to_core(self) -> Result<WorkerId, Error> {
        WorkerId::from_bytes(self.bytes)
    }

    pub(crate) fn from_core(id: &WorkerId) -> Self {
        hw_worker_id {
            bytes: *id.as_bytes(),
        }
    }
}

/// Size of the buffer `hw_worker_id_format` needs: 36 characters plus the NUL.
pub const HW_WORKER_ID_STRING_SIZE: usize = 37;

/// `hw_subscription_recv` timeout meaning "wait until an event arrives or the registry is
/// gone".
pub const HW_WAIT_FOREVER: u64 = u64::MAX;

/// Where a worker is in its life (see the state diagram in DESIGN.md §3).
///
/// Functions that take a state take it as `uint32_t`, so that an out-of-range value is an
/// `HW_ERR_INVALID_ARGUMENT` and not undefined behaviour.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum hw_worker_state {
    /// Asked of the provider; the instance is starting.
    Creating = 0,
    /// The agent is up and connecting.
    Connecting = 1,
    /// Idle and accepting jobs.
    Ready = 2,
    /// Running a job.
    Busy = 3,
    /// Finishing its job (if any); takes no new job.
    Draining = 4,
    /// Being destroyed by its provider.
    Terminating = 5,
    /// Gone.
    Terminated = 6,
}

pub(crate) fn state_to_c(state: WorkerState) -> hw_worker_state {
    hw_worker_state::from_core(state)
}

pub(crate) fn state_from_c(value: u32) -> Result<WorkerState, Error> {
    u8::try_from(value)
        .ok()
        .and_then(WorkerState::from_u8)
        .ok_or_else(|| Error::invalid(format!("{value} is not a hw_worker_state (0..=6)")))
}

/// Why a worker is (to be) terminated or was unregistered.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum hw_termination_reason {
    /// `READY` longer than the spec's idle timeout.
    Idle = 0,
    /// Older than the spec's maximum lifetime.
    Lifetime = 1,
    /// Draining and done with its job.
    Drained = 2,
    /// Ran the spec's `max_jobs` jobs.
    MaxJobs = 3,
    /// Missed its heartbeat deadline.
    Unhealthy = 4,
    /// Never reached `READY` within the startup timeout.
    StartupTimeout = 5,
    /// Its instance disappeared from the provider.
    Vanished = 6,
    /// Removed by autoscaling.
    ScaledDown = 7,
    /// Asked for by the host.
    Requested = 8,
    /// Reclaimed after an interruption notice (`hw_manager_notify_interruption`): at its
    /// deadline, or at the notice for a worker still starting.
    Interrupted = 9,
}

pub(crate) fn reason_to_c(reason: TerminationReason) -> hw_termination_reason {
    hw_termination_reason::from_core(reason)
}

pub(crate) fn reason_from_c(value: u32) -> Result<TerminationReason, Error> {
    u8::try_from(value)
        .ok()
        .and_then(TerminationReason::from_u8)
        .ok_or_else(|| Error::invalid(format!("{value} is not a hw_termination_reason (0..=9)")))
}

pub(crate) fn provider_id(text: &str) -> Result<ProviderId, Error> {
    ProviderId::new(text)
}

pub(crate) fn job_id(text: &str) -> Result<JobId, Error> {
    JobId::new(text)
}

/// `"docker"`, `"kubernetes"`, …, `"custom:NAME"`.
pub(crate) fn provider_type(text: &str) -> Result<ProviderType, Error> {
    text.parse()
}

/// Duration from milliseconds.
pub(crate) fn ms(value: u64) -> std::time::Duration {
    std::time::Duration::from_millis(value)
}

/// Duration in whole milliseconds, saturating (the inverse of [`ms`] for the C structs).
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The static name of a status (`"HW_ERR_NOT_FOUND"`); `"HW_UNKNOWN_STATUS"` for a value that
/// is not a status. Never NULL; never to be freed.
#[no_mangle]
pub extern "C" fn hw_status_str(status: u32) -> *const c_char {
    crate::boundary::ALL_STATUSES
        .get(status as usize)
        .map(|s| s.name().as_ptr())
        .unwrap_or(c"HW_UNKNOWN_STATUS".as_ptr())
}

/// The message of the last call on this thread that failed, naming the function and what was
/// wrong; `""` if the last call succeeded. Never NULL; never to be freed.
///
/// The text stays valid until the next call into the library **on this thread** (any call
/// but `hw_last_error_message`, `hw_status_str`, `hw_abi_version` and the `_free` functions);
/// copy it to keep it.
#[no_mangle]
pub extern "C" fn hw_last_error_message() -> *const c_char {
    run_quiet(c"".as_ptr(), crate::boundary::last_error_ptr)
}

/// Frees a string the library returned through a `char **` out-param. NULL does nothing.
/// Strings borrowed through a `const char **` out-param must NOT be passed here.
#[no_mangle]
pub extern "C" fn hw_string_free(string: *mut c_char) {
    if string.is_null() {
        return;
    }
    run_quiet((), || {
        // SAFETY: non-NULL and, by the ownership rules, made by `CString::into_raw` here.
        drop(unsafe { CString::from_raw(string) })
    })
}

/// Parses a worker id from its text form (hyphenated UUID; upper case, simple and braced forms
/// are accepted).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for NULL, invalid UTF-8, malformed text or the nil UUID.
#[no_mangle]
pub extern "C" fn hw_worker_id_parse(text: *const c_char, out: *mut hw_worker_id) -> hw_status {
    ffi_boundary!(hw_worker_id_parse, {
        let text = arg_str!(text);
        let out = arg_out!(out);
        let id = WorkerId::parse(text)?;
        out.write(hw_worker_id::from_core(&id));
        Ok(())
    })
}

/// Writes the lowercase hyphenated text of `id` and a NUL into `buffer`, which must hold at
/// least `HW_WORKER_ID_STRING_SIZE` (37) bytes.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL or too small buffer, or the nil id; the buffer
/// is then untouched.
#[no_mangle]
pub extern "C" fn hw_worker_id_format(
    id: hw_worker_id,
    buffer: *mut c_char,
    buffer_size: usize,
) -> hw_status {
    ffi_boundary!(hw_worker_id_format, {
        if buffer.is_null() {
            return Err(Error::invalid("`buffer` is NULL"));
        }
        if buffer_size < HW_WORKER_ID_STRING_SIZE {
            return Err(Error::invalid(format!(
                "`buffer_size` is {buffer_size}; a worker id needs {HW_WORKER_ID_STRING_SIZE} bytes"
            )));
        }
        let text = id.to_core()?.to_string();
        debug_assert_eq!(text.len() + 1, HW_WORKER_ID_STRING_SIZE);
        // SAFETY: the caller promises `buffer_size` writable bytes; we write 37.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), buffer, text.len());
            buffer.add(text.len()).write(0);
        }
        Ok(())
    })
}

/// The lowercase name of a state (`"ready"`); `"unknown"` for an out-of-range value. Never
/// NULL; never to be freed.
#[no_mangle]
pub extern "C" fn hw_worker_state_str(state: u32) -> *const c_char {
    match state_from_c(state) {
        Ok(WorkerState::Creating) => c"creating".as_ptr(),
        Ok(WorkerState::Connecting) => c"connecting".as_ptr(),
        Ok(WorkerState::Ready) => c"ready".as_ptr(),
        Ok(WorkerState::Busy) => c"busy".as_ptr(),
        Ok(WorkerState::Draining) => c"draining".as_ptr(),
        Ok(WorkerState::Terminating) => c"terminating".as_ptr(),
        Ok(WorkerState::Terminated) => c"terminated".as_ptr(),
        Err(_) => c"unknown".as_ptr(),
    }
}

/// The library's release version (`"0.1.0"`); its ABI version is `hw_abi_version`. Never
/// NULL; never to be freed.
#[no_mangle]
pub extern "C" fn hw_version() -> *const c_char {
    const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn enum_values_match_the_core() {
        for state in WorkerState::ALL {
            assert_eq!(state_to_c(state) as u32, state as u32);
            assert_eq!(state_from_c(state as u32).unwrap(), state);
            let name = unsafe { CStr::from_ptr(hw_worker_state_str(state as u32)) };
            assert_eq!(name.to_str().unwrap(), state.as_str());
        }
        assert!(state_from_c(7).is_err());
        assert!(state_from_c(u32::MAX).is_err());
        for reason in TerminationReason::ALL {
            assert_eq!(reason_to_c(reason) as u32, reason as u32);
            assert_eq!(reason_from_c(reason as u32).unwrap(), reason);
        }
        assert!(reason_from_c(10).is_err());
    }

    #[test]
    fn worker_id_text_round_trip() {
        let id = WorkerId::new();
        let mut buf = [0 as c_char; HW_WORKER_ID_STRING_SIZE];
        let c = hw_worker_id::from_core(&id);
        assert_eq!(
            hw_worker_id_format(c, buf.as_mut_ptr(), buf.len()),
            hw_status::HwOk
        );
        let text = unsafe { CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(text.to_str().unwrap(), id.to_string());
        let mut back = hw_worker_id { bytes: [0; 16] };
        assert_eq!(
            hw_worker_id_parse(text.as_ptr(), &mut back),
            hw_status::HwOk
        );
        assert_eq!(back, c);
        assert_eq!(
            hw_worker_id_format(c, buf.as_mut_ptr(), 36),
            hw_status::HwErrInvalidArgument
        );
        let version = unsafe { CStr::from_ptr(hw_version()) };
        assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
