"""A provider that keeps a reference to its LifecycleManager (to look at the fleet, to provision
from a callback) makes a reference cycle through the native manager. The garbage collector must
see through it (``__traverse__``) and break it (``__clear__``): issue 10 item 19.
"""

from __future__ import annotations

import gc
import weakref

import hodei_workers as hw


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
