"""The PostgreSQL registry from Python: what only a shared registry has (several handles on one
fleet, the database's clock, connection errors), and snapshots between the backends. The rest
of the suite runs on PostgreSQL too, through the ``registry`` fixture (conftest.py).

Needs ``HODEI_PG_URL`` (``make test`` starts a throwaway server); fails without it."""

from __future__ import annotations

import os
import time
import uuid
from typing import Iterator

import pytest

import hodei_workers as hw
from conftest import START, pg_url


@pytest.fixture
def name() -> Iterator[str]:
    """A registry name of this test alone, dropped afterwards."""
    n = f"py_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    yield n
    hw.Registry.drop_postgres(pg_url(), name=n)


def test_two_handles_on_one_name_share_the_fleet_and_its_events(name: str) -> None:
    clock = hw.ManualClock(START)
    a = hw.Registry.postgres(pg_url(), name=name, clock=clock)
    b = hw.Registry.postgres(pg_url(), name=name, clock=clock)
    seen_by_b = b.subscribe()
    w = a.register("docker-local", "docker", "c-1")
    a.update_state(w.id, hw.WorkerState.READY)
    claimed = b.claim("job-1")
    assert claimed is not None and claimed.id == w.id
    assert a.get(w.id) == claimed, "one record, whichever handle reads it"
    with pytest.raises(hw.JobAlreadyAssignedError):
        a.claim("job-1")
    assert a.release_from_job(w.id, "job-1") == "job-1"
    # b's subscriber sees a's changes and its own, as the in-memory registry reports them.
    memory = hw.Registry(clock=clock)
    seen_in_memory = memory.subscribe()
    m = memory.register("docker-local", "docker", "c-1", worker_id=w.id)
    memory.update_state(m.id, hw.WorkerState.READY)
    memory.claim("job-1")
    memory.release_from_job(m.id, "job-1")
    expected = [e.kind for e in seen_in_memory.drain()]
    kinds = [e.kind for e in _drain(seen_by_b, len(expected))]
    assert kinds == expected
    assert a.stats() == b.stats() and len(a) == len(b) == 1


def _drain(sub: hw.Subscription, n: int) -> list[hw.Event]:
    """The next ``n`` events (another handle's arrive through the outbox), then whatever else
    is already there."""
    got: list[hw.Event] = []
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        e = sub.recv(timeout=0.5)
        if e is not None:
            got.append(e)
    while (e := sub.try_recv()) is not None:
        got.append(e)
    return got


def test_the_database_clock_rules_without_a_manual_clock(name: str) -> None:
    registry = hw.Registry.postgres(pg_url(), name=name)
    assert registry.clock is None
    assert abs(registry.now() - time.time()) < 60


def test_snapshots_move_between_the_backends(name: str) -> None:
    clock = hw.ManualClock(START)
    memory = hw.Registry(clock=clock)
    w = memory.register("k8s", "kubernetes", "pod-1", hw.WorkerSpec("img", labels={"pool": "ci"}))
    memory.update_state(w.id, hw.WorkerState.READY)
    memory.assign_to_job(w.id, "job-1")
    pg = hw.Registry.postgres(pg_url(), name=name, clock=clock)
    pg.restore(memory.snapshot())
    assert pg.get(w.id) == memory.get(w.id) and pg.stats() == memory.stats()
    back = hw.Registry(clock=clock)
    back.restore(pg.snapshot())
    assert back.get(w.id) == memory.get(w.id)


def test_bad_names_and_unreachable_servers_raise_the_documented_errors() -> None:
    nowhere = "host=/nonexistent-hodei-dir user=postgres dbname=postgres"
    for bad in ["", "Upper", "1digit", "has-dash", "public", "pg_x", "x" * 49]:
        with pytest.raises(hw.InvalidArgumentError):
            hw.Registry.postgres(nowhere, name=bad)
    with pytest.raises(hw.InvalidArgumentError):
        hw.Registry.postgres("port=notaport", name="ok")
    # A NUL makes the url malformed (libpq's strings cannot hold one), even percent-encoded.
    for bad in [nowhere + "\0", "host=/tmp\0x dbname=postgres", "postgresql://%2Ftmp%00x/db"]:
        with pytest.raises(hw.InvalidArgumentError):
            hw.Registry.postgres(bad, name="ok")
        with pytest.raises(hw.InvalidArgumentError):
            hw.Registry.drop_postgres(bad, name="ok")
    with pytest.raises(hw.BackendError):
        hw.Registry.postgres(nowhere, name="ok")
    with pytest.raises(hw.BackendError):
        hw.Registry.drop_postgres(nowhere, name="ok")
    with pytest.raises(TypeError):
        hw.Registry.postgres(42, name="ok")  # type: ignore[arg-type]


def _exercise(
    reg: hw.Registry,
    ids: list[str],
    rounds: int,
    manager: hw.LifecycleManager | None = None,
    leading: bool = True,
) -> None:
    """Reads and writes whose answers tell if another process's conversation got mixed in; every
    tenth round, a tick of ``manager`` (a lease call on the lease's connection), which leads
    as ``leading`` says."""
    for n in range(rounds):
        worker_id = ids[n % len(ids)]
        w = reg.get(worker_id)
        assert w is not None and w.id == worker_id, f"get({worker_id}) answered {w!r}"
        reg.heartbeat(worker_id)
        assert reg.stats().total == len(ids)
        if manager is not None and n % 10 == 0:
            report = manager.tick()
            failed = [d for d in report.decisions if d.startswith("lease renewal failed")]
            assert not failed, f"the lease call failed: {failed}"
            assert report.leading == leading, report.decisions


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_process_opens_connections_of_its_own(name: str) -> None:
    """``fork()`` after the registry is open: ``multiprocessing``'s default start method on Linux,
    a pre-forking server. The child must neither use the parent's connections (two processes'
    conversations on one session: answers to the other's questions) nor close them (the
    parent's sessions would end). Each process opens its own: both work at once, and the parent
    goes on after the child dropped its copy of the registry and exited. The lease's own
    connection too: a replicated manager calls the lease from both processes (the parent
    renews it; the child, which does not inherit the lease, only finds that the parent leads)."""
    reg = hw.Registry.postgres(pg_url(), name=name)
    ids = []
    for i in range(8):
        w = reg.register("docker-local", "docker", f"c-{i}")
        reg.update_state(w.id, hw.WorkerState.READY)
        ids.append(w.id)
    manager = hw.LifecycleManager.replicated(reg, "parent", 30)
    assert manager.tick().leading  # the lease's connection is open too
    events = reg.subscribe()
    _exercise(reg, ids, 20)  # the parent's connections are open and in use before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            os.close(read_end)
            _exercise(reg, ids, 300, manager, leading=False)
            events.recv(timeout=0.2)  # its copy of the subscription reads (and must not raise)
            del reg, events, manager
            import gc

            gc.collect()  # the child's copies are dropped here, not at os._exit
            code = 0
        except BaseException as e:  # noqa: BLE001 (any failure is reported to the parent)
            os.write(write_end, f"{type(e).__name__}: {e}".encode()[:4000])
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        _exercise(reg, ids, 300, manager)
    finally:
        _wait_for_child(pid, read_end)
    # The parent's sessions survived the child's exit; its subscription still reads.
    _exercise(reg, ids, 50)
    assert manager.tick().leading, "the parent's lease connection survived the child"
    reg.update_state(ids[0], hw.WorkerState.DRAINING)
    kinds = [e.kind for e in _drain(events, 1)]
    assert kinds == ["state_changed"], kinds


def _wait_for_child(pid: int, read_end: int) -> None:
    """Waits up to 60 s for the forked child ``pid`` (which writes what failed to ``read_end``
    and exits non-zero), killing it if it hangs; fails the test if it hung or failed."""
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    if done == (0, 0):
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    failure = os.read(read_end, 4000).decode()
    os.close(read_end)
    assert done != (0, 0), "the child hung"
    assert os.waitstatus_to_exitcode(done[1]) == 0, f"the child failed: {failure}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_process_forked_from_the_leader_does_not_lead(name: str) -> None:
    """Found by the HA hunt: a process forked from a leading replica (``multiprocessing``, a
    pre-forking server) inherited its lease as its own, the same holder under the same term:
    it led (``is_leader()``, its ticks ``leading``) while the parent did, and the store, which
    fences by holder and term, could not tell the two apart. The child holds nothing: it
    follows, and leads only by acquiring a lease of its own, under a new term."""
    reg = hw.Registry.postgres(pg_url(), name=name)
    manager = hw.LifecycleManager.replicated(reg, "parent", 30)
    report = manager.tick()
    assert report.leading and report.leader is not None
    term = report.leader.term
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            os.close(read_end)
            assert not manager.is_leader(), "the child leads on the parent's lease"
            child = manager.tick()
            assert not child.leading, f"the child's tick leads: {child.decisions}"
            assert child.leader is not None and child.leader.term == term, child.leader
            manager.step_down()  # the parent's term is not the child's to give up
            code = 0
        except BaseException as e:  # noqa: BLE001 (any failure is reported to the parent)
            os.write(write_end, f"{type(e).__name__}: {e}".encode()[:4000])
        finally:
            os._exit(code)
    os.close(write_end)
    _wait_for_child(pid, read_end)
    # The child's step-down left the parent's lease alone: another replica cannot take it.
    other = hw.LifecycleManager.replicated(reg, "other", 30)
    assert not other.tick().leading, "the child gave the parent's lease up"
    assert manager.is_leader()
    after = manager.tick()
    assert after.leading and after.leader is not None, after.decisions
    assert after.leader.term == term, "the parent keeps its term"


def test_a_follower_names_the_leader_and_holds_none_of_its_notices_or_orphans(name: str) -> None:
    """The read-outs of leader state on two replicas sharing one registry: the leader lists
    its interruption notice and its orphan whose destroy failed; the follower names the
    leader (holder and term) and lists neither."""

    class Cloud:
        provider_id = "cloud"
        provider_type = "docker"

        def __init__(self) -> None:
            self.instances = ["i-orphan"]

        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
            self.instances.append(f"i-{len(self.instances)}")
            return self.instances[-1]

        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            raise RuntimeError("instance is locked")

        def list_workers(self) -> list[str]:
            return list(self.instances)

    clock = hw.ManualClock(START)
    config = hw.LifecycleConfig(min_ready_workers=0)
    leader = hw.LifecycleManager.replicated(
        hw.Registry.postgres(pg_url(), name=name, clock=clock), "replica-a", 30, config
    )
    reg_b = hw.Registry.postgres(pg_url(), name=name, clock=clock)
    follower = hw.LifecycleManager.replicated(reg_b, "replica-b", 30, config)
    for manager in (leader, follower):
        manager.register_provider(Cloud())
    assert leader.tick().leading
    assert not follower.tick().leading
    worker = leader.provision_worker("cloud", hw.WorkerSpec("img"))
    reg_b.update_state(worker.id, hw.WorkerState.READY)
    leader.notify_interruption(worker.id, clock.now() + 60)
    # The first tick's takeover reconcile tried to destroy the orphan once, this one again.
    leader.reconcile()
    assert leader.interruptions() == [(worker.id, clock.now() + 60)]
    assert [(p, r, a) for p, _, r, a, _ in leader.pending_orphans()] == [("cloud", "i-orphan", 2)]

    seen = follower.leader()
    assert seen is not None and seen.holder == "replica-a"
    own = leader.leader()
    assert own is not None and own.holder == "replica-a" and seen.term == own.term
    assert follower.interruptions() == [] and follower.pending_orphans() == []
