"""The manager's contract of issue 10, seen from Python: terminal records are always destroyed,
startup expiries are never held by the brake, the agent knows its worker id, config durations
must round-trip."""

from __future__ import annotations

import itertools

import pytest

import hodei_workers as hw


class Cloud:
    """A provider whose instances remember the worker id they were started with."""

    provider_id = "cloud"
    provider_type = "docker"

    def __init__(self) -> None:
        self.instances: dict[str, str] = {}  # resource id -> HODEI_WORKER_ID of its agent
        self._ids = itertools.count(1)

    def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
        resource_id = f"vm-{next(self._ids)}"
        self.instances[resource_id] = worker_id  # really: `run(image, env={HODEI_WORKER_ID: ...})`
        return resource_id

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        del self.instances[handle.resource_id]


@pytest.fixture
def cloud() -> Cloud:
    return Cloud()


@pytest.fixture
def manager(registry: hw.Registry, cloud: Cloud) -> hw.LifecycleManager:
    manager = hw.LifecycleManager(registry, hw.LifecycleConfig(heartbeat_timeout=60))
    manager.register_provider(cloud)
    return manager


def test_the_agent_reports_in_with_the_id_it_was_started_with(
    registry: hw.Registry, cloud: Cloud, manager: hw.LifecycleManager
) -> None:
    worker = manager.provision_worker("cloud", hw.WorkerSpec("img"))
    (agent_id,) = cloud.instances.values()
    assert agent_id == worker.id
    # The agent calls in: the host looks its record up by the id the agent says.
    assert registry.update_state(agent_id, hw.WorkerState.READY).state is hw.WorkerState.READY
    manager.process_heartbeat(agent_id)


def test_a_worker_the_host_moved_to_terminating_is_destroyed_by_the_next_tick(
    registry: hw.Registry, clock: hw.ManualClock, cloud: Cloud, manager: hw.LifecycleManager
) -> None:
    worker = manager.provision_worker("cloud", hw.WorkerSpec("img"))
    registry.update_state(worker.id, hw.WorkerState.READY)
    registry.update_state(worker.id, hw.WorkerState.TERMINATING)
    clock.advance(1)
    report = manager.tick(0)
    assert [t.worker_id for t in report.terminated] == [worker.id], report.decisions
    assert report.terminated[0].reason is hw.TerminationReason.REQUESTED
    assert worker.id not in registry and cloud.instances == {}


def test_workers_past_their_startup_deadline_are_never_held_by_the_brake(
    registry: hw.Registry, clock: hw.ManualClock, cloud: Cloud, manager: hw.LifecycleManager
) -> None:
    ids = [manager.provision_worker("cloud", hw.WorkerSpec("img")).id for _ in range(2)]
    for worker_id in ids:
        registry.update_state(worker_id, hw.WorkerState.CONNECTING)
    # Both silent from the start: the brake holds their heartbeat expiry (2 of 2 silent) —
    # but not their startup expiry (startup_timeout 300 s).
    expired: dict[str, float] = {}
    for _ in range(11):
        clock.advance(30)
        for u in manager.run_health_check().unhealthy:
            assert u.reason is hw.TerminationReason.STARTUP_TIMEOUT
            expired[u.worker_id] = clock.now()
    assert sorted(expired) == sorted(ids)
    assert set(expired.values()) == {clock.now()}  # the first check past 300 s (at 330 s)
    assert cloud.instances == {}


def test_config_durations_that_cannot_round_trip_are_refused() -> None:
    century = 100 * 365 * 86_400
    hw.LifecycleConfig(heartbeat_timeout=century)  # the longest accepted
    with pytest.raises(hw.InvalidArgumentError, match="heartbeat_timeout"):
        hw.LifecycleConfig(heartbeat_timeout=century + 1)
    with pytest.raises(hw.InvalidArgumentError, match="max_mass_expiry_hold"):
        hw.LifecycleConfig(max_mass_expiry_hold=1e15)
