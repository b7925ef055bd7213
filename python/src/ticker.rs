//! `Ticker`: `with manager.ticker(1.0, pending=queue.qsize) as t: ...` — the core's opt-in
//! ticker thread with Python callbacks.
//!
//! The callbacks (`pending`, `on_report`, and the providers during the ticks) run on the
//! ticker's own thread, which attaches to the interpreter for each call (`Python::attach`) and
//! holds no core lock meanwhile. Stopping releases the GIL while it joins the thread, which may
//! be waiting for the GIL to run a callback. An exception in a callback is handed to
//! `sys.unraisablehook` (printed by default), counted in the stats, and the ticker goes on.
//!
//! At interpreter exit, the module's `atexit` hook (which runs before finalization) asks every
//! running ticker to stop and marks the process as exiting: a ticker's thread then starts no
//! Python call (CPython ends, or blocks forever, a thread that attaches once finalization
//! began, with a Rust stack under it), and a drop does not wait for the thread (a tick in
//! progress may wait for a provider that never answers).
//!
//! The Python objects a ticker holds (its manager and callbacks) live in a slot shared by the
//! handle and the thread ([`Held`]), not in the thread's closures: the garbage collector sees
//! them (`__traverse__`) and can break a cycle through them (`__clear__`: a callback that is a
//! bound method of the object keeping the ticker). The thread takes a new reference to a
//! callback, under the GIL, for each call.

use std::cell::Cell;
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use hodei_workers::{Demand, Ticker, TickerStats, WorkerLifecycleManager};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::calls::{self, HostObject};
use crate::convert::{self, Seconds};
use crate::errors::{run, shown};
use crate::events::{wait_slice, SIGNAL_CHECK};
use crate::lifecycle::TickReport;

/// Set by the module's `atexit` hook ([`_stop_tickers_at_exit`]): the interpreter is about to
/// finalize. From then on a ticker's thread calls no Python code it has not started yet, and
/// dropping a ticker does not wait for its thread (see [`PyTicker`]'s drop).
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// The tickers started and not yet dropped, for the `atexit` hook to stop.
static LIVE: Mutex<Vec<Weak<Ticker>>> = Mutex::new(Vec::new());

/// Whether the interpreter is shutting down (the module's `atexit` hook ran).
pub(crate) fn shutting_down() -> bool {
    SHUTTING_DOWN.load(Ordering::SeqCst)
}

/// The module's `atexit` hook: at interpreter exit, before finalization, asks every running
/// ticker to stop, without waiting for the tick in progress (a provider that never answers
/// must not hang the exit), and tells the tickers' threads to call no more Python code (a
/// thread that tries to attach to a finalizing interpreter is ended by CPython, or blocks
/// forever, with a Rust stack under it). A ticker the host did not stop is left to end with
/// the process: its tick in progress is cut short.
#[pyfunction]
fn _stop_tickers_at_exit() {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
    let live: Vec<Arc<Ticker>> = {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *live)
            .into_iter()
            .filter_map(|t| t.upgrade())
            .collect()
    };
    for ticker in live {
        ticker.request_stop();
        // When the handle was dropped meanwhile, this is the last reference: its drop joins
        // the thread, which must not happen here (the tick in progress may never end).
        if let Some(ticker) = Arc::into_inner(ticker) {
            join_in_background(ticker);
        }
    }
}

thread_local! {
    /// The ticker whose thread this is (the address of its `Held`; 0 on every other thread),
    /// so that `stop` from a callback or a provider does not wait for its own thread to end.
    static TICKER_ON_THIS_THREAD: Cell<usize> = const { Cell::new(0) };
}

fn held_key(held: &Arc<Mutex<Held>>) -> usize {
    Arc::as_ptr(held) as usize
}

/// Reports a callback's exception to `sys.unraisablehook`, then unwinds into the core's
/// ticker, which counts it (no panic message: `resume_unwind` skips the panic hook). An
/// interrupt raised by the exception's `repr()` is reported too, after it: nobody on this
/// thread could re-raise it.
fn callback_failed(py: Python<'_>, callable: &Py<PyAny>, err: PyErr, what: &str) -> ! {
    let (shown, repr_interrupt) = shown(py, err.value(py).as_any(), true);
    let text = format!("{what} raised {shown}");
    calls::write_unraisable(py, err, Some(callable.bind(py)));
    if let Some(interrupt) = repr_interrupt {
        calls::write_unraisable(py, interrupt, Some(callable.bind(py)));
    }
    resume_unwind(Box::new(text))
}

/// The demand `pending()` returns, in the forms `LifecycleManager.tick` takes: an int >= 0
/// (that many jobs that need nothing in particular) or a `Demand` (jobs by requirement).
fn demand_of(py: Python<'_>, pending: &Py<PyAny>) -> Demand {
    let answer = calls::call(pending.bind(py), &PyTuple::empty(py), None).and_then(|answer| {
        if let Ok(demand) = answer.cast::<crate::pools::PyDemand>() {
            return Ok(demand.get().inner.clone());
        }
        let n = answer.extract::<convert::Int>().map_err(|err: PyErr| {
            if err.is_instance_of::<PyTypeError>(py) {
                // Neither form: say both (the int's own message names only the one).
                let type_name = answer
                    .get_type()
                    .name()
                    .map_or_else(|_| "?".to_owned(), |n| n.to_string());
                PyTypeError::new_err(format!(
                    "the pending() callback must return an int >= 0 or a Demand, not {type_name}"
                ))
            } else {
                err
            }
        })?;
        convert::count(py, n.0, "the pending() callback's result").map(Demand::from)
    });
    match answer {
        Ok(demand) => demand,
        Err(err) => callback_failed(py, pending, err, "pending()"),
    }
}

/// A running ticker: a thread that calls ``manager.tick(pending())`` every ``interval`` and
/// hands each report to ``on_report`` (or keeps it for :meth:`next_report`). Made by
/// ``LifecycleManager.ticker``; a context manager that stops it on exit. ``pending()`` returns
/// what ``tick`` takes: an int (jobs that need nothing in particular) or a ``Demand`` (jobs
/// by requirement, scaled over the pools); anything else is a failure of ``pending``.
///
/// The first tick runs at once, the next ones every ``interval`` (on the start time's grid).
/// A tick that overruns its slot is counted (``stats.overruns``) and the slots it covered are
/// skipped, not piled up. ``pending``, ``on_report`` and the providers' methods are called on
/// the ticker's own thread, one at a time. An exception ``pending`` or ``on_report`` raises
/// goes to ``sys.unraisablehook``, is counted (``stats.demand_failures`` /
/// ``stats.report_failures``; a failing ``pending`` leaves the last good demand in use, and
/// before the first one the tick does not scale: nothing provisioned or retired), and
/// the ticker goes on. A provider's Exception is a provider failure in the tick's report, but
/// a BaseException that is not an Exception (KeyboardInterrupt, SystemExit,
/// asyncio.CancelledError, ...), with no caller there to receive it, goes to
/// ``sys.unraisablehook``. A tick that fails itself (a bug of the library) is counted
/// (``stats.tick_failures``); one that failed midway hands over its report, with what it did
/// before (its ``lost_jobs`` to requeue) and ``panicked`` set; the ticker ticks again at the
/// next slot.
///
/// The ticker keeps its manager alive, and with it the providers its ticks call (even when the
/// host keeps only the ticker and a provider holds its manager), and its callbacks. Dropping
/// the last reference stops it; so does the garbage collector when the ticker is in an
/// unreachable reference cycle (e.g. ``on_report`` is a bound method of the object that keeps
/// the ticker). Either waits for the tick in progress, as ``stop()`` does, and yields to Ctrl-C
/// likewise (on the main thread): the KeyboardInterrupt is raised as soon as the drop
/// returns, while the tick finishes and the thread is joined in the background.
///
/// Stop a ticker before the interpreter exits to let its tick in progress finish. One still
/// running at exit is asked to stop by the module's ``atexit`` hook, which does not wait: from
/// then on its thread calls no Python code it has not started (a provider call is reported
/// ``interrupted``), dropping it does not wait for its thread, and the tick in progress ends
/// with the process. The exit never waits for a provider that does not answer.
#[pyclass(frozen, name = "Ticker", module = "hodei_workers")]
pub(crate) struct PyTicker {
    /// Always `Some` but in `drop`, which may hand it to a thread of its own to join. The only
    /// strong reference (the `atexit` hook holds a weak one, upgraded only for a moment).
    inner: Option<Arc<Ticker>>,
    held: Arc<Mutex<Held>>,
    /// A `stop()` was interrupted (Ctrl-C) while it waited for the tick in progress: the
    /// host gave up waiting for it, so the drop does not wait either.
    interrupted: AtomicBool,
}

/// The Python objects of a ticker, shared by the handle (for the garbage collector) and the
/// thread (which reads the callbacks). The lock is taken under the GIL and only to take or
/// give references: never while Python code runs, nor while a reference is dropped.
struct Held {
    /// The Python `LifecycleManager` whose core manager the thread ticks: while the ticker is
    /// reachable, so are the manager and the providers the ticks call (a provider holding its
    /// manager makes a cycle the collector would otherwise break, see
    /// `PyLifecycleManager::__clear__`, under the running thread's feet).
    manager: Option<HostObject>,
    pending: Option<HostObject>,
    on_report: Option<HostObject>,
}

fn lock(held: &Mutex<Held>) -> MutexGuard<'_, Held> {
    // Nothing panics while the lock is held (taking references only).
    held.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for PyTicker {
    fn drop(&mut self) {
        let interrupted = *self.interrupted.get_mut();
        let own_thread = TICKER_ON_THIS_THREAD.with(Cell::get) == held_key(&self.held);
        let mut ticker = self.inner.take();
        if shutting_down() {
            // The interpreter is exiting: the thread was asked to stop by the `atexit` hook,
            // and its tick in progress may never end (a provider that hangs), or end only
            // after finalization began, when its thread can no longer attach. Never wait.
            if let Some(ticker) = ticker {
                ticker.request_stop();
                join_in_background(ticker);
            }
            return;
        }
        // The thread may be waiting for the GIL (to call a callback): never join while holding
        // it. A drop on the ticker's own thread only asks it to stop; so does a drop while the
        // interpreter shuts down (the thread cannot run Python code any more).
        let attached = Python::try_attach(|py| {
            let Some(ticker) = ticker.take() else {
                return;
            };
            if own_thread {
                // Asks the thread to stop after this tick (the core's stop knows its thread).
                py.detach(|| ticker.stop());
                return;
            }
            if interrupted && ticker.is_running() {
                // A stop() that Ctrl-C interrupted: the host gave up waiting for the tick
                // in progress (a provider that may never answer), and does not wait again.
                ticker.request_stop();
                py.detach(|| join_in_background(ticker));
                return;
            }
            // A drop no stop() came before (the last reference let go, the garbage collector):
            // it waits for the tick in progress like stop(), and likewise yields to Ctrl-C.
            // Python code cannot run here (an exception may be on its way through the frame
            // that dropped the ticker), so the signal's handler is not called: the drop only
            // sees that SIGINT came, leaves the join to a thread of its own (the tick still
            // finishes, the thread is still joined) and trips SIGINT again, for its handler
            // to run (KeyboardInterrupt, by default) as soon as the drop returns.
            ticker.request_stop();
            let mut pause = Duration::from_micros(100);
            while ticker.is_running() {
                py.detach(|| std::thread::sleep(pause));
                pause = (pause * 2).min(SIGNAL_CHECK);
                if sigint_came(py) {
                    py.detach(|| join_in_background(ticker));
                    sigint_again(py);
                    return;
                }
            }
            py.detach(|| ticker.stop());
        });
        if attached.is_none() {
            if let Some(ticker) = ticker {
                // Nor may this drop wait for a tick that can no longer finish.
                ticker.request_stop();
                join_in_background(ticker);
            }
        }
    }
}

/// Joins a stopping ticker's thread on a thread of its own, where the manager's last
/// reference, if it is one, is dropped too. (Without a thread to be had, the ticker is dropped
/// here: joined after all.)
fn join_in_background<T: Send + 'static>(ticker: T) {
    let _ = std::thread::Builder::new()
        .name("hodei-ticker-join".to_owned())
        .spawn(move || drop(ticker));
}

/// Whether SIGINT came since Python last looked (always false off the main thread, which
/// never handles signals), without running its handler: the signal is consumed.
#[allow(unsafe_code)]
fn sigint_came(_py: Python<'_>) -> bool {
    // SAFETY: no arguments, no pointers; called attached to the interpreter (`_py`), as
    // CPython asks.
    unsafe { pyo3::ffi::PyOS_InterruptOccurred() != 0 }
}

/// Trips SIGINT as if it came now: its Python handler runs at the next check for signals on
/// the main thread (nothing happens if SIGINT's handler is not Python's).
#[allow(unsafe_code)]
fn sigint_again(_py: Python<'_>) {
    // SAFETY: no arguments, no pointers; any thread may call it, attached or not.
    unsafe { pyo3::ffi::PyErr_SetInterrupt() }
}

/// Starts a ticker for `LifecycleManager.ticker`.
pub(crate) fn start(
    py: Python<'_>,
    manager: &Arc<WorkerLifecycleManager>,
    owner: Py<PyAny>,
    interval: Seconds,
    pending: Option<Py<PyAny>>,
    on_report: Option<Py<PyAny>>,
) -> PyResult<PyTicker> {
    for (name, callable) in [("pending", &pending), ("on_report", &on_report)] {
        if let Some(c) = callable {
            if !c.bind(py).is_callable() {
                return Err(PyTypeError::new_err(format!(
                    "{name} must be callable (or None)"
                )));
            }
        }
    }
    let has_pending = pending.is_some();
    let has_on_report = on_report.is_some();
    let held = Arc::new(Mutex::new(Held {
        manager: Some(HostObject::new(owner)),
        pending: pending.map(HostObject::new),
        on_report: on_report.map(HostObject::new),
    }));
    let demand = {
        let held = Arc::clone(&held);
        let key = held_key(&held);
        move || {
            // Called on the ticker's thread before every tick, before any other Python code
            // (callbacks, providers) runs there.
            TICKER_ON_THIS_THREAD.with(|t| t.set(key));
            if !has_pending {
                return Demand::new();
            }
            if shutting_down() {
                // No Python code starts on this thread once the interpreter is exiting: the
                // tick that was starting (if any) keeps the last demand rather than scale to 0.
                resume_unwind(Box::new("the interpreter is shutting down".to_owned()));
            }
            // No interpreter any more (finalizing, or not yet attachable from this thread):
            // the tick keeps the last demand, as when the interpreter is exiting above; a
            // demand of 0 would let the tick scale the fleet down.
            Python::try_attach(|py| {
                let pending = lock(&held).pending.as_ref().map(|p| p.clone_ref(py));
                match pending {
                    Some(pending) => demand_of(py, &pending),
                    // Cleared by the garbage collector (the ticker is garbage, stopping): the
                    // tick that was starting keeps the last demand rather than scale to 0.
                    None => resume_unwind(Box::new(
                        "pending() was cleared by the garbage collector".to_owned(),
                    )),
                }
            })
            .unwrap_or_else(|| resume_unwind(Box::new("no Python interpreter to ask".to_owned())))
        }
    };
    let manager = Arc::clone(manager);
    let interval: Duration = interval.0;
    let inner = if has_on_report {
        let held = Arc::clone(&held);
        let deliver = move |report: hodei_workers::TickReport| {
            // No interpreter any more (shutting down), or the callback cleared by the garbage
            // collector: the report has nowhere to go.
            if shutting_down() {
                return;
            }
            Python::try_attach(|py| {
                let Some(on_report) = lock(&held).on_report.as_ref().map(|c| c.clone_ref(py))
                else {
                    return;
                };
                let report = TickReport::from(report);
                let called = (report,)
                    .into_pyobject(py)
                    .and_then(|args| calls::call(on_report.bind(py), &args, None));
                if let Err(err) = called {
                    callback_failed(py, &on_report, err, "on_report()");
                }
            });
        };
        run(py, move || {
            manager.start_ticker_for_with(interval, demand, deliver)
        })?
    } else {
        run(py, move || manager.start_ticker_for(interval, demand))?
    };
    let inner = Arc::new(inner);
    {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|t| t.strong_count() > 0);
        live.push(Arc::downgrade(&inner));
    }
    Ok(PyTicker {
        inner: Some(inner),
        held,
        interrupted: AtomicBool::new(false),
    })
}

/// What a ticker has done so far.
#[pyclass(frozen, eq, get_all, name = "TickerStats", module = "hodei_workers")]
#[derive(Clone, PartialEq)]
pub(crate) struct PyTickerStats {
    /// Ticks run.
    ticks: u64,
    /// Ticks (with their on_report call) that took longer than the interval.
    overruns: u64,
    /// Slots skipped because a tick overran (not made up).
    missed_slots: u64,
    /// Reports dropped because next_report() was not called in time (the oldest go first).
    dropped_reports: u64,
    /// Calls of pending() that raised (or returned something else than an int >= 0 or a
    /// Demand).
    demand_failures: u64,
    /// Calls of on_report() that raised.
    report_failures: u64,
    /// Ticks that failed themselves (a bug of the library): one that failed midway handed over
    /// its report (``panicked`` set) and counts in ticks too; one that failed before it could
    /// make one handed over none. The ticker went on at the next slot.
    tick_failures: u64,
}

#[pymethods]
impl PyTickerStats {
    fn __repr__(&self) -> String {
        format!(
            "TickerStats(ticks={}, overruns={}, missed_slots={}, dropped_reports={}, \
             demand_failures={}, report_failures={}, tick_failures={})",
            self.ticks,
            self.overruns,
            self.missed_slots,
            self.dropped_reports,
            self.demand_failures,
            self.report_failures,
            self.tick_failures
        )
    }
}

impl From<TickerStats> for PyTickerStats {
    fn from(s: TickerStats) -> Self {
        PyTickerStats {
            ticks: s.ticks,
            overruns: s.overruns,
            missed_slots: s.missed_slots,
            dropped_reports: s.dropped_reports,
            demand_failures: s.demand_panics,
            report_failures: s.report_panics,
            tick_failures: s.tick_panics,
        }
    }
}

impl PyTicker {
    fn ticker(&self) -> &Ticker {
        self.inner
            .as_ref()
            .expect("a Ticker's core ticker is taken only when dropped")
    }
}

#[pymethods]
impl PyTicker {
    /// Shows the garbage collector the manager the ticker drives and its callbacks (which the
    /// thread would call forever if a cycle through them, e.g. a bound method of the object
    /// keeping the ticker, were never found). Skips them if the lock is busy rather than wait.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(held) = self.held.try_lock() {
            for object in [&held.manager, &held.pending, &held.on_report]
                .into_iter()
                .flatten()
            {
                visit.call(&**object)?;
            }
        }
        Ok(())
    }

    /// Breaks a cycle through the ticker: asks the thread to stop (without waiting: the
    /// collector holds the GIL, which the thread may need to finish its tick; the drop joins
    /// it later) and takes the manager and the callbacks, dropped once the lock is released.
    fn __clear__(&self) {
        self.ticker().request_stop();
        let taken = {
            let mut held = lock(&self.held);
            [
                held.manager.take(),
                held.pending.take(),
                held.on_report.take(),
            ]
        };
        drop(taken);
    }

    /// The interval between ticks, in seconds.
    #[getter]
    fn interval(&self) -> f64 {
        convert::duration_secs(self.ticker().interval())
    }

    /// Whether the thread is still running (False once stop() returned).
    #[getter]
    fn running(&self) -> bool {
        self.ticker().is_running()
    }

    /// The counters so far.
    #[getter]
    fn stats(&self) -> PyTickerStats {
        self.ticker().stats().into()
    }

    /// Stops the ticker: no tick starts after this call; waits (with the GIL released) for the
    /// tick in progress and joins the thread. Idempotent. Called from a callback (on the
    /// ticker's thread) it only asks the thread to stop after the current tick. Ctrl-C (any
    /// signal handler that raises) interrupts the wait, e.g. for a provider that hangs: the
    /// exception propagates, the ticker still stops after its tick, and a later stop() joins
    /// the thread; dropping the ticker then does not wait for it (it is joined in the
    /// background).
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.ticker().request_stop();
        if TICKER_ON_THIS_THREAD.with(Cell::get) != held_key(&self.held) {
            // The core's join cannot be interrupted: wait for the thread to end in short
            // sleeps without the GIL, checking for signals between them (issue 10 item 19).
            let mut pause = Duration::from_micros(100);
            while self.ticker().is_running() {
                py.detach(|| std::thread::sleep(pause));
                pause = (pause * 2).min(SIGNAL_CHECK);
                if let Err(interrupt) = py.check_signals() {
                    self.interrupted.store(true, Ordering::Relaxed);
                    return Err(interrupt);
                }
            }
        }
        py.detach(|| self.ticker().stop());
        Ok(())
    }

    /// The next report, waiting up to ``timeout`` seconds (None: until one comes). None on
    /// timeout, or once the ticker stopped and every report was read. Only for a ticker made
    /// without ``on_report`` (TypeError otherwise). The newest 64 reports are kept; older ones
    /// unread are dropped (``stats.dropped_reports``). The GIL is released while waiting, and
    /// Ctrl-C (any signal handler that raises) interrupts any wait promptly.
    #[pyo3(signature = (timeout=None))]
    fn next_report(
        &self,
        py: Python<'_>,
        timeout: Option<Seconds>,
    ) -> PyResult<Option<TickReport>> {
        let Some(reports) = self.ticker().reports() else {
            return Err(PyTypeError::new_err(
                "this ticker hands its reports to on_report; next_report() has none",
            ));
        };
        // A timeout too long to add to now (years) is a wait without timeout.
        let deadline = timeout.and_then(|Seconds(t)| Instant::now().checked_add(t));
        // Waits in slices of at most SIGNAL_CHECK with the GIL released, checking for signals
        // between them, as `Subscription.recv` does (issue 10 item 19).
        loop {
            let Some(slice) = wait_slice(deadline) else {
                return Ok(reports.try_recv().ok().map(TickReport::from));
            };
            match py.detach(|| reports.recv_timeout(slice)) {
                Ok(report) => return Ok(Some(TickReport::from(report))),
                // Stopped, and every report read.
                Err(e) if e.is_disconnected() => return Ok(None),
                Err(_) => py.check_signals()?,
            }
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let s = self.ticker().stats();
        format!(
            "<Ticker interval={}s running={} ticks={} overruns={}>",
            self.ticker().interval().as_secs_f64(),
            if self.ticker().is_running() {
                "True"
            } else {
                "False"
            },
            s.ticks,
            s.overruns
        )
    }
}

/// Adds the ticker classes to the module.
pub(crate) fn add_ticker_classes(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTicker>()?;
    m.add_class::<PyTickerStats>()?;
    // Run at interpreter exit before finalization begins (after the hooks registered later:
    // a host's own hook that stops its tickers cleanly runs first).
    let hook = wrap_pyfunction!(_stop_tickers_at_exit, m)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (&hook,))?;
    // `setattr`, not `add_function`: a private helper stays out of `__all__`.
    m.setattr("_stop_tickers_at_exit", hook)?;
    Ok(())
}
