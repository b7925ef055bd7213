"""On PostgreSQL, every call that may wait for the database releases the GIL: while the server
is slow (here: stopped with SIGSTOP), other Python threads of the process keep running.

Each test stops the server's processes, makes one call, and lets another Python thread resume
the server after it has run for a while: if the call kept the GIL, that thread cannot run until
the call returns (a separate process resumes the server after ``GUARD`` seconds, so a broken
build fails instead of hanging), and the test sees that it ran only after the call.

Needs ``HODEI_PG_URL`` naming a server on this machine, through its Unix socket directory
(``make test`` starts one), whose processes this user may signal; fails otherwise."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Callable, Iterator
from urllib.parse import parse_qs, unquote, urlparse

import pytest

import hodei_workers as hw
from conftest import pg_url

# How long the helper thread runs (in sleeps of 50 ms) before it resumes the server: the call
# under test waits at least that long.
STEPS = 20
# When a separate process resumes the server if the helper thread could not run.
GUARD = 8


def _socket_dir_and_port(url: str) -> tuple[str, str]:
    """The Unix socket directory and port of a libpq connection string (URL or key=value)."""
    if url.startswith(("postgresql://", "postgres://")):
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        host = query.get("host", [unquote(parsed.hostname or "")])[0]
        port = query.get("port", [str(parsed.port or 5432)])[0]
        return host, port
    pairs = dict(p.split("=", 1) for p in url.split() if "=" in p)
    return pairs.get("host", ""), pairs.get("port", "5432")


def server_pids() -> list[int]:
    """The postmaster of HODEI_PG_URL's server (from its socket's lock file) and its children."""
    host, port = _socket_dir_and_port(pg_url())
    lock = os.path.join(host, f".s.PGSQL.{port}.lock")
    if not host.startswith("/") or not os.path.exists(lock):
        pytest.fail(
            f"these tests stop the server with SIGSTOP: HODEI_PG_URL must name a server on "
            f"this machine by its socket directory (no lock file {lock!r})",
            pytrace=False,
        )
    with open(lock) as f:
        postmaster = int(f.readline())
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
            pids.append(int(entry))
    return pids


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def assert_releases_the_gil(call: Callable[[], object]) -> None:
    """Runs ``call`` while the server is stopped; fails unless another Python thread ran (and
    resumed the server) while ``call`` was waiting."""
    pids = server_pids()
    in_call = threading.Event()
    returned = threading.Event()
    ran_during_call: list[bool] = []

    def helper() -> None:
        in_call.wait()
        for _ in range(STEPS):
            time.sleep(0.05)
        ran_during_call.append(not returned.is_set())
        _signal(pids, signal.SIGCONT)

    thread = threading.Thread(target=helper, daemon=True)
    thread.start()
    guard = subprocess.Popen(
        ["sh", "-c", f"sleep {GUARD}; kill -CONT {' '.join(map(str, pids))} 2>/dev/null"]
    )
    _signal(pids, signal.SIGSTOP)
    try:
        in_call.set()
        try:
            call()
        finally:
            returned.set()
    finally:
        _signal(pids, signal.SIGCONT)
        guard.kill()
        guard.wait()
        thread.join(GUARD + 30)
    assert ran_during_call == [True], "another Python thread could not run during the call"


@pytest.fixture
def registry() -> Iterator[hw.Registry]:
    """A registry on the database's clock (no ManualClock: ``now()`` asks the database)."""
    name = f"py_{os.getpid()}_gil"
    hw.Registry.drop_postgres(pg_url(), name=name)
    yield hw.Registry.postgres(pg_url(), name=name)
    hw.Registry.drop_postgres(pg_url(), name=name)


Call = Callable[[hw.Registry, hw.Subscription, str], object]

CALLS: dict[str, Call] = {
    "registry.heartbeat": lambda r, s, w: r.heartbeat(w),
    "registry.now": lambda r, s, w: r.now(),
    "subscription.try_recv": lambda r, s, w: s.try_recv(),
    "subscription.recv(0)": lambda r, s, w: s.recv(0),
    "subscription.drain": lambda r, s, w: s.drain(),
    "subscription.dropped": lambda r, s, w: s.dropped,
    "len(subscription)": lambda r, s, w: len(s),
    "repr(subscription)": lambda r, s, w: repr(s),
    "LifecycleManager()": lambda r, s, w: hw.LifecycleManager(r),
    "LifecycleManager.replicated": lambda r, s, w: hw.LifecycleManager.replicated(r, "h", 10.0),
}


@pytest.mark.parametrize("what", list(CALLS))
def test_calls_that_reach_the_database_release_the_gil(registry: hw.Registry, what: str) -> None:
    worker = registry.register("p", "docker", "r")
    subscription = registry.subscribe()
    # Every connection the call needs is open before the server stops.
    CALLS[what](registry, subscription, worker.id)
    subscription.drain()
    assert_releases_the_gil(lambda: CALLS[what](registry, subscription, worker.id))


def test_dropping_a_subscription_releases_the_gil(registry: hw.Registry) -> None:
    # Its reader gives its connection back, a round trip.
    subscriptions = [registry.subscribe()]
    subscriptions[0].drain()
    assert_releases_the_gil(subscriptions.clear)


def test_dropping_a_registry_with_a_live_subscription_releases_the_gil() -> None:
    # The last handle reads its subscriptions' events to the end, a round trip.
    name = f"py_{os.getpid()}_gil_drop"
    hw.Registry.drop_postgres(pg_url(), name=name)
    try:
        handles = [hw.Registry.postgres(pg_url(), name=name)]
        subscription = handles[0].subscribe()
        subscription.drain()
        assert_releases_the_gil(handles.clear)
        assert subscription.recv(0) is None
    finally:
        hw.Registry.drop_postgres(pg_url(), name=name)


def test_dropping_a_manager_that_keeps_the_last_registry_handle_releases_the_gil() -> None:
    # The manager keeps its registry alive: dropping it drops the registry's last handle,
    # which reads its subscriptions' events to the end (a round trip).
    name = f"py_{os.getpid()}_gil_manager"
    hw.Registry.drop_postgres(pg_url(), name=name)
    try:
        registry = hw.Registry.postgres(pg_url(), name=name)
        subscription = registry.subscribe()
        managers = [hw.LifecycleManager(registry)]
        del registry
        subscription.drain()
        assert_releases_the_gil(managers.clear)
        assert subscription.recv(0) is None
    finally:
        hw.Registry.drop_postgres(pg_url(), name=name)
