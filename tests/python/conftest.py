"""Shared fixtures: a registry on a manual clock, and a helper that brings a worker to READY
the way a host does (register when the provider started it, READY when its agent reports in)."""

from __future__ import annotations

from typing import Callable

import pytest

import hodei_workers as hw

START = 1_700_000_000.0


@pytest.fixture
def clock() -> hw.ManualClock:
    return hw.ManualClock(START)


@pytest.fixture
def registry(clock: hw.ManualClock) -> hw.Registry:
    return hw.Registry(clock=clock)


ReadyWorker = Callable[..., hw.Worker]


@pytest.fixture
def ready_worker(registry: hw.Registry) -> ReadyWorker:
    counter = iter(range(1_000_000))

    def make(
        spec: hw.WorkerSpec | None = None,
        provider_id: str = "docker-local",
        provider_type: str = "docker",
    ) -> hw.Worker:
        worker = registry.register(provider_id, provider_type, f"c-{next(counter)}", spec)
        return registry.update_state(worker.id, hw.WorkerState.READY)

    return make
