"""The registry as a host uses it: register, heartbeat, hand out jobs, find, count, persist."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

import hodei_workers as hw
from conftest import START, MakeRegistry, ReadyWorker


def test_whole_worker_lifecycle(registry: hw.Registry, clock: hw.ManualClock) -> None:
    spec = hw.WorkerSpec("ubuntu:24.04", labels={"pool": "ci"}, max_jobs=2)
    worker = registry.register(
        "docker-local", "docker", "container-1", spec, metadata={"host": "node-3"}
    )
    assert worker.state is hw.WorkerState.CREATING
    assert uuid.UUID(worker.id).version == 4
    assert worker.id == str(uuid.UUID(worker.id)), "ids are lowercase hyphenated"
    assert worker.provider_id == "docker-local"
    assert worker.provider_type == "docker"
    assert worker.resource_id == "container-1"
    assert worker.metadata == {"host": "node-3"}
    assert worker.spec == spec
    assert worker.created_at == START
    assert worker.last_heartbeat == START
    assert worker.idle_since is None
    assert worker.current_job is None
    assert not worker.is_available

    clock.advance(1.5)
    connecting = registry.update_state(worker.id, hw.WorkerState.CONNECTING)
    assert connecting.state is hw.WorkerState.CONNECTING
    assert connecting.state_changed_at == START + 1.5
    ready = registry.update_state(worker.id, "ready")  # a state's name works too
    assert ready.state is hw.WorkerState.READY
    assert ready.idle_since == START + 1.5
    assert ready.is_available

    clock.advance(timedelta(seconds=10))
    registry.heartbeat(worker.id)
    got = registry.get(worker.id)
    assert got is not None
    assert got.last_heartbeat == START + 11.5
    assert got.state is hw.WorkerState.READY, "a heartbeat changes no state"

    for n in (1, 2):
        busy = registry.claim(f"job-{n}")
        assert busy is not None and busy.id == worker.id
        assert busy.state is hw.WorkerState.BUSY and busy.current_job == f"job-{n}"
        assert registry.release_from_job(worker.id, expected_job=f"job-{n}") == f"job-{n}"

    done = registry.get(worker.id)
    assert done is not None
    assert done.jobs_executed == 2
    assert done.state is hw.WorkerState.DRAINING, "max_jobs reached: the worker is drained"
    assert registry.claim("job-3") is None

    registry.update_state(worker.id, hw.WorkerState.TERMINATING)
    last = registry.unregister(worker.id, hw.TerminationReason.MAX_JOBS)
    assert last.id == worker.id and last.state is hw.WorkerState.TERMINATING
    assert registry.get(worker.id) is None
    assert worker.id not in registry
    assert len(registry) == 0


def test_worker_snapshots_are_frozen_values(
    registry: hw.Registry, ready_worker: ReadyWorker
) -> None:
    worker = ready_worker()
    before = registry.get(worker.id)
    registry.assign_to_job(worker.id, "job-1")
    after = registry.get(worker.id)
    assert before == worker, "an unchanged record gives an equal snapshot"
    assert hash(before) == hash(worker)
    assert after != before, "a change gives a different snapshot; the old one is untouched"
    assert before is not None and before.state is hw.WorkerState.READY
    with pytest.raises(AttributeError):
        worker.state = hw.WorkerState.BUSY  # type: ignore[misc]
    text = repr(after)
    assert text.startswith("Worker(id=") and worker.id in text
    assert "state=WorkerState.BUSY" in text and "current_job='job-1'" in text
    assert {worker, before} == {worker}, "snapshots are hashable values"


def test_claim_and_release(registry: hw.Registry, ready_worker: ReadyWorker) -> None:
    a = ready_worker(hw.WorkerSpec("img", labels={"pool": "ci"}))
    b = ready_worker(hw.WorkerSpec("img", labels={"pool": "gpu"}, capabilities=["cuda"]))

    got = registry.claim("job-gpu", capabilities={"cuda"})
    assert got is not None and got.id == b.id
    assert registry.claim("job-gpu-2", labels={"pool": "gpu"}) is None, "b is busy now"

    with pytest.raises(hw.JobAlreadyAssignedError) as info:
        registry.claim("job-gpu")
    assert info.value.job_id == "job-gpu" and info.value.worker_id == b.id

    with pytest.raises(hw.WorkerNotBusyError):
        registry.release_from_job(a.id)
    with pytest.raises(hw.WorkerNotBusyError) as late:
        registry.release_from_job(b.id, expected_job="some-old-job")
    assert late.value.worker_id == b.id and late.value.job_id == "some-old-job"
    still = registry.get(b.id)
    assert still is not None and still.current_job == "job-gpu", "a stale release frees nothing"

    assert registry.release_from_job(b.id) == "job-gpu"
    registry.update_state(a.id, hw.WorkerState.DRAINING)
    with pytest.raises(hw.WorkerNotAvailableError) as unavailable:
        registry.assign_to_job(a.id, "job-x")
    assert "draining" in str(unavailable.value), "the message names the state"
    with pytest.raises(hw.InvalidTransitionError):
        registry.update_state(b.id, hw.WorkerState.BUSY)


def test_claim_prefers_the_most_recently_idle_worker(
    registry: hw.Registry, clock: hw.ManualClock, ready_worker: ReadyWorker
) -> None:
    old = ready_worker()
    clock.advance(30)
    new = ready_worker()
    got = registry.claim("job-1")
    assert got is not None and got.id == new.id, "surplus (older idle) workers are left to idle out"
    got = registry.claim("job-2", idle_for=20)
    assert got is not None and got.id == old.id


def test_find_filters(registry: hw.Registry, clock: hw.ManualClock, ready_worker: ReadyWorker) -> None:
    ci = ready_worker(hw.WorkerSpec("img", labels={"pool": "ci", "os": "linux"}))
    gpu = ready_worker(
        hw.WorkerSpec("img", labels={"pool": "gpu"}, capabilities=["cuda", "docker"]),
        provider_id="k8s-east",
        provider_type="kubernetes",
    )
    starting = registry.register("lambda-1", "lambda", "fn-1")
    registry.assign_to_job(ci.id, "job-1")

    def ids(workers: list[hw.Worker]) -> set[str]:
        return {w.id for w in workers}

    assert ids(registry.find()) == {ci.id, gpu.id, starting.id}
    assert ids(registry.find(states=[hw.WorkerState.BUSY, "creating"])) == {ci.id, starting.id}
    assert ids(registry.find(states=hw.WorkerState.READY)) == {gpu.id}
    assert ids(registry.find(accepting_jobs=True)) == {gpu.id}
    assert ids(registry.find_available()) == {gpu.id}
    assert ids(registry.find(accepting_jobs=False)) == {ci.id, starting.id}
    assert ids(registry.find(provider_id="k8s-east")) == {gpu.id}
    assert ids(registry.find_by_provider("docker-local")) == {ci.id}
    assert ids(registry.find(provider_type="lambda")) == {starting.id}
    assert ids(registry.find(labels={"pool": "ci"})) == {ci.id}
    assert ids(registry.find(labels={"pool": "ci", "os": "windows"})) == set()
    assert ids(registry.find(capabilities=["cuda", "docker"])) == {gpu.id}
    assert ids(registry.find(capabilities="cuda")) == {gpu.id}, "a lone str is one capability"
    assert ids(registry.find(capabilities=["cuda", "tpu"])) == set()
    assert len(registry.find(limit=2)) == 2
    assert registry.find(limit=0) == []

    clock.advance(90)
    registry.heartbeat(gpu.id)
    assert ids(registry.find(idle_for=60)) == {gpu.id}
    assert ids(registry.find(idle_for=timedelta(minutes=2))) == set()
    assert ids(registry.find(unhealthy_for=60)) == {ci.id, starting.id}
    assert ids(registry.find(unhealthy_for=60, provider_type="docker")) == {ci.id}


def test_stats_count_per_state_provider_and_type(
    registry: hw.Registry, ready_worker: ReadyWorker
) -> None:
    a = ready_worker()
    ready_worker()
    ready_worker(provider_id="k8s", provider_type="kubernetes")
    registry.register("k8s", "kubernetes", "pod-9")
    registry.assign_to_job(a.id, "job-1")

    stats = registry.stats()
    assert stats.total == 4 == len(registry)
    assert (stats.creating, stats.ready, stats.busy) == (1, 2, 1)
    assert stats.by_state[hw.WorkerState.READY] == 2
    assert set(stats.by_state) == set(hw.WorkerState)
    assert sum(stats.by_state.values()) == stats.total
    assert stats.by_provider == {"docker-local": 2, "k8s": 2}
    assert stats.by_provider_type == {"docker": 2, "kubernetes": 2}
    assert stats.live == 4 and stats.starting == 1
    assert stats == registry.stats() and hash(stats) == hash(registry.stats())
    assert "total=4" in repr(stats)

    # Invariant: the maintained counters always equal a recount of the records.
    recount = {state: 0 for state in hw.WorkerState}
    for w in registry.find():
        recount[w.state] += 1
    assert stats.by_state == recount


def test_unhealthy_and_termination_candidates(
    registry: hw.Registry, clock: hw.ManualClock, ready_worker: ReadyWorker
) -> None:
    idle = ready_worker(hw.WorkerSpec("img", idle_timeout=60))
    chatty = ready_worker(hw.WorkerSpec("img", idle_timeout=600))
    stuck = registry.register("docker-local", "docker", "never-ready")

    clock.advance(45)
    registry.heartbeat(chatty.id)
    registry.heartbeat(idle.id)
    clock.advance(30)
    assert registry.find_unhealthy(60) == []
    assert {w.id for w in registry.find_unhealthy(timedelta(seconds=29))} == {chatty.id, idle.id}
    assert [w.id for w in registry.find_startup_expired(70)] == [stuck.id]
    assert registry.find_startup_expired(75) == [], "the deadline is strict: 75 s is not past it"

    due = registry.find_for_termination()
    assert [(w.id, reason) for w, reason in due] == [(idle.id, hw.TerminationReason.IDLE)]


def test_snapshot_and_restore(
    registry: hw.Registry, clock: hw.ManualClock, ready_worker: ReadyWorker, make_registry: MakeRegistry
) -> None:
    a = ready_worker(hw.WorkerSpec("img", labels={"pool": "ci"}))
    b = ready_worker()
    registry.assign_to_job(a.id, "job-1")
    text = registry.snapshot()
    assert json.loads(text)["format"] == "hodei-workers.snapshot/1"

    copy = make_registry(hw.ManualClock(clock.now()))
    events = copy.subscribe()
    copy.restore(text)
    assert len(copy) == 2
    assert copy.get(a.id) == registry.get(a.id)
    assert copy.get(b.id) == registry.get(b.id)
    assert copy.stats() == registry.stats()
    with pytest.raises(hw.JobAlreadyAssignedError):
        copy.claim("job-1")
    copy.heartbeat(b.id)
    assert copy.release_from_job(a.id) == "job-1"
    # recv, not try_recv: a shared backend may deliver a moment after the call returns (its
    # outbox reader waits out a transaction in flight before it passes a gap in seq).
    first = events.recv(timeout=30)
    assert first is not None and first.seq > json.loads(text)["seq"], "seq continues after the snapshot"

    with pytest.raises(hw.InvalidArgumentError):
        copy.restore(text)  # only into an empty registry


def test_a_snapshot_error_points_into_the_text() -> None:
    """JSON text the caller wrote keeps serde's position in it (unlike a dict argument, whose
    made-up JSON form is nobody's text)."""
    with pytest.raises(hw.SnapshotError, match="unknown field `x`.* at line 1 column 4$"):
        hw.Registry().restore('{"x": 1}')


def _positional(text: str, path: list[Any]) -> str:
    """The snapshot with the object at `path` written as the array of its values (serde's
    positional form: refused, only the object form is read)."""
    doc = json.loads(text)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = list(parent[path[-1]].values())
    return json.dumps(doc)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[: len(t) // 2],
        lambda t: t.replace("hodei-workers.snapshot/1", "someone-else/7"),
        lambda t: "not json at all",
        lambda t: t.replace('"state":"busy"', '"state":"ready"'),
        lambda t: json.dumps(list(json.loads(t).values())),
        lambda t: _positional(t, ["workers", 0]),
        lambda t: _positional(t, ["workers", 0, "spec"]),
        lambda t: _positional(t, ["workers", 0, "spec", "resources"]),
    ],
    ids=[
        "truncated",
        "foreign",
        "garbage",
        "inconsistent",
        "positional snapshot",
        "positional record",
        "positional spec",
        "positional resources",
    ],
)
def test_corrupt_snapshots_are_refused_and_change_nothing(
    registry: hw.Registry, ready_worker: ReadyWorker, mangle: object, make_registry: MakeRegistry
) -> None:
    w = ready_worker()
    registry.assign_to_job(w.id, "job-1")
    text = registry.snapshot()
    assert '"state":"busy"' in text
    target = make_registry()
    with pytest.raises(hw.SnapshotError) as info:
        target.restore(mangle(text))  # type: ignore[operator]
    assert isinstance(info.value, ValueError)
    assert len(target) == 0


def test_manual_clock_moves_only_forward() -> None:
    clock = hw.ManualClock(100.0)
    assert clock.now() == 100.0
    assert clock.advance(0.25) == 100.25
    assert clock.advance(timedelta(milliseconds=750)) == 101.0
    assert clock.set(50.0) == 101.0, "setting the past is ignored"
    assert clock.set(200.0) == 200.0
    registry = hw.Registry(clock=clock)
    assert registry.clock is clock
    assert registry.now() == 200.0
    assert hw.Registry().clock is None
    assert "200.0" in repr(clock)


def test_system_clock_is_near_wall_time() -> None:
    import time

    assert abs(hw.Registry().now() - time.time()) < 5


def test_registry_len_contains_and_repr(registry: hw.Registry, ready_worker: ReadyWorker) -> None:
    w = ready_worker()
    assert len(registry) == 1
    assert w.id in registry
    assert w.id.upper() in registry, "ids parse case-insensitively"
    assert str(uuid.uuid4()) not in registry
    assert "not-a-uuid" not in registry, "a str that is no id names no worker"
    assert repr(registry) == "<Registry workers=1 ready=1 busy=0>"


def test_register_with_chosen_id_and_duplicates(registry: hw.Registry) -> None:
    chosen = str(uuid.uuid4())
    w = registry.register("docker-local", "custom:nomad", "alloc-1", worker_id=chosen)
    assert w.id == chosen and w.provider_type == "custom:nomad"
    with pytest.raises(hw.WorkerAlreadyExistsError) as info:
        registry.register("docker-local", "docker", "c-2", worker_id=chosen)
    assert info.value.worker_id == chosen


def test_unregister_reports_a_held_job_lost(registry: hw.Registry, ready_worker: ReadyWorker) -> None:
    w = ready_worker()
    registry.assign_to_job(w.id, "job-7")
    events = registry.subscribe()
    registry.unregister(w.id, "unhealthy")
    got = events.drain()
    lost = [e for e in got if isinstance(e, hw.JobLost)]
    assert [(e.worker_id, e.job_id) for e in lost] == [(w.id, "job-7")]
    gone = [e for e in got if isinstance(e, hw.Unregistered)]
    assert [e.reason for e in gone] == [hw.TerminationReason.UNHEALTHY]
    with pytest.raises(hw.WorkerNotFoundError):
        registry.release_from_job(w.id, "job-7")


def test_specs_and_resources_are_values() -> None:
    res = hw.Resources(cpu_cores=1.5, memory_bytes=2 << 30, gpu_count=1, gpu_type="a100")
    spec = hw.WorkerSpec(
        "ghcr.io/acme/runner:2",
        resources=res,
        labels={"pool": "gpu"},
        environment={"RUST_LOG": "info"},
        capabilities=["cuda", "docker"],
        architecture="arm64",
        idle_timeout=timedelta(minutes=2),
        max_lifetime=7200,
        max_jobs=1,
    )
    assert spec.image == "ghcr.io/acme/runner:2"
    assert spec.resources == res and spec.resources.cpu_cores == 1.5
    assert spec.labels == {"pool": "gpu"} and spec.environment == {"RUST_LOG": "info"}
    assert spec.capabilities == frozenset({"cuda", "docker"})
    assert spec.architecture == "arm64"
    assert (spec.idle_timeout, spec.max_lifetime, spec.max_jobs) == (120.0, 7200.0, 1)
    twin = hw.WorkerSpec(
        "ghcr.io/acme/runner:2",
        resources=hw.Resources(1.5, 2 << 30, 0, 1, "a100"),
        labels={"pool": "gpu"},
        environment={"RUST_LOG": "info"},
        capabilities=("docker", "cuda"),
        architecture="aarch64",
        idle_timeout=120.0,
        max_lifetime=timedelta(hours=2),
        max_jobs=1,
    )
    assert spec == twin and hash(spec) == hash(twin)
    assert spec != hw.WorkerSpec("ghcr.io/acme/runner:2")
    assert hw.Resources(cpu_cores=-0.0) == hw.Resources() and hash(hw.Resources(cpu_cores=-0.0)) == hash(hw.Resources())
    spec.labels["pool"] = "mutated"
    assert spec.labels == {"pool": "gpu"}, "getters hand out copies"
    assert repr(hw.WorkerSpec("img")) == (
        "WorkerSpec('img', idle_timeout=300.0, max_lifetime=3600.0, max_jobs=None)"
    )
    assert "gpu_type='a100'" in repr(res)
    default = hw.WorkerSpec()
    assert (default.image, default.idle_timeout, default.max_lifetime, default.max_jobs) == ("", 300.0, 3600.0, None)


def test_enums() -> None:
    assert [s.value for s in hw.WorkerState] == [
        "creating", "connecting", "ready", "busy", "draining", "terminating", "terminated",
    ]
    assert hw.WorkerState("ready") is hw.WorkerState.READY
    assert hw.TerminationReason("startup_timeout") is hw.TerminationReason.STARTUP_TIMEOUT
    assert len(hw.TerminationReason) == 10
    assert hw.TerminationReason("interrupted") is hw.TerminationReason.INTERRUPTED


def test_spec_replace_makes_a_validated_copy() -> None:
    base = hw.WorkerSpec("runner:1", labels={"pool": "ci"}, capabilities=["docker"], max_jobs=3)
    one_shot = base.replace(max_jobs=1, image="runner:2")
    assert (one_shot.image, one_shot.max_jobs) == ("runner:2", 1)
    assert one_shot.labels == {"pool": "ci"} and one_shot.capabilities == {"docker"}
    assert base.max_jobs == 3 and base.image == "runner:1", "the original is unchanged"
    assert base.replace() == base
    assert base.replace(max_jobs=None).max_jobs is None
    assert base.replace(idle_timeout=timedelta(seconds=5)).idle_timeout == 5.0
    with pytest.raises(hw.InvalidArgumentError):
        base.replace(max_jobs=0)
    with pytest.raises(TypeError):
        base.replace(colour="blue")  # type: ignore[call-arg]


def test_past_the_retired_id_limit_the_oldest_ids_may_come_back(
    make_registry: MakeRegistry, clock: hw.ManualClock
) -> None:
    reg = make_registry(clock, retired_id_limit=2)
    retired = []
    for i in range(3):
        w = reg.register("docker-local", "docker", f"c-{i}")
        reg.unregister(w.id)
        retired.append(w.id)
    # In memory the oldest is forgotten at once; on PostgreSQL at the registry's next prune,
    # which its first health-check query runs.
    reg.find_for_termination()
    for kept in retired[1:]:
        with pytest.raises(hw.WorkerAlreadyExistsError):
            reg.register("docker-local", "docker", "again", worker_id=kept)
    back = reg.register("docker-local", "docker", "back", worker_id=retired[0])
    assert back.id == retired[0]


def test_a_retired_id_limit_must_be_a_count() -> None:
    with pytest.raises(hw.InvalidArgumentError, match="retired_id_limit"):
        hw.Registry(retired_id_limit=-1)
    with pytest.raises(TypeError):
        hw.Registry(retired_id_limit="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hw.Registry(retired_id_limit=True)
    with pytest.raises(hw.InvalidArgumentError, match="retired_id_limit"):
        # Refused before any connection is tried.
        hw.Registry.postgres("host=/nonexistent", name="r", retired_id_limit=-5)
    assert len(hw.Registry(retired_id_limit=0)) == 0


def test_grant_grace_after_a_stall_as_the_c_api_has_it(
    registry: hw.Registry, clock: hw.ManualClock, ready_worker: ReadyWorker
) -> None:
    w = ready_worker()
    starting = registry.register("docker-local", "docker", "slow-start")
    clock.advance(100)  # the host was suspended: nobody heartbeated
    assert {x.id for x in registry.find_unhealthy(60)} == {w.id}
    assert [x.id for x in registry.find_startup_expired(60)] == [starting.id]
    registry.grant_grace()  # from now
    assert registry.find_unhealthy(60) == [] and registry.find_startup_expired(60) == []
    clock.advance(60)
    assert registry.find_unhealthy(60) == [], "the deadline is strict"
    clock.advance(1)
    assert [x.id for x in registry.find_unhealthy(60)] == [w.id]
    registry.grant_grace(since=START + 150)  # a time of the registry's clock
    assert registry.find_unhealthy(60) == []
    registry.grant_grace(START)  # an earlier grace moves no deadline back
    assert registry.find_unhealthy(60) == []
    with pytest.raises(hw.InvalidArgumentError):
        registry.grant_grace(-1.0)
    with pytest.raises(TypeError):
        registry.grant_grace("now")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        registry.grant_grace(True)


def test_heartbeat_many_answers_the_unknown_ids(
    registry: hw.Registry, clock: hw.ManualClock, ready_worker: ReadyWorker
) -> None:
    a, b = ready_worker(), ready_worker()
    gone = ready_worker()
    registry.unregister(gone.id)
    never = str(uuid.uuid4())
    clock.advance(10)
    unknown = registry.heartbeat_many([a.id, never, b.id, gone.id])
    assert unknown == [never, gone.id], "in the order given: tell those agents to register again"
    for w in (a, b):
        got = registry.get(w.id)
        assert got is not None and got.last_heartbeat == START + 10
    assert registry.heartbeat_many(iter([a.id])) == [] and registry.heartbeat_many([]) == []
    # A malformed id or a wrong type refuses the whole call: no heartbeat recorded.
    clock.advance(10)
    with pytest.raises(hw.InvalidArgumentError):
        registry.heartbeat_many([a.id, "not-an-id"])
    with pytest.raises(TypeError):
        registry.heartbeat_many([a.id, 3])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        registry.heartbeat_many(a.id)  # a str is not a list of ids
    got = registry.get(a.id)
    assert got is not None and got.last_heartbeat == START + 10


def test_longest_idle_lists_the_scale_in_candidates_oldest_first(
    registry: hw.Registry, clock: hw.ManualClock, ready_worker: ReadyWorker
) -> None:
    ready = []
    for _ in range(3):
        ready.append(ready_worker())
        clock.advance(1)
    busy = ready_worker()
    registry.assign_to_job(busy.id, "job-1")
    registry.register("docker-local", "docker", "starting")
    assert [w.id for w in registry.longest_idle(10)] == [w.id for w in ready]
    assert [w.id for w in registry.longest_idle(2)] == [ready[0].id, ready[1].id]
    assert registry.longest_idle(0) == []
    # Claimed and released, the longest idle starts its idle time again: it goes last.
    registry.assign_to_job(ready[0].id, "job-2")
    clock.advance(1)
    registry.release_from_job(ready[0].id)
    listed = registry.longest_idle(2**40)
    assert [w.id for w in listed] == [ready[1].id, ready[2].id, ready[0].id]
    assert all(w.state == hw.WorkerState.READY for w in listed)
    with pytest.raises(hw.InvalidArgumentError):
        registry.longest_idle(-1)
    with pytest.raises(TypeError):
        registry.longest_idle(True)
    with pytest.raises(TypeError):
        registry.longest_idle("3")  # type: ignore[arg-type]
