//! The panic boundary, status codes, the thread-local last error, and the argument checks
//! every exported function goes through.
//!
//! Every exported function that can fail has the body `ffi_boundary!(name, { ... })`. The
//! macro runs the body under `catch_unwind` (since Rust 1.81 an unwind out of an
//! `extern "C"` function aborts the host: this is what turns a bug into `HW_ERR_PANIC`),
//! maps the core [`Error`] to an [`hw_status`], and records the message for
//! `hw_last_error_message`. Pointer arguments are checked with `arg_ref!`, `arg_mut!`,
//! `arg_str!` and `arg_out!` *before* anything happens, so that an invalid call has no effect,
//! and out-params are written only once the operation succeeded.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use engine::Error;

/// The result of every fallible call. `HW_OK` is 0; the others map one-to-one to the library's
/// error kinds, plus `HW_ERR_PANIC`.
/// cbindgen:prefix-with-name=false
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum hw_status {
    /// Success.
    HwOk = 0,
    /// No worker with this id is registered (it may have been unregistered: ids are never reused).
    HwErrNotFound = 1,
    /// A worker with this id is, or once was, registered (ids are never reused).
    HwErrAlreadyExists = 2,
    /// The state machine refuses this move.
    HwErrInvalidTransition = 3,
    /// The worker is not `READY`, so it takes no job.
    HwErrNotAvailable = 4,
    /// The worker holds no job, or another job than the one named.
    HwErrNotBusy = 5,
    /// Another worker already holds this job.
    HwErrJobAlreadyAssigned = 6,
    /// No provider with this id is registered with the manager.
    HwErrProviderNotFound = 7,
    /// A provider call failed.
    HwErrProvider = 8,
    /// The fleet is at `max_workers` (counting provisions in flight).
    HwErrCapacity = 9,
    /// A NULL pointer, invalid UTF-8, an over-long or malformed id, a string over its maximum
    /// size (see `hw_worker_spec`), an out-of-range enum value, a nonsense configuration or
    /// duration, a subscription capacity of 0.
    HwErrInvalidArgument = 10,
    /// A snapshot could not be read (corrupt, foreign, inconsistent); nothing was changed.
    HwErrSnapshot = 11,
    /// A storage backend failed (reserved for shared-database backends).
    HwErrBackend = 12,
    /// A bug: the library panicked. The call had no defined effect; please report it.
    HwErrPanic = 13,
    /// A leader-only call (provision, terminate, health check, cleanup, reconcile) on a
    /// manager that does not hold the leadership lease, or whose lease was not renewed in
    /// time: another replica acts on the fleet. Nothing was changed.
    HwErrNotLeader = 14,
}

/// Every status, in value order (a free constant: cbindgen would export an associated one).
pub(crate) const ALL_STATUSES: [hw_status; 15] = [
    hw_status::HwOk,
    hw_status::HwErrNotFound,
    hw_status::HwErrAlreadyExists,
    hw_status::HwErrInvalidTransition,
    hw_status::HwErrNotAvailable,
    hw_status::HwErrNotBusy,
    hw_status::HwErrJobAlreadyAssigned,
    hw_status::HwErrProviderNotFound,
    hw_status::HwErrProvider,
    hw_status::HwErrCapacity,
    hw_status::HwErrInvalidArgument,
    hw_status::HwErrSnapshot,
    hw_status::HwErrBackend,
    hw_status::HwErrPanic,
    hw_status::HwErrNotLeader,
];

impl hw_status {
    /// The static C name of the status (`"HW_ERR_NOT_FOUND"`), NUL-terminated.
    pub(crate) fn name(self) -> &'static CStr {
        match self {
            hw_status::HwOk => c"HW_OK",
            hw_status::HwErrNotFound => c"HW_ERR_NOT_FOUND",
            hw_status::HwErrAlreadyExists => c"HW_ERR_ALREADY_EXISTS",
            hw_status::HwErrInvalidTransition => c"HW_ERR_INVALID_TRANSITION",
            hw_status::HwErrNotAvailable => c"HW_ERR_NOT_AVAILABLE",
            hw_status::HwErrNotBusy => c"HW_ERR_NOT_BUSY",
            hw_status::HwErrJobAlreadyAssigned => c"HW_ERR_JOB_ALREADY_ASSIGNED",
            hw_status::HwErrProviderNotFound => c"HW_ERR_PROVIDER_NOT_FOUND",
            hw_status::HwErrProvider => c"HW_ERR_PROVIDER",
            hw_status::HwErrCapacity => c"HW_ERR_CAPACITY",
            hw_status::HwErrInvalidArgument => c"HW_ERR_INVALID_ARGUMENT",
            hw_status::HwErrSnapshot => c"HW_ERR_SNAPSHOT",
            hw_status::HwErrBackend => c"HW_ERR_BACKEND",
            hw_status::HwErrPanic => c"HW_ERR_PANIC",
            hw_status::HwErrNotLeader => c"HW_ERR_NOT_LEADER",
        }
    }

    /// The status of a core error: one status per kind (DESIGN.md §6), through the exhaustive
    /// mapping of `mirror.rs`.
    pub(crate) fn of(error: &Error) -> hw_status {
        crate::mirror::KindStatus::from_core(error.kind()).status()
    }
}

thread_local! {
    /// The message of this thread's last failed call; `None` after a successful call.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Records `message` as this thread's last error (NUL bytes, which C cannot show, become `?`).
fn set_last_error(message: String) {
    let message = lossy_c_string(&message);
    // `try_with`: during thread teardown the slot may be gone; the status still tells.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = Some(message));
}

/// Called after every successful call, so it first looks (a read, no store) and writes only
/// when there is a message to drop: a hot call such as `hw_registry_heartbeat` then adds no
/// store to its path.
#[inline]
fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|slot| {
        if slot.try_borrow().is_ok_and(|message| message.is_some()) {
            if let Ok(mut slot) = slot.try_borrow_mut() {
                *slot = None;
            }
        }
    });
}

/// The pointer `hw_last_error_message` hands out: into the thread-local slot, or a static "".
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| match &*slot.borrow() {
            // The CString's heap buffer does not move until the slot is overwritten, which
            // happens only on the next call through the boundary on this thread.
            Some(message) => message.as_ptr(),
            None => c"".as_ptr(),
        })
        .unwrap_or(c"".as_ptr())
}

/// The text of a panic payload (`&str` or `String`; anything else is "unknown").
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown panic payload"
    }
}

/// Runs the body of an exported function: catches panics, maps errors to statuses, records the
/// last error (or clears it on success).
///
/// Inlined into each exported function (it is instantiated once per function anyway), with
/// the failure paths out of line: the arguments then reach the body in registers rather than
/// through a closure's captures on the stack, and the success path is a few instructions.
#[inline]
pub(crate) fn run(name: &'static str, body: impl FnOnce() -> Result<(), Error>) -> hw_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear_last_error();
            hw_status::HwOk
        }
        Ok(Err(error)) => failed(name, error),
        Err(payload) => panicked(name, payload),
    }
}

/// The error path of [`run`].
#[cold]
#[inline(never)]
fn failed(name: &'static str, error: Error) -> hw_status {
    let status = hw_status::of(&error);
    set_last_error(format!("{name}: {error}"));
    status
}

/// The panic path of [`run`].
#[cold]
#[inline(never)]
fn panicked(name: &'static str, payload: Box<dyn std::any::Any + Send>) -> hw_status {
    set_last_error(format!(
        "{name}: internal error (panic): {}",
        panic_text(&*payload)
    ));
    hw_status::HwErrPanic
}

/// Runs a destructor or an infallible call: a panic is swallowed (there is no status to
/// return it through) rather than aborting the host.
pub(crate) fn run_quiet<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// The body of an exported function returning `hw_status`.
macro_rules! ffi_boundary {
    ($name:ident, $body:block) => {
        $crate::boundary::run(
            stringify!($name),
            #[allow(unused_unsafe)]
            || -> ::std::result::Result<(), ::engine::Error> { $body },
        )
    };
}

/// `&T` from a `const T *` argument; `HW_ERR_INVALID_ARGUMENT` when NULL.
macro_rules! arg_ref {
    ($ptr:ident) => {
        $crate::boundary::check_ref($ptr, stringify!($ptr))?
    };
}

/// `&mut T` from a `T *` argument; `HW_ERR_INVALID_ARGUMENT` when NULL.
macro_rules! arg_mut {
    ($ptr:ident) => {
        $crate::boundary::check_mut($ptr, stringify!($ptr))?
    };
}

/// `&str` from a `const char *` argument; `HW_ERR_INVALID_ARGUMENT` when NULL or not UTF-8.
macro_rules! arg_str {
    ($ptr:ident) => {
        $crate::boundary::check_str($ptr, stringify!($ptr))?
    };
}

/// An out-param, checked non-NULL now and written (without reading or dropping what was
/// there) only on success.
macro_rules! arg_out {
    ($ptr:ident) => {
        $crate::boundary::Out::new($ptr, stringify!($ptr))?
    };
}

pub(crate) use {arg_mut, arg_out, arg_ref, arg_str, ffi_boundary};

fn null(what: &str) -> Error {
    Error::invalid(format!("`{what}` is NULL"))
}

/// See [`arg_ref!`].
pub(crate) fn check_ref<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Error> {
    // SAFETY: the caller promises (header: ownership rules) that a non-NULL pointer points to
    // a live object of this type made by this library; NULL is what we can and do check.
    unsafe { ptr.as_ref() }.ok_or_else(|| null(what))
}

/// See [`arg_mut!`].
pub(crate) fn check_mut<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Error> {
    // SAFETY: as in `arg_ref`; builders are documented as not shared between threads.
    unsafe { ptr.as_mut() }.ok_or_else(|| null(what))
}

/// See [`arg_str!`].
pub(crate) fn check_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Error> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string (header).
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes
        .to_str()
        .map_err(|e| Error::invalid(format!("`{what}` is not valid UTF-8: {e}")))
}

/// A checked, not yet written out-param.
#[derive(Debug)]
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    pub(crate) fn new(ptr: *mut T, what: &str) -> Result<Self, Error> {
        if ptr.is_null() {
            Err(null(what))
        } else {
            Ok(Out(ptr))
        }
    }

    /// Stores the result. Whatever the caller's variable held is overwritten, not dropped.
    pub(crate) fn write(self, value: T) {
        // SAFETY: checked non-NULL; the caller promises it points to writable storage for a T.
        unsafe { self.0.write(value) }
    }
}

/// `&[T]` of `count` elements from a `const T *` argument; `HW_ERR_INVALID_ARGUMENT` when NULL
/// or when `count` such elements cannot exist (more than `isize::MAX` bytes).
pub(crate) fn check_slice<'a, T>(
    ptr: *const T,
    count: usize,
    what: &str,
) -> Result<&'a [T], Error> {
    if ptr.is_null() {
        return Err(null(what));
    }
    too_many::<T>(count, what)?;
    // SAFETY: non-NULL, a size that fits the address space (checked above), and the caller
    // promises (header) `count` initialized elements there, unchanged during the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

fn too_many<T>(count: usize, what: &str) -> Result<(), Error> {
    match count.checked_mul(std::mem::size_of::<T>()) {
        Some(bytes) if isize::try_from(bytes).is_ok() => Ok(()),
        _ => Err(Error::invalid(format!(
            "`{what}` cannot hold {count} elements (more bytes than the address space)"
        ))),
    }
}

/// A checked, not yet written out-array of `count` elements.
#[derive(Debug)]
pub(crate) struct OutArray<T>(*mut T, usize);

impl<T> OutArray<T> {
    pub(crate) fn new(ptr: *mut T, count: usize, what: &str) -> Result<Self, Error> {
        if ptr.is_null() {
            return Err(null(what));
        }
        too_many::<T>(count, what)?;
        Ok(OutArray(ptr, count))
    }

    /// Stores the results, at most `count` of them, without reading or dropping what was
    /// there.
    pub(crate) fn write(self, values: impl IntoIterator<Item = T>) {
        for (i, value) in values.into_iter().take(self.1).enumerate() {
            // SAFETY: checked non-NULL, `i < count`, and the caller promises writable storage
            // for `count` elements of T.
            unsafe { self.0.add(i).write(value) }
        }
    }
}

/// Free text for C with its NULs (which C cannot hold) shown as `?`: for text that must reach
/// the host whatever it holds (error messages, a report's decisions, an event's fields).
pub(crate) fn lossy_c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "?")).unwrap_or_default()
}

/// A string for C, or `InvalidArgument` when it holds a NUL byte (possible only for text that
/// came from a restored snapshot or from Rust callers).
pub(crate) fn c_string(text: &str, what: &str) -> Result<CString, Error> {
    CString::new(text).map_err(|_| {
        Error::invalid(format!(
            "{what} contains a NUL byte and cannot be given to C"
        ))
    })
}

/// Moves a handle to the heap and gives C the pointer (freed by the type's `_free`).
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back a handle made by [`into_handle`] and drops it; NULL does nothing.
pub(crate) fn free_handle<T>(ptr: *mut T) {
    if ptr.is_null() {
        return;
    }
    run_quiet((), || {
        // SAFETY: non-NULL, and the caller promises it came from this library's constructor for
        // this type and is freed once (header: ownership rules).
        drop(unsafe { Box::from_raw(ptr) })
    })
}

/// Hands a list to C as an array the library allocated: its first element in `out_items` (NULL
/// for an empty list) and its length in `out_count`. C gives both back to the list's `_free`,
/// which calls [`free_array`].
pub(crate) fn give_array<T>(items: Vec<T>, out_items: Out<*mut T>, out_count: Out<usize>) {
    let count = items.len();
    let first = if count == 0 {
        std::ptr::null_mut()
    } else {
        Box::into_raw(items.into_boxed_slice()).cast::<T>()
    };
    out_items.write(first);
    out_count.write(count);
}

/// Takes back an array made by [`give_array`] and drops it (each element's `Drop` included);
/// NULL does nothing.
pub(crate) fn free_array<T>(items: *mut T, count: usize) {
    if items.is_null() {
        return;
    }
    run_quiet((), || {
        // SAFETY: non-NULL, and the caller promises (header: the `_free`'s doc) that it is an
        // array `give_array` made, with the count it wrote, freed once: the boxed slice it was.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(items, count)) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: the pointer is valid until the next boundary call on this thread.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn panics_become_hw_err_panic_with_a_message() {
        let status = run("hw_test", || panic!("boom {}", 42));
        assert_eq!(status, hw_status::HwErrPanic);
        assert!(last_error().contains("boom 42"), "{}", last_error());
        assert!(last_error().starts_with("hw_test:"));
        let status = run("hw_test", || std::panic::panic_any(17_u8));
        assert_eq!(status, hw_status::HwErrPanic);
        assert!(last_error().contains("unknown panic payload"));
    }

    #[test]
    fn errors_map_one_to_one_and_success_clears_the_message() {
        let id = engine::WorkerId::new();
        let job = engine::JobId::new("j").unwrap();
        let provider = engine::ProviderId::new("p").unwrap();
        let state = engine::WorkerState::Ready;
        let cases = [
            (Error::NotFound(id), hw_status::HwErrNotFound),
            (Error::AlreadyExists(id), hw_status::HwErrAlreadyExists),
            (
                Error::InvalidTransition {
                    worker_id: id,
                    from: state,
                    to: state,
                },
                hw_status::HwErrInvalidTransition,
            ),
            (
                Error::NotAvailable {
                    worker_id: id,
                    state,
                },
                hw_status::HwErrNotAvailable,
            ),
            (
                Error::NotBusy {
                    worker_id: id,
                    expected: None,
                },
                hw_status::HwErrNotBusy,
            ),
            (
                Error::JobAlreadyAssigned {
                    job_id: job,
                    worker_id: id,
                },
                hw_status::HwErrJobAlreadyAssigned,
            ),
            (
                Error::ProviderNotFound(provider.clone()),
                hw_status::HwErrProviderNotFound,
            ),
            (
                Error::Provider {
                    provider_id: provider,
                    message: "x".into(),
                },
                hw_status::HwErrProvider,
            ),
            (
                Error::CapacityExceeded("x".into()),
                hw_status::HwErrCapacity,
            ),
            (Error::invalid("x"), hw_status::HwErrInvalidArgument),
            (Error::Snapshot("x".into()), hw_status::HwErrSnapshot),
            (Error::Backend("x".into()), hw_status::HwErrBackend),
            (Error::NotLeader("x".into()), hw_status::HwErrNotLeader),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (error, status) in cases {
            let text = error.to_string();
            assert_eq!(run("hw_test", move || Err(error)), status);
            assert_eq!(last_error(), format!("hw_test: {text}"));
            assert!(seen.insert(status as u32), "two kinds share {status:?}");
        }
        assert_eq!(run("hw_test", || Ok(())), hw_status::HwOk);
        assert_eq!(last_error(), "");
        // Status values are dense and their names are the header's.
        for (i, status) in ALL_STATUSES.into_iter().enumerate() {
            assert_eq!(status as usize, i);
            assert!(status.name().to_str().unwrap().starts_with("HW_"));
        }
    }

    #[test]
    fn nul_bytes_in_messages_do_not_truncate_or_fail() {
        run("hw_test", || Err(Error::invalid("a\0b")));
        assert_eq!(last_error(), "hw_test: invalid argument: a?b");
    }

    #[test]
    fn argument_checks() {
        assert!(check_ref::<u8>(std::ptr::null(), "x").is_err());
        assert!(check_str(std::ptr::null(), "s").is_err());
        let bad = [0xff_u8, 0xfe, 0];
        let err = check_str(bad.as_ptr().cast(), "s").unwrap_err();
        assert!(err.to_string().contains("UTF-8"));
        assert_eq!(check_str(c"ok".as_ptr(), "s").unwrap(), "ok");
        assert!(Out::<u8>::new(std::ptr::null_mut(), "out").is_err());
    }
}
