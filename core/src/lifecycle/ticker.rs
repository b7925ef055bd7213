//! [`Ticker`]: the opt-in thread that calls [`WorkerLifecycleManager::tick`] every interval.
//!
//! The synchronous `tick()` stays the primitive; the ticker is a convenience for hosts that
//! want "tick every second" without writing the loop. No thread exists unless the host starts
//! one with [`WorkerLifecycleManager::start_ticker`] (or
//! [`start_ticker_with`](WorkerLifecycleManager::start_ticker_with)); a host with pools (§12)
//! whose callback gives the pending jobs by requirement starts it with
//! [`start_ticker_for`](WorkerLifecycleManager::start_ticker_for) (or
//! [`start_ticker_for_with`](WorkerLifecycleManager::start_ticker_for_with)).

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::error::{Error, Result};

use super::manager::WorkerLifecycleManager;
use super::panic_message;
use super::pools::Demand;
use super::report::TickReport;

/// How many reports [`Ticker::reports`] keeps when nobody reads them: the newest
/// `TICKER_REPORTS_CAPACITY` (older ones are dropped and counted in
/// [`TickerStats::dropped_reports`]); the ticker never waits for a reader.
pub const TICKER_REPORTS_CAPACITY: usize = 64;

/// What a [`Ticker`] has done so far (all counters since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TickerStats {
    /// Ticks run (each one delivered a report).
    pub ticks: u64,
    /// Ticks (with their report delivery) that took longer than the interval.
    pub overruns: u64,
    /// Slots skipped because a tick overran: they are not made up (no burst of ticks after a
    /// slow one); the schedule stays on the start time's grid.
    pub missed_slots: u64,
    /// Reports dropped from [`Ticker::reports`] because nobody read them in time (the oldest
    /// go first). Always 0 with a report callback.
    pub dropped_reports: u64,
    /// Calls of the demand callback that panicked (the tick used the last good demand; before
    /// the first one, the tick ran without scaling: nothing provisioned or retired). The
    /// bindings unwind the same way when a host callback fails (e.g. a Python exception).
    pub demand_panics: u64,
    /// Calls of the report callback that panicked or failed (the ticker went on).
    pub report_panics: u64,
    /// Ticks that panicked themselves (a bug of the library, or of a host's own
    /// [`WorkerRegistry`](crate::WorkerRegistry), clock or lease implementation; a provider's
    /// panic is a failed provider call in the report instead). A tick that panicked midway
    /// delivers the report of what it did, with [`TickReport::panicked`] set, and is counted
    /// in `ticks` too; one that panicked outside its phases (before it could build a report)
    /// delivers none and is not counted in `ticks`. The ticker goes on at the next slot.
    pub tick_panics: u64,
}

#[derive(Debug, Default)]
struct Counters {
    ticks: AtomicU64,
    overruns: AtomicU64,
    missed_slots: AtomicU64,
    dropped_reports: AtomicU64,
    demand_panics: AtomicU64,
    report_panics: AtomicU64,
    tick_panics: AtomicU64,
}

thread_local! {
    /// The ticker whose thread this is (its `Shared`'s address; 0 on every other thread), so
    /// that `stop` from a callback does not join its own thread. (A thread-local integer rather
    /// than `thread::current()`: that allocates a handle for foreign threads, e.g. a C host's
    /// main thread, which is never freed.)
    static TICKER_ON_THIS_THREAD: Cell<usize> = const { Cell::new(0) };
}

fn shared_key(shared: &Shared) -> usize {
    std::ptr::from_ref(shared) as usize
}

/// What the ticker thread and the handle share.
#[derive(Debug, Default)]
struct Shared {
    stopped: Mutex<bool>,
    wake: Condvar,
    /// Set by the `stop` that joined the thread, once it did (before it drops the manager): the
    /// other `stop`s, which found the join handle taken, wait for it (they must not return
    /// under a running tick).
    joined: Mutex<bool>,
    joined_wake: Condvar,
    counters: Counters,
}

/// The demand callback in its general form: the `usize` callbacks are wrapped into it.
type DemandFn = Box<dyn FnMut() -> Demand + Send>;
type OnReport = Box<dyn FnMut(TickReport) + Send>;

/// Where the reports go.
enum Sink {
    Callback(OnReport),
    /// A bounded channel; the receiver clone lets the ticker evict the oldest report.
    Channel(Sender<TickReport>, Receiver<TickReport>),
}

/// A running ticker: a thread that calls [`tick`](WorkerLifecycleManager::tick) every
/// `interval` with the demand its callback returns, and delivers each report.
///
/// # Promises
/// - The first tick runs at once; the next ones on the grid `start + k × interval`, measured
///   on the monotonic clock of the process (not the registry's clock).
/// - A tick that overruns its slot (with the report's delivery) is counted
///   ([`TickerStats::overruns`]) and the slots it covered are skipped, not piled up
///   ([`TickerStats::missed_slots`]): at most one tick runs at a time, and never two back to
///   back to catch up.
/// - The demand and report callbacks are called **on the ticker thread**, one at a time,
///   never while a lock of the manager or the registry is held. A panic in either is caught
///   and counted; the ticker goes on. So does a panic of the tick itself
///   ([`TickerStats::tick_panics`]): its report, with what it did before the panic and
///   [`TickReport::panicked`] set, is delivered like any other; the next slot ticks again.
/// - [`stop`](Self::stop) (and dropping the handle) wakes the thread and joins it: it returns
///   once the current tick, if any, has finished (a tick is never cut in the middle), without
///   waiting for the next slot — on every thread that calls it, also when several call it at
///   once.
/// - The ticker keeps its manager alive while it runs; the thread hands its reference back
///   through the join, so it is dropped by the thread that calls [`stop`](Self::stop) (or
///   drops the handle). When that is the manager's last reference (the host dropped its own
///   while the ticker ran), the manager and its providers are dropped there, on the stopping
///   thread, never on the ticker's. (Only when the handle is stopped or dropped on the
///   ticker's own thread, from a callback, is there no join: the thread drops it as it ends.)
///   A provider dropped there may stop the ticker again (from its `Drop`, or a C `release`):
///   that `stop` returns at once, as the thread has ended.
pub struct Ticker {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<Arc<WorkerLifecycleManager>>>>,
    interval: Duration,
    reports: Option<Receiver<TickReport>>,
}

impl fmt::Debug for Ticker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticker")
            .field("interval", &self.interval)
            .field("running", &self.is_running())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Ticker {
    /// The interval between ticks.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The reports, when the ticker was started with
    /// [`start_ticker`](WorkerLifecycleManager::start_ticker) (`None` with a callback). The
    /// channel keeps the newest [`TICKER_REPORTS_CAPACITY`] reports; it disconnects once the
    /// ticker stopped and the remaining reports were read.
    pub fn reports(&self) -> Option<&Receiver<TickReport>> {
        self.reports.as_ref()
    }

    /// The counters so far.
    pub fn stats(&self) -> TickerStats {
        let c = &self.shared.counters;
        TickerStats {
            ticks: c.ticks.load(Ordering::Relaxed),
            overruns: c.overruns.load(Ordering::Relaxed),
            missed_slots: c.missed_slots.load(Ordering::Relaxed),
            dropped_reports: c.dropped_reports.load(Ordering::Relaxed),
            demand_panics: c.demand_panics.load(Ordering::Relaxed),
            report_panics: c.report_panics.load(Ordering::Relaxed),
            tick_panics: c.tick_panics.load(Ordering::Relaxed),
        }
    }

    /// Whether the thread is still running (false once [`stop`](Self::stop) returned).
    pub fn is_running(&self) -> bool {
        match self.thread.lock().as_ref() {
            Some(t) => !t.is_finished(),
            // Taken by a `stop` that may still be joining the thread.
            None => !*self.shared.joined.lock(),
        }
    }

    /// Asks the ticker to stop without waiting: no tick starts after this call; the one in
    /// progress, if any, finishes on its own and the thread ends (joined by a later
    /// [`stop`](Self::stop) or drop). For a caller that must not block, e.g. a binding's
    /// finalizer while its interpreter shuts down.
    pub fn request_stop(&self) {
        *self.shared.stopped.lock() = true;
        self.shared.wake.notify_all();
    }

    /// Stops the ticker: no tick starts after this call; waits for the one in progress, if
    /// any, and joins the thread. Idempotent. Called from several threads at once, each
    /// returns once the thread has ended (one of them joins it, the others wait for that).
    ///
    /// Called from the ticker's own thread (from a callback) it only asks the thread to stop
    /// after the current tick and returns at once (a thread cannot join itself).
    pub fn stop(&self) {
        self.request_stop();
        if TICKER_ON_THIS_THREAD.with(Cell::get) == shared_key(&self.shared) {
            return;
        }
        let handle = self.thread.lock().take();
        match handle {
            Some(handle) => {
                // Tells the other `stop`s when the thread has ended, even by unwinding.
                let joined = Joined(&self.shared);
                let manager = handle.join();
                // Before the manager goes below: dropping its providers runs the host's code
                // (a Rust `Drop`, a C `release`) on this thread, which may stop this ticker
                // again, and that `stop` must not wait for this one to finish.
                drop(joined);
                // The thread catches every panic of a callback or a tick; an error here would
                // be a bug of the loop itself, and the handle has nothing to report it to.
                if let Ok(manager) = manager {
                    // The thread's reference to the manager, handed back: when it is the last
                    // one, the manager and its providers (their release callbacks) are dropped
                    // here, on the thread that stops the ticker, as the C header promises.
                    drop(manager);
                }
            }
            None => {
                // Another `stop` took the handle: it may still be joining a tick in progress.
                let mut joined = self.shared.joined.lock();
                while !*joined {
                    self.shared.joined_wake.wait(&mut joined);
                }
            }
        }
    }
}

/// Marks the thread joined when dropped, and wakes the `stop`s waiting for it.
struct Joined<'a>(&'a Shared);

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        *self.0.joined.lock() = true;
        self.0.joined_wake.notify_all();
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop();
    }
}

impl WorkerLifecycleManager {
    /// Starts a thread that calls [`tick`](Self::tick)`(demand())` every `interval` and puts
    /// each report on [`Ticker::reports`] (a bounded channel that keeps the newest
    /// [`TICKER_REPORTS_CAPACITY`]; the ticker never waits for a reader). See [`Ticker`] for
    /// the schedule, overruns and stopping.
    ///
    /// `demand` is called on the ticker thread before each tick; it should return quickly
    /// (e.g. the length of the host's job queue). When it fails (panics), the tick uses the
    /// last demand it returned; before it ever returned one, the tick runs every phase but
    /// scaling (health checks, cleanup, reconcile, interruption deadlines), never a made-up
    /// demand of 0 that would retire the idle workers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero interval; [`Error::Backend`] if the thread cannot
    /// be spawned.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use hodei_workers::*;
    ///
    /// let registry: Arc<dyn WorkerRegistry> = Arc::new(InMemoryWorkerRegistry::new());
    /// let manager = Arc::new(WorkerLifecycleManager::new(registry, WorkerLifecycleConfig::default())?);
    /// let ticker = manager.start_ticker(Duration::from_secs(1), || 0)?;
    /// // The first tick runs at once.
    /// let report = ticker.reports().unwrap().recv().unwrap();
    /// assert_eq!(report.pending_jobs, 0);
    /// ticker.stop(); // or drop it
    /// # Ok::<(), hodei_workers::Error>(())
    /// ```
    pub fn start_ticker(
        self: &Arc<Self>,
        interval: Duration,
        demand: impl FnMut() -> usize + Send + 'static,
    ) -> Result<Ticker> {
        self.start_ticker_for(interval, pending_jobs(demand))
    }

    /// Like [`start_ticker`](Self::start_ticker), but hands each report to `on_report`, called
    /// on the ticker thread (a slow callback delays the next tick and counts as an overrun).
    ///
    /// # Errors
    /// As [`start_ticker`](Self::start_ticker).
    pub fn start_ticker_with(
        self: &Arc<Self>,
        interval: Duration,
        demand: impl FnMut() -> usize + Send + 'static,
        on_report: impl FnMut(TickReport) + Send + 'static,
    ) -> Result<Ticker> {
        self.start_ticker_for_with(interval, pending_jobs(demand), on_report)
    }

    /// Like [`start_ticker`](Self::start_ticker), with a demand callback that gives the pending
    /// jobs by requirement: what [`tick`](Self::tick) takes, for a host whose pools (§12,
    /// [`set_pools`](Self::set_pools)) each serve only some jobs. `start_ticker(interval, f)`
    /// is `start_ticker_for(interval, move || Demand::from(f()))`.
    ///
    /// When `demand` fails (panics), the tick uses the last demand it returned, as with
    /// [`start_ticker`](Self::start_ticker); before it ever returned one, the tick does not
    /// scale. A demand that [`Demand::validate`] refuses is not a failure of the callback: the
    /// tick reports it as it reports a host's [`tick`](Self::tick) of it.
    ///
    /// # Errors
    /// As [`start_ticker`](Self::start_ticker).
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use hodei_workers::*;
    ///
    /// let registry: Arc<dyn WorkerRegistry> = Arc::new(InMemoryWorkerRegistry::new());
    /// let manager = Arc::new(WorkerLifecycleManager::new(registry, WorkerLifecycleConfig::default())?);
    /// // The host's queue: 3 jobs that need an A100, 2 that need nothing in particular.
    /// let ticker = manager.start_ticker_for(Duration::from_secs(1), || {
    ///     Demand::new()
    ///         .with(Requirement::new(3).label("gpu", "a100"))
    ///         .with(Requirement::new(2))
    /// })?;
    /// let report = ticker.reports().unwrap().recv().unwrap();
    /// assert_eq!(report.pending_jobs, 5);
    /// ticker.stop();
    /// # Ok::<(), hodei_workers::Error>(())
    /// ```
    pub fn start_ticker_for(
        self: &Arc<Self>,
        interval: Duration,
        demand: impl FnMut() -> Demand + Send + 'static,
    ) -> Result<Ticker> {
        let (tx, rx) = crossbeam_channel::bounded(TICKER_REPORTS_CAPACITY);
        let sink = Sink::Channel(tx, rx.clone());
        self.spawn_ticker(interval, Box::new(demand), sink, Some(rx))
    }

    /// Like [`start_ticker_for`](Self::start_ticker_for), but hands each report to
    /// `on_report`, as [`start_ticker_with`](Self::start_ticker_with) does.
    ///
    /// # Errors
    /// As [`start_ticker`](Self::start_ticker).
    pub fn start_ticker_for_with(
        self: &Arc<Self>,
        interval: Duration,
        demand: impl FnMut() -> Demand + Send + 'static,
        on_report: impl FnMut(TickReport) + Send + 'static,
    ) -> Result<Ticker> {
        let sink = Sink::Callback(Box::new(on_report));
        self.spawn_ticker(interval, Box::new(demand), sink, None)
    }

    fn spawn_ticker(
        self: &Arc<Self>,
        interval: Duration,
        demand: DemandFn,
        sink: Sink,
        reports: Option<Receiver<TickReport>>,
    ) -> Result<Ticker> {
        if interval.is_zero() {
            // Not "greater than zero": a binding's 1e-10 s is positive, and reads as 0 ns.
            return Err(Error::invalid(
                "ticker interval must be at least 1 ns (got 0 ns)",
            ));
        }
        let shared = Arc::new(Shared::default());
        let manager = Arc::clone(self);
        let thread_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("hodei-ticker".to_owned())
            .spawn(move || {
                run(&manager, interval, demand, sink, &thread_shared);
                // Handed back through the join (see `Ticker`): the stopping thread drops it.
                manager
            })
            .map_err(|e| Error::Backend(format!("cannot start the ticker thread: {e}")))?;
        Ok(Ticker {
            shared,
            thread: Mutex::new(Some(handle)),
            interval,
            reports,
        })
    }
}

/// A number of pending jobs as the general demand callback: what `tick(n)` means.
fn pending_jobs(
    mut pending: impl FnMut() -> usize + Send + 'static,
) -> impl FnMut() -> Demand + Send + 'static {
    move || Demand::from(pending())
}

/// The demand as the ticker's note about it says it: the number of jobs when none needs
/// anything in particular (what a `usize` callback gives), else each requirement too.
fn describe(demand: &Demand) -> String {
    let total = demand.total();
    if demand.requirements.iter().all(|r| r.is_unconstrained()) {
        return total.to_string();
    }
    let parts: Vec<String> = demand
        .requirements
        .iter()
        .map(|r| format!("{} {r}", r.count))
        .collect();
    format!("{total} ({})", parts.join(", "))
}

/// The ticker thread's loop.
fn run(
    manager: &WorkerLifecycleManager,
    interval: Duration,
    mut demand: DemandFn,
    mut sink: Sink,
    shared: &Shared,
) {
    TICKER_ON_THIS_THREAD.with(|t| t.set(shared_key(shared)));
    let c = &shared.counters;
    let mut due = Some(Instant::now());
    // None until the callback answers once: a tick then runs without scaling rather than on a
    // made-up 0, which would retire the idle workers.
    let mut last_demand: Option<Demand> = None;
    loop {
        if !wait_until(shared, due) {
            return;
        }
        let slot = due.unwrap_or_else(Instant::now);
        let demand_note = match catch_unwind(AssertUnwindSafe(&mut demand)) {
            Ok(d) => {
                last_demand = Some(d);
                None
            }
            Err(payload) => {
                c.demand_panics.fetch_add(1, Ordering::Relaxed);
                let using = match &last_demand {
                    Some(d) => format!("using the last demand {}", describe(d)),
                    None => "no demand known yet: this tick does not scale".to_owned(),
                };
                Some(format!(
                    "ticker: the demand callback failed ({}); {using}",
                    panic_message(payload.as_ref())
                ))
            }
        };
        // A stop requested while the demand was asked (by the callback itself, or by another
        // thread meanwhile): no tick starts after it.
        if *shared.stopped.lock() {
            return;
        }
        // A tick whose phases panic (a host's registry, clock or lease with a bug) returns
        // what it did, `panicked` set: delivered like any report (its lost jobs must reach the
        // host), and counted. A panic outside the phases (the registry's clock read before
        // them, say) still unwinds out of `tick`: caught here as a last resort, as it must
        // not end the thread (the ticker would stop ticking without a word while `stop` still
        // "worked", and the manager would be dropped on this thread); that tick has no report.
        // The manager's own state is released on unwind by its guards (the tick flag, ...).
        let tick = catch_unwind(AssertUnwindSafe(|| match &last_demand {
            Some(d) => manager.tick(d),
            None => manager.tick_without_demand(),
        }));
        match tick {
            Ok(mut report) => {
                report.decisions.extend(demand_note);
                c.ticks.fetch_add(1, Ordering::Relaxed);
                if report.panicked.is_some() {
                    c.tick_panics.fetch_add(1, Ordering::Relaxed);
                }
                deliver(&mut sink, report, c);
            }
            Err(_) => {
                c.tick_panics.fetch_add(1, Ordering::Relaxed);
            }
        }

        let (next, missed) = next_slot(slot, interval, Instant::now());
        if missed > 0 {
            c.overruns.fetch_add(1, Ordering::Relaxed);
            c.missed_slots.fetch_add(missed, Ordering::Relaxed);
        }
        due = next;
    }
}

/// Waits until `due` (forever with `None`) or until stopped. Returns false when stopped.
fn wait_until(shared: &Shared, due: Option<Instant>) -> bool {
    let mut stopped = shared.stopped.lock();
    loop {
        if *stopped {
            return false;
        }
        match due {
            Some(at) => {
                if Instant::now() >= at {
                    return true;
                }
                shared.wake.wait_until(&mut stopped, at);
            }
            None => shared.wake.wait(&mut stopped),
        }
    }
}

fn deliver(sink: &mut Sink, report: TickReport, c: &Counters) {
    match sink {
        Sink::Callback(on_report) => {
            if catch_unwind(AssertUnwindSafe(|| on_report(report))).is_err() {
                c.report_panics.fetch_add(1, Ordering::Relaxed);
            }
        }
        Sink::Channel(tx, evict) => {
            let mut report = report;
            loop {
                match tx.try_send(report) {
                    Ok(()) => return,
                    // The receiver lives in the handle, and the handle joins this thread
                    // before it goes away; nobody to deliver to either way.
                    Err(TrySendError::Disconnected(_)) => return,
                    Err(TrySendError::Full(back)) => {
                        report = back;
                        if evict.try_recv().is_ok() {
                            c.dropped_reports.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
}

/// The schedule: a tick due at `slot` that ended at `ended` is followed by the first slot of
/// the grid `slot + k × interval` (k ≥ 1) that has not begun yet; the slots it covered
/// (`k` such that `slot + k × interval <= ended`) are skipped and counted.
///
/// Returns the next slot (`None` past the end of `Instant`'s range: never) and the number of
/// skipped slots.
fn next_slot(slot: Instant, interval: Duration, ended: Instant) -> (Option<Instant>, u64) {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let elapsed = ended.saturating_duration_since(slot).as_nanos();
    let missed = elapsed / interval.as_nanos();
    // In nanoseconds (`u128`), not `Duration::checked_mul`, whose factor is a `u32`: a tiny
    // interval covers more than 2**32 slots in seconds (1 ns: 4.3 s), and that is no reason
    // to stop ticking.
    let next = interval
        .as_nanos()
        .checked_mul(missed + 1)
        .and_then(|offset| {
            let secs = u64::try_from(offset / NANOS_PER_SEC).ok()?;
            // Below 10**9: fits.
            let nanos = (offset % NANOS_PER_SEC) as u32;
            Some(Duration::new(secs, nanos))
        })
        .and_then(|offset| slot.checked_add(offset));
    (next, u64::try_from(missed).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_tick_within_its_slot_is_followed_by_the_next_slot() {
        let t0 = Instant::now();
        let (next, missed) = next_slot(t0, 10 * MS, t0 + 3 * MS);
        assert_eq!(next, Some(t0 + 10 * MS));
        assert_eq!(missed, 0);
        // Ending before the slot it was due at (a clock read before) is no overrun either.
        let (next, missed) = next_slot(t0 + 5 * MS, 10 * MS, t0);
        assert_eq!(next, Some(t0 + 15 * MS));
        assert_eq!(missed, 0);
    }

    #[test]
    fn an_overrun_skips_the_covered_slots_and_stays_on_the_grid() {
        let t0 = Instant::now();
        // Ran 35 ms of a 10 ms interval: slots at 10, 20, 30 were covered; next at 40.
        let (next, missed) = next_slot(t0, 10 * MS, t0 + 35 * MS);
        assert_eq!(next, Some(t0 + 40 * MS));
        assert_eq!(missed, 3);
        // Ending exactly on a slot: that slot has begun, it is skipped too.
        let (next, missed) = next_slot(t0, 10 * MS, t0 + 10 * MS);
        assert_eq!(next, Some(t0 + 20 * MS));
        assert_eq!(missed, 1);
    }

    #[test]
    fn an_overrun_of_more_than_2_pow_32_slots_stays_on_the_grid() {
        let t0 = Instant::now();
        // 5 s of a 1 ns interval: 5e9 slots covered (more than u32::MAX); next 1 ns later.
        let ended = t0 + Duration::from_secs(5);
        let (next, missed) = next_slot(t0, Duration::from_nanos(1), ended);
        assert_eq!(next, Some(ended + Duration::from_nanos(1)));
        assert_eq!(missed, 5_000_000_000);
        // 50 days of a 1 ms interval: 4.32e9 slots.
        let ended = t0 + Duration::from_secs(50 * 86_400);
        let (next, missed) = next_slot(t0, MS, ended);
        assert_eq!(next, Some(ended + MS));
        assert_eq!(missed, 4_320_000_000);
    }

    #[test]
    fn a_huge_interval_means_never_rather_than_a_panic() {
        let t0 = Instant::now();
        let (next, missed) = next_slot(t0, Duration::MAX, t0 + MS);
        assert_eq!(next, None);
        assert_eq!(missed, 0);
    }
}
