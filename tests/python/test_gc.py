"""A provider that keeps a reference to its LifecycleManager (to look at the fleet, to provision
from a callback) makes a reference cycle through the native manager. The garbage collector must
see through it (``__traverse__``) and break it (``__clear__``): issue 10 item 19.
"""

from __future__ import annotations

import gc
import time
import weakref

import hodei_workers as hw

# A bound on how long a wait may take before the test is considered hung (never reached).
HANG = 60.0


class SelfAware:
    """A provider that holds its manager."""

    provider_type = "docker"

    def __init__(self, provider_id: str) -> None:
        self.provider_id = provider_id
        self.manager: hw.LifecycleManager | None = None
        self.destroyed: list[str] = []

    def create_worker(self, *args: object) -> str:
        return "instance-1"

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        self.destroyed.append(handle.resource_id)


def test_a_provider_holding_its_manager_is_collected() -> None:
    registry = hw.Registry()
    manager = hw.LifecycleManager(registry)
    providers = [SelfAware(f"aware-{i}") for i in range(3)]
    for provider in providers:
        provider.manager = manager
        manager.register_provider(provider)
    manager.unregister_provider("aware-2")  # an unregistered provider is no longer held
    manager.tick()  # a report is kept as last_report: no cycle through it either
    refs = [weakref.ref(p) for p in providers]
    manager_ref = weakref.ref(manager)
    del manager, providers, provider
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    assert manager_ref() is None
    # The registry outlives the manager and its providers, unharmed.
    assert len(registry) == 0 and registry.stats().total == 0


def test_a_collected_cycle_leaves_the_live_manager_alone() -> None:
    registry = hw.Registry()
    live = hw.LifecycleManager(registry)
    provider = SelfAware("kept")
    provider.manager = live
    live.register_provider(provider)
    gc.collect()  # the cycle is reachable from this frame: nothing may be cleared
    worker = registry.register("kept", "docker", "instance-1")
    live.terminate_worker(worker.id)
    assert provider.destroyed == ["instance-1"]
    assert live.providers() == ["kept"]


class Counting:
    """A provider that holds its manager and counts its creates."""

    provider_id = "counting"
    provider_type = "docker"

    def __init__(self, manager: hw.LifecycleManager) -> None:
        self.manager = manager
        self.created = 0

    def create_worker(self, *args: object) -> str:
        self.created += 1
        return f"instance-{self.created}"

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        pass


def test_a_running_ticker_keeps_its_manager_and_providers() -> None:
    # The host keeps only the Ticker: the manager/provider cycle is reachable through it, and
    # a collection must leave the providers the ticker thread calls alone.
    demand = [0]

    def start() -> tuple[hw.Ticker, weakref.ref[Counting]]:
        manager = hw.LifecycleManager(
            hw.Registry(),
            hw.LifecycleConfig(min_ready_workers=0, scale_up_cooldown=0),
        )
        provider = Counting(manager)
        manager.register_provider(provider)
        manager.set_scaling_target("counting", hw.WorkerSpec("img"))
        return manager.ticker(0.001, pending=lambda: demand[0]), weakref.ref(provider)

    ticker, provider_ref = start()
    assert ticker.next_report(timeout=HANG) is not None  # ticking, with no demand yet
    gc.collect()
    assert provider_ref() is not None
    demand[0] = 1  # the next ticks call the provider
    deadline = time.monotonic() + HANG
    report = None
    while report is None or not (report.provisioned or report.provision_failures):
        assert time.monotonic() < deadline, "no tick provisioned"
        report = ticker.next_report(timeout=HANG)
    assert [f.error for f in report.provision_failures] == []
    assert len(report.provisioned) == 1
    # Once the ticker goes, so does the cycle.
    ticker.stop()
    del ticker, report
    gc.collect()
    assert provider_ref() is None
