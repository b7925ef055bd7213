"""Pools and demand from Python: demand by requirement, fallback between pools, unschedulable
jobs, interruption notices, and the errors of bad input."""

from __future__ import annotations

import itertools
import json
import re
import threading
from typing import Any, Callable

import pytest

import hodei_workers as hw


class Cloud:
    """A provider that can be told to fail its creates."""

    provider_type = "ec2"

    def __init__(self, provider_id: str) -> None:
        self.provider_id = provider_id
        self.fail = False
        self.created: list[str] = []
        self._ids = itertools.count(1)

    def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
        if self.fail:
            raise hw.NoCapacity("no g5.xlarge spot capacity")
        self.created.append(worker_id)
        return f"{self.provider_id}-{next(self._ids)}"

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        pass


GPU = hw.WorkerSpec(
    "trainer",
    labels={"gpu": "a100"},
    resources=hw.Resources(cpu_cores=16, gpu_count=1, gpu_type="a100"),
)


@pytest.fixture
def spot() -> Cloud:
    return Cloud("spot")


@pytest.fixture
def ondemand() -> Cloud:
    return Cloud("ondemand")


@pytest.fixture
def manager(registry: hw.Registry, spot: Cloud, ondemand: Cloud) -> hw.LifecycleManager:
    m = hw.LifecycleManager(registry, hw.LifecycleConfig(min_ready_workers=0, heartbeat_timeout=600))
    m.register_provider(spot)
    m.register_provider(ondemand)
    m.set_pools(
        [
            hw.Pool("gpu-spot", "spot", GPU, priority=10, max_workers=8),
            hw.Pool("gpu-ondemand", "ondemand", GPU, max_workers=4, scale_up_cooldown=5.0),
        ]
    )
    return m


def test_demand_reads_dicts_and_refuses_bad_ones() -> None:
    d = hw.Demand([{"labels": {"gpu": "a100"}, "count": 3}, {"capabilities": {"docker"}, "count": 2}])
    assert d.total == 5
    assert d.requirements[0]["labels"] == {"gpu": "a100"}
    assert d.requirements[1]["capabilities"] == ["docker"]
    assert d == hw.Demand(json.loads(d.to_json()))
    assert hw.Demand().total == 0
    with pytest.raises(hw.InvalidArgumentError, match="lables"):
        hw.Demand([{"lables": {}, "count": 1}])
    with pytest.raises(TypeError):
        hw.Demand([{"count": "3"}])
    with pytest.raises(TypeError):
        hw.Demand(["gpu"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        hw.Demand({"count": 1})  # type: ignore[dict-item]
    with pytest.raises(hw.InvalidArgumentError):
        hw.Demand([{"count": -1}])


@pytest.mark.parametrize(
    "requirement, error",
    [
        ({"count": 2**70}, hw.InvalidArgumentError),
        ({"resources": {"memory_bytes": 2**64}, "count": 1}, hw.InvalidArgumentError),
        ({"labels": {1: "a"}, "count": 1}, TypeError),
        ({"labels": {None: "a"}, "count": 1}, TypeError),
        ({"labels": {True: "a"}, "count": 1}, TypeError),
        ({"count": True}, TypeError),
        ({"resources": [2.0, 0, 0, 1], "count": 1}, TypeError),
        ({"resources": [], "count": 1}, TypeError),
    ],
    ids=[
        "huge count",
        "huge resource",
        "int key",
        "None key",
        "bool key",
        "bool count",
        "positional resources",
        "empty positional resources",
    ],
)
def test_demand_keeps_the_number_and_key_rules(requirement: dict[Any, Any], error: type) -> None:
    """What the json round trip would blur: keys that are not str are a TypeError (not
    coerced to "1"), an int beyond 64 bits an InvalidArgumentError (not a float)."""
    with pytest.raises(error):
        hw.Demand([requirement])


# serde's text ("invalid type", "unknown field ..., expected one of ...") is kept; what only a
# Rust reader could use is not: the position in the JSON text the dict was turned into, and
# Rust's number types.
RUST_LEAKS = re.compile(r"line \d+ column|\b([ui](8|16|32|64|128|size)|f32|f64)\b")


@pytest.mark.parametrize(
    "requirements, error, message",
    [
        (
            [{"count": -1}],
            hw.InvalidArgumentError,
            "invalid argument: demand[0]: invalid value: integer `-1`, expected a non-negative int",
        ),
        (
            [{"count": 1}, {"count": 2.5}],
            TypeError,
            "demand[1]: invalid type: floating point `2.5`, expected a non-negative int",
        ),
        (
            [{"labels": {"a": 1}}],
            TypeError,
            "demand[0]: invalid type: integer `1`, expected a string",
        ),
        (
            [{"resources": {"gpu": "x"}}],
            hw.InvalidArgumentError,
            "invalid argument: demand[0]: unknown field `gpu`, expected one of `cpu_cores`, "
            "`memory_bytes`, `disk_bytes`, `gpu_count`, `gpu_type`",
        ),
        (
            [{"resources": {"gpu_count": 2**32}, "count": 1}],
            hw.InvalidArgumentError,
            "invalid argument: demand[0]: invalid value: integer `4294967296`, "
            "expected a non-negative int up to 4294967295",
        ),
        (
            [{"resources": {"memory_bytes": -5}, "count": 1}],
            hw.InvalidArgumentError,
            "invalid argument: demand[0]: invalid value: integer `-5`, expected a non-negative int",
        ),
        (
            [{"resources": {"cpu_cores": "x"}, "count": 1}],
            TypeError,
            'demand[0]: invalid type: string "x", expected a number',
        ),
        (
            [{"resources": {"cpu_cores": float("nan")}, "count": 1}],
            hw.InvalidArgumentError,
            "invalid argument: demand[0]: nan is not a finite number",
        ),
        (
            [{"count": 1, "labels": ["a"]}],
            TypeError,
            "demand[0]: invalid type: sequence, expected a map",
        ),
        (
            [{"count": 1, "architecture": 3}],
            TypeError,
            "demand[0]: invalid type: integer `3`, expected a string",
        ),
        (
            [{"count": 1, "architecture": "sparc"}],
            hw.InvalidArgumentError,
            'invalid argument: demand[0]: unknown architecture "sparc", expected one of amd64, '
            "arm64, arm (or x86_64, aarch64)",
        ),
    ],
    ids=[
        "negative count",
        "float count",
        "int label",
        "unknown resource",
        "gpu_count beyond 32 bits",
        "negative memory",
        "str cpu",
        "nan cpu",
        "list labels",
        "int architecture",
        "unknown architecture",
    ],
)
def test_demand_errors_speak_python(requirements: list[Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as raised:
        hw.Demand(requirements)
    assert type(raised.value) is error and str(raised.value) == message
    assert not RUST_LEAKS.search(message)


def test_a_cyclic_requirement_is_refused() -> None:
    requirement: dict[str, Any] = {"count": 1}
    requirement["labels"] = requirement
    with pytest.raises(hw.InvalidArgumentError, match="too deep"):
        hw.Demand([requirement])


def test_pool_priority_and_interruption_deadline_keep_the_number_rules(
    manager: hw.LifecycleManager,
) -> None:
    with pytest.raises(TypeError):
        hw.Pool("a", "spot", GPU, priority=True)
    with pytest.raises(hw.InvalidArgumentError):
        hw.Pool("a", "spot", GPU, priority=2**40)
    with pytest.raises(hw.InvalidArgumentError):
        hw.Pool("a", "spot", GPU, priority=2**80)
    assert hw.Pool("a", "spot", GPU, priority=-(2**31)).priority == -(2**31)
    with pytest.raises(TypeError):
        manager.notify_interruption("00000000-0000-4000-8000-000000000001", True)
    with pytest.raises(hw.InvalidArgumentError):
        manager.notify_interruption("00000000-0000-4000-8000-000000000001", 10**400)


def test_pool_values_and_validation() -> None:
    p = hw.Pool("gpu-spot", "spot", GPU, priority=10, max_workers=8, scale_down_cooldown=120)
    assert (p.name, p.provider_id, p.priority, p.max_workers, p.min_ready) == ("gpu-spot", "spot", 10, 8, 0)
    assert p.scale_up_cooldown == 10.0 and p.scale_down_cooldown == 120.0
    assert p.template == GPU
    assert hw.Pool("a", "spot", GPU).max_workers is None
    assert p == hw.Pool("gpu-spot", "spot", GPU, priority=10, max_workers=8, scale_down_cooldown=120)
    assert "gpu-spot" in repr(p)
    with pytest.raises(hw.InvalidArgumentError):
        hw.Pool("no spaces", "spot", GPU)
    with pytest.raises(hw.InvalidArgumentError):
        hw.Pool("a", "spot", GPU, min_ready=3, max_workers=2)
    with pytest.raises(hw.InvalidArgumentError):
        hw.Pool("a", "spot", hw.WorkerSpec("x", labels={"hodei.pool": "b"}))


@pytest.mark.parametrize(
    "call, says",
    [
        (lambda: hw.Pool("no spaces", "spot", GPU), "invalid pool name"),
        (lambda: hw.Pool("a", "spot", GPU, min_ready=3, max_workers=2), "min_ready"),
        (lambda: hw.Registry().find(architecture="sparc"), "unknown architecture"),
        (lambda: hw.Registry().claim("j", architecture="sparc"), "unknown architecture"),
    ],
    ids=["pool name", "pool sizes", "find architecture", "claim architecture"],
)
def test_invalid_pools_and_architectures_say_invalid_argument_once(
    call: Callable[[], object], says: str
) -> None:
    with pytest.raises(hw.InvalidArgumentError) as info:
        call()
    message = str(info.value)
    assert says in message
    assert message.count("invalid argument") == 1, message


def test_fallback_unschedulable_and_interruption(
    manager: hw.LifecycleManager, registry: hw.Registry, clock: hw.ManualClock, spot: Cloud, ondemand: Cloud
) -> None:
    assert [p.name for p in manager.pools()] == ["gpu-spot", "gpu-ondemand"]
    gpu_jobs = hw.Demand([{"labels": {"gpu": "a100"}, "count": 2}])

    spot.fail = True
    report = manager.tick(gpu_jobs)
    assert report.provisioned == [] and len(report.provision_failures) == 1
    assert "no g5.xlarge spot capacity" in report.provision_failures[0].error
    clock.advance(1)
    report = manager.tick(gpu_jobs)
    assert len(report.provisioned) == 2 and len(ondemand.created) == 2
    plan = report.pools
    assert plan is not None
    by_name = {d.pool: d for d in plan.pools}
    assert by_name["gpu-spot"].blocked == "no_capacity"
    assert "spilled from gpu-spot (no capacity, retry in 4 s)" in by_name["gpu-ondemand"].explanation
    assert any(line.startswith("gpu-ondemand +2") for line in report.decisions)
    # The registry counts each pool's workers per state (what the manager's tick reads).
    by_pool = registry.stats().by_pool
    assert list(by_pool) == ["gpu-ondemand"]
    assert by_pool["gpu-ondemand"][hw.WorkerState.CREATING] == 2
    assert sum(by_pool["gpu-ondemand"].values()) == 2
    assert "by_pool={'gpu-ondemand': {" in repr(registry.stats())
    assert hw.POOL_LABEL == "hodei.pool"
    assert len(registry.find(labels={hw.POOL_LABEL: "gpu-ondemand"})) == 2

    report = manager.tick(hw.Demand([{"labels": {"gpu": "h100"}, "count": 1}]))
    assert [u.reason for u in report.unschedulable] == ["no pool offers label gpu=h100"]
    assert report.unschedulable[0].description == "gpu=h100"
    assert manager.plan_pools(hw.Demand([{"architecture": "arm64", "count": 1}])).unschedulable[0].reason == (
        "no pool offers architecture arm64"
    )
    # An alias reads as it does in WorkerSpec(architecture=...).
    assert manager.plan_pools(hw.Demand([{"architecture": "aarch64", "count": 1}])).unschedulable[0].reason == (
        "no pool offers architecture arm64"
    )

    # An interruption notice on a busy worker: it drains; at the deadline its job is lost.
    worker_id = report.provisioned[0].worker_id if report.provisioned else ondemand.created[0]
    registry.update_state(worker_id, hw.WorkerState.READY)
    registry.claim("train-1", labels={"gpu": "a100"})
    worker = manager.notify_interruption(worker_id, clock.now() + 60)
    assert worker.state == hw.WorkerState.DRAINING
    clock.advance(61)
    report = manager.tick(0)
    assert [(j.worker_id, j.job_id) for j in report.lost_jobs] == [(worker_id, "train-1")]
    assert [(t.worker_id, t.reason) for t in report.terminated] == [
        (worker_id, hw.TerminationReason.INTERRUPTED)
    ]
    # Its replacement is demand of its own, after the host's (none here): the plan names the
    # index its other lists use.
    plan = report.pools
    assert plan is not None
    assert [(r.requirement, r.pool, r.count) for r in plan.replacements] == [(0, "gpu-ondemand", 1)]
    assert "gpu=a100" in plan.replacements[0].description
    served = [s.requirement for d in plan.pools for s in d.serves]
    assert 0 in served
    assert manager.plan_pools(gpu_jobs).replacements == []
    with pytest.raises(hw.WorkerNotFoundError):
        manager.notify_interruption(worker_id, clock.now() + 60)

    assert len(manager.remove_pool("gpu-ondemand")) >= 1
    with pytest.raises(hw.InvalidArgumentError):
        manager.remove_pool("gpu-ondemand")


def test_tick_with_a_number_still_works_and_bad_pools_are_refused(
    registry: hw.Registry, spot: Cloud
) -> None:
    m = hw.LifecycleManager(registry, hw.LifecycleConfig(min_ready_workers=0))
    m.register_provider(spot)
    m.set_scaling_target("spot", hw.WorkerSpec("img"))
    assert len(m.tick(2).provisioned) == 2
    assert m.tick().pools is None
    with pytest.raises(hw.ProviderNotFoundError):
        m.set_pools([hw.Pool("a", "nope", GPU)])
    with pytest.raises(hw.InvalidArgumentError):
        m.set_pools([hw.Pool("a", "spot", GPU), hw.Pool("a", "spot", GPU)])
    with pytest.raises(TypeError):
        m.tick("3")  # type: ignore[arg-type]
    assert m.pools() == []


def test_set_pools_reads_any_sequence_and_refuses_the_rest(registry: hw.Registry, spot: Cloud) -> None:
    """A sequence of the caller's is read item by item (under the module's guard against
    interpreter exit: test_shutdown.py); the errors are pyo3's for a list of Pool."""
    m = hw.LifecycleManager(registry)
    m.register_provider(spot)
    pool = hw.Pool("a", "spot", GPU)

    class Pools:
        def __init__(self, *items: object) -> None:
            self.items = items

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, index: int) -> object:
            return self.items[index]

    assert m.set_pools(Pools(pool)) == []  # type: ignore[arg-type]
    assert [p.name for p in m.pools()] == ["a"]
    with pytest.raises(TypeError, match="^'int' object is not an instance of 'Pool'"):
        m.set_pools(Pools(1))  # type: ignore[arg-type]
    with pytest.raises(hw.InvalidArgumentError, match="two pools are named a"):
        m.set_pools(Pools(pool, pool))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^Can't extract `str` to `Vec`"):
        m.set_pools("a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^'dict' object is not an instance of 'Sequence'"):
        m.set_pools({"a": pool})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^'list_iterator' object is not an instance of 'Sequence'"):
        m.set_pools(iter([pool]))  # type: ignore[arg-type]
    assert [p.name for p in m.pools()] == ["a"]


def test_claim_by_fit(registry: hw.Registry) -> None:
    small = registry.register("k8s", "kubernetes", "pod-1", hw.WorkerSpec("x", resources=hw.Resources(cpu_cores=2)))
    registry.update_state(small.id, hw.WorkerState.READY)
    gpu = registry.register("ec2", "ec2", "i-1", GPU)
    registry.update_state(gpu.id, hw.WorkerState.READY)
    arm = registry.register(
        "k8s", "kubernetes", "pod-2", hw.WorkerSpec("x", resources=hw.Resources(cpu_cores=8), architecture="arm64")
    )
    registry.update_state(arm.id, hw.WorkerState.READY)

    needs_gpu = hw.Resources(cpu_cores=4, gpu_count=1, gpu_type="a100")
    claimed = registry.claim("train", fits=needs_gpu)
    assert claimed is not None and claimed.id == gpu.id
    assert registry.claim("train-2", fits=needs_gpu) is None
    assert [w.id for w in registry.find(fits=hw.Resources(cpu_cores=4), states=hw.WorkerState.READY)] == [arm.id]
    assert registry.claim("build", fits=hw.Resources(cpu_cores=4), architecture="amd64") is None
    claimed = registry.claim("lint", architecture="amd64")
    assert claimed is not None and claimed.id == small.id
    with pytest.raises(hw.InvalidArgumentError):
        registry.find(architecture="sparc")


def test_a_recovered_pool_takes_its_demand_back(
    manager: hw.LifecycleManager, registry: hw.Registry, clock: hw.ManualClock, spot: Cloud, ondemand: Cloud
) -> None:
    gpu_jobs = hw.Demand([{"labels": {"gpu": "a100"}, "count": 2}])
    spot.fail = True
    manager.tick(gpu_jobs)
    clock.advance(1)
    report = manager.tick(gpu_jobs)
    assert len(ondemand.created) == 2
    for w in report.provisioned:
        registry.update_state(w.worker_id, hw.WorkerState.READY)
    # Spot is back; past on-demand's scale-down cooldown its idle workers give the demand back,
    # make before break: they keep serving until spot's new workers are up.
    spot.fail = False
    clock.advance(61)
    report = manager.tick(gpu_jobs)
    assert len(spot.created) == 2
    plan = report.pools
    assert plan is not None
    by_name = {d.pool: d for d in plan.pools}
    assert [(t.source, t.target, t.count) for t in by_name["gpu-spot"].taken_back] == [
        ("gpu-ondemand", "gpu-spot", 2)
    ]
    assert by_name["gpu-ondemand"].given_back == by_name["gpu-spot"].taken_back
    assert by_name["gpu-ondemand"].explanation.endswith(
        "; gives back 2 job(s) of gpu=a100 to recovered gpu-spot once its new workers are up"
    )
    assert report.terminated == []
    # Spot's workers up: on-demand's idle ones retire as surplus.
    for w in report.provisioned:
        registry.update_state(w.worker_id, hw.WorkerState.READY)
    clock.advance(1)
    report = manager.tick(gpu_jobs)
    assert len(report.terminated) == 2
    assert hw.WorkerState.READY not in {w.state for w in registry.find(labels={hw.POOL_LABEL: "gpu-ondemand"})}


class SlowCloud(Cloud):
    """A provider whose creates wait until the test lets them go on."""

    def __init__(self, provider_id: str) -> None:
        super().__init__(provider_id)
        self.creating = threading.Event()
        self.go_on = threading.Event()

    def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
        self.creating.set()
        self.go_on.wait()
        return super().create_worker(worker_id, spec)


def test_a_worker_you_provision_for_a_pool_removed_meanwhile_is_taken_out_of_service(
    registry: hw.Registry, clock: hw.ManualClock
) -> None:
    slow = SlowCloud("slow")
    manager = hw.LifecycleManager(registry, hw.LifecycleConfig(min_ready_workers=0, heartbeat_timeout=600))
    manager.register_provider(slow)
    manager.set_pools([hw.Pool("gpu", "slow", GPU)])
    # Your own worker of the pool (its spec carries the pool's label), still being created by
    # one thread when another removes the pool.
    spec = hw.WorkerSpec(
        "trainer",
        labels={"gpu": "a100", hw.POOL_LABEL: "gpu"},
        resources=hw.Resources(cpu_cores=16, gpu_count=1, gpu_type="a100"),
    )
    provisioned: list[hw.Worker] = []
    host = threading.Thread(target=lambda: provisioned.append(manager.provision_worker("slow", spec)))
    host.start()
    slow.creating.wait()
    assert manager.remove_pool("gpu") == []  # nothing registered yet
    slow.go_on.set()
    host.join()
    [worker] = provisioned
    registry.update_state(worker.id, hw.WorkerState.READY)  # its agent reports in

    clock.advance(1)
    report = manager.tick(0)
    after = registry.get(worker.id)
    assert after is not None and after.state == hw.WorkerState.DRAINING, report.decisions
