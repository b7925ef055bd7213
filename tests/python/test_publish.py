"""``Registry.publish``: a host's events on the registry's stream, made with the event classes a
Subscription yields. Each publishable kind reaches a subscriber (on PostgreSQL one of another
handle on the same registry: another replica's) with its fields; the registry's own kinds are
refused with InvalidArgumentError, a wrong type with TypeError, and publish nothing.

Every test runs in memory and on PostgreSQL (``-k postgres`` selects the latter)."""

from __future__ import annotations

import os
import time
import uuid
from typing import Iterator

import pytest

import hodei_workers as hw
from conftest import BACKENDS, START, pg_url

Pair = tuple[hw.Registry, hw.Registry, hw.ManualClock]


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """(publisher, subscriber's registry, clock): on PostgreSQL two handles on one registry
    (two replicas), in memory the same registry twice."""
    clock = hw.ManualClock(START)
    if request.param == "memory":
        registry = hw.Registry(clock=clock)
        yield registry, registry, clock
        return
    name = f"py_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    try:
        a = hw.Registry.postgres(pg_url(), name=name, clock=clock)
        b = hw.Registry.postgres(pg_url(), name=name, clock=clock)
        yield a, b, clock
    finally:
        hw.Registry.drop_postgres(pg_url(), name=name)


def _next(sub: hw.Subscription) -> hw.Event:
    """The next event, published before: the timeout only bounds a PostgreSQL reader's
    delivery, it measures nothing."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        event = sub.recv(timeout=0.5)
        if event is not None:
            return event
    raise AssertionError("no event arrived")


def test_each_publishable_kind_reaches_a_subscriber_with_its_fields(pair: Pair) -> None:
    publisher, reader, _ = pair
    sub = reader.subscribe()
    w = publisher.register("p1", "docker", "c-1")
    assert isinstance(_next(sub), hw.Registered)
    published: list[hw.Event] = [
        hw.ProvisionRequested("p1"),
        hw.ProvisionFailed("p1", "quota exceeded"),
        hw.DestroyFailed(w.id, "p1", "api down", 3),
        hw.UnhealthyDetected(w.id, START - 1.5),
        hw.MassExpiryHeld(7, 10),
        hw.LeaderChanged("replica-a", 9, "replica-a"),
        hw.LeaderChanged(None, 9, by="replica-a"),
    ]
    for event in published:
        publisher.publish(event)
    seen = [_next(sub) for _ in published]
    for made, read in zip(published, seen):
        assert type(read) is type(made)
        assert read.kind == made.kind
        assert read.worker_id == made.worker_id
        fields: tuple[str, ...] = getattr(type(made), "__match_args__")
        assert [getattr(read, f) for f in fields] == [getattr(made, f) for f in fields]
        assert read.at == START, "the registry's time, not the made event's"
    seqs = [e.seq for e in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    match seen[1]:
        case hw.ProvisionFailed("p1", error):
            assert error == "quota exceeded"
        case _:
            raise AssertionError(seen[1])


def test_a_made_event_is_not_yet_on_the_stream() -> None:
    made = hw.DestroyFailed("00000000-0000-4000-8000-000000000001", "p1", "gone", attempts=2)
    assert (made.seq, made.at, made.kind) == (0, 0.0, "destroy_failed")
    assert made.worker_id == "00000000-0000-4000-8000-000000000001"
    assert made == hw.DestroyFailed(
        "00000000-0000-4000-8000-000000000001", "p1", "gone", attempts=2
    )
    assert "DestroyFailed(seq=0" in repr(made)


def test_the_registrys_own_kinds_and_wrong_arguments_publish_nothing(pair: Pair) -> None:
    publisher, reader, _ = pair
    sub = reader.subscribe()
    w = publisher.register("p1", "docker", "c-1")
    publisher.update_state(w.id, hw.WorkerState.READY)
    publisher.assign_to_job(w.id, "j1")
    publisher.release_from_job(w.id)
    claimed = publisher.claim("j2")
    assert claimed is not None
    publisher.unregister(w.id)  # loses j2
    own = [_next(sub) for _ in range(10)]
    kinds = {type(e) for e in own}
    assert kinds == {
        hw.Registered,
        hw.StateChanged,
        hw.AssignedToJob,
        hw.ReleasedFromJob,
        hw.JobLost,
        hw.Unregistered,
    }, own
    # Read from the stream and handed back: the registry's own are refused, naming the kind.
    for event in own:
        with pytest.raises(hw.InvalidArgumentError, match=f"event kind {event.kind} .*publish refuses it"):
            publisher.publish(event)
    for wrong in ["provision_requested", None, 3, hw.WorkerState.READY, w]:
        with pytest.raises(TypeError):
            publisher.publish(wrong)  # type: ignore[arg-type]
    # An event about a worker the registry no longer holds.
    with pytest.raises(hw.WorkerNotFoundError):
        publisher.publish(hw.UnhealthyDetected(w.id, START))
    # Malformed fields are refused when the event is made.
    with pytest.raises(hw.InvalidArgumentError):
        hw.HeartbeatReceived("not-a-uuid")
    with pytest.raises(hw.InvalidArgumentError):
        hw.ProvisionRequested("")
    with pytest.raises(hw.InvalidArgumentError):
        hw.MassExpiryHeld(-1, 3)
    with pytest.raises(hw.InvalidArgumentError):
        hw.UnhealthyDetected(w.id, -1.0)
    with pytest.raises(TypeError):
        hw.ProvisionFailed("p1", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hw.DestroyFailed(w.id, "p1", "x", True)
    with pytest.raises(TypeError):
        hw.LeaderChanged("a", 1)  # type: ignore[call-arg]
    # Text the manager's own events never carry: refused when published.
    with pytest.raises(hw.InvalidArgumentError, match="provision_failed: error of 4161 bytes"):
        publisher.publish(hw.ProvisionFailed("p1", "x" * 4161))
    with pytest.raises(hw.InvalidArgumentError, match="leader_changed: holder of 129 bytes"):
        publisher.publish(hw.LeaderChanged("h" * 129, 2, "a"))
    with pytest.raises(hw.InvalidArgumentError, match="leader_changed: by of 0 bytes"):
        publisher.publish(hw.LeaderChanged(None, 2, ""))
    # None of that published anything: the next event is the marker published after it.
    publisher.publish(hw.ProvisionRequested("marker"))
    marker = _next(sub)
    assert isinstance(marker, hw.ProvisionRequested) and marker.provider_id == "marker"
    assert sub.try_recv() is None


def test_a_published_heartbeat_reaches_only_heartbeat_subscribers_and_records_none(
    pair: Pair,
) -> None:
    publisher, reader, clock = pair
    # On PostgreSQL a heartbeat event is written only while a subscriber of the publishing
    # handle wants heartbeats: `beats` is one.
    beats = publisher.subscribe(heartbeats=True)
    plain = reader.subscribe()
    w = publisher.register("p1", "docker", "c-1")
    assert isinstance(_next(beats), hw.Registered)
    assert isinstance(_next(plain), hw.Registered)
    clock.advance(5)
    publisher.publish(hw.HeartbeatReceived(w.id))
    beat = _next(beats)
    assert isinstance(beat, hw.HeartbeatReceived) and beat.worker_id == w.id
    assert beat.at == START + 5
    got = publisher.get(w.id)
    assert got is not None and got.last_heartbeat == START, "publish records no heartbeat"
    publisher.publish(hw.ProvisionRequested("marker"))
    assert isinstance(_next(plain), hw.ProvisionRequested), "no heartbeat for `plain`"
