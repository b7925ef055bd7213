"""Issue 10's binding items: what a careless or unlucky caller runs into at the Python boundary.

- A NUL character (legal in a Python str, impossible in a C string) is refused where it enters
  (item 17).
- A huge int where float seconds (or any float) are expected is an InvalidArgumentError, not an
  OverflowError; a bool is a TypeError (item 19).
- Ctrl-C reaches a thread blocked in ``Subscription.recv(timeout=30)``, ``recv()`` or
  ``for event in subscription`` (item 19).
- A KeyboardInterrupt raised inside a provider reaches the caller without losing the report of
  the operation it cut short (item 3).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import threading
import time
from datetime import timedelta
from typing import Any, Callable, Iterator, Mapping

import pytest

import hodei_workers as hw

HOUR = 3600.0

HUGE = 10**400  # beyond any float


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.register("p", "docker", "c\x00-1"),
        lambda r: r.register("p", "docker", "c-1", metadata={"k": "v\x00"}),
        lambda r: r.register("p", "docker", "c-1", metadata={"k\x00": "v"}),
        lambda r: r.register("p", "docker\x00", "c-1"),
        lambda r: r.register("p", "custom:x\x00y", "c-1"),
        lambda r: hw.WorkerSpec("ubuntu\x00:24.04"),
        lambda r: hw.WorkerSpec("u", labels={"pool": "a\x00"}),
        lambda r: hw.WorkerSpec("u", environment={"A\x00": "1"}),
        lambda r: hw.WorkerSpec("u", capabilities=["gpu\x00"]),
        lambda r: hw.WorkerSpec("u", capabilities="gpu\x00"),
        lambda r: hw.WorkerSpec("u").replace(image="x\x00"),
        lambda r: hw.Resources(gpu_type="a100\x00"),
    ],
)
def test_nul_is_refused_where_it_enters(registry: hw.Registry, call: Callable[[Any], object]) -> None:
    with pytest.raises(hw.InvalidArgumentError, match="NUL"):
        call(registry)
    assert len(registry) == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda r, c: hw.ManualClock(HUGE),
        lambda r, c: c.set(HUGE),
        lambda r, c: c.advance(HUGE),
        lambda r, c: hw.Resources(cpu_cores=HUGE),
        lambda r, c: hw.WorkerSpec("u", idle_timeout=HUGE),
        lambda r, c: hw.WorkerSpec("u", max_lifetime=HUGE),
        lambda r, c: hw.LifecycleConfig(heartbeat_timeout=HUGE),
        lambda r, c: hw.LifecycleConfig(max_unhealthy_fraction=HUGE),
        lambda r, c: hw.LifecycleConfig(max_workers=HUGE),
        lambda r, c: r.find(idle_for=HUGE),
        lambda r, c: r.find(unhealthy_for=HUGE),
        lambda r, c: r.claim("j", idle_for=HUGE),
        lambda r, c: r.find_unhealthy(HUGE),
        lambda r, c: r.find_startup_expired(HUGE),
        lambda r, c: r.subscribe().recv(timeout=HUGE),
    ],
)
def test_a_huge_int_for_a_float_is_invalid_not_overflow(
    registry: hw.Registry, clock: hw.ManualClock, call: Callable[[Any, Any], object]
) -> None:
    with pytest.raises(hw.InvalidArgumentError):
        call(registry, clock)


@pytest.mark.parametrize(
    "call",
    [
        lambda r, c: hw.WorkerSpec("u", idle_timeout=1e20),
        lambda r, c: c.advance(1e20),
        lambda r, c: r.find(idle_for=1e20),
        lambda r, c: r.subscribe().recv(timeout=1e300),
    ],
)
def test_a_finite_duration_too_long_is_out_of_range(
    registry: hw.Registry, clock: hw.ManualClock, call: Callable[[Any, Any], object]
) -> None:
    # Without the fix: "a duration must be a finite number of seconds >= 0, got
    # 100000000000000000000", which the value given is.
    with pytest.raises(hw.InvalidArgumentError, match="out of range") as info:
        call(registry, clock)
    assert "finite" not in str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda r, c: hw.ManualClock(True),
        lambda r, c: c.set(True),
        lambda r, c: c.advance(True),
        lambda r, c: hw.Resources(cpu_cores=True),
        lambda r, c: hw.WorkerSpec("u", idle_timeout=True),
        lambda r, c: hw.LifecycleConfig(max_unhealthy_fraction=True),
        lambda r, c: hw.LifecycleConfig(heartbeat_timeout=False),
        lambda r, c: hw.LifecycleConfig(max_workers=True),
        lambda r, c: hw.LifecycleConfig(max_workers=2.5),  # type: ignore[arg-type]
        lambda r, c: hw.LifecycleConfig(min_ready_workers=timedelta(seconds=1)),  # type: ignore[arg-type]
        lambda r, c: hw.LifecycleConfig(heartbeat_timeout="60"),  # type: ignore[arg-type]
        lambda r, c: r.find(idle_for=True),
        lambda r, c: r.subscribe().recv(timeout=True),
    ],
)
def test_a_bool_for_a_number_is_a_type_error(
    registry: hw.Registry, clock: hw.ManualClock, call: Callable[[Any, Any], object]
) -> None:
    with pytest.raises(TypeError):
        call(registry, clock)


def test_lifecycle_config_keeps_its_checks() -> None:
    assert hw.LifecycleConfig(heartbeat_timeout=timedelta(seconds=90)).heartbeat_timeout == 90.0
    assert hw.LifecycleConfig(max_unhealthy_fraction=1).max_unhealthy_fraction == 1.0
    assert hw.LifecycleConfig(max_workers=None) == hw.LifecycleConfig()
    with pytest.raises(hw.InvalidArgumentError, match="heartbeat_timeout"):
        hw.LifecycleConfig(heartbeat_timeout=-1)
    with pytest.raises(hw.InvalidArgumentError, match="max_workers"):
        hw.LifecycleConfig(max_workers=-1)
    with pytest.raises(hw.InvalidArgumentError, match="finite"):
        hw.LifecycleConfig(max_unhealthy_fraction=float("nan"))


def test_what_the_callers_iter_raises_is_not_turned_into_a_type_error(registry: hw.Registry) -> None:
    """Only iter()'s refusal of a non-iterable says what was expected; Ctrl-C or a failure
    in the caller's __iter__ (an iterable of the right type) goes through as raised."""

    class Interrupted:
        def __iter__(self) -> Iterator[str]:
            raise KeyboardInterrupt

    class Down:
        def __iter__(self) -> Iterator[str]:
            raise ConnectionError("config service down")

    class Big(int):
        def __repr__(self) -> str:
            raise KeyboardInterrupt

    calls: list[Callable[[Any], object]] = [
        lambda v: registry.find(capabilities=v),
        lambda v: registry.find(states=v),
        lambda v: hw.WorkerSpec("img", capabilities=v),
    ]
    for call in calls:
        with pytest.raises(KeyboardInterrupt):
            call(Interrupted())
        with pytest.raises(ConnectionError, match="config service down"):
            call(Down())
        with pytest.raises(TypeError, match="must be .*iterable"):
            call(1)
    with pytest.raises(KeyboardInterrupt):
        registry.find(limit=Big(2**70))


def test_what_an_int_subclass_float_raises_is_not_out_of_range() -> None:
    """Only an OverflowError (an int too large for a float) is "out of range"; what the
    caller's __float__ raises goes through as raised."""

    class Interrupted(int):
        def __float__(self) -> float:
            raise KeyboardInterrupt

    class Unreadable(int):
        def __float__(self) -> float:
            raise ValueError("no reading")

    with pytest.raises(KeyboardInterrupt):
        hw.ManualClock(Interrupted(5))
    with pytest.raises(ValueError, match="^no reading"):
        hw.ManualClock().advance(Unreadable(5))
    with pytest.raises(ValueError, match="^no reading"):
        hw.Resources(cpu_cores=Unreadable(2))
    with pytest.raises(hw.InvalidArgumentError, match="out of range"):
        hw.ManualClock(HUGE)


def test_lifecycle_config_refuses_a_negative_timedelta_as_a_negative_number() -> None:
    """The type is right: InvalidArgumentError naming the field, as for -1 (not a TypeError
    saying a timedelta must be a number or a timedelta); and what a timedelta subclass's
    total_seconds raises is not turned into a TypeError either."""
    for negative in (-1, -1.0, timedelta(seconds=-1)):
        with pytest.raises(hw.InvalidArgumentError, match=r"config\.heartbeat_timeout: invalid duration -1 s"):
            hw.LifecycleConfig(heartbeat_timeout=negative)

    class Interrupted(timedelta):
        def total_seconds(self) -> float:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hw.LifecycleConfig(heartbeat_timeout=Interrupted(seconds=1))
    assert hw.LifecycleConfig(heartbeat_timeout=timedelta(milliseconds=1500)).heartbeat_timeout == 1.5
    with pytest.raises(TypeError, match="expected a non-negative int"):
        hw.LifecycleConfig(min_ready_workers=timedelta(seconds=1))  # type: ignore[arg-type]


def test_numbers_and_durations_of_the_callers_classes_read_as_python_reads_them(
    registry: hw.Registry,
) -> None:
    """Their dunders run under the module's guard against interpreter exit
    (test_shutdown.py); what they answer, and the errors, are Python's own."""

    class Start:
        def __float__(self) -> float:
            return 2.5

    class Limit:
        def __init__(self, n: int) -> None:
            self.n = n

        def __index__(self) -> int:
            return self.n

    class Interval(timedelta):
        def total_seconds(self) -> float:
            return 7.0

    class Named(int):
        def __repr__(self) -> str:
            return "Named()"

    class Wide(int):
        pass

    assert hw.ManualClock(Start()).now() == 2.5  # type: ignore[arg-type]
    clock = hw.ManualClock(0)
    assert clock.advance(Interval(seconds=1)) == 7.0
    assert registry.find(limit=Limit(1)) == []  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^must be real number, not str"):
        hw.ManualClock("0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^'str' object cannot be interpreted as an integer"):
        registry.find(limit="1")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        registry.find(limit=Limit(2**70))  # type: ignore[arg-type]
    with pytest.raises(hw.InvalidArgumentError, match=r": Named\(\) is out of range"):
        registry.find(limit=Named(2**70))
    with pytest.raises(hw.InvalidArgumentError, match=": a negative int of 7001 bits is out of range"):
        registry.find(limit=Wide(-(2**7000)))
    with pytest.raises(hw.InvalidArgumentError, match=r"demand\[0\]: Named\(\) is out of range$"):
        hw.Demand([{"count": Named(2**70)}])
    with pytest.raises(hw.InvalidArgumentError, match=r"min_ready_workers is out of range: Named\(\)$"):
        hw.LifecycleConfig(min_ready_workers=Named(2**70))


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_ctrl_c_interrupts_a_recv_with_a_timeout(registry: hw.Registry) -> None:
    subscription = registry.subscribe()
    started = time.monotonic()
    # The signal is sent from another thread once the main thread is (about to be) waiting;
    # whether it lands just before the call or during the wait, KeyboardInterrupt is raised
    # inside the `with`. Before the fix the wait ran its whole 30 s first.
    with pytest.raises(KeyboardInterrupt):
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            subscription.recv(timeout=30)
        finally:
            timer.join()
    # Not a timing measurement: it tells "interrupted" from "waited the timeout out".
    assert time.monotonic() - started < 25


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
@pytest.mark.parametrize("wait", ["recv()", "for"])
def test_ctrl_c_interrupts_a_wait_without_timeout(registry: hw.Registry, wait: str) -> None:
    subscription = registry.subscribe()
    # Nothing comes, and the registry stays: only Ctrl-C ends these waits. A watchdog
    # registers a worker after 20 s, so a wait that ignores Ctrl-C ends (and fails) instead of
    # hanging the suite.
    watchdog = threading.Timer(20, registry.register, ("watchdog", "docker", "c-1"))
    watchdog.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            try:
                if wait == "for":
                    for _ in subscription:
                        break
                else:
                    subscription.recv()
            finally:
                timer.join()
        assert time.monotonic() - started < 15
    finally:
        watchdog.cancel()


class Interrupting:
    """A provider whose destroy_worker is interrupted (Ctrl-C while it talks to the cloud)."""

    provider_id = "interrupting"
    provider_type = "docker"

    def __init__(self) -> None:
        self.interrupt = True

    def create_worker(self, *args: object) -> str:
        raise NotImplementedError("these tests register their workers themselves")

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        if self.interrupt:
            raise KeyboardInterrupt


def busy_worker(registry: hw.Registry, job: str) -> str:
    worker = registry.register("interrupting", "docker", f"c-{job}")
    registry.update_state(worker.id, "ready")
    registry.assign_to_job(worker.id, job)
    return worker.id


def test_an_interrupted_terminate_keeps_its_report(registry: hw.Registry) -> None:
    manager = hw.LifecycleManager(registry)
    manager.register_provider(Interrupting())
    assert manager.last_report is None
    worker_id = busy_worker(registry, "job-1")
    with pytest.raises(KeyboardInterrupt) as info:
        manager.terminate_worker(worker_id)
    report = info.value.report  # type: ignore[attr-defined]
    assert isinstance(report, hw.CleanupResult)
    assert [(j.worker_id, j.job_id) for j in report.lost_jobs] == [(worker_id, "job-1")]
    assert [f.worker_id for f in report.failed] == [worker_id], "the destroy counts as failed"
    assert manager.last_report == report


def test_an_interrupted_tick_keeps_its_report(registry: hw.Registry, clock: hw.ManualClock) -> None:
    manager = hw.LifecycleManager(registry, hw.LifecycleConfig(heartbeat_timeout=60))
    provider = Interrupting()
    manager.register_provider(provider)
    silent = busy_worker(registry, "job-7")
    for i in range(3):  # enough healthy workers that the brake does not hold
        registry.update_state(registry.register("interrupting", "docker", f"ok-{i}").id, "ready")
    healthy = [w.id for w in registry.find(states=["ready"])]
    interrupted: KeyboardInterrupt | None = None
    for _ in range(6):  # ticks 20 s apart (a longer pause would be a host stall: grace)
        clock.advance(20)
        for w in healthy:
            registry.heartbeat(w)
        try:
            manager.tick()
        except KeyboardInterrupt as e:
            interrupted = e
            break
    assert interrupted is not None, "the silent worker's destroy was interrupted"
    report = interrupted.report  # type: ignore[attr-defined]
    assert isinstance(report, hw.TickReport) and report.health_checked
    assert [u.worker_id for u in report.unhealthy] == [silent]
    assert [j.job_id for j in report.lost_jobs] == ["job-7"]
    assert manager.last_report == report
    # Not interrupted: the report is returned, and is the last one. (An interrupted destroy
    # counts no attempt: this tick, at the same instant, destroys the worker.)
    provider.interrupt = False
    quiet = manager.tick()
    assert manager.last_report == quiet
    assert [t.worker_id for t in quiet.terminated] == [silent]


class SlowCloud:
    """A provider whose destroy_worker takes long (a slow cloud API): the first call is where
    Ctrl-C lands."""

    provider_id = "slow-cloud"
    provider_type = "docker"

    def __init__(self) -> None:
        self.interrupt = True
        self.destroy_calls = 0

    def create_worker(self, *args: object) -> str:
        raise NotImplementedError("these tests register their workers themselves")

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        self.destroy_calls += 1
        if self.interrupt:
            raise KeyboardInterrupt


def test_after_an_interrupt_the_operation_calls_no_provider_again(
    registry: hw.Registry, clock: hw.ManualClock
) -> None:
    # Five idle workers are due for cleanup; Ctrl-C lands in the first destroy. Without the
    # fix the cleanup went on destroying the four others (with a slow cloud API, minutes of
    # Ctrl-C doing nothing but cut one call short) before the KeyboardInterrupt came out.
    manager = hw.LifecycleManager(registry, hw.LifecycleConfig(min_ready_workers=0))
    cloud = SlowCloud()
    manager.register_provider(cloud)
    ids = []
    for i in range(5):
        worker = registry.register("slow-cloud", "docker", f"c-{i}", hw.WorkerSpec("img", idle_timeout=10))
        registry.update_state(worker.id, "ready")
        ids.append(worker.id)
    clock.advance(20)
    with pytest.raises(KeyboardInterrupt) as info:
        manager.cleanup_workers()
    assert cloud.destroy_calls == 1, "no provider call after the interrupt"
    report = info.value.report  # type: ignore[attr-defined]
    assert report.terminated == []
    assert sorted(f.worker_id for f in report.failed) == sorted(ids)
    assert all("(interrupted)" in f.error for f in report.failed), report.failed
    # Consistent, and nothing leaks: the records wait in TERMINATING for their destroy retry.
    assert len(registry) == 5
    assert {w.state for w in registry.find()} == {hw.WorkerState.TERMINATING}
    assert manager.stats().pending_destroys == 5
    cloud.interrupt = False
    clock.advance(HOUR)  # past the retry back-off
    again = manager.cleanup_workers()
    assert sorted(t.worker_id for t in again.terminated) == sorted(ids)
    assert len(registry) == 0 and cloud.destroy_calls == 6


class HandsBackNul:
    """A provider whose instance comes back with text C cannot carry."""

    provider_id = "nul-cloud"
    provider_type = "docker"

    def __init__(self, resource_id: str, metadata: dict[str, str]) -> None:
        self.answer = (resource_id, metadata)
        self.created: list[str] = []
        self.destroyed: list[str] = []

    def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> hw.Created:
        self.created.append(self.answer[0])
        return self.answer

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        self.destroyed.append(handle.resource_id)


@pytest.mark.parametrize(
    "resource_id, metadata",
    [("i-\x00", {}), ("i-1", {"zone": "eu\x00"}), ("i-2", {"z\x00": "eu"})],
)
def test_a_provider_handing_back_nul_is_refused_and_its_instance_destroyed(
    registry: hw.Registry, resource_id: str, metadata: dict[str, str]
) -> None:
    manager = hw.LifecycleManager(registry)
    cloud = HandsBackNul(resource_id, metadata)
    manager.register_provider(cloud)
    with pytest.raises(hw.InvalidArgumentError, match="NUL"):
        manager.provision_worker("nul-cloud", hw.WorkerSpec("img"))
    assert len(registry) == 0 and manager.stats().in_flight == 0
    assert cloud.destroyed == cloud.created == [resource_id], "the instance did not leak"


def test_a_provider_handing_back_an_empty_resource_id_is_refused_and_destroyed(
    registry: hw.Registry,
) -> None:
    """An empty resource id names no instance (destroy and reconcile could not find it): the
    handle is refused like one with a NUL, and what the provider made is destroyed."""
    manager = hw.LifecycleManager(registry)
    cloud = HandsBackNul("", {})
    manager.register_provider(cloud)
    with pytest.raises(hw.InvalidArgumentError, match="resource_id .* is empty"):
        manager.provision_worker("nul-cloud", hw.WorkerSpec("img"))
    assert len(registry) == 0 and manager.stats().in_flight == 0
    assert cloud.destroyed == cloud.created == [""]


class HandsBackGarbage:
    """A provider whose instance exists but whose answer cannot be read (so it is not a
    `hw.Provider` to a type checker, which is the point)."""

    provider_id = "garbage-cloud"
    provider_type = "docker"

    def __init__(self, answer: Callable[[str], object]) -> None:
        self.answer = answer
        self.running: set[str] = set()
        self.destroyed: list[str] = []

    def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> object:
        resource_id = f"vm-{worker_id[:8]}"
        self.running.add(resource_id)
        return self.answer(resource_id)

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        self.destroyed.append(handle.resource_id)
        self.running.remove(handle.resource_id)


@pytest.mark.parametrize(
    "answer",
    [
        lambda rid: (rid, {"zone": 1}),
        lambda rid: (rid, ["zone"]),
        lambda rid: (rid, {"zone": "eu\udc80"}),
        lambda rid: (rid, {1: "eu"}),
    ],
    ids=["int value", "not a mapping", "surrogate", "int key"],
)
def test_an_unreadable_answer_with_a_resource_id_destroys_the_instance(
    registry: hw.Registry, answer: Callable[[str], object]
) -> None:
    manager = hw.LifecycleManager(registry)
    cloud = HandsBackGarbage(answer)
    manager.register_provider(cloud)  # type: ignore[arg-type]
    with pytest.raises(hw.ProviderError, match="was destroyed"):
        manager.provision_worker("garbage-cloud", hw.WorkerSpec("img"))
    assert len(registry) == 0 and manager.stats().in_flight == 0
    assert cloud.running == set() and len(cloud.destroyed) == 1, "the instance did not leak"


def test_an_unreadable_answer_says_when_no_instance_can_be_destroyed(
    registry: hw.Registry,
) -> None:
    manager = hw.LifecycleManager(registry)
    for answer in (lambda rid: None, lambda rid: rid + "\udc80"):
        cloud = HandsBackGarbage(answer)
        manager.register_provider(cloud)  # type: ignore[arg-type]
        with pytest.raises(hw.ProviderError, match="list_workers"):
            manager.provision_worker("garbage-cloud", hw.WorkerSpec("img"))
        assert len(registry) == 0 and cloud.destroyed == []
        manager.unregister_provider("garbage-cloud")


def test_a_failing_destroy_of_an_unreadable_answer_is_reported(registry: hw.Registry) -> None:
    manager = hw.LifecycleManager(registry)
    cloud = HandsBackGarbage(lambda rid: (rid, {"zone": 1}))

    def refuse(handle: hw.WorkerHandle) -> None:
        raise RuntimeError("api down")

    cloud.destroy_worker = refuse  # type: ignore[method-assign]
    manager.register_provider(cloud)  # type: ignore[arg-type]
    with pytest.raises(hw.ProviderError, match="failed too.*api down"):
        manager.provision_worker("garbage-cloud", hw.WorkerSpec("img"))
    assert len(registry) == 0


def test_a_nested_call_made_while_an_interrupt_is_parked_does_not_take_it(
    registry: hw.Registry,
) -> None:
    """Python code that runs while a provider's KeyboardInterrupt waits for the manager call
    it cut short (a finalizer, a weakref callback) may call the manager too: that nested call
    returns as usual, and the interrupt still reaches the call the user made. Here the
    provider unregisters itself and is interrupted; its finalizer runs as the engine drops
    its last reference, before provision_worker returns. Without the fix the finalizer's
    ``stats()`` raised the KeyboardInterrupt (into the finalizer, where it was ignored) and
    provision_worker raised a ProviderError as if the provider had merely failed."""
    manager = hw.LifecycleManager(registry)
    nested: list[str] = []

    class Vanishing:
        provider_id = "vanishing"
        provider_type = "docker"

        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
            manager.unregister_provider(self.provider_id)
            del self  # the traceback keeps this frame, not the provider
            raise KeyboardInterrupt

        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            pass

        def __del__(self) -> None:
            try:
                manager.stats()
                nested.append("returned")
                # Ctrl-C is on its way to the caller: no provider is called meanwhile.
                manager.provision_worker("other", hw.WorkerSpec("img"))
            except BaseException as e:  # noqa: BLE001 (what the nested call raised is the point)
                nested.append(f"raised {type(e).__name__}: {e}")

    class Other:
        provider_id = "other"
        provider_type = "docker"

        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
            nested.append("other called")
            return "i-1"

        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            pass

    manager.register_provider(Vanishing())
    manager.register_provider(Other())
    with pytest.raises(KeyboardInterrupt):
        manager.provision_worker("vanishing", hw.WorkerSpec("img"))
    assert len(nested) == 2 and nested[0] == "returned", "the finalizer ran inside the call"
    assert nested[1].startswith("raised ProviderError") and "not called (interrupted)" in nested[1]
    assert manager.stats().in_flight == 0 and len(registry) == 0
    manager.stats()  # nothing was left parked for a later call


class Cancelled(BaseException):
    """A BaseException of the host's own (not an Exception): it must propagate."""


BASE_EXCEPTIONS = [
    pytest.param(KeyboardInterrupt, id="KeyboardInterrupt"),
    pytest.param(lambda: SystemExit(3), id="SystemExit"),
    pytest.param(asyncio.CancelledError, id="CancelledError"),
    pytest.param(GeneratorExit, id="GeneratorExit"),
    pytest.param(lambda: Cancelled("shutting down"), id="own-BaseException"),
]


@pytest.mark.parametrize("make", BASE_EXCEPTIONS)
def test_a_base_exception_from_a_provider_propagates_after_the_operation(
    registry: hw.Registry, make: Callable[[], BaseException]
) -> None:
    """The Python rule: a BaseException that is not an Exception (Ctrl-C, SystemExit,
    asyncio.CancelledError, GeneratorExit, a class of the host's own) is never swallowed as a
    provider failure. The engine finishes the operation without calling a provider again,
    then the very exception reaches the caller, with the operation's report."""
    manager = hw.LifecycleManager(registry, hw.LifecycleConfig(max_workers=5))
    raised = make()
    calls: list[str] = []

    class Raising:
        provider_id = "raising"
        provider_type = "docker"

        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
            calls.append(worker_id)
            raise raised

        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            pass

    manager.register_provider(Raising())
    manager.set_scaling_target("raising", hw.WorkerSpec("img"))
    with pytest.raises(BaseException) as info:
        manager.tick(pending_jobs=3)
    assert info.value is raised
    assert len(calls) == 1, "no provider call after it"
    report = info.value.report  # type: ignore[attr-defined]
    assert isinstance(report, hw.TickReport) and manager.last_report == report
    assert [f.provider_id for f in report.provision_failures] == ["raising"]
    assert "(interrupted)" in report.provision_failures[0].error
    with pytest.raises(BaseException) as again:
        manager.provision_worker("raising", hw.WorkerSpec("img"))
    assert again.value is raised
    assert len(registry) == 0 and manager.stats().in_flight == 0


class Signature:
    """A create_worker whose signature cannot be read without running code that raises."""

    def __init__(self, raised: BaseException) -> None:
        self.raised = raised

    @property
    def __signature__(self) -> inspect.Signature:
        raise self.raised

    def __call__(self, worker_id: str, spec: hw.WorkerSpec) -> str:
        return "i-1"


@pytest.mark.parametrize("make", BASE_EXCEPTIONS)
def test_a_base_exception_reading_a_providers_signature_propagates(
    registry: hw.Registry, make: Callable[[], BaseException]
) -> None:
    # Without the fix register_provider took it for "no fencing_token" and went on: a Ctrl-C
    # landing there was lost.
    manager = hw.LifecycleManager(registry)
    raised = make()

    class Provider:
        provider_id = "p"
        provider_type = "docker"
        create_worker = Signature(raised)

        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            pass

    with pytest.raises(BaseException) as info:
        manager.register_provider(Provider())
    assert info.value is raised
    assert manager.providers() == []
    # An Exception there still means "cannot tell": the method is called without the token.
    Provider.create_worker = Signature(ValueError("no signature"))
    manager.register_provider(Provider())
    assert manager.provision_worker("p", hw.WorkerSpec("img")).resource_id == "i-1"


@pytest.mark.parametrize("make", BASE_EXCEPTIONS)
def test_a_base_exception_looking_up_list_workers_propagates(
    registry: hw.Registry, make: Callable[[], BaseException]
) -> None:
    # Without the fix the failed lookup meant "no list_workers": reconcile skipped the provider
    # as unsupported and returned, the exception lost.
    manager = hw.LifecycleManager(registry)
    raised = make()

    class Provider:
        provider_id = "p"
        provider_type = "docker"

        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
            return "i-1"

        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            pass

        @property
        def list_workers(self) -> Callable[[], list[str]]:
            raise raised

    manager.register_provider(Provider())
    with pytest.raises(BaseException) as info:
        manager.reconcile()
    assert info.value is raised
    last = manager.last_report
    assert isinstance(last, hw.ReconcileReport) and last.unsupported == []
    # An Exception there is the provider's failure (in the report), not "unsupported".
    raised = RuntimeError("settings not loaded")
    report = manager.reconcile()
    assert report.unsupported == [] and [p for p, _ in report.errors] == ["p"]
    assert "settings not loaded" in report.errors[0][1]


def test_a_second_interrupt_in_one_provider_call_is_dropped_safely(
    registry: hw.Registry,
) -> None:
    """Ctrl-C while create_worker's answer is read, and again in the destroy that keeps its
    instance from leaking: the first interrupt parked wins, the other is dropped. Dropping it
    frees what its traceback kept (here the metadata, whose finalizer calls the manager).
    Without the fix it was dropped while the parked slot was borrowed: the finalizer's
    ``stats()`` failed with a PanicException ("already borrowed")."""
    manager = hw.LifecycleManager(registry)
    nested: list[str] = []

    class Metadata(Mapping[str, str]):
        def __getitem__(self, key: str) -> str:
            raise KeyError(key)

        def __iter__(self) -> Iterator[str]:
            return iter(())

        def __len__(self) -> int:
            return 0

        def items(self) -> Any:
            raise KeyboardInterrupt("reading the metadata")

        def __del__(self) -> None:
            try:
                manager.stats()
                nested.append("returned")
            except BaseException as e:  # noqa: BLE001 (what the nested call raised is the point)
                nested.append(f"raised {type(e).__name__}")

    destroyed: list[str] = []

    class Cloud:
        provider_id = "cloud"
        provider_type = "docker"

        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> Any:
            return "i-1", Metadata()

        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            destroyed.append(handle.resource_id)
            raise KeyboardInterrupt("destroying")

    manager.register_provider(Cloud())
    with pytest.raises(KeyboardInterrupt, match="destroying"):
        manager.provision_worker("cloud", hw.WorkerSpec("img"))
    assert destroyed == ["i-1"]
    assert nested == ["returned"]
    assert len(registry) == 0 and manager.stats().in_flight == 0
