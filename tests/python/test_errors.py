"""Bad input gets the documented exception, never a crash: wrong types are TypeError, wrong
values InvalidArgumentError (a ValueError), unknown workers WorkerNotFoundError (a
LookupError). The tests call the API the way a careless caller would: where they call it
directly, mypy (--strict, warn_unused_ignores) must reject the call, which the type: ignore
comments record, so that the stubs are checked to refuse what the module refuses.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any, Callable

import pytest

import hodei_workers as hw
from conftest import ReadyWorker

UNKNOWN = str(uuid.uuid4())


def test_exception_tree() -> None:
    every = [
        hw.WorkerNotFoundError,
        hw.WorkerAlreadyExistsError,
        hw.InvalidTransitionError,
        hw.WorkerNotAvailableError,
        hw.WorkerNotBusyError,
        hw.JobAlreadyAssignedError,
        hw.ProviderNotFoundError,
        hw.ProviderError,
        hw.CapacityExceededError,
        hw.InvalidArgumentError,
        hw.SnapshotError,
        hw.BackendError,
        hw.InternalError,
    ]
    assert issubclass(hw.HodeiWorkersError, Exception)
    for exc in every:
        assert issubclass(exc, hw.HodeiWorkersError), exc
        assert exc.__module__ == "hodei_workers"
        assert exc.__doc__, exc
    assert issubclass(hw.WorkerNotFoundError, LookupError)
    assert issubclass(hw.ProviderNotFoundError, LookupError)
    assert issubclass(hw.InvalidArgumentError, ValueError)
    assert issubclass(hw.SnapshotError, ValueError)
    assert issubclass(hw.InternalError, RuntimeError)
    assert not issubclass(hw.WorkerNotBusyError, ValueError)


def test_unknown_worker_is_not_found(registry: hw.Registry) -> None:
    calls: list[Callable[[], object]] = [
        lambda: registry.heartbeat(UNKNOWN),
        lambda: registry.update_state(UNKNOWN, "ready"),
        lambda: registry.assign_to_job(UNKNOWN, "job-1"),
        lambda: registry.release_from_job(UNKNOWN),
        lambda: registry.unregister(UNKNOWN),
    ]
    for call in calls:
        with pytest.raises(hw.WorkerNotFoundError) as info:
            call()
        assert isinstance(info.value, LookupError)
        assert info.value.kind == "not_found"
        assert info.value.worker_id == UNKNOWN
        assert UNKNOWN in str(info.value), "the message names the worker"
    assert registry.get(UNKNOWN) is None


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.heartbeat(42),
        lambda r: r.heartbeat(None),
        lambda r: r.get(b"bytes-are-not-ids"),
        lambda r: r.register(1, "docker", "c-1"),
        lambda r: r.register("p", "docker", "c-1", spec="ubuntu"),
        lambda r: r.register("p", "docker", "c-1", metadata=["a", "b"]),
        lambda r: r.register("p", "docker", "c-1", metadata={"a": 1}),
        lambda r: r.update_state(UNKNOWN, 3),
        lambda r: r.assign_to_job(UNKNOWN, 17),
        lambda r: r.find(states=5),
        lambda r: r.find(states=[hw.WorkerState.READY, 5]),
        lambda r: r.find(labels="pool=ci"),
        lambda r: r.find(capabilities=[1, 2]),
        lambda r: r.find(idle_for="60"),
        lambda r: r.find(idle_for=True),
        lambda r: r.find(limit="3"),
        lambda r: r.find(limit=True),
        lambda r: r.find(limit=2.0),
        lambda r: r.find(accepting_jobs="yes"),
        lambda r: r.claim(None),
        lambda r: r.find_unhealthy("1m"),
        lambda r: r.restore(b"{}"),
        lambda r: r.subscribe(capacity="many"),
        lambda r: 42 in r,
        lambda r: r.unregister(UNKNOWN, reason=3),
        lambda r: hw.WorkerSpec(labels={"a": 1}),  # type: ignore[dict-item]
        lambda r: hw.WorkerSpec(idle_timeout=None),  # type: ignore[arg-type]
        lambda r: hw.WorkerSpec(resources={"cpu_cores": 1}),  # type: ignore[arg-type]
        lambda r: hw.Resources(cpu_cores="two"),  # type: ignore[arg-type]
        lambda r: hw.Registry(clock=12.0),  # type: ignore[arg-type]
        lambda r: hw.ManualClock().advance("1s"),  # type: ignore[arg-type]
    ],
)
def test_wrong_types_are_type_errors(registry: hw.Registry, call: Callable[[Any], object]) -> None:
    with pytest.raises(TypeError):
        call(registry)


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.heartbeat("not-a-uuid"),
        lambda r: r.heartbeat("00000000-0000-0000-0000-000000000000"),
        lambda r: r.get(""),
        lambda r: r.register("", "docker", "c-1"),
        lambda r: r.register("x" * 129, "docker", "c-1"),
        lambda r: r.register("bad\nprovider", "docker", "c-1"),
        lambda r: r.register("p", "podman", "c-1"),
        lambda r: r.register("p", "custom:", "c-1"),
        lambda r: r.register("p", "docker", "c-1", worker_id="nope"),
        lambda r: r.register("p", "docker", ""),
        lambda r: r.claim(""),
        lambda r: r.claim("j" * 257),
        lambda r: r.claim("nul\0byte"),
        lambda r: r.update_state(UNKNOWN, "sleeping"),
        lambda r: r.unregister(UNKNOWN, reason="bored"),
        lambda r: r.find(idle_for=-1),
        lambda r: r.find(idle_for=math.nan),
        lambda r: r.find(unhealthy_for=math.inf),
        lambda r: r.find(limit=-1),
        lambda r: r.find(limit=2**70),
        lambda r: r.subscribe(capacity=2**80),
        lambda r: hw.Resources(memory_bytes=2**64),
        lambda r: hw.WorkerSpec(max_jobs=2**40),
        lambda r: r.find(provider_type="podman"),
        lambda r: r.find_unhealthy(-0.5),
        lambda r: r.subscribe(capacity=0),
        lambda r: r.subscribe(capacity=-5),
        lambda r: hw.WorkerSpec(max_jobs=0),
        lambda r: hw.WorkerSpec(max_jobs=-1),
        lambda r: hw.WorkerSpec(idle_timeout=0),
        lambda r: hw.WorkerSpec(architecture="sparc"),
        lambda r: hw.Resources(cpu_cores=-1),
        lambda r: hw.Resources(cpu_cores=math.nan),
        lambda r: hw.Resources(memory_bytes=-1),
        lambda r: hw.ManualClock(-1.0),
        lambda r: hw.ManualClock(math.inf),
        lambda r: hw.ManualClock().advance(-3),
    ],
)
def test_invalid_values_are_invalid_argument_errors(
    registry: hw.Registry, call: Callable[[Any], object]
) -> None:
    with pytest.raises(hw.InvalidArgumentError) as info:
        call(registry)
    assert isinstance(info.value, ValueError)
    assert info.value.kind == "invalid_argument"


# The limits of a worker's own strings (MAX_KEY_LEN, MAX_VALUE_LEN, MAX_ENTRIES in DESIGN.md).
MAX_KEY_LEN, MAX_VALUE_LEN, MAX_ENTRIES = 256, 16 * 1024, 1024


@pytest.mark.parametrize(
    "field, criteria",
    [
        ("filter.labels key", {"labels": {"k" * (MAX_KEY_LEN + 1): "v"}}),
        ('filter.labels["k"] value', {"labels": {"k": "v" * (MAX_VALUE_LEN + 1)}}),
        ("filter.capabilities", {"capabilities": ["c" * (MAX_KEY_LEN + 1)]}),
        ("filter.fits.gpu_type", {"fits": hw.Resources(gpu_type="g" * (MAX_KEY_LEN + 1))}),
        ("filter.labels", {"labels": {f"k{i}": "v" for i in range(MAX_ENTRIES + 1)}}),
        ("filter.capabilities", {"capabilities": [f"c{i}" for i in range(MAX_ENTRIES + 1)]}),
    ],
    ids=["label key", "label value", "capability", "gpu type", "labels", "capabilities"],
)
def test_a_filter_asking_for_strings_over_their_limit_is_refused(
    registry: hw.Registry, ready_worker: ReadyWorker, field: str, criteria: dict[str, Any]
) -> None:
    """No worker can hold such a string, so find and claim say so (InvalidArgumentError naming
    the field) instead of answering "no worker"; the ready worker stays free."""
    worker = ready_worker()
    with pytest.raises(hw.InvalidArgumentError, match=re.escape(field)):
        registry.find(**criteria)
    with pytest.raises(hw.InvalidArgumentError, match=re.escape(field)):
        registry.claim("job-1", **criteria)
    still = registry.get(worker.id)
    assert still is not None and still.state == hw.WorkerState.READY
    assert registry.claim("job-1") is not None


def test_a_demand_asking_for_strings_over_their_limit_is_refused() -> None:
    long_key = "x" * (MAX_KEY_LEN + 1)
    requirements: list[dict[str, Any]] = [
        {"labels": {long_key: "v"}, "count": 1},
        {"labels": {"k": "v" * (MAX_VALUE_LEN + 1)}, "count": 1},
        {"capabilities": [long_key], "count": 1},
        {"resources": {"gpu_type": long_key}, "count": 1},
        {"capabilities": [f"c{i}" for i in range(MAX_ENTRIES + 1)], "count": 1},
    ]
    for requirement in requirements:
        with pytest.raises(hw.InvalidArgumentError, match=re.escape("demand[1]: requirement.")):
            hw.Demand([{"count": 2}, requirement])
    at_limit = {"labels": {"k" * MAX_KEY_LEN: "v" * MAX_VALUE_LEN}, "count": 1}
    assert hw.Demand([at_limit]).total == 1


def test_state_machine_errors_name_worker_and_states(
    registry: hw.Registry, ready_worker: ReadyWorker
) -> None:
    w = ready_worker()
    registry.update_state(w.id, hw.WorkerState.TERMINATING)
    with pytest.raises(hw.InvalidTransitionError) as info:
        registry.update_state(w.id, hw.WorkerState.READY)
    message = str(info.value)
    assert w.id in message and "terminating" in message and "ready" in message
    assert info.value.kind == "invalid_transition" and info.value.worker_id == w.id


def test_errors_leave_the_registry_consistent(
    registry: hw.Registry, ready_worker: ReadyWorker
) -> None:
    w = ready_worker()
    before = registry.get(w.id)
    for call in (
        lambda: registry.assign_to_job(w.id, ""),
        lambda: registry.update_state(w.id, hw.WorkerState.CREATING),
        lambda: registry.release_from_job(w.id),
    ):
        with pytest.raises(hw.HodeiWorkersError):
            call()
    assert registry.get(w.id) == before
    assert registry.stats().ready == 1


JUNK: list[object] = [
    None, 0, -1, 2**70, 1.5, math.nan, math.inf, True, "", "x", "\0", "ready", UNKNOWN,
    b"bytes", [], ["ready"], {}, {"a": "b"}, {"a": 1}, object(), hw.WorkerState.BUSY,
]


def test_junk_arguments_never_crash(registry: hw.Registry, ready_worker: ReadyWorker) -> None:
    """Every call with junk raises an ordinary Exception (never a pyo3 PanicException, which
    is a BaseException), and the registry stays consistent afterwards."""
    import random

    rng = random.Random(1234)
    w = ready_worker()
    manager = hw.LifecycleManager(registry)
    targets = [
        registry.register, registry.unregister, registry.get, registry.update_state,
        registry.heartbeat, registry.assign_to_job, registry.release_from_job, registry.claim,
        registry.find_unhealthy, registry.find_startup_expired, registry.find_by_provider,
        registry.subscribe, registry.restore, manager.tick, manager.plan_scaling,
        manager.provision_worker, manager.process_heartbeat, manager.drain_worker,
        manager.terminate_worker, manager.register_provider, manager.set_scaling_target,
        manager.should_scale_up, hw.WorkerSpec, hw.Resources, hw.LifecycleConfig, hw.ManualClock,
    ]
    for _ in range(1500):
        target: Any = rng.choice(targets)
        args = [rng.choice(JUNK) for _ in range(rng.randint(0, 3))]
        try:
            target(*args)
        except Exception:
            pass
    for _ in range(300):
        key = rng.choice(["states", "labels", "limit", "idle_for", "capabilities",
                          "provider_type", "accepting_jobs"])
        kwargs: dict[str, Any] = {key: rng.choice(JUNK)}
        try:
            registry.find(**kwargs)
        except Exception:
            pass
    stats = registry.stats()
    assert sum(stats.by_state.values()) == stats.total == len(registry.find())
    assert w.id in registry, "junk never names this worker, so it is still there"


def test_in_answers_false_for_any_str_that_names_no_worker(registry: hw.Registry) -> None:
    w = registry.register("docker-local", "docker", "c-1", hw.WorkerSpec("img"))
    assert w.id in registry
    for text in ["", "not-an-id", w.id.upper() + "x", "\udcff", w.id[:-1] + "\udcff"]:
        assert text not in registry
    with pytest.raises(TypeError, match="a worker id is a str"):
        5 in registry  # type: ignore[operator]
