"""The lifecycle manager with providers written in Python, as a host would write them."""

from __future__ import annotations

import itertools
import json
import re
from datetime import timedelta
from typing import Any, Mapping

import pytest

import hodei_workers as hw


class FakeCloud:
    """A provider whose 'instances' live in a dict; it can be told to fail."""

    provider_type = "docker"

    def __init__(self, provider_id: str = "fake-cloud") -> None:
        self.provider_id = provider_id
        self.instances: dict[str, str] = {}  # resource id -> image
        self.destroyed: list[str] = []
        self.fail_create: BaseException | None = None
        self.fail_destroy: BaseException | None = None
        self.given_ids: list[str] = []  # the worker ids create_worker was asked for
        self._ids = itertools.count(1)

    def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> hw.Created:
        self.given_ids.append(worker_id)
        if self.fail_create is not None:
            raise self.fail_create
        resource_id = f"i-{next(self._ids)}"
        self.instances[resource_id] = spec.image
        return resource_id, {"image": spec.image}

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        if self.fail_destroy is not None:
            raise self.fail_destroy
        if handle.resource_id not in self.instances:
            raise KeyError(handle.resource_id)  # already gone: the engine counts it destroyed
        del self.instances[handle.resource_id]
        self.destroyed.append(handle.resource_id)

    def list_workers(self) -> list[str]:
        return list(self.instances)


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud()


@pytest.fixture
def manager(registry: hw.Registry, cloud: FakeCloud) -> hw.LifecycleManager:
    config = hw.LifecycleConfig(
        heartbeat_timeout=60,
        health_check_interval=timedelta(seconds=10),
        max_workers=5,
        min_ready_workers=1,
        scale_up_cooldown=0.001,
        scale_down_cooldown=0.001,
    )
    manager = hw.LifecycleManager(registry, config)
    manager.register_provider(cloud)
    return manager


def report_in(registry: hw.Registry, worker_id: str) -> None:
    """What a host does when a new worker's agent calls in."""
    registry.update_state(worker_id, hw.WorkerState.READY)
    registry.heartbeat(worker_id)


def test_tick_provisions_then_health_check_retires_a_silent_worker(
    registry: hw.Registry, clock: hw.ManualClock, cloud: FakeCloud, manager: hw.LifecycleManager
) -> None:
    events = registry.subscribe()
    spec = hw.WorkerSpec("runner:1", labels={"pool": "ci"})
    manager.set_scaling_target("fake-cloud", spec)
    assert manager.scaling_target() == ("fake-cloud", spec)

    report = manager.tick(pending_jobs=2)
    assert isinstance(report, hw.TickReport) and not report.skipped
    assert report.scaling is not None and report.scaling.provision == 3, report.decisions
    assert report.decisions[0] == report.scaling.explanation
    assert "pending 2" in report.scaling.explanation
    assert len(report.provisioned) == 3 == len(cloud.instances)
    assert {p.resource_id for p in report.provisioned} == set(cloud.instances)
    new = [registry.get(p.worker_id) for p in report.provisioned]
    assert all(w is not None and w.state is hw.WorkerState.CREATING for w in new)
    assert all(w is not None and w.metadata == {"image": "runner:1"} for w in new)
    assert all(w is not None and w.spec == spec for w in new)

    manager.clear_scaling_target()  # from here on this test is about health, not scaling
    for p in report.provisioned:
        report_in(registry, p.worker_id)
    first, second, third = (p.worker_id for p in report.provisioned)
    assert registry.assign_to_job(first, "job-1").state is hw.WorkerState.BUSY

    # `first` goes silent while holding a job; the others keep heartbeating.
    for _ in range(7):
        clock.advance(10)
        manager.process_heartbeat(second)
        manager.process_heartbeat(third)
        report = manager.tick(pending_jobs=0)
        if report.unhealthy:
            break
    assert [u.worker_id for u in report.unhealthy] == [first]
    assert report.unhealthy[0].reason is hw.TerminationReason.UNHEALTHY
    assert report.unhealthy[0].state is hw.WorkerState.BUSY
    assert [(j.worker_id, j.job_id) for j in report.lost_jobs] == [(first, "job-1")]
    assert [t.worker_id for t in report.terminated] == [first]
    assert first not in registry and len(cloud.destroyed) == 1

    kinds = [e.kind for e in events.drain()]
    assert "provision_requested" in kinds and "unhealthy_detected" in kinds
    assert "job_lost" in kinds and "unregistered" in kinds

    stats = manager.stats()
    assert stats.provisioned_total == 3 and stats.unhealthy_total == 1
    assert stats.lost_jobs_total == 1 and stats.terminated_total == 1
    assert stats.registry == registry.stats() and stats.providers == 1
    data = json.loads(report.to_json())
    assert data["lost_jobs"][0]["job_id"] == "job-1"


def test_a_tick_that_did_not_panic_says_panicked_none(
    registry: hw.Registry, clock: hw.ManualClock, cloud: FakeCloud, manager: hw.LifecycleManager
) -> None:
    """``TickReport.panicked`` is the message of a panic that cut the tick short (a bug of a
    Rust registry, clock or lease; the report then holds what the tick did before it). No
    Python code can cause one: a provider's exception is a provider failure (the test below),
    and the registry, clock and lease of this module are the library's own. So only a normal
    tick's value is checked here: None, typed, in the JSON form (Rust's
    ``flaky_registry::a_tick_that_panics_after_its_health_check_returns_the_jobs_it_lost``
    covers a panicking one)."""
    cloud.fail_create = RuntimeError("quota exceeded")
    manager.set_scaling_target("fake-cloud", hw.WorkerSpec("runner:1"))
    report = manager.tick(pending_jobs=1)
    assert report.provision_failures, report.decisions
    assert report.panicked is None
    assert "panicked" in dir(report) and "panicked=None" in repr(report)
    assert json.loads(report.to_json())["panicked"] is None


def test_a_provider_that_raises_is_a_provider_failure_not_a_crash(
    registry: hw.Registry, clock: hw.ManualClock, cloud: FakeCloud, manager: hw.LifecycleManager
) -> None:
    events = registry.subscribe()
    cloud.fail_create = RuntimeError("quota exceeded in eu-west-1")
    manager.set_scaling_target("fake-cloud", hw.WorkerSpec("runner:1"))

    report = manager.tick(pending_jobs=4)
    assert report.provisioned == []
    [failure] = report.provision_failures
    assert failure.provider_id == "fake-cloud" and failure.kind == "failed"
    assert "RuntimeError" in failure.error and "quota exceeded in eu-west-1" in failure.error
    assert failure.consecutive_failures == 1 and failure.backoff_until > clock.now()
    assert any("quota exceeded" in line for line in report.decisions)
    assert [b.provider_id for b in report.provider_backoff] == ["fake-cloud"]
    failed_events = [e for e in events.drain() if isinstance(e, hw.ProvisionFailed)]
    assert failed_events and "quota exceeded" in failed_events[0].error

    # Backing off: the next tick does not hammer the broken provider.
    again = manager.tick(pending_jobs=4)
    assert again.provision_failures == [] and again.provisioned == []

    # A direct call is always attempted, and raises the provider's failure.
    with pytest.raises(hw.ProviderError) as info:
        manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    assert info.value.provider_id == "fake-cloud" and "quota exceeded" in str(info.value)

    # Once the cloud recovers and the back-off passes, scaling resumes.
    cloud.fail_create = None
    clock.advance(60)
    recovered = manager.tick(pending_jobs=4)
    assert len(recovered.provisioned) == 5, recovered.decisions
    assert manager.provider_backoff() == []


def test_failed_destroys_are_retried_and_nothing_leaks(
    registry: hw.Registry, clock: hw.ManualClock, cloud: FakeCloud, manager: hw.LifecycleManager
) -> None:
    worker = manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    report_in(registry, worker.id)
    cloud.fail_destroy = ConnectionError("docker daemon unreachable")

    result = manager.terminate_worker(worker.id, hw.TerminationReason.REQUESTED)
    assert isinstance(result, hw.CleanupResult) and result.terminated == []
    [failure] = result.failed
    assert failure.worker_id == worker.id and failure.attempts == 1
    assert "ConnectionError" in failure.error and failure.next_retry_at > clock.now()
    still = registry.get(worker.id)
    assert still is not None and still.state is hw.WorkerState.TERMINATING
    [(pending_id, attempts, _next_at)] = manager.pending_destroys()
    assert (pending_id, attempts) == (worker.id, 1)

    cloud.fail_destroy = None
    clock.advance(5)
    report = manager.tick()
    assert [t.worker_id for t in report.terminated] == [worker.id]
    assert report.terminated[0].reason is hw.TerminationReason.REQUESTED
    assert worker.id not in registry and cloud.instances == {}
    assert manager.pending_destroys() == []


def test_interruptions_lists_each_notice_with_its_deadline(
    registry: hw.Registry, clock: hw.ManualClock, manager: hw.LifecycleManager
) -> None:
    assert manager.interruptions() == []
    spot = manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    other = manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    report_in(registry, spot.id)
    report_in(registry, other.id)
    deadline = clock.now() + 120
    assert manager.notify_interruption(spot.id, deadline).state is hw.WorkerState.DRAINING
    assert manager.interruptions() == [(spot.id, deadline)]
    # A later notice about the same instance keeps the earlier deadline; the list is in worker
    # id order.
    manager.notify_interruption(spot.id, deadline + 60)
    manager.notify_interruption(other.id, deadline + 30)
    assert manager.interruptions() == sorted([(spot.id, deadline), (other.id, deadline + 30)])
    [(worker_id, at)] = [n for n in manager.interruptions() if n[0] == spot.id]
    assert isinstance(worker_id, str) and isinstance(at, float)
    # Leader state: a manager that stepped down forgets the notices.
    manager.step_down()
    assert manager.interruptions() == []


def test_pending_orphans_lists_an_orphan_whose_destroy_failed(
    registry: hw.Registry, clock: hw.ManualClock, cloud: FakeCloud
) -> None:
    config = hw.LifecycleConfig(min_ready_workers=0, destroy_retry_initial=5)
    manager = hw.LifecycleManager(registry, config)
    manager.register_provider(cloud)
    assert manager.pending_orphans() == []
    kept = manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    cloud.instances["i-orphan"] = "left over"
    cloud.fail_destroy = RuntimeError("instance is locked")
    found = manager.reconcile()
    assert [o.resource_id for o in found.orphans] == ["i-orphan"]
    [(provider_id, worker_id, resource_id, attempts, next_at)] = manager.pending_orphans()
    # Its provider, the id the engine made for the listing (no record's), the instance, one
    # failed attempt, the next one after the back-off.
    assert provider_id == "fake-cloud"
    assert isinstance(worker_id, str) and len(worker_id) == 36 and worker_id != kept.id
    assert worker_id not in registry
    assert (resource_id, attempts, next_at) == ("i-orphan", 1, clock.now() + 5)
    # The retry fails again: two attempts, the back-off doubled.
    clock.advance(6)
    manager.tick()
    [(_, _, _, attempts, next_at)] = manager.pending_orphans()
    assert (attempts, next_at) == (2, clock.now() + 10)
    # Once destroyed it is no longer pending.
    cloud.fail_destroy = None
    clock.advance(11)
    manager.tick()
    assert manager.pending_orphans() == []
    assert "i-orphan" not in cloud.instances and kept.id in registry


def test_pending_orphans_name_their_provider_so_equal_resource_ids_are_told_apart(
    registry: hw.Registry, clock: hw.ManualClock
) -> None:
    # Two clusters, one pod name: each provider lists an instance "runner-0" no record knows,
    # and both destroys fail.
    manager = hw.LifecycleManager(
        registry, hw.LifecycleConfig(min_ready_workers=0, destroy_retry_initial=5)
    )
    east, west = FakeCloud("east"), FakeCloud("west")
    for cloud in (east, west):
        manager.register_provider(cloud)
        cloud.instances["runner-0"] = "left over"
        cloud.fail_destroy = RuntimeError("api down")
    assert len(manager.reconcile().orphans) == 2
    pending = manager.pending_orphans()
    # By provider, then instance; the provider id first.
    assert [(p, r, a, t) for p, _, r, a, t in pending] == [
        ("east", "runner-0", 1, clock.now() + 5),
        ("west", "runner-0", 1, clock.now() + 5),
    ]
    assert pending[0][1] != pending[1][1]
    # Each is destroyed with its own provider, and then no longer pending.
    east.fail_destroy = None
    clock.advance(6)
    manager.tick()
    assert [(p, r) for p, _, r, _, _ in manager.pending_orphans()] == [("west", "runner-0")]
    assert "runner-0" not in east.instances and "runner-0" in west.instances


def test_already_gone_instances_count_as_destroyed(
    registry: hw.Registry, cloud: FakeCloud, manager: hw.LifecycleManager
) -> None:
    worker = manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    cloud.instances.clear()  # someone deleted the container behind our back
    result = manager.terminate_worker(worker.id, "requested")
    assert [t.worker_id for t in result.terminated] == [worker.id]
    assert result.failed == [] and worker.id not in registry


def test_busy_workers_lose_their_job_visibly_and_drain_gracefully(
    registry: hw.Registry, manager: hw.LifecycleManager
) -> None:
    a = manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    b = manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    for w in (a, b):
        report_in(registry, w.id)
        registry.assign_to_job(w.id, f"job-{w.resource_id}")

    killed = manager.terminate_worker(a.id)
    assert [(j.worker_id, j.job_id) for j in killed.lost_jobs] == [(a.id, f"job-{a.resource_id}")]

    drained = manager.drain_worker(b.id)
    assert drained.state is hw.WorkerState.DRAINING and drained.current_job is not None
    assert manager.cleanup_workers().terminated == [], "a draining worker finishes its job first"
    registry.release_from_job(b.id)
    done = manager.cleanup_workers()
    assert [(t.worker_id, t.reason) for t in done.terminated] == [
        (b.id, hw.TerminationReason.DRAINED)
    ]


def test_reconcile_destroys_orphans_and_expires_vanished_records(
    registry: hw.Registry, clock: hw.ManualClock, cloud: FakeCloud, manager: hw.LifecycleManager
) -> None:
    kept = manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    vanished = manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    del cloud.instances[vanished.resource_id]
    cloud.instances["i-orphan"] = "left over from a crash"

    class NoListing:
        provider_id = "no-listing"
        provider_type = "custom:nomad"

        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
            return "alloc-1"

        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            pass

    manager.register_provider(NoListing())
    assert manager.providers() == ["fake-cloud", "no-listing"]

    clock.advance(1)
    report = manager.reconcile()
    assert report.checked == ["fake-cloud"] and report.unsupported == ["no-listing"]
    assert [(o.resource_id, o.error) for o in report.orphans] == [("i-orphan", None)]
    assert report.vanished == [vanished.id]
    assert "i-orphan" not in cloud.instances
    assert kept.id in registry and vanished.id not in registry


def test_the_ticks_reconcile_every_reconcile_interval(
    registry: hw.Registry, clock: hw.ManualClock, cloud: FakeCloud
) -> None:
    assert hw.LifecycleConfig().reconcile_interval == 600.0
    config = hw.LifecycleConfig(min_ready_workers=0, reconcile_interval=timedelta(minutes=2))
    assert config.reconcile_interval == 120.0
    assert json.loads(config.to_json())["reconcile_interval"] == 120
    assert "reconcile_interval=120.0" in repr(config)
    assert hw.LifecycleConfig(reconcile_interval=0).reconcile_interval == 0.0  # disabled
    with pytest.raises(hw.InvalidArgumentError, match="reconcile_interval"):
        hw.LifecycleConfig(reconcile_interval=1e15)
    manager = hw.LifecycleManager(registry, config)
    manager.register_provider(cloud)
    # An instance no record knows appears (a create that returned to a replica which had lost
    # its lease): the host only ticks, and the ticks destroy it 120 s after the manager began.
    cloud.instances["i-orphan"] = "left over"
    clock.advance(60)
    assert not any("reconcile" in d for d in manager.tick().decisions)
    assert "i-orphan" in cloud.instances
    clock.advance(60)
    report = manager.tick()
    assert cloud.destroyed == ["i-orphan"], report.decisions
    assert (
        "periodic reconcile: 0 Terminating adopted, 1 orphan instances destroyed, 0 vanished"
        in report.decisions
    )


def test_an_orphan_the_host_registers_after_a_failed_destroy_is_not_destroyed_by_the_ticks(
    registry: hw.Registry, clock: hw.ManualClock, cloud: FakeCloud
) -> None:
    # list_workers yields resource ids only: the engine knows no worker id for them. Before,
    # the ticks' retry of a failed orphan destroy looked for a record under a worker id made
    # up for the listing, never found the one the host registered, and destroyed its instance.
    config = hw.LifecycleConfig(min_ready_workers=0, destroy_retry_initial=5)
    manager = hw.LifecycleManager(registry, config)
    manager.register_provider(cloud)
    cloud.instances["i-orphan"] = "left over"
    cloud.fail_destroy = RuntimeError("instance is locked")
    found = manager.reconcile()
    assert [o.resource_id for o in found.orphans] == ["i-orphan"]
    assert found.orphans[0].error is not None
    cloud.fail_destroy = None
    # Its agent calls in after all, and the host registers the instance under the agent's id.
    agent = registry.register("fake-cloud", "docker", "i-orphan").id
    report_in(registry, agent)
    decisions: list[str] = []
    for _ in range(3):  # past the retry's back-off (5 s)
        clock.advance(10)
        registry.heartbeat(agent)
        report = manager.tick()
        decisions += report.decisions
        assert report.failed == [], decisions
    assert cloud.destroyed == [], decisions
    assert "i-orphan" in cloud.instances
    worker = registry.get(agent)
    assert worker is not None and worker.state is hw.WorkerState.READY


def test_a_held_reconcile_is_in_the_tick_report_and_the_metrics(
    registry: hw.Registry, clock: hw.ManualClock, cloud: FakeCloud
) -> None:
    config = hw.LifecycleConfig(min_ready_workers=0, reconcile_interval=timedelta(minutes=2))
    manager = hw.LifecycleManager(registry, config)
    manager.register_provider(cloud)
    # Three instances no record knows, no record: more than the brake allows (1).
    for i in range(3):
        cloud.instances[f"theirs-{i}"] = "not ours"
    clock.advance(120)
    report = manager.tick()
    assert cloud.destroyed == [], report.decisions
    assert len(report.reconcile_held) == 1, report.decisions
    hold = report.reconcile_held[0]
    assert isinstance(hold, hw.ReconcileHold)
    assert (hold.provider_id, hold.kind, hold.held, hold.records, hold.allowed) == (
        "fake-cloud",
        "orphans",
        3,
        0,
        1,
    )
    assert json.loads(hold.to_json())["kind"] == "orphans"
    assert (
        'hodei_workers_reconcile_holds_total{provider="fake-cloud",kind="orphans"} 1'
        in manager.metrics_text()
    )


def test_scaling_predicates_and_plan(
    registry: hw.Registry, clock: hw.ManualClock, manager: hw.LifecycleManager
) -> None:
    assert manager.should_scale_up(1), "no ready worker and a job pending"
    assert not manager.should_scale_up(0)
    assert not manager.should_scale_down()
    plan = manager.plan_scaling(3)
    assert plan.provision == 0, "no scaling target: nothing is provisioned"
    assert plan.wanted == 4 and plan.pending_jobs == 3
    manager.set_scaling_target("fake-cloud", hw.WorkerSpec("runner:1"))
    plan = manager.plan_scaling(30)
    assert plan.provision == 5 and plan.total == 0
    assert "max_workers 5" in " ".join(plan.limits) + plan.explanation
    assert "ScalingPlan(" in repr(plan)

    for _ in range(5):
        report_in(registry, manager.provision_worker("fake-cloud", hw.WorkerSpec("r")).id)
    with pytest.raises(hw.CapacityExceededError):
        manager.provision_worker("fake-cloud", hw.WorkerSpec("r"))
    assert manager.should_scale_down()
    clock.advance(1)
    report = manager.tick(pending_jobs=0)
    assert report.scaling is not None and len(report.scaling.scale_down) == 4
    assert len(report.terminated) == 4
    assert all(t.reason is hw.TerminationReason.SCALED_DOWN for t in report.terminated)
    assert registry.stats().ready == 1, "min_ready_workers stay warm"

    manager.clear_scaling_target()
    assert manager.scaling_target() is None and manager.tick().scaling is None


def test_a_provider_may_call_back_into_the_registry(registry: hw.Registry) -> None:
    """No lock is held while a provider runs, and the GIL is free for it: no deadlock."""
    manager = hw.LifecycleManager(registry)

    class Curious(FakeCloud):
        seen: list[int] = []

        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> hw.Created:
            self.seen.append(len(registry))
            registry.find(states=[hw.WorkerState.CREATING])
            manager.stats()
            return super().create_worker(worker_id, spec)

    curious = Curious("curious")
    manager.register_provider(curious)
    manager.provision_worker("curious", hw.WorkerSpec("img"))
    manager.provision_worker("curious", hw.WorkerSpec("img"))
    assert curious.seen == [0, 1] and len(registry) == 2


def test_keyboard_interrupt_in_a_provider_reaches_the_caller(
    registry: hw.Registry, cloud: FakeCloud, manager: hw.LifecycleManager
) -> None:
    manager.set_scaling_target("fake-cloud", hw.WorkerSpec("runner:1"))
    cloud.fail_create = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        manager.tick(pending_jobs=1)
    cloud.fail_create = None
    assert len(registry) == 0 and manager.stats().in_flight == 0, "the engine stayed consistent"


def test_an_interrupted_create_does_not_back_the_provider_off(
    registry: hw.Registry, clock: hw.ManualClock, cloud: FakeCloud, manager: hw.LifecycleManager
) -> None:
    # Ctrl-C during create_worker is not the provider's failure: the next tick provisions at
    # once, as if the interrupted one had never been tried.
    manager.set_scaling_target("fake-cloud", hw.WorkerSpec("runner:1"))
    cloud.fail_create = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt) as info:
        manager.tick(pending_jobs=1)
    [failure] = info.value.report.provision_failures  # type: ignore[attr-defined]
    assert failure.kind == "interrupted" and "KeyboardInterrupt" in failure.error
    assert failure.consecutive_failures == 0 and failure.backoff_until == clock.now()
    assert manager.provider_backoff() == []
    cloud.fail_create = None
    report = manager.tick(pending_jobs=1)
    assert report.provisioned and report.provision_failures == [], report.decisions

    # Nor does it lengthen a back-off under way: the count stays that of real failures.
    cloud.fail_create = RuntimeError("quota exceeded")
    with pytest.raises(hw.ProviderError):
        manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    [before] = manager.provider_backoff()
    cloud.fail_create = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    assert manager.provider_backoff() == [before]

class Unprintable(Exception):
    """An exception whose ``str()`` raises ``raises`` (Python's traceback printer shows it as
    ``<exception str() failed>``)."""

    def __init__(self, raises: BaseException) -> None:
        super().__init__()
        self.raises = raises

    def __str__(self) -> str:
        raise self.raises


def test_a_provider_exception_whose_str_raises_is_shown_as_python_shows_it(
    cloud: FakeCloud, manager: hw.LifecycleManager
) -> None:
    manager.set_scaling_target("fake-cloud", hw.WorkerSpec("runner:1"))
    cloud.fail_create = Unprintable(ValueError("no text"))
    [failure] = manager.tick(pending_jobs=1).provision_failures
    assert failure.error.startswith(
        "fake-cloud.create_worker raised Unprintable: <exception str() failed>"
    ), failure.error


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), SystemExit(3)])
def test_an_interrupt_raised_by_str_of_a_provider_exception_reaches_the_caller(
    registry: hw.Registry,
    cloud: FakeCloud,
    manager: hw.LifecycleManager,
    interrupt: BaseException,
) -> None:
    # Ctrl-C landing in the exception's __str__ is an interrupt like one in the provider
    # method: re-raised by the manager call, never swallowed into the failure's text.
    manager.set_scaling_target("fake-cloud", hw.WorkerSpec("runner:1"))
    cloud.fail_create = Unprintable(interrupt)
    with pytest.raises(type(interrupt)) as info:
        manager.tick(pending_jobs=1)
    assert info.value is interrupt
    [failure] = manager.last_report.provision_failures  # type: ignore[union-attr]
    assert "<exception str() failed> (interrupted)" in failure.error, failure.error
    cloud.fail_create = None
    assert len(registry) == 0 and manager.stats().in_flight == 0


class UnreadableMetadata(Mapping[str, str]):
    """Metadata whose reading raises ``raises``."""

    def __init__(self, raises: BaseException) -> None:
        self.raises = raises

    def __getitem__(self, key: str) -> str:
        raise KeyError(key)

    def __iter__(self) -> Any:
        raise self.raises

    def __len__(self) -> int:
        return 1

    def items(self) -> Any:
        raise self.raises


def test_an_unreadable_answer_whose_exception_str_raises(
    registry: hw.Registry, cloud: FakeCloud, manager: hw.LifecycleManager
) -> None:
    # The instance is destroyed (its resource id was read) and the text says what Python
    # would; an interrupt raised by that str() reaches the caller.
    answers = iter(
        [
            UnreadableMetadata(Unprintable(ValueError("x"))),
            UnreadableMetadata(Unprintable(KeyboardInterrupt())),
        ]
    )
    real_create = cloud.create_worker

    def create_worker(worker_id: str, spec: hw.WorkerSpec) -> Any:
        created = real_create(worker_id, spec)
        assert isinstance(created, tuple)
        return created[0], next(answers)

    cloud.create_worker = create_worker  # type: ignore[method-assign]
    with pytest.raises(hw.ProviderError) as info:
        manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    expected = 'raised ValueError: <exception str() failed>; its instance "i-1" was destroyed'
    assert expected in str(info.value), str(info.value)
    with pytest.raises(KeyboardInterrupt):
        manager.provision_worker("fake-cloud", hw.WorkerSpec("runner:1"))
    assert cloud.destroyed == ["i-1", "i-2"] and cloud.instances == {}
    assert len(registry) == 0 and manager.stats().in_flight == 0

def test_provider_shapes_are_checked(manager: hw.LifecycleManager) -> None:
    class NoCreate:
        provider_id = "x"
        provider_type = "docker"

        def destroy_worker(self, handle: object) -> None: ...

    class BadId(FakeCloud):
        def __init__(self) -> None:
            super().__init__()
            self.provider_id = 42  # type: ignore[assignment]

    class MethodIds:
        def provider_id(self) -> str:
            return "by-method"

        def provider_type(self) -> str:
            return "kubernetes"

        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
            return "pod-1"

        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            pass

    with pytest.raises(TypeError, match="create_worker"):
        manager.register_provider(NoCreate())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="provider_id"):
        manager.register_provider(BadId())
    with pytest.raises(hw.InvalidArgumentError):
        manager.register_provider(FakeCloud(provider_id=""))
    with pytest.raises(hw.InvalidArgumentError):
        manager.register_provider(FakeCloud())  # "fake-cloud" is registered already
    bad_type = FakeCloud("other")
    bad_type.provider_type = "podman"
    with pytest.raises(hw.InvalidArgumentError):
        manager.register_provider(bad_type)
    manager.register_provider(MethodIds())  # type: ignore[arg-type]
    assert "by-method" in manager.providers()
    manager.unregister_provider("by-method")
    with pytest.raises(hw.ProviderNotFoundError) as info:
        manager.unregister_provider("by-method")
    assert isinstance(info.value, LookupError) and info.value.provider_id == "by-method"


def test_an_exception_reading_the_provider_is_the_providers_own(
    manager: hw.LifecycleManager,
) -> None:
    """Only a missing member is a shape error: a bug in a property, or Ctrl-C landing in
    one, propagates as it was raised."""

    class Shape:
        provider_type = "docker"

        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
            return "i-1"

        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            pass

    class Buggy(Shape):
        @property
        def provider_id(self) -> str:
            settings: dict[str, str] = {}
            return settings["id"]

    class Interrupted(Shape):
        @property
        def provider_id(self) -> str:
            raise KeyboardInterrupt

    class LazyCreate(Shape):
        provider_id = "lazy"

        def __getattribute__(self, name: str) -> object:
            if name == "create_worker":
                raise SystemExit(3)
            return object.__getattribute__(self, name)

    with pytest.raises(KeyError):
        manager.register_provider(Buggy())
    with pytest.raises(KeyboardInterrupt):
        manager.register_provider(Interrupted())
    with pytest.raises(SystemExit):
        manager.register_provider(LazyCreate())
    assert manager.providers() == ["fake-cloud"]


def test_create_worker_is_given_the_new_workers_id(
    manager: hw.LifecycleManager, cloud: FakeCloud, registry: hw.Registry
) -> None:
    # The manager makes the id first, so the instance can start knowing it (its agent reports
    # in and heartbeats with it): the worker is registered under that very id.
    worker = manager.provision_worker("fake-cloud", hw.WorkerSpec("img"))
    assert cloud.given_ids == [worker.id]
    registry.update_state(cloud.given_ids[0], hw.WorkerState.READY)  # the agent reports in
    manager.process_heartbeat(cloud.given_ids[0])
    reported = registry.get(worker.id)
    assert reported is not None and reported.state == hw.WorkerState.READY
    # A failed create does not leave its id behind: the next one gets a new id.
    cloud.fail_create = RuntimeError("quota")
    with pytest.raises(hw.ProviderError):
        manager.provision_worker("fake-cloud", hw.WorkerSpec("img"))
    assert len(cloud.given_ids) == 2 and cloud.given_ids[1] != worker.id
    assert registry.get(cloud.given_ids[1]) is None


def test_create_worker_must_return_a_resource_id(
    registry: hw.Registry, manager: hw.LifecycleManager
) -> None:
    class Confused(FakeCloud):
        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> hw.Created:
            return 12345  # type: ignore[return-value]

    manager.register_provider(Confused("confused"))
    with pytest.raises(hw.ProviderError, match="resource id"):
        manager.provision_worker("confused", hw.WorkerSpec("img"))
    assert len(registry) == 0


def test_manager_bad_input(manager: hw.LifecycleManager) -> None:
    with pytest.raises(hw.InvalidArgumentError):
        manager.tick(-1)
    with pytest.raises(TypeError):
        manager.tick("3")  # type: ignore[arg-type]
    with pytest.raises(hw.ProviderNotFoundError):
        manager.provision_worker("nobody", hw.WorkerSpec("img"))
    with pytest.raises(hw.ProviderNotFoundError):
        manager.set_scaling_target("nobody", hw.WorkerSpec("img"))
    with pytest.raises(hw.WorkerNotFoundError):
        manager.process_heartbeat("2f1d0c4e-6b1a-4c52-9a57-0d1c2e3f4a5b")
    with pytest.raises(hw.InvalidArgumentError):
        manager.drain_worker("nope")
    with pytest.raises(TypeError):
        hw.LifecycleManager("registry")  # type: ignore[arg-type]


def test_lifecycle_config() -> None:
    config = hw.LifecycleConfig()
    assert (config.heartbeat_timeout, config.health_check_interval, config.startup_timeout) == (
        60.0, 30.0, 300.0,
    )
    assert (config.min_ready_workers, config.max_workers) == (1, 10)
    assert (config.scale_up_threshold, config.scale_down_threshold) == (5, 3)
    assert config.max_unhealthy_fraction == 0.55
    custom = hw.LifecycleConfig(heartbeat_timeout=timedelta(seconds=90), max_workers=50)
    assert custom.heartbeat_timeout == 90.0 and custom.max_workers == 50
    assert custom != config and custom == hw.LifecycleConfig(heartbeat_timeout=90, max_workers=50)
    assert hash(custom) == hash(hw.LifecycleConfig(heartbeat_timeout=90.0, max_workers=50))
    assert json.loads(custom.to_json())["max_workers"] == 50
    assert "heartbeat_timeout=90.0" in repr(custom)

    bad: list[Mapping[str, object]] = [
        {"min_ready_workers": 11},
        {"max_workers": 0},
        {"heartbeat_timeout": 0},
        {"max_unhealthy_fraction": 1.5},
        {"max_mass_expiry_hold": 0},
        {"max_workers": -1},
        {"destroy_retry_initial": 10, "destroy_retry_max": 5},
    ]
    for kwargs in bad:
        with pytest.raises(hw.InvalidArgumentError):
            hw.LifecycleConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hw.LifecycleConfig(max_workers="10")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hw.LifecycleConfig(10)  # type: ignore[call-arg]

    registry = hw.Registry()
    manager = hw.LifecycleManager(registry, custom)
    assert manager.config == custom and manager.registry is registry
    assert hw.LifecycleManager(registry).config == config
    assert repr(manager) == "<LifecycleManager providers=[] workers=0>"


@pytest.mark.parametrize(
    "fields, error, message",
    [
        (
            {"heartbeat_timeout": "x"},
            TypeError,
            'config.heartbeat_timeout: invalid type: string "x", expected a number',
        ),
        (
            {"max_unhealthy_fraction": "x"},
            TypeError,
            'config.max_unhealthy_fraction: invalid type: string "x", expected a number',
        ),
        (
            {"max_workers": 2.5},
            TypeError,
            "config.max_workers: invalid type: floating point `2.5`, expected a non-negative int",
        ),
        (
            {"max_workers": -1},
            hw.InvalidArgumentError,
            "invalid argument: config.max_workers: invalid value: integer `-1`, expected a non-negative int",
        ),
        (
            {"heartbeat_timeout": -1},
            hw.InvalidArgumentError,
            "invalid argument: config.heartbeat_timeout: invalid duration -1 s",
        ),
    ],
    ids=["str duration", "str fraction", "float count", "negative count", "negative duration"],
)
def test_lifecycle_config_errors_speak_python(
    fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    """serde's message, naming the field, without the position in a JSON text the caller
    never wrote or Rust's number types."""
    with pytest.raises(error) as raised:
        hw.LifecycleConfig(**fields)
    assert type(raised.value) is error and str(raised.value) == message
    assert not re.search(r"line \d+ column|\b([ui](8|16|32|64|128|size)|f32|f64)\b", message)


def test_tick_report_explains_a_stall_and_the_mass_expiry_brake(
    registry: hw.Registry, clock: hw.ManualClock, manager: hw.LifecycleManager
) -> None:
    events = registry.subscribe()
    workers = [manager.provision_worker("fake-cloud", hw.WorkerSpec("r")) for _ in range(3)]
    for w in workers:
        report_in(registry, w.id)
    manager.tick()

    # The host was suspended for two minutes: nobody is expired for the host's own silence.
    clock.advance(120)
    stalled = manager.tick()
    assert stalled.stall_grace == 120.0
    assert stalled.unhealthy == [] and any("stall" in line for line in stalled.decisions)

    # Every worker goes silent at once (a partition on our side, most likely): the brake holds.
    held = None
    for _ in range(10):
        clock.advance(10)
        report = manager.tick()
        if report.mass_expiry_held is not None:
            held = report
            break
    assert held is not None and held.unhealthy == [] and len(registry) == 3
    hold = held.mass_expiry_held
    assert hold is not None and (hold.would_expire, hold.live) == (3, 3)
    assert hold.allowed < hold.would_expire
    assert any("brake" in line for line in held.decisions)
    assert any(isinstance(e, hw.MassExpiryHeld) and e.would_expire == 3 for e in events.drain())
    assert manager.stats().mass_expiry_holds_total >= 1
    assert hold.suspect >= hold.would_expire
    assert f"mass_expiry_held=MassExpiryHold(would_expire=3, suspect={hold.suspect}, live=3" in repr(
        held
    )


def test_destroy_failures_are_events_too(
    registry: hw.Registry, cloud: FakeCloud, manager: hw.LifecycleManager
) -> None:
    worker = manager.provision_worker("fake-cloud", hw.WorkerSpec("r"))
    events = registry.subscribe()
    cloud.fail_destroy = TimeoutError("API timed out")
    manager.terminate_worker(worker.id)
    [failed] = [e for e in events.drain() if isinstance(e, hw.DestroyFailed)]
    assert (failed.worker_id, failed.provider_id, failed.attempts) == (worker.id, "fake-cloud", 1)
    assert "TimeoutError" in failed.error and "API timed out" in failed.error
    assert manager.stats().destroy_failures_total == 1 and manager.stats().pending_destroys == 1


def test_destroy_receives_the_handle_create_returned(
    registry: hw.Registry, manager: hw.LifecycleManager
) -> None:
    seen: list[hw.WorkerHandle] = []

    class Recording(FakeCloud):
        def destroy_worker(self, handle: hw.WorkerHandle) -> None:
            seen.append(handle)
            super().destroy_worker(handle)

    manager.register_provider(Recording("recording"))
    worker = manager.provision_worker("recording", hw.WorkerSpec("img:7"))
    manager.terminate_worker(worker.id)
    [handle] = seen
    assert (handle.worker_id, handle.provider_id, handle.provider_type) == (
        worker.id, "recording", "docker",
    )
    assert handle.resource_id == worker.resource_id and handle.metadata == {"image": "img:7"}
    assert handle == handle and {handle, handle} == {handle}
    assert repr(handle).startswith("WorkerHandle(worker_id=")


def test_the_mass_expiry_brake_lets_go_after_max_mass_expiry_hold(
    registry: hw.Registry, clock: hw.ManualClock, cloud: FakeCloud
) -> None:
    assert hw.LifecycleConfig().max_mass_expiry_hold == 300.0
    config = hw.LifecycleConfig(
        heartbeat_timeout=60,
        health_check_interval=30,
        max_workers=5,
        max_mass_expiry_hold=timedelta(minutes=2),
    )
    assert config.max_mass_expiry_hold == 120.0
    assert json.loads(config.to_json())["max_mass_expiry_hold"] == 120
    assert "max_mass_expiry_hold=120.0" in repr(config)
    assert config == hw.LifecycleConfig(
        heartbeat_timeout=60, health_check_interval=30, max_workers=5, max_mass_expiry_hold=120.0
    )
    manager = hw.LifecycleManager(registry, config)
    manager.register_provider(cloud)
    # Long-lived workers: no idle retirement during the test's ten minutes.
    spec = hw.WorkerSpec("r", idle_timeout=3600, max_lifetime=3600)
    workers = [manager.provision_worker("fake-cloud", spec).id for _ in range(5)]
    for w in workers:
        report_in(registry, w)
    registry.assign_to_job(workers[0], "job-1")
    survivor, dead = workers[4], workers[:4]
    manager.tick()

    # 4 of 5 die for good: held from 90 s on, given up once held longer than 120 s (at 240 s).
    reports = []
    for _ in range(8):
        clock.advance(30)
        manager.process_heartbeat(survivor)
        reports.append(manager.tick())
    held = [r.mass_expiry_held is not None for r in reports]
    assert held == [False, False, True, True, True, True, True, False], held
    assert all(r.unhealthy == [] for r in reports[:7])
    gave_up = reports[7]
    assert json.loads(gave_up.to_json())["brake_released"] is False  # no grace period
    assert any(
        "brake released after holding 150 s: 4 of 5 watched workers still silent" in line
        for line in gave_up.decisions
    ), gave_up.decisions
    assert sorted(u.worker_id for u in gave_up.unhealthy) == sorted(dead)
    assert [(j.worker_id, j.job_id) for j in gave_up.lost_jobs] == [(workers[0], "job-1")]
    assert json.loads(gave_up.to_json())["brake_gave_up"]["held_for"] == 150_000
    assert all(w not in registry for w in dead) and survivor in registry
    assert len(cloud.destroyed) == 4
