"""Events: one class per kind, in order, with seq gaps when a slow subscriber drops some."""

from __future__ import annotations

import threading
import time

import pytest

import hodei_workers as hw
from conftest import START, MakeRegistry, ReadyWorker


def test_events_of_a_worker_life(registry: hw.Registry, clock: hw.ManualClock) -> None:
    events = registry.subscribe()
    w = registry.register("docker-local", "docker", "c-1")
    clock.advance(2)
    registry.update_state(w.id, hw.WorkerState.READY)
    registry.heartbeat(w.id)  # not delivered: this subscription did not opt in
    registry.claim("job-1")
    registry.release_from_job(w.id)
    registry.update_state(w.id, hw.WorkerState.TERMINATING)
    registry.unregister(w.id, hw.TerminationReason.SCALED_DOWN)

    got = events.drain()
    assert [type(e) for e in got] == [
        hw.Registered,
        hw.StateChanged,
        hw.StateChanged,
        hw.AssignedToJob,
        hw.ReleasedFromJob,
        hw.StateChanged,
        hw.StateChanged,
        hw.Unregistered,
    ]
    assert all(isinstance(e, hw.Event) for e in got)
    assert [e.seq for e in got] == list(range(got[0].seq, got[0].seq + len(got)))
    assert got[0].at == START and got[1].at == START + 2
    assert {e.worker_id for e in got} == {w.id}
    assert [e.kind for e in got[:4]] == [
        "registered", "state_changed", "state_changed", "assigned_to_job",
    ]

    registered = got[0]
    assert isinstance(registered, hw.Registered)
    assert (registered.provider_id, registered.provider_type) == ("docker-local", "docker")

    transitions = [(e.from_state, e.to_state) for e in got if isinstance(e, hw.StateChanged)]
    S = hw.WorkerState
    assert transitions == [
        (S.CREATING, S.READY), (S.READY, S.BUSY), (S.BUSY, S.READY), (S.READY, S.TERMINATING),
    ]

    # Pattern matching works on the fields, by keyword and by position.
    summary = []
    for event in got:
        match event:
            case hw.StateChanged(_, _, hw.WorkerState.BUSY):
                summary.append("busy")
            case hw.AssignedToJob(job_id=job) | hw.ReleasedFromJob(job_id=job):
                summary.append(f"{event.kind}:{job}")
            case hw.Unregistered(reason=reason):
                summary.append(f"gone:{reason.value}")
    assert summary == [
        "busy", "assigned_to_job:job-1", "released_from_job:job-1", "gone:scaled_down",
    ]

    assert events.try_recv() is None
    assert len(events) == 0 and events.dropped == 0
    assert repr(got[1]).startswith("StateChanged(seq=") and "to_state=<WorkerState.READY" in repr(got[1])
    assert got[1] == got[1] and got[1] != got[2] and hash(got[1]) == hash(got[1])


def test_heartbeat_events_only_when_asked(registry: hw.Registry, ready_worker: ReadyWorker) -> None:
    w = ready_worker()
    plain = registry.subscribe()
    beats = registry.subscribe(heartbeats=True)
    registry.heartbeat(w.id)
    assert plain.try_recv() is None
    got = beats.recv(timeout=1)
    assert isinstance(got, hw.HeartbeatReceived) and got.worker_id == w.id


def test_full_subscriber_drops_instead_of_blocking(
    registry: hw.Registry, ready_worker: ReadyWorker
) -> None:
    slow = registry.subscribe(capacity=2)
    for _ in range(5):
        ready_worker()  # 2 events each
    assert slow.dropped == 8
    kept = slow.drain()
    assert len(kept) == 2
    later = ready_worker()
    nxt = slow.recv(0)
    assert nxt is not None and nxt.seq > kept[-1].seq + 1, "the seq gap shows the drop"
    assert nxt.worker_id == later.id


def test_recv_waits_with_the_gil_released(registry: hw.Registry) -> None:
    events = registry.subscribe()
    assert events.recv(timeout=0.05) is None

    def later() -> None:
        time.sleep(0.2)
        registry.register("docker-local", "docker", "late")

    t = threading.Thread(target=later)
    started = time.monotonic()
    t.start()
    got = events.recv()  # no timeout: waits for the other thread, which needs the GIL
    t.join()
    assert isinstance(got, hw.Registered) and got.provider_id == "docker-local"
    assert time.monotonic() - started < 5


def test_iteration_ends_when_the_registry_is_gone(clock: hw.ManualClock, make_registry: MakeRegistry) -> None:
    registry = make_registry(clock)
    events = registry.subscribe()
    for n in range(3):
        registry.register("docker-local", "docker", f"c-{n}")
    del registry  # the last reference: the registry and its event stream close
    assert [e.kind for e in events] == ["registered"] * 3


@pytest.mark.parametrize("timeout", [0, 0.01])
def test_recv_timeout_returns_none(registry: hw.Registry, timeout: float) -> None:
    assert registry.subscribe().recv(timeout) is None


@pytest.mark.parametrize("capacity", [0, -1, -5, -(2**63)])
def test_a_capacity_below_one_is_refused_saying_so(registry: hw.Registry, capacity: int) -> None:
    # The message must name the bound that holds (at least 1): "must be >= 0" for a negative
    # capacity sent the caller to 0, which is refused too.
    with pytest.raises(hw.InvalidArgumentError) as info:
        registry.subscribe(capacity=capacity)
    assert "capacity must be at least 1" in str(info.value)
    assert f"got {capacity}" in str(info.value)
