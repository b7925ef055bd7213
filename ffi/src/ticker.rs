//! `hw_ticker`: the opt-in thread that ticks a manager every interval, with C callbacks for the
//! demand and the reports.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use engine::{Demand, Error, Ticker, TickerStats};

use crate::boundary::{
    arg_mut, arg_out, arg_ref, arg_str, ffi_boundary, free_handle, hw_status, into_handle,
};
use crate::manager::{hw_manager, hw_report};

/// A running ticker (see `hw_ticker_start`). Free it with `hw_ticker_free` (which stops it).
/// Thread-safe: `hw_ticker_stop` and `hw_ticker_get_stats` may be called from any thread.
#[derive(Debug)]
pub struct hw_ticker {
    inner: Ticker,
    /// Keeps the callbacks alive until the handle is freed, so that `release` runs in
    /// `hw_ticker_free` (on its caller's thread) once the thread was joined.
    _callbacks: Arc<CallbackOwner>,
}

/// What the ticker calls: function pointers and the `user_data` they receive first. Zero the
/// struct before filling it (`= {0}` or `memset`) so that the callbacks you leave out are NULL.
///
/// `demand` and `on_report` are called **on the ticker's own thread** (never on the thread
/// that called `hw_ticker_start`), one at a time, never while the library holds a lock: they
/// may call into the library (but must not call `hw_ticker_free` on their own ticker), with
/// handles that are still valid: once `hw_manager_free` has been called, the `hw_manager *`
/// is freed memory and they must not use it any more (the ticker keeps the engine running,
/// not the handle). The
/// provider callbacks of the manager run on that thread too during its ticks. `user_data` must
/// therefore be usable from that thread. `release(user_data)` is called exactly once, after
/// the last `demand`/`on_report` call: in `hw_ticker_free`, or in `hw_ticker_start` when it
/// fails; it is not called when `hw_ticker_start` is given a NULL `callbacks`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hw_ticker_callbacks {
    /// Passed first to every callback; the library never reads it.
    pub user_data: *mut c_void,
    /// Optional (NULL: no demand, 0 pending jobs). Called before each tick: the number of
    /// pending jobs (e.g. the length of the host's queue). Should return quickly.
    pub demand: Option<unsafe extern "C" fn(user_data: *mut c_void) -> usize>,
    /// Optional (NULL: reports are discarded). Called after each tick with its report, which
    /// is **borrowed**: valid only during the call (read what you need; do not free it). A slow
    /// callback delays the next tick (it counts as an overrun).
    pub on_report: Option<unsafe extern "C" fn(user_data: *mut c_void, report: *const hw_report)>,
    /// Optional. Called once with `user_data` when the ticker no longer needs it.
    pub release: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// What a ticker has done so far.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct hw_ticker_stats {
    /// Ticks run.
    pub ticks: u64,
    /// Ticks (with their `on_report` call) that took longer than the interval.
    pub overruns: u64,
    /// Slots skipped because a tick overran: they are not made up (no burst of ticks after a
    /// slow one).
    pub missed_slots: u64,
    /// Reports not handed to `on_report`: a report that could not be made for C (a bug: its
    /// strings are checked or have their NULs shown as `?`). The ticker went on.
    pub report_panics: u64,
    /// Ticks that panicked (a bug of the library). One that panicked midway handed its report
    /// to `on_report` (what it did before the panic; `hw_report_get_panicked` says so) and
    /// counts in `ticks` too; one that panicked before it could make a report handed none and
    /// is not counted in `ticks`. The ticker went on at the next slot.
    pub tick_panics: u64,
}

/// Owns the C callbacks; runs `release` when the last user (thread closures, handle) is gone.
#[derive(Debug)]
struct CallbackOwner(hw_ticker_callbacks);

// SAFETY: the host promises (hw_ticker_callbacks) that the callbacks and `user_data` may be
// used from the ticker thread; the library only passes them along, one call at a time.
unsafe impl Send for CallbackOwner {}
// SAFETY: as above; the struct is never mutated after construction.
unsafe impl Sync for CallbackOwner {}

impl Drop for CallbackOwner {
    fn drop(&mut self) {
        if let Some(release) = self.0.release {
            // SAFETY: the host gave us this function for exactly this call.
            unsafe { release(self.0.user_data) }
        }
    }
}

/// Starts a thread that calls `hw_manager_tick(manager, demand(user_data))` every
/// `interval_ms` milliseconds (the first tick at once; the next ones on the grid
/// `start + k * interval`) and hands each report to `on_report`. A tick that overruns its slot
/// is counted and the slots it covered are skipped, not piled up. The ticker keeps the
/// manager's engine running (`hw_manager_free` may be called before `hw_ticker_free`), but
/// not its handle: after `hw_manager_free` the `hw_manager *` is invalid, and the callbacks
/// must not pass it to the library any more. The engine then goes when the ticker is stopped:
/// its providers' `release` callbacks run in that `hw_ticker_stop` / `hw_ticker_free`, on its
/// caller's thread. See `hw_ticker_callbacks` for the threads the callbacks run on and the
/// release rule.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument or `interval_ms` 0; `HW_ERR_BACKEND`
/// when the thread cannot be started.
#[no_mangle]
pub extern "C" fn hw_ticker_start(
    manager: *const hw_manager,
    interval_ms: u64,
    callbacks: *const hw_ticker_callbacks,
    out: *mut *mut hw_ticker,
) -> hw_status {
    ffi_boundary!(hw_ticker_start, {
        let callbacks = arg_ref!(callbacks);
        // From here on `release` runs exactly once, whatever happens: `owner` holds it.
        let owner = Arc::new(CallbackOwner(*callbacks));
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        if interval_ms == 0 {
            return Err(Error::invalid("interval_ms must be greater than 0"));
        }
        let for_demand = Arc::clone(&owner);
        let demand = move || match for_demand.0.demand {
            // SAFETY: a callback the host registered for this, called on the ticker thread
            // as documented.
            Some(demand) => Demand::from(unsafe { demand(for_demand.0.user_data) }),
            None => Demand::new(),
        };
        start(manager, interval_ms, owner, demand, out)
    })
}

/// The demand a `hw_ticker_demand_json_fn` gives for the next tick, set with
/// `hw_ticker_demand_set_json`. Borrowed: valid only during the callback's call.
#[derive(Debug, Default)]
pub struct hw_ticker_demand {
    /// The demand of the last `hw_ticker_demand_set_json`, `None` when it failed or none came.
    demand: Option<Demand>,
}

/// The demand callback of `hw_ticker_start_demand`: called on the ticker's thread before each
/// tick with the `user_data` of its `hw_ticker_callbacks` and a `hw_ticker_demand` (borrowed:
/// valid during the call only) to set the pending jobs by requirement on, with
/// `hw_ticker_demand_set_json`. A call whose last `hw_ticker_demand_set_json` did not succeed
/// (none came, or its JSON was refused) is a failed demand call.
pub type hw_ticker_demand_json_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, demand: *mut hw_ticker_demand)>;

/// Sets the pending jobs by requirement for the tick about to run: `demand_json` in the form
/// `hw_manager_tick_demand` takes (`[{"labels": {"gpu": "a100"}, "count": 3}]`). The library
/// copies what it reads: the string stays the caller's, and may be freed once this returns.
/// Only from a `hw_ticker_demand_json_fn`, on the `demand` it was given.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument, or a demand
/// `hw_manager_tick_demand` refuses (malformed or invalid; the message says why). The demand
/// is then unset: unless a later call in the same callback sets one, the callback's call is a
/// failed demand call (the tick uses the last good demand, see `hw_ticker_start_demand`).
#[no_mangle]
pub extern "C" fn hw_ticker_demand_set_json(
    demand: *mut hw_ticker_demand,
    demand_json: *const c_char,
) -> hw_status {
    ffi_boundary!(hw_ticker_demand_set_json, {
        let slot = arg_mut!(demand);
        slot.demand = None;
        slot.demand = Some(crate::pools::demand(arg_str!(demand_json))?);
        Ok(())
    })
}

/// `hw_ticker_start` for a host with pools, whose pending jobs need different workers: before
/// each tick, `demand_json(callbacks->user_data, demand)` sets the pending jobs by requirement
/// with `hw_ticker_demand_set_json`, and the tick runs as `hw_manager_tick_demand` with it.
/// `callbacks->demand` must be NULL (this callback replaces it); `on_report`, `release`, the
/// threads and the rest are as in `hw_ticker_start`.
///
/// A failed demand call (nothing set, or a demand refused by `hw_ticker_demand_set_json`) is
/// counted (`hw_ticker_get_demand_failures`) and never crashes: the tick uses the last demand a
/// call set; before any call set one, the tick runs every phase but scaling (nothing
/// provisioned or retired for a demand not known yet). Its report says so in its decisions.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument (`demand_json` included),
/// `interval_ms` 0, or a `callbacks->demand` that is not NULL; `HW_ERR_BACKEND` when the
/// thread cannot be started. `release` is called on every error but a NULL `callbacks`.
#[no_mangle]
pub extern "C" fn hw_ticker_start_demand(
    manager: *const hw_manager,
    interval_ms: u64,
    callbacks: *const hw_ticker_callbacks,
    demand_json: hw_ticker_demand_json_fn,
    out: *mut *mut hw_ticker,
) -> hw_status {
    ffi_boundary!(hw_ticker_start_demand, {
        let callbacks = arg_ref!(callbacks);
        // From here on `release` runs exactly once, whatever happens: `owner` holds it.
        let owner = Arc::new(CallbackOwner(*callbacks));
        let manager = arg_ref!(manager);
        let out = arg_out!(out);
        let Some(demand_json) = demand_json else {
            return Err(Error::invalid("demand_json is NULL"));
        };
        if callbacks.demand.is_some() {
            return Err(Error::invalid(
                "callbacks->demand must be NULL with hw_ticker_start_demand (demand_json gives \
                 the demand)",
            ));
        }
        let for_demand = Arc::clone(&owner);
        let demand = move || {
            let mut slot = hw_ticker_demand::default();
            // SAFETY: a callback the host registered for this, called on the ticker thread
            // as documented; `slot` lives for the call.
            unsafe { demand_json(for_demand.0.user_data, &mut slot) };
            match slot.demand {
                Some(demand) => demand,
                // Counted by the core's ticker as a failed demand call (last good demand
                // kept), unwinding without the panic hook, which would print it as a crash.
                None => std::panic::resume_unwind(Box::new(
                    "demand_json set no valid demand".to_owned(),
                )),
            }
        };
        start(manager, interval_ms, owner, demand, out)
    })
}

/// What `hw_ticker_start` and `hw_ticker_start_demand` share: the checks left, the report
/// callback, the thread.
fn start(
    manager: &hw_manager,
    interval_ms: u64,
    owner: Arc<CallbackOwner>,
    demand: impl FnMut() -> Demand + Send + 'static,
    out: crate::boundary::Out<*mut hw_ticker>,
) -> Result<(), Error> {
    if interval_ms == 0 {
        return Err(Error::invalid("interval_ms must be greater than 0"));
    }
    let for_report = Arc::clone(&owner);
    let on_report = move |report: engine::TickReport| {
        let Some(on_report) = for_report.0.on_report else {
            return;
        };
        // `from_tick` shows the NULs of free text as `?` and the other strings cannot
        // hold one: it fails only on a broken invariant. Such a report is not silently
        // dropped but counted as a failed report call (`report_panics`), the ticker goes
        // on: unwinding without the panic hook, which would print it as a crash.
        let c_report = match hw_report::from_tick(&report) {
            Ok(c_report) => c_report,
            Err(e) => std::panic::resume_unwind(Box::new(format!(
                "the tick's report cannot be given to C: {e}"
            ))),
        };
        // SAFETY: a callback the host registered for this; the report lives for the call.
        unsafe { on_report(for_report.0.user_data, &c_report) }
    };
    let ticker = manager.inner.start_ticker_for_with(
        Duration::from_millis(interval_ms),
        demand,
        on_report,
    )?;
    out.write(into_handle(hw_ticker {
        inner: ticker,
        _callbacks: owner,
    }));
    Ok(())
}

/// How many calls of the ticker's demand callback failed so far: with
/// `hw_ticker_start_demand`, the calls that set no valid demand (the tick used the last good
/// one). Always 0 for a ticker of `hw_ticker_start`, whose `demand` cannot fail.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_ticker_get_demand_failures(
    ticker: *const hw_ticker,
    out: *mut u64,
) -> hw_status {
    ffi_boundary!(hw_ticker_get_demand_failures, {
        let ticker = arg_ref!(ticker);
        let out = arg_out!(out);
        out.write(ticker.inner.stats().demand_panics);
        Ok(())
    })
}

/// Stops the ticker: no tick starts after this call; waits for the tick in progress (and its
/// `on_report`) and joins the thread. Idempotent. Called from the ticker's own callbacks it
/// only asks the thread to stop after the current tick and returns at once. When
/// `hw_manager_free` was called before, the manager goes with the join: its providers'
/// `release` callbacks run in this call, on this thread (one may call `hw_ticker_stop` on this
/// ticker again: the thread has ended, it returns at once).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for NULL.
#[no_mangle]
pub extern "C" fn hw_ticker_stop(ticker: *const hw_ticker) -> hw_status {
    ffi_boundary!(hw_ticker_stop, {
        arg_ref!(ticker).inner.stop();
        Ok(())
    })
}

/// The ticker's counters so far (ticks, overruns, skipped slots, failures).
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub extern "C" fn hw_ticker_get_stats(
    ticker: *const hw_ticker,
    out: *mut hw_ticker_stats,
) -> hw_status {
    ffi_boundary!(hw_ticker_get_stats, {
        let ticker = arg_ref!(ticker);
        let out = arg_out!(out);
        // `demand_panics`, `dropped_reports`: a C callback cannot panic, and reports go to
        // the callback, never to a channel.
        let TickerStats {
            ticks,
            overruns,
            missed_slots,
            report_panics,
            tick_panics,
            ..
        } = ticker.inner.stats();
        out.write(hw_ticker_stats {
            ticks,
            overruns,
            missed_slots,
            report_panics,
            tick_panics,
        });
        Ok(())
    })
}

/// Stops the ticker (as `hw_ticker_stop`), frees it and calls `release(user_data)`. NULL does
/// nothing. Must not be called from the ticker's own callbacks. When `hw_manager_free` was
/// called before, the manager goes here: its providers' `release` callbacks run in this call,
/// on this thread (or already in an earlier `hw_ticker_stop`, on that one's).
#[no_mangle]
pub extern "C" fn hw_ticker_free(ticker: *mut hw_ticker) {
    free_handle(ticker)
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::ptr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use engine::{
        InMemoryLease, InMemoryWorkerRegistry, Leadership, LeaseStatus, ManualClock,
        WorkerLifecycleConfig, WorkerLifecycleManager,
    };

    use super::*;
    use crate::boundary::free_handle;
    use crate::leader::{hw_leader_info, hw_report_get_leader};
    use crate::manager::hw_manager_tick;
    use crate::types::hw_last_error_message;

    /// A manager that follows a leader named with a NUL byte: `validate_lease` refuses such a
    /// name for every manager (`replicated`, `with_leadership`), but another replica's row in
    /// the lease's store (another build, another program) is read back as it is.
    fn led_by_a_name_with_a_nul() -> hw_manager {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let registry = Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
        let lease = InMemoryLease::new(clock.clone(), "host-b", Duration::from_secs(10));
        // The row's holder: the clock stands still, so its lease never expires.
        let leader = lease.replica("host\0a");
        assert!(matches!(
            leader.acquire_or_renew(None),
            Ok(LeaseStatus::Held(_))
        ));
        let manager = WorkerLifecycleManager::with_leadership(
            registry,
            WorkerLifecycleConfig::default(),
            Arc::new(lease),
            clock,
        )
        .unwrap();
        hw_manager {
            inner: Arc::new(manager),
        }
    }

    /// The leader's name in `report`, if it names one (no panic: also called from a C
    /// callback, where a panic aborts).
    fn holder_of(report: *const hw_report) -> Option<String> {
        let mut info = hw_leader_info {
            holder: ptr::null(),
            term: 0,
            since_ms: 0,
            expires_at_ms: 0,
        };
        let mut found = false;
        if hw_report_get_leader(report, &mut info, &mut found) != hw_status::HwOk || !found {
            return None;
        }
        // SAFETY: borrowed from the report, which lives for this call.
        let holder = unsafe { CStr::from_ptr(info.holder) };
        Some(holder.to_string_lossy().into_owned())
    }

    /// The report of a tick whose leader's name holds a NUL: `hw_manager_tick` failed with
    /// `HW_ERR_INVALID_ARGUMENT` ("leader holder contains a NUL byte") after the tick had run,
    /// its lost jobs never reported.
    #[test]
    fn a_tick_report_naming_a_leader_with_a_nul_is_given_to_c() {
        let manager = led_by_a_name_with_a_nul();
        let mut report = ptr::null_mut();
        let status = hw_manager_tick(&manager, 0, &mut report);
        // SAFETY: valid until the next call on this thread.
        let error = unsafe { CStr::from_ptr(hw_last_error_message()) }.to_string_lossy();
        assert_eq!(status, hw_status::HwOk, "{error}");
        assert_eq!(holder_of(report).as_deref(), Some("host?a"));
        free_handle(report);
    }

    unsafe extern "C" fn count_report(user_data: *mut c_void, report: *const hw_report) {
        // SAFETY: the test passes a live `AtomicUsize` as user_data.
        let calls = unsafe { &*user_data.cast::<AtomicUsize>() };
        // Counted only with the name as C sees it: the test compares the count with the ticks.
        if holder_of(report).as_deref() == Some("host?a") {
            calls.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The same report from a ticker: `on_report` was never called, and nothing said why (no
    /// counter moved).
    #[test]
    fn a_ticker_report_naming_a_leader_with_a_nul_is_delivered() {
        let manager = led_by_a_name_with_a_nul();
        let calls = AtomicUsize::new(0);
        let callbacks = hw_ticker_callbacks {
            user_data: ptr::from_ref(&calls).cast_mut().cast(),
            demand: None,
            on_report: Some(count_report),
            release: None,
        };
        let mut ticker = ptr::null_mut();
        assert_eq!(
            hw_ticker_start(&manager, 1, &callbacks, &mut ticker),
            hw_status::HwOk
        );
        let mut stats = hw_ticker_stats::default();
        let until = Instant::now() + Duration::from_secs(30);
        // Two ticks counted: the first one's report was delivered (or not) before the second.
        while stats.ticks < 2 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
            assert_eq!(hw_ticker_get_stats(ticker, &mut stats), hw_status::HwOk);
        }
        assert_eq!(hw_ticker_stop(ticker), hw_status::HwOk);
        assert_eq!(hw_ticker_get_stats(ticker, &mut stats), hw_status::HwOk);
        hw_ticker_free(ticker);
        assert!(stats.ticks >= 2, "{stats:?}");
        assert_eq!(
            calls.load(Ordering::SeqCst) as u64,
            stats.ticks,
            "reports not delivered: {stats:?}"
        );
        assert_eq!((stats.report_panics, stats.tick_panics), (0, 0));
    }
}
