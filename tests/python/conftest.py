"""Shared fixtures: a registry on a manual clock, on every backend (the tests that take the
``registry`` fixture run twice: in memory and on PostgreSQL), and a helper that brings a worker
to READY the way a host does (register when the provider started it, READY when its agent
reports in).

The PostgreSQL runs need a server: ``HODEI_PG_URL`` (a libpq connection string; ``make test``
starts a throwaway server and sets it). Without it they FAIL, never skip. Each registry lives
in a schema of its own, dropped after the test."""

from __future__ import annotations

import os
import signal
import uuid
from typing import Callable, Iterator

import pytest

import hodei_workers as hw

START = 1_700_000_000.0

BACKENDS = ["memory", "postgres"]


@pytest.fixture(autouse=True)
def _ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt in every test, as in an interactive Python.
    A suite started as a background job of a non-interactive shell inherits SIGINT ignored,
    which Python keeps: the tests of Ctrl-C would then see nothing at all."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def pg_url() -> str:
    url = os.environ.get("HODEI_PG_URL", "").strip()
    if not url:
        pytest.fail(
            "HODEI_PG_URL is not set: the PostgreSQL half of the suite needs a server. Run "
            "`make test-python` or `make test` (they start a throwaway server), or set "
            "HODEI_PG_URL to a libpq connection string, e.g. 'host=/tmp user=postgres "
            "dbname=postgres'",
            pytrace=False,
        )
    return url


MakeRegistry = Callable[..., hw.Registry]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def make_registry(backend: str) -> Iterator[MakeRegistry]:
    """A factory of fresh, empty registries of the backend under test:
    ``make_registry(clock=None, retired_id_limit=None)``."""
    schemas: list[str] = []

    def make(
        clock: hw.ManualClock | None = None, retired_id_limit: int | None = None
    ) -> hw.Registry:
        if backend == "memory":
            return hw.Registry(clock=clock, retired_id_limit=retired_id_limit)
        name = f"py_{os.getpid()}_{uuid.uuid4().hex[:12]}"
        schemas.append(name)
        return hw.Registry.postgres(
            pg_url(), name=name, clock=clock, retired_id_limit=retired_id_limit
        )

    yield make
    for name in schemas:
        hw.Registry.drop_postgres(pg_url(), name=name)


@pytest.fixture
def clock() -> hw.ManualClock:
    return hw.ManualClock(START)


@pytest.fixture
def registry(make_registry: MakeRegistry, clock: hw.ManualClock) -> hw.Registry:
    return make_registry(clock)


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
