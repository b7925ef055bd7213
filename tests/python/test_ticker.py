"""The opt-in ticker from Python: ``with manager.ticker(1.0, pending=queue.qsize) as t: ...``.

No timing assertion: the waits have generous timeouts only so that a bug fails instead of
hanging, and intervals are an hour wherever a single tick is all the test needs."""

from __future__ import annotations

import gc
import queue
import signal
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

import hodei_workers as hw

HOUR = 3600.0
# A bound on how long a wait may take before the test is considered hung (never reached).
HANG = 60.0


class ThreadRecordingCloud:
    """A provider that records which thread called it."""

    provider_id = "cloud"
    provider_type = "docker"

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.count = 0

    def create_worker(self, *args: Any) -> str:
        # *args: the spec (and, with the interface of issue 10, the worker id first).
        self.threads.append(threading.get_ident())
        self.count += 1
        return f"i-{self.count}"

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        pass


@pytest.fixture
def manager(registry: hw.Registry) -> hw.LifecycleManager:
    return hw.LifecycleManager(registry, hw.LifecycleConfig(min_ready_workers=0))


def test_a_ticker_as_a_context_manager_ticks_with_the_pending_demand(
    manager: hw.LifecycleManager,
) -> None:
    jobs: queue.Queue[str] = queue.Queue()
    for j in ("a", "b", "c"):
        jobs.put(j)
    with manager.ticker(HOUR, pending=jobs.qsize) as t:
        assert isinstance(t, hw.Ticker)
        assert t.interval == HOUR
        report = t.next_report(timeout=HANG)  # the first tick runs at once
        assert report is not None
        assert report.pending_jobs == 3
        assert t.running
    assert not t.running
    assert t.stats.ticks == 1
    assert (t.stats.demand_failures, t.stats.report_failures, t.stats.tick_failures) == (0, 0, 0)
    assert t.next_report(timeout=0) is None  # stopped and drained
    t.stop()  # idempotent


def test_reports_and_provider_calls_happen_on_the_ticker_thread(
    manager: hw.LifecycleManager,
) -> None:
    cloud = ThreadRecordingCloud()
    manager.register_provider(cloud)
    manager.set_scaling_target("cloud", hw.WorkerSpec("img"))
    seen: queue.Queue[tuple[int, hw.TickReport]] = queue.Queue()
    with manager.ticker(
        HOUR, pending=lambda: 2, on_report=lambda r: seen.put((threading.get_ident(), r))
    ) as t:
        thread, report = seen.get(timeout=HANG)
        with pytest.raises(TypeError):
            t.next_report(timeout=0)  # reports go to on_report
    main = threading.get_ident()
    assert thread != main
    assert len(report.provisioned) == 2
    assert cloud.threads == [thread, thread]


def test_a_raising_pending_is_reported_counted_and_the_last_demand_used(
    manager: hw.LifecycleManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def pending() -> int:
        raise ValueError("queue unavailable")

    with manager.ticker(HOUR, pending=pending) as t:
        report = t.next_report(timeout=HANG)
    assert report is not None
    assert report.pending_jobs == 0
    assert any("pending() raised ValueError('queue unavailable')" in d for d in report.decisions), (
        report.decisions
    )
    assert t.stats.demand_failures == 1
    assert len(unraisable) == 1
    assert isinstance(unraisable[0].exc_value, ValueError)


def test_a_pending_that_raises_before_its_first_answer_retires_no_idle_worker(
    registry: hw.Registry, manager: hw.LifecycleManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A queue not connected yet: the first tick does not scale, rather than plan for a
    # made-up 0 pending jobs that would retire the idle workers.
    monkeypatch.setattr(sys, "unraisablehook", lambda _: None)
    manager.register_provider(ThreadRecordingCloud())
    manager.set_scaling_target("cloud", hw.WorkerSpec("img"))
    idle = []
    for _ in range(3):
        worker = manager.provision_worker("cloud", hw.WorkerSpec("img"))
        idle.append(registry.update_state(worker.id, hw.WorkerState.READY).id)

    def pending() -> int:
        raise ConnectionError("queue not connected")

    with manager.ticker(HOUR, pending=pending) as t:
        report = t.next_report(timeout=HANG)
    assert report is not None
    assert not report.terminated, report.decisions
    assert any("no scaling" in d for d in report.decisions), report.decisions
    for worker_id in idle:
        now = registry.get(worker_id)
        assert now is not None and now.state == hw.WorkerState.READY


def test_pending_must_return_an_int_at_least_zero(
    manager: hw.LifecycleManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with manager.ticker(HOUR, pending=lambda: -1) as t:
        report = t.next_report(timeout=HANG)
    assert report is not None and report.pending_jobs == 0
    assert t.stats.demand_failures == 1
    assert isinstance(unraisable[0].exc_value, hw.InvalidArgumentError)


class Cloud:
    """A provider with an id of its own that records its creates."""

    provider_type = "docker"

    def __init__(self, provider_id: str) -> None:
        self.provider_id = provider_id
        self.created: list[str] = []

    def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
        self.created.append(worker_id)
        return f"{self.provider_id}-{len(self.created)}"

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        pass


GPU_JOBS = hw.Demand([{"labels": {"gpu": "a100"}, "count": 2}])


def gpu_and_cpu_pools(manager: hw.LifecycleManager) -> tuple[Cloud, Cloud]:
    """A gpu pool (an A100 template) and a cpu pool (a plain one), each on its own provider."""
    gpu, cpu = Cloud("gpu"), Cloud("cpu")
    manager.register_provider(gpu)
    manager.register_provider(cpu)
    template = hw.WorkerSpec(
        "trainer", labels={"gpu": "a100"}, resources=hw.Resources(gpu_count=1, gpu_type="a100")
    )
    manager.set_pools([hw.Pool("gpu", "gpu", template), hw.Pool("cpu", "cpu", hw.WorkerSpec("builder"))])
    return gpu, cpu


def test_a_pending_that_returns_a_demand_provisions_in_the_pool_that_satisfies_it_only(
    manager: hw.LifecycleManager,
) -> None:
    gpu, cpu = gpu_and_cpu_pools(manager)
    with manager.ticker(HOUR, pending=lambda: GPU_JOBS) as t:
        report = t.next_report(timeout=HANG)
    assert report is not None
    assert t.stats.demand_failures == 0
    assert report.pending_jobs == 2, report.decisions
    assert [p.provider_id for p in report.provisioned] == ["gpu", "gpu"], report.decisions
    assert not report.unschedulable
    assert len(gpu.created) == 2 and cpu.created == []


def test_a_pending_whose_demand_fails_later_keeps_the_last_demand_by_requirement(
    manager: hw.LifecycleManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "unraisablehook", lambda _: None)
    gpu, cpu = gpu_and_cpu_pools(manager)
    answers = iter([GPU_JOBS])

    def pending() -> hw.Demand:
        return next(answers)  # StopIteration from the second call on

    with manager.ticker(0.001, pending=pending) as t:
        first = t.next_report(timeout=HANG)
        second = t.next_report(timeout=HANG)
    assert first is not None and second is not None
    assert len(first.provisioned) == 2, first.decisions
    # The gpu jobs still: served by the two starting workers, nothing asked of the cpu pool.
    assert second.pending_jobs == 2, second.decisions
    assert any("using the last demand 2 (2 gpu=a100)" in d for d in second.decisions), (
        second.decisions
    )
    assert not second.provisioned and not second.unschedulable, second.decisions
    assert len(gpu.created) == 2 and cpu.created == []
    assert t.stats.demand_failures >= 1


@pytest.mark.parametrize("answer", [[{"count": 1}], "3", 2.0, None, True])
def test_pending_returning_neither_an_int_nor_a_demand_is_a_demand_failure(
    manager: hw.LifecycleManager, monkeypatch: pytest.MonkeyPatch, answer: Any
) -> None:
    # A list of requirements is not what tick() takes either: wrap it in hw.Demand.
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with manager.ticker(HOUR, pending=lambda: answer) as t:
        report = t.next_report(timeout=HANG)
    assert report is not None and report.pending_jobs == 0
    assert any("no demand known yet" in d for d in report.decisions), report.decisions
    assert t.stats.demand_failures == 1
    assert len(unraisable) == 1
    assert isinstance(unraisable[0].exc_value, TypeError)
    assert "must return an int >= 0 or a Demand" in str(unraisable[0].exc_value)


def test_a_raising_on_report_is_counted_and_the_ticker_goes_on(
    manager: hw.LifecycleManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    calls = 0
    later: queue.Queue[hw.TickReport] = queue.Queue()

    def on_report(report: hw.TickReport) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("host bug")
        later.put(report)

    with manager.ticker(0.001, on_report=on_report) as t:
        later.get(timeout=HANG)  # a later tick's report: the thread went on
    assert t.stats.report_failures == 1
    assert t.stats.ticks >= 2
    assert isinstance(unraisable[0].exc_value, RuntimeError)


class UnshowableError(Exception):
    def __repr__(self) -> str:
        raise KeyboardInterrupt


def test_an_interrupt_raised_by_repr_of_a_callbacks_exception_goes_to_unraisablehook(
    manager: hw.LifecycleManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The callback's exception goes to sys.unraisablehook; so does Ctrl-C landing in its
    # __repr__ while the ticker shows it, rather than vanish.
    seen: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))
    reported = threading.Event()

    def on_report(report: hw.TickReport) -> None:
        reported.set()
        raise UnshowableError

    with manager.ticker(HOUR, on_report=on_report) as t:
        assert reported.wait(HANG)
        deadline = time.monotonic() + HANG
        while t.stats.report_failures == 0:
            assert time.monotonic() < deadline, "the failure was never counted"
            time.sleep(0.01)
    assert seen == [UnshowableError, KeyboardInterrupt]

def test_stopping_from_a_callback_does_not_deadlock(manager: hw.LifecycleManager) -> None:
    holder: list[hw.Ticker] = []
    published = threading.Event()
    stopped_inside = threading.Event()

    def on_report(report: hw.TickReport) -> None:
        published.wait(HANG)
        holder[0].stop()  # from the ticker's own thread: returns at once
        stopped_inside.set()

    t = manager.ticker(0.001, on_report=on_report)
    holder.append(t)
    published.set()
    assert stopped_inside.wait(HANG)
    t.stop()
    assert not t.running
    assert t.stats.ticks == 1


def test_bad_arguments(manager: hw.LifecycleManager) -> None:
    with pytest.raises(hw.InvalidArgumentError):
        manager.ticker(0)
    with pytest.raises(hw.InvalidArgumentError):
        manager.ticker(-1.0)
    with pytest.raises(TypeError):
        manager.ticker("1s")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        manager.ticker(1.0, pending=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        manager.ticker(1.0, on_report="print")  # type: ignore[arg-type]


def test_an_interval_below_a_nanosecond_is_refused_without_denying_it_is_positive(
    manager: hw.LifecycleManager,
) -> None:
    # 1e-10 s is read as 0 ns: the refusal said "must be greater than zero" to a caller who
    # gave a positive interval.
    with pytest.raises(hw.InvalidArgumentError, match="at least 1 ns") as e:
        manager.ticker(1e-10)
    assert "greater than zero" not in str(e.value)


def test_dropping_a_ticker_stops_it_and_releases_its_callbacks(
    manager: hw.LifecycleManager,
) -> None:
    class Pending:
        def __call__(self) -> int:
            return 0

    pending = Pending()
    alive = weakref.ref(pending)
    t = manager.ticker(HOUR, pending=pending)
    del pending
    assert t.next_report(timeout=HANG) is not None
    assert "Ticker" in repr(t)
    assert alive() is not None  # the thread holds it
    del t  # joins (with the GIL released) rather than hanging on the thread
    manager.stats()  # any call into the module settles references the thread let go
    gc.collect()
    assert alive() is None


def test_an_interpreter_exiting_with_a_running_ticker_neither_hangs_nor_crashes() -> None:
    import subprocess

    code = (
        "import hodei_workers as hw\n"
        "m = hw.LifecycleManager(hw.Registry())\n"
        "t = m.ticker(0.001, pending=lambda: 1, on_report=lambda r: None)\n"
        "print('started')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "started"
    assert done.stderr == "", done.stderr


HANGING_PROVIDER = """\
import threading
import time

called = threading.Event()


class Hanging:
    provider_id = "hanging"
    provider_type = "docker"

    def create_worker(self, worker_id, spec):
        called.set()
        {wait}

    def destroy_worker(self, handle):
        pass
"""


@pytest.mark.parametrize("wait", ["threading.Event().wait()", "time.sleep(3600)"])
def test_an_interpreter_exiting_while_a_tick_waits_for_a_provider_neither_hangs_nor_crashes(
    tmp_path: Path, wait: str
) -> None:
    # The host exits without stopping its ticker while the tick waits for a provider that
    # does not answer. The ticker is dropped while the interpreter finalizes (the provider
    # lives in a module of its own, so the one holding the ticker is torn down): it must not
    # wait for that tick, whose thread can no longer run Python code, and the exit status
    # stays the script's.
    import os
    import subprocess

    (tmp_path / "hanging_provider.py").write_text(HANGING_PROVIDER.format(wait=wait))
    code = (
        "import hodei_workers as hw\n"
        "import hanging_provider\n"
        "m = hw.LifecycleManager(hw.Registry(), hw.LifecycleConfig(min_ready_workers=1))\n"
        "m.register_provider(hanging_provider.Hanging())\n"
        "m.set_scaling_target('hanging', hw.WorkerSpec('img'))\n"
        "t = m.ticker(3600.0)\n"
        "assert hanging_provider.called.wait(60)\n"
        "print('started')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "started"
    assert done.stderr == "", done.stderr

class Host:
    """A host object that keeps its ticker, whose callback is one of its bound methods: a
    cycle through the Ticker."""

    def __init__(self, manager: hw.LifecycleManager, callback: str) -> None:
        self.reported = threading.Event()
        if callback == "pending":
            self.ticker = manager.ticker(HOUR, pending=self.pending)
            assert self.ticker.next_report(timeout=HANG) is not None
        else:
            self.ticker = manager.ticker(HOUR, on_report=self.on_report)
            assert self.reported.wait(HANG)

    def pending(self) -> int:
        return 0

    def on_report(self, report: hw.TickReport) -> None:
        self.reported.set()


@pytest.mark.parametrize("callback", ["pending", "on_report"])
def test_a_ticker_in_a_cycle_through_its_callback_is_collected(
    manager: hw.LifecycleManager, callback: str
) -> None:
    host = Host(manager, callback)
    alive = weakref.ref(host)
    del host
    # The thread may still hold the callback for a moment after the first tick (it returns
    # from on_report after setting the event): collect until the cycle is found.
    deadline = time.monotonic() + HANG
    while alive() is not None:
        assert time.monotonic() < deadline, "the host and its ticker were never collected"
        gc.collect()
    # The host held the only reference to the Ticker: freed (or cleared), it stopped its thread.



class SlotsPending:
    """A pending callback that keeps its ticker (in a tuple, in a slot): a cycle through the
    Ticker with no instance dict. At a short interval the thread is busy ticking, calling it,
    while the collections run."""

    __slots__ = ("box", "__weakref__")

    def __init__(self) -> None:
        self.box: tuple[hw.Ticker, ...] = ()

    def __call__(self) -> int:
        return 0


@pytest.mark.parametrize("interval", [HOUR, 0.001])
def test_a_ticker_in_a_cycle_through_a_slot_is_collected(
    manager: hw.LifecycleManager, interval: float
) -> None:
    pending = SlotsPending()
    ticker = manager.ticker(interval, pending=pending)
    pending.box = (ticker,)
    assert ticker.next_report(timeout=HANG) is not None
    alive = weakref.ref(pending)
    del pending, ticker
    deadline = time.monotonic() + HANG
    while alive() is not None:  # (the thread may be calling pending at a collection)
        assert time.monotonic() < deadline, "the ticker's cycle was never collected"
        gc.collect()

def test_an_interrupt_raised_by_a_provider_on_the_ticker_thread_goes_to_unraisablehook(
    manager: hw.LifecycleManager, clock: hw.ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No manager method returns to Python on the ticker's thread to re-raise it: it must reach
    # sys.unraisablehook (like the callbacks' exceptions), and not stay parked on the thread.
    seen: list[tuple[type[BaseException], str]] = []
    # Only the type and text: the exception would keep its traceback's frames alive.
    monkeypatch.setattr(
        sys, "unraisablehook", lambda u: seen.append((u.exc_type, str(u.exc_value)))
    )

    class Local:
        pass

    frames: list[weakref.ref[Local]] = []

    class Interrupting:
        provider_id = "cloud"
        provider_type = "docker"

        def __init__(self) -> None:
            self.raises: list[BaseException] = [SystemExit("wants out"), KeyboardInterrupt()]

        def create_worker(self, *args: Any) -> str:
            local = Local()  # a local of the raising frame
            frames.append(weakref.ref(local))
            raise self.raises.pop(0)

        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            pass

    def next_failure(t: hw.Ticker) -> hw.ProvisionFailure:
        deadline = time.monotonic() + HANG
        while True:
            assert time.monotonic() < deadline, "no create was tried"
            report = t.next_report(timeout=HANG)
            if report is not None and report.provision_failures:
                [failure] = report.provision_failures
                return failure

    manager.register_provider(Interrupting())
    manager.set_scaling_target("cloud", hw.WorkerSpec("img"))
    with manager.ticker(0.001, pending=lambda: 1) as t:
        first = next_failure(t)
        clock.advance(HOUR)  # past the provider's back-off: a later tick tries again
        second = next_failure(t)
    assert "SystemExit: wants out (interrupted)" in first.error
    assert "KeyboardInterrupt" in second.error and "(interrupted)" in second.error
    # No signal handler runs on the ticker's thread: the provider raised them itself, a
    # failure of its own that backs it off (else one that always raises is called every tick).
    assert (first.kind, first.consecutive_failures) == ("failed", 1)
    assert (second.kind, second.consecutive_failures) == ("failed", 2)
    # Both, the later one too: a first interrupt does not make the thread drop the next.
    assert seen == [(SystemExit, "wants out"), (KeyboardInterrupt, "")]
    gc.collect()
    assert [f() for f in frames] == [None, None]
    # Nothing was left to surface in a later call of the manager.
    manager.tick()


# Ctrl-C at a wait of the Ticker's. The signal goes to the main thread from a timer, while the
# main thread waits (or just before: either way KeyboardInterrupt must come out of the call).
# The waits the old code made are bounded (an interval, a timeout, a provider's release), so a
# regression fails on the time it took rather than hang: not a timing measurement, it tells
# "interrupted" from "waited it out".
WAITED_OUT = 15.0


def ctrl_c_soon() -> threading.Timer:
    timer = threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
@pytest.mark.parametrize("timeout", [None, 20.0])
def test_ctrl_c_interrupts_a_next_report_wait(
    manager: hw.LifecycleManager, timeout: float | None
) -> None:
    # Interval 20 s: without the fix, next_report() waited for the second tick (or its 20 s
    # timeout) and only then raised the KeyboardInterrupt.
    with manager.ticker(20.0) as t:
        assert t.next_report(timeout=HANG) is not None  # the first tick, at once
        started = time.monotonic()
        timer = ctrl_c_soon()
        try:
            with pytest.raises(KeyboardInterrupt):
                t.next_report(timeout=timeout)
        finally:
            timer.join()
        assert time.monotonic() - started < WAITED_OUT
        assert t.running, "an interrupted reader leaves the ticker ticking"


class HangingCloud:
    """A provider whose create_worker hangs (a cloud API that does not answer) until released."""

    provider_id = "cloud"
    provider_type = "docker"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def create_worker(self, *args: Any) -> str:
        self.entered.set()
        self.release.wait(20.0)
        return "i-1"

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        pass


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_ctrl_c_interrupts_a_stop_that_waits_for_a_hanging_provider(
    manager: hw.LifecycleManager,
) -> None:
    cloud = HangingCloud()
    manager.register_provider(cloud)
    manager.set_scaling_target("cloud", hw.WorkerSpec("img"))
    t = manager.ticker(HOUR, pending=lambda: 1)
    try:
        assert cloud.entered.wait(HANG), "the tick called the provider"
        started = time.monotonic()
        timer = ctrl_c_soon()
        try:
            # Without the fix, stop() waited for the provider (20 s here, forever for a cloud
            # API without a timeout) and ignored Ctrl-C meanwhile.
            with pytest.raises(KeyboardInterrupt):
                t.stop()
        finally:
            timer.join()
        assert time.monotonic() - started < WAITED_OUT
    finally:
        cloud.release.set()
    # The interrupted stop still asked the ticker to stop: no tick after the one in progress;
    # a later stop() joins the thread.
    t.stop()
    assert not t.running
    assert t.stats.ticks == 1


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_a_ticker_whose_stop_was_interrupted_is_dropped_without_waiting(
    registry: hw.Registry,
) -> None:
    # The host's usual shape: Ctrl-C ends the loop in the `with`, the exit's stop() waits for
    # a hanging provider, a second Ctrl-C interrupts it, and the host goes on shutting down.
    # The ticker object, unnamed, is dropped as the `with` ends: that drop must not wait for
    # the provider either (without the fix it joined the thread, ignoring Ctrl-C, 20 s here).
    manager = hw.LifecycleManager(registry, hw.LifecycleConfig(min_ready_workers=0))
    cloud = HangingCloud()
    manager.register_provider(cloud)
    manager.set_scaling_target("cloud", hw.WorkerSpec("img"))
    started = 0.0
    try:
        with pytest.raises(KeyboardInterrupt):
            with manager.ticker(HOUR, pending=lambda: 1):
                assert cloud.entered.wait(HANG), "the tick called the provider"
                started = time.monotonic()
                timer = ctrl_c_soon()
                try:
                    time.sleep(0.5)  # the first Ctrl-C lands here...
                finally:
                    timer.join()
                    timer = ctrl_c_soon()  # ...and the second one in the exit's stop()
        timer.join()
        assert time.monotonic() - started < WAITED_OUT
    finally:
        cloud.release.set()
    # The thread still finishes its tick (the provider's instance is registered) and ends.
    deadline = time.monotonic() + HANG
    while len(registry) == 0:
        assert time.monotonic() < deadline, "the interrupted ticker's tick never finished"
        time.sleep(0.01)


class Owner:
    """An object that keeps a ticker and itself: garbage only the cycle collector frees."""

    def __init__(self, ticker: hw.Ticker) -> None:
        self.ticker = ticker
        self.me = self


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
@pytest.mark.parametrize("let_go", ["del", "collected", "with-error"])
def test_ctrl_c_interrupts_letting_go_of_a_ticker_whose_tick_hangs(
    registry: hw.Registry, let_go: str
) -> None:
    # A ticker let go of without stop() (its last reference dropped, or collected in a cycle)
    # stops its thread and waits for the tick in progress. Behind a provider that hangs, that
    # wait must yield to Ctrl-C like stop()'s: the KeyboardInterrupt comes out right after the
    # drop. Without the fix the drop joined the thread ignoring Ctrl-C (20 s here, forever for
    # a cloud API without a timeout). A `with` left by another exception stops the ticker in
    # its exit, interruptibly: the KeyboardInterrupt replaces that exception.
    manager = hw.LifecycleManager(registry, hw.LifecycleConfig(min_ready_workers=0))
    cloud = HangingCloud()
    manager.register_provider(cloud)
    manager.set_scaling_target("cloud", hw.WorkerSpec("img"))
    started = 0.0
    gc.disable()  # the cycle is collected where the test says, not at any allocation
    # ...and that collection holds only this test's garbage. Leftovers of earlier tests may run
    # Python code when collected (a weakref callback: threading's `WeakSet._remove` for a dead
    # Timer); under load the SIGINT could land in that code before the drop began, where
    # CPython reports the KeyboardInterrupt to sys.unraisablehook and drops it: the drop then
    # waited for the tick, unasked to yield, and the test failed with DID NOT RAISE.
    gc.collect()
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            if let_go == "with-error":
                with manager.ticker(HOUR, pending=lambda: 1):
                    assert cloud.entered.wait(HANG), "the tick called the provider"
                    started = time.monotonic()
                    timer = ctrl_c_soon()
                    raise ValueError("the host's own trouble")
            else:
                owner = Owner(manager.ticker(HOUR, pending=lambda: 1))
                assert cloud.entered.wait(HANG), "the tick called the provider"
                started = time.monotonic()
                timer = ctrl_c_soon()
                if let_go == "del":
                    del owner.me, owner  # the last reference: freed here
                else:
                    del owner
                    gc.collect()
            while time.monotonic() - started < WAITED_OUT:  # it comes out at the latest here
                time.sleep(0.01)
        timer.join()
        assert time.monotonic() - started < WAITED_OUT
        if let_go == "with-error":
            assert isinstance(info.value.__context__, ValueError)
    finally:
        gc.enable()
        cloud.release.set()
    # The thread still finishes its tick (the provider's instance is registered) and ends.
    deadline = time.monotonic() + HANG
    while len(registry) == 0:
        assert time.monotonic() < deadline, "the ticker's tick never finished"
        time.sleep(0.01)
