//! The opt-in ticker: reports on its channel or callback, the demand reaching `tick`, overruns
//! counted instead of piled up, stop/drop joining without waiting for the next slot, panicking
//! callbacks survived. No assertion depends on how fast the machine is: every overrun is
//! forced (a provider that blocks until the test lets it go) and only lower bounds are checked.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::test_registry::{Call, Hooks, TestRegistry};
use hodei_workers::*;

const HOUR: Duration = Duration::from_secs(3600);

fn scaled() -> Fixture {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    f.manager
        .set_scaling_target(&f.provider.id, spec())
        .unwrap();
    f
}

#[test]
fn the_first_tick_runs_at_once_with_the_demand_and_its_report_arrives() {
    let f = scaled();
    let ticker = f.manager.start_ticker(HOUR, || 2).unwrap();
    let report = ticker.reports().unwrap().recv().unwrap();
    assert_eq!(report.pending_jobs, 2);
    assert_eq!(report.provisioned.len(), 2, "{:?}", report.decisions);
    ticker.stop();
    assert!(!ticker.is_running());
    assert_eq!(ticker.stats().ticks, 1);
    assert_eq!(ticker.stats().overruns, 0);
}

#[test]
fn stop_returns_without_waiting_for_the_next_slot_and_disconnects_the_channel() {
    let f = scaled();
    // With an hour between ticks, a stop that waited for the slot would hang this test.
    let ticker = f.manager.start_ticker(HOUR, || 0).unwrap();
    let reports = ticker.reports().unwrap().clone();
    reports.recv().unwrap();
    ticker.stop();
    ticker.stop(); // idempotent
    assert!(!ticker.is_running());
    assert!(
        reports.recv().is_err(),
        "disconnected once the thread ended"
    );
}

#[test]
fn dropping_the_handle_joins_the_thread_and_releases_the_manager() {
    let f = scaled();
    let ticker = f.manager.start_ticker(HOUR, || 0).unwrap();
    ticker.reports().unwrap().recv().unwrap();
    assert_eq!(
        Arc::strong_count(&f.manager),
        2,
        "the thread holds the manager"
    );
    drop(ticker);
    assert_eq!(
        Arc::strong_count(&f.manager),
        1,
        "joined: the thread's reference is gone"
    );
}

#[test]
fn a_tick_that_overruns_is_counted_and_its_slots_are_skipped() {
    let f = scaled();
    f.provider.script_creates([CreateStep::Stall]);
    let interval = Duration::from_millis(10);
    let ticker = f.manager.start_ticker(interval, || 1).unwrap();
    // The first tick is inside the provider; keep it there for at least 5 intervals.
    while f.provider.creating_now.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let held = Instant::now();
    std::thread::sleep(5 * interval);
    assert!(held.elapsed() >= 5 * interval);
    f.provider.release_stalled(1);
    let first = ticker.reports().unwrap().recv().unwrap();
    assert_eq!(first.provisioned.len(), 1);
    ticker.stop();
    let stats = ticker.stats();
    assert!(stats.overruns >= 1, "{stats:?}");
    // Skipped, not made up: at least the 5 slots the blocked tick covered.
    assert!(stats.missed_slots >= 5, "{stats:?}");
}

#[test]
fn stop_waits_for_the_tick_in_progress() {
    let f = scaled();
    f.provider.script_creates([CreateStep::Stall]);
    let ticker = Arc::new(f.manager.start_ticker(HOUR, || 1).unwrap());
    while f.provider.creating_now.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let stopper = {
        let ticker = Arc::clone(&ticker);
        std::thread::spawn(move || ticker.stop())
    };
    // The stop cannot finish while the tick is inside the provider.
    f.provider.release_stalled(1);
    stopper.join().unwrap();
    assert!(!ticker.is_running());
    let report = ticker.reports().unwrap().try_recv().unwrap();
    assert_eq!(report.provisioned.len(), 1, "the tick finished its work");
    assert_eq!(ticker.stats().ticks, 1);
}

#[test]
fn a_panicking_demand_callback_is_counted_and_the_last_demand_used() {
    let f = scaled();
    let ticker = f
        .manager
        .start_ticker(HOUR, || panic!("queue unavailable"))
        .unwrap();
    let report = ticker.reports().unwrap().recv().unwrap();
    ticker.stop();
    assert_eq!(report.pending_jobs, 0);
    assert!(
        report
            .decisions
            .iter()
            .any(|d| d.contains("demand callback failed (queue unavailable)")),
        "{:?}",
        report.decisions
    );
    assert_eq!(ticker.stats().demand_panics, 1);
}

/// A demand callback that fails before it ever answered (a queue not connected yet): the tick
/// does not scale, rather than plan for a made-up 0 pending jobs and retire the idle workers.
/// Its other phases run. Before, the ticker's first tick retired the three idle workers.
#[test]
fn a_demand_callback_failing_before_its_first_answer_retires_no_idle_worker() {
    let f = scaled();
    let ids: Vec<WorkerId> = (0..3)
        .map(|_| {
            let w = f.manager.provision_worker(&f.provider.id, spec()).unwrap();
            f.registry.update_state(&w.id, WorkerState::Ready).unwrap();
            w.id
        })
        .collect();
    let ticker = f
        .manager
        .start_ticker(HOUR, || panic!("queue not connected"))
        .unwrap();
    let report = ticker.reports().unwrap().recv().unwrap();
    ticker.stop();
    assert!(
        report.leading && report.terminated.is_empty(),
        "{:?}",
        report.decisions
    );
    for id in &ids {
        let w = f.registry.get(id).unwrap();
        assert_eq!(
            w.map(|w| w.state),
            Some(WorkerState::Ready),
            "{:?}",
            report.decisions
        );
    }
    assert!(report.scaling.is_none(), "{:?}", report.decisions);
    for said in [
        "no demand known yet",
        "no scaling: the demand is not known yet",
    ] {
        assert!(
            report.decisions.iter().any(|d| d.contains(said)),
            "{said:?} not in {:?}",
            report.decisions
        );
    }
    assert_eq!(ticker.stats().demand_panics, 1);
}

#[test]
fn the_report_callback_survives_its_own_panic() {
    let f = scaled();
    let (tx, rx) = crossbeam_channel::unbounded();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let ticker = f
        .manager
        .start_ticker_with(
            Duration::from_millis(1),
            || 0,
            move |report| {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("host bug");
                }
                let _ = tx.send(report);
            },
        )
        .unwrap();
    assert!(ticker.reports().is_none());
    rx.recv().unwrap(); // the second tick's report: the thread went on
    ticker.stop();
    let stats = ticker.stats();
    assert_eq!(stats.report_panics, 1);
    assert!(stats.ticks >= 2);
    assert_eq!(stats.dropped_reports, 0);
}

/// A registry whose first `register` panics (a host's own registry with a bug), in the middle
/// of a provision: its ledger ticket is held, the instance created.
#[derive(Debug, Default)]
struct PanicsOnFirstRegister(AtomicBool);

impl Hooks for PanicsOnFirstRegister {
    fn before(&self, call: Call<'_>, _: &dyn WorkerRegistry) -> Result<()> {
        if matches!(call, Call::Register(_)) && !self.0.swap(true, Ordering::SeqCst) {
            panic!("registry bug");
        }
        Ok(())
    }
}

/// A tick that panics (here: in the registry, while a provision is in flight) is counted in
/// `tick_panics`, delivers its report with `panicked` set (since 2026-12-07: no report
/// before), and the ticker ticks again at the next slot; the manager's state is released on
/// unwind (the provision's ledger ticket: the next tick provisions in its place), and `stop`
/// still joins. Before, the panic ended the ticker thread: no tick ever after, nothing
/// counted, while `stop` still returned as usual.
#[test]
fn a_tick_that_panics_is_counted_and_the_ticker_goes_on() {
    let clock = Arc::new(ManualClock::new(T0));
    let registry = TestRegistry::with_hooks(
        crate::backend::new_registry(clock.clone()),
        Arc::new(PanicsOnFirstRegister::default()),
    )
    .shared();
    let config = WorkerLifecycleConfig {
        min_ready_workers: 0,
        scale_up_cooldown: Duration::ZERO,
        ..config()
    };
    let manager = Arc::new(WorkerLifecycleManager::new(registry, config).unwrap());
    let provider = TestProvider::new("test");
    manager.register_provider(provider.clone()).unwrap();
    manager.set_scaling_target(&provider.id, spec()).unwrap();
    let ticker = manager
        .start_ticker(Duration::from_millis(1), || 1)
        .unwrap();
    let reports = ticker.reports().unwrap();
    let panicked = reports.recv_timeout(Duration::from_secs(30));
    let next = reports.recv_timeout(Duration::from_secs(30));
    ticker.stop();
    assert!(!ticker.is_running());
    let stats = ticker.stats();
    let panicked = panicked.unwrap_or_else(|_| panic!("no report at all: {stats:?}"));
    assert_eq!(panicked.panicked.as_deref(), Some("registry bug"));
    assert!(panicked.provisioned.is_empty(), "{:?}", panicked.decisions);
    let report = next.unwrap_or_else(|_| panic!("no tick after the panicking one: {stats:?}"));
    assert_eq!(stats.tick_panics, 1, "{stats:?}");
    assert_eq!(
        report.provisioned.len(),
        1,
        "the panicked provision still holds its slot: {:?}",
        report.decisions
    );
    assert_eq!(manager.stats().unwrap().in_flight, 0);
    // The instance the panicked provision created is no one's: remembered as an orphan, the
    // next tick's orphan retries destroyed it (no registry record holds it).
    assert_eq!(
        provider.instance_ids().len(),
        1,
        "the panicked provision's instance leaked: {:?}",
        provider.calls()
    );
    // The manager is not left "ticking": a tick of the host's runs.
    assert!(!manager.tick(1).skipped);
}

/// A registry whose first `unregister` panics: a destroy picked from the queue, its instance
/// destroyed, unwinds before it could release its entry.
#[derive(Debug, Default)]
struct PanicsOnFirstUnregister(AtomicBool);

impl Hooks for PanicsOnFirstUnregister {
    fn before(&self, call: Call<'_>, _: &dyn WorkerRegistry) -> Result<()> {
        if matches!(call, Call::Unregister(_)) && !self.0.swap(true, Ordering::SeqCst) {
            panic!("registry bug");
        }
        Ok(())
    }
}

/// The ticker survives a tick that panics in the middle of a destroy; so must the destroy. The
/// entry the panicking tick had picked stayed "in progress" for ever: never picked again, its
/// record `Terminating` for good, while the ticker ticked on.
#[test]
fn a_destroy_cut_by_a_panicking_tick_is_done_by_a_later_one() {
    let clock = Arc::new(ManualClock::new(T0));
    let registry = TestRegistry::with_hooks(
        crate::backend::new_registry(clock.clone()),
        Arc::new(PanicsOnFirstUnregister::default()),
    )
    .shared();
    // A startup timeout shorter than the heartbeat timeout: waiting it out is no host stall.
    let config = WorkerLifecycleConfig {
        min_ready_workers: 0,
        startup_timeout: secs(30),
        ..config()
    };
    let manager = Arc::new(WorkerLifecycleManager::new(registry.clone(), config.clone()).unwrap());
    let provider = TestProvider::new("test");
    manager.register_provider(provider.clone()).unwrap();
    let worker = manager.provision_worker(&provider.id, spec()).unwrap();
    // Never reports in: the first tick's health check expires it and destroys it.
    clock.advance(config.startup_timeout + secs(1));
    let ticker = manager
        .start_ticker(Duration::from_millis(1), || 0)
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while ticker.stats().tick_panics == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(ticker.stats().tick_panics, 1, "{:?}", ticker.stats());
    // Past any retry delay: the next ticks destroy it again.
    clock.advance(config.destroy_retry_max + secs(1));
    while registry.get(&worker.id).unwrap().is_some() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    ticker.stop();
    assert_eq!(
        registry.get(&worker.id).unwrap().map(|w| w.state),
        None,
        "still queued: {:?} ({:?})",
        manager.pending_destroys(),
        ticker.stats()
    );
    assert!(manager.pending_destroys().is_empty());
}

/// A registry whose `register` panics once armed (a host's own registry with a bug).
#[derive(Debug, Default)]
struct PanicsOnRegisterWhenArmed(AtomicBool);

impl Hooks for PanicsOnRegisterWhenArmed {
    fn before(&self, call: Call<'_>, _: &dyn WorkerRegistry) -> Result<()> {
        if matches!(call, Call::Register(_)) && self.0.swap(false, Ordering::SeqCst) {
            panic!("registry bug in register");
        }
        Ok(())
    }
}

/// A tick whose health check took a busy worker out of service (its job lost) and whose
/// scaling then panicked (in the registry's `register`): the ticker delivers that tick's
/// report, the lost job in it, and counts the panic in `tick_panics`; the next tick is a
/// normal one and the registry's counts are a recount of its records. Before, the ticker
/// caught the panic and delivered nothing: the job, already out of the registry, never
/// reached the host's report callback.
#[test]
fn a_tick_that_panics_midway_delivers_what_it_did_and_is_counted() {
    let clock = Arc::new(ManualClock::new(T0));
    let hooks = Arc::new(PanicsOnRegisterWhenArmed::default());
    let registry =
        TestRegistry::with_hooks(crate::backend::new_registry(clock.clone()), hooks.clone());
    let config = WorkerLifecycleConfig {
        min_ready_workers: 0,
        scale_up_cooldown: Duration::ZERO,
        ..config()
    };
    let manager = Arc::new(WorkerLifecycleManager::new(registry.shared(), config).unwrap());
    let provider = TestProvider::new("test");
    manager.register_provider(provider.clone()).unwrap();
    manager.set_scaling_target(&provider.id, spec()).unwrap();
    let w = manager.provision_worker(&provider.id, spec()).unwrap();
    registry.update_state(&w.id, WorkerState::Ready).unwrap();
    registry.assign_to_job(&w.id, job("running")).unwrap();
    // Ticks closer together than heartbeat_timeout (no host stall): the ticker's first tick
    // finds the worker silent for longer than the timeout.
    clock.advance(secs(40));
    assert!(manager.tick(0).lost_jobs.is_empty());
    clock.advance(secs(40));
    hooks.0.store(true, Ordering::SeqCst);
    let (tx, rx) = crossbeam_channel::unbounded();
    let ticker = manager
        .start_ticker_with(
            Duration::from_millis(1),
            || 1,
            move |r| {
                let _ = tx.send(r);
            },
        )
        .unwrap();
    let first = rx.recv_timeout(Duration::from_secs(30));
    let second = rx.recv_timeout(Duration::from_secs(30));
    ticker.stop();
    let stats = ticker.stats();
    let first = first.unwrap_or_else(|_| panic!("no report of the panicking tick: {stats:?}"));
    assert_eq!(
        first.lost_jobs,
        vec![LostJob {
            worker_id: w.id,
            job_id: job("running")
        }],
        "{:?}",
        first.decisions
    );
    assert_eq!(
        first.panicked.as_deref(),
        Some("registry bug in register"),
        "{:?}",
        first.decisions
    );
    assert_eq!(stats.tick_panics, 1, "{stats:?}");
    assert!(
        stats.ticks >= 2,
        "the panicked tick counts as a tick: {stats:?}"
    );
    let second = second.unwrap_or_else(|_| panic!("no tick after the panicking one: {stats:?}"));
    assert_eq!(second.panicked, None, "{:?}", second.decisions);
    assert!(second.lost_jobs.is_empty(), "{:?}", second.decisions);
    assert_eq!(second.provisioned.len(), 1, "{:?}", second.decisions);
    // Released: the tick flag (a tick of the host's runs), the provision's ledger ticket.
    assert!(!manager.tick(1).skipped);
    assert_eq!(manager.stats().unwrap().in_flight, 0);
    let all = registry.find(&WorkerFilter::new()).unwrap();
    assert_eq!(
        manager.stats().unwrap().registry,
        WorkerRegistryStats::recount(&all)
    );
}

#[test]
fn stopping_from_the_report_callback_does_not_deadlock() {
    let f = scaled();
    let slot: Arc<OnceLock<Arc<Ticker>>> = Arc::new(OnceLock::new());
    let (started_tx, started_rx) = crossbeam_channel::bounded::<()>(0);
    let inside = Arc::clone(&slot);
    let ticker = Arc::new(
        f.manager
            .start_ticker_with(
                Duration::from_millis(1),
                || 0,
                move |_| {
                    // Wait until the test published the handle, then stop from this thread.
                    let _ = started_rx.recv();
                    inside.get().unwrap().stop();
                },
            )
            .unwrap(),
    );
    slot.set(Arc::clone(&ticker)).unwrap();
    started_tx.send(()).unwrap();
    ticker.stop(); // joins: the thread ends after the tick that asked it to stop
    assert_eq!(ticker.stats().ticks, 1);
}

#[test]
fn an_unread_channel_keeps_the_newest_reports() {
    // No scaling target: the growing demand only shows in the reports.
    let f = Fixture::new(config());
    let demand = Arc::new(AtomicUsize::new(0));
    let d = Arc::clone(&demand);
    let n = TICKER_REPORTS_CAPACITY + 5;
    let ticker = f
        .manager
        .start_ticker(Duration::from_millis(1), move || {
            d.fetch_add(1, Ordering::SeqCst)
        })
        .unwrap();
    // Wait until more ticks ran than the channel holds (demand counts the calls).
    while demand.load(Ordering::SeqCst) <= n {
        std::thread::yield_now();
    }
    ticker.stop();
    let stats = ticker.stats();
    let kept: Vec<TickReport> = ticker.reports().unwrap().try_iter().collect();
    assert_eq!(kept.len(), TICKER_REPORTS_CAPACITY);
    assert_eq!(
        stats.dropped_reports,
        stats.ticks - TICKER_REPORTS_CAPACITY as u64
    );
    // The newest, in order: the last report carries the last demand handed out.
    let pending: Vec<usize> = kept.iter().map(|r| r.pending_jobs).collect();
    assert!(pending.windows(2).all(|w| w[1] == w[0] + 1), "{pending:?}");
    assert_eq!(*pending.last().unwrap() as u64, stats.ticks - 1);
}

#[test]
fn a_zero_interval_is_refused() {
    let f = scaled();
    let err = f.manager.start_ticker(Duration::ZERO, || 0).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("at least 1 ns"), "{err}");
}

#[test]
fn request_stop_does_not_wait_and_a_later_stop_joins() {
    let f = scaled();
    f.provider.script_creates([CreateStep::Stall]);
    let ticker = f.manager.start_ticker(HOUR, || 1).unwrap();
    while f.provider.creating_now.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    // The tick is stuck in the provider: request_stop returns anyway.
    ticker.request_stop();
    assert!(ticker.is_running());
    f.provider.release_stalled(1);
    ticker.stop();
    assert!(!ticker.is_running());
    assert_eq!(ticker.stats().ticks, 1);
}

/// Records the thread that drops it.
struct DropWitness(Arc<std::sync::Mutex<Option<std::thread::ThreadId>>>);

impl Drop for DropWitness {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(std::thread::current().id());
    }
}

impl WorkerProvider for DropWitness {
    fn provider_id(&self) -> ProviderId {
        pid("witness")
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Docker
    }
    fn create_worker(&self, _: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        Ok(WorkerHandle::new(pid("witness"), ProviderType::Docker, "r"))
    }
    fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
        Ok(())
    }
}

#[test]
fn a_manager_dropped_while_its_ticker_runs_is_dropped_by_the_thread_that_stops_it() {
    // The host drops its manager first (C: hw_manager_free before hw_ticker_free): the
    // ticker's reference is the last, handed back through the join, so the providers (their C
    // `release`) are dropped on the stopping thread, never on the ticker's.
    let f = Fixture::default();
    let dropped_on = Arc::new(std::sync::Mutex::new(None));
    let manager = Arc::new(WorkerLifecycleManager::new(f.registry.clone(), config()).unwrap());
    manager
        .register_provider(Arc::new(DropWitness(dropped_on.clone())))
        .unwrap();
    let ticker = manager.start_ticker(HOUR, || 0).unwrap();
    ticker.reports().unwrap().recv().unwrap();
    drop(manager);
    assert_eq!(
        *dropped_on.lock().unwrap(),
        None,
        "alive while the ticker runs"
    );
    ticker.stop();
    assert_eq!(
        *dropped_on.lock().unwrap(),
        Some(std::thread::current().id()),
        "dropped by the thread that stopped the ticker"
    );
}

/// `stop` promises to return only once the tick in progress has finished, from whichever
/// thread it is called (C: "hw_ticker_stop may be called from any thread"). With two stops at
/// once, the one that did not get to join the thread returned at once — while the tick was
/// still inside the provider — and `is_running` said false meanwhile: a host that frees what
/// its callbacks use once `stop` returned would free it under a running tick.
#[test]
fn a_second_concurrent_stop_also_waits_for_the_tick_in_progress() {
    let f = scaled();
    f.provider.script_creates([CreateStep::Stall]);
    let ticker = Arc::new(f.manager.start_ticker(HOUR, || 1).unwrap());
    while f.provider.creating_now.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let returned = Arc::new(AtomicUsize::new(0));
    let stoppers: Vec<_> = (0..2)
        .map(|_| {
            let (ticker, returned) = (Arc::clone(&ticker), Arc::clone(&returned));
            std::thread::spawn(move || {
                ticker.stop();
                returned.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // Give both stops time to get going: neither may return while the tick is stalled.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        assert_eq!(
            returned.load(Ordering::SeqCst),
            0,
            "a stop returned while the tick was still in progress"
        );
        assert!(ticker.is_running(), "the tick is still in progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    f.provider.release_stalled(1);
    for s in stoppers {
        s.join().unwrap();
    }
    assert_eq!(returned.load(Ordering::SeqCst), 2);
    assert!(!ticker.is_running());
    assert_eq!(ticker.stats().ticks, 1);
}

/// `request_stop` promises that no tick starts after it. Called while the ticker thread was
/// asking the demand callback (here: by that callback), the tick that demand was for started
/// all the same, after the call — and called the provider.
#[test]
fn no_tick_starts_after_a_stop_requested_while_the_demand_was_asked() {
    let f = scaled();
    let slot: Arc<OnceLock<Arc<Ticker>>> = Arc::new(OnceLock::new());
    let (published_tx, published_rx) = crossbeam_channel::bounded::<()>(1);
    let (requested_tx, requested_rx) = crossbeam_channel::bounded::<()>(1);
    let inside = Arc::clone(&slot);
    let ticker = Arc::new(
        f.manager
            .start_ticker(HOUR, move || {
                let _ = published_rx.recv();
                inside.get().unwrap().request_stop();
                let _ = requested_tx.send(());
                1
            })
            .unwrap(),
    );
    slot.set(Arc::clone(&ticker)).unwrap();
    published_tx.send(()).unwrap();
    requested_rx.recv().unwrap();
    ticker.stop();
    assert_eq!(ticker.stats().ticks, 0, "a tick ran after request_stop");
    assert!(
        f.provider.calls().is_empty(),
        "the provider was called after request_stop: {:?}",
        f.provider.calls()
    );
}

/// The schedule skips the slots a slow tick covered and goes on at the next one. With a tiny
/// interval, a tick that covered more than 2**32 slots (1 ns: 4.3 s; 1 ms: 50 days) made the
/// schedule give up: the next slot was taken for one past the end of time, and the ticker never
/// ticked again, though it still ran and `stop` still worked.
#[test]
fn a_tick_that_covers_more_than_2_pow_32_slots_is_followed_by_the_next_one() {
    let f = scaled();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let interval = Duration::from_nanos(1);
    let ticker = f
        .manager
        .start_ticker(interval, move || {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                // Over 2**32 slots of 1 ns (4.29 s) covered by the first tick.
                std::thread::sleep(Duration::from_millis(4_400));
            }
            0
        })
        .unwrap();
    let reports = ticker.reports().unwrap();
    reports.recv().unwrap();
    let second = reports.recv_timeout(Duration::from_secs(30));
    ticker.stop();
    assert!(
        second.is_ok(),
        "no tick after the one that covered 2**32 slots: {:?}",
        ticker.stats()
    );
    let stats = ticker.stats();
    assert!(stats.missed_slots > u64::from(u32::MAX), "{stats:?}");
}

/// A provider that stops the ticker when it is dropped (C: a provider's `release` that calls
/// `hw_ticker_stop` on the ticker, as a host's shutdown routine would).
struct StopsTickerOnDrop(Arc<OnceLock<std::sync::Weak<Ticker>>>);

impl Drop for StopsTickerOnDrop {
    fn drop(&mut self) {
        if let Some(ticker) = self.0.get().and_then(std::sync::Weak::upgrade) {
            ticker.stop();
        }
    }
}

impl WorkerProvider for StopsTickerOnDrop {
    fn provider_id(&self) -> ProviderId {
        pid("stops-on-drop")
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Docker
    }
    fn create_worker(&self, _: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        Ok(WorkerHandle::new(
            pid("stops-on-drop"),
            ProviderType::Docker,
            "r",
        ))
    }
    fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
        Ok(())
    }
}

/// `stop` is idempotent and callbacks may call back into the library. When the manager's last
/// reference is the ticker's, the `stop` that joins the thread drops the manager and its
/// providers; a provider whose drop (C: `release`) stops the same ticker again, on that same
/// thread, waited for the first `stop` to say it had joined — which it said only after the
/// providers were dropped: the thread waited for itself for ever.
#[test]
fn a_provider_dropped_by_stop_may_stop_the_ticker_again() {
    let f = Fixture::default();
    let slot = Arc::new(OnceLock::new());
    let manager = Arc::new(WorkerLifecycleManager::new(f.registry.clone(), config()).unwrap());
    manager
        .register_provider(Arc::new(StopsTickerOnDrop(Arc::clone(&slot))))
        .unwrap();
    let ticker = Arc::new(manager.start_ticker(HOUR, || 0).unwrap());
    slot.set(Arc::downgrade(&ticker)).unwrap();
    ticker.reports().unwrap().recv().unwrap();
    drop(manager); // the ticker's reference is the last
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let stopper = Arc::clone(&ticker);
    std::thread::spawn(move || {
        stopper.stop();
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(30)).is_ok(),
        "stop hung: the provider's drop, on the stopping thread, waited for that same stop"
    );
    assert!(!ticker.is_running());
}

/// A manager with two pools: `gpu` (on provider `gpu`, a template with an A100) and `cpu` (on
/// provider `cpu`, a plain template); the providers are returned in that order.
fn gpu_and_cpu_pools() -> (Fixture, Arc<TestProvider>, Arc<TestProvider>) {
    let f = Fixture::new(config());
    let gpu = TestProvider::new("gpu");
    let cpu = TestProvider::new("cpu");
    f.manager.register_provider(gpu.clone()).unwrap();
    f.manager.register_provider(cpu.clone()).unwrap();
    let gpu_template = WorkerSpec {
        resources: ResourceRequirements {
            gpu_count: 1,
            gpu_type: Some("a100".into()),
            ..Default::default()
        },
        ..WorkerSpec::new("trainer").with_label("gpu", "a100")
    };
    f.manager
        .set_pools(vec![
            Pool::new("gpu", pid("gpu"), gpu_template).unwrap(),
            Pool::new("cpu", pid("cpu"), WorkerSpec::new("builder")).unwrap(),
        ])
        .unwrap();
    (f, gpu, cpu)
}

fn gpu_jobs(n: usize) -> Demand {
    Demand::new().with(Requirement::new(n).label("gpu", "a100"))
}

/// The ticker's demand by requirement reaches the pools: jobs that only the gpu pool's template
/// satisfies are provisioned there, none in the cpu pool. Before, the ticker's callback could
/// only say a number of jobs of any kind.
#[test]
fn a_demand_by_requirement_provisions_in_the_pool_that_satisfies_it_only() {
    let (f, gpu, cpu) = gpu_and_cpu_pools();
    let ticker = f.manager.start_ticker_for(HOUR, || gpu_jobs(2)).unwrap();
    let report = ticker.reports().unwrap().recv().unwrap();
    ticker.stop();
    assert_eq!(report.pending_jobs, 2);
    assert_eq!(report.provisioned.len(), 2, "{:?}", report.decisions);
    assert!(report
        .provisioned
        .iter()
        .all(|p| p.provider_id == pid("gpu")));
    assert!(
        report.unschedulable.is_empty(),
        "{:?}",
        report.unschedulable
    );
    assert_eq!(gpu.instance_ids().len(), 2);
    assert!(cpu.instance_ids().is_empty(), "{:?}", cpu.calls());
}

/// The last good demand rule holds for a demand by requirement: the tick after a failed call
/// plans for the requirements the callback gave last (and the note says them), not for a
/// number of jobs of any kind.
#[test]
fn a_failing_demand_by_requirement_callback_leaves_its_last_demand_in_use() {
    let (f, gpu, cpu) = gpu_and_cpu_pools();
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut calls = 0;
    let ticker = f
        .manager
        .start_ticker_for_with(
            Duration::from_millis(1),
            move || {
                calls += 1;
                if calls > 1 {
                    panic!("queue unavailable");
                }
                gpu_jobs(2)
            },
            move |report| {
                let _ = tx.send(report);
            },
        )
        .unwrap();
    let first = rx.recv().unwrap();
    let second = rx.recv().unwrap();
    ticker.stop();
    assert_eq!(first.provisioned.len(), 2, "{:?}", first.decisions);
    assert_eq!(second.pending_jobs, 2, "{:?}", second.decisions);
    assert!(
        second.decisions.iter().any(|d| d.contains(
            "demand callback failed (queue unavailable); using the last demand 2 (2 gpu=a100)"
        )),
        "{:?}",
        second.decisions
    );
    // Still the gpu jobs: the two starting workers serve them, the cpu pool has none to serve.
    assert!(second.provisioned.is_empty(), "{:?}", second.decisions);
    assert!(
        second.unschedulable.is_empty(),
        "{:?}",
        second.unschedulable
    );
    assert_eq!(gpu.instance_ids().len(), 2);
    assert!(cpu.instance_ids().is_empty(), "{:?}", cpu.calls());
    assert!(ticker.stats().demand_panics >= 1);
}

/// A `usize` callback's note reads as before: the number of jobs.
#[test]
fn a_failing_number_callback_names_its_last_demand_as_a_number() {
    let f = scaled();
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut calls = 0;
    let ticker = f
        .manager
        .start_ticker_with(
            Duration::from_millis(1),
            move || {
                calls += 1;
                if calls > 1 {
                    panic!("queue unavailable");
                }
                3
            },
            move |report| {
                let _ = tx.send(report);
            },
        )
        .unwrap();
    rx.recv().unwrap();
    let second = rx.recv().unwrap();
    ticker.stop();
    assert_eq!(second.pending_jobs, 3);
    assert!(
        second
            .decisions
            .iter()
            .any(|d| d.ends_with("using the last demand 3")),
        "{:?}",
        second.decisions
    );
}
