"""The manager's metrics read with prometheus_client's own parsers: every family exists, and
after a scripted run the values equal what stats() and the tick reports say."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Callable, Iterable

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.openmetrics import parser as openmetrics
from prometheus_client import parser as prometheus

import hodei_workers as hw
from hodei_workers.metrics import Collector

FAMILIES = {
    "hodei_workers_workers": "gauge",
    "hodei_workers_workers_by_provider": "gauge",
    "hodei_workers_workers_by_provider_type": "gauge",
    "hodei_workers_providers": "gauge",
    "hodei_workers_jobs_assigned": "counter",
    "hodei_workers_jobs_released": "counter",
    "hodei_workers_lost_jobs": "counter",
    "hodei_workers_provisions_requested": "counter",
    "hodei_workers_provisions_succeeded": "counter",
    "hodei_workers_provisions_failed": "counter",
    "hodei_workers_provisions_in_flight": "gauge",
    "hodei_workers_destroys": "counter",
    "hodei_workers_destroy_failures": "counter",
    "hodei_workers_destroys_pending": "gauge",
    "hodei_workers_unhealthy_detections": "counter",
    "hodei_workers_mass_expiry_holds": "counter",
    "hodei_workers_reconcile_holds": "counter",
    "hodei_workers_provider_backoff_seconds": "gauge",
    "hodei_workers_provider_consecutive_failures": "gauge",
    "hodei_workers_ticks": "counter",
    "hodei_workers_health_checks": "counter",
    "hodei_workers_tick_duration_seconds": "histogram",
    "hodei_workers_health_check_duration_seconds": "histogram",
    "hodei_workers_heartbeat_age_seconds": "gauge",
    "hodei_workers_heartbeat_monitored_workers": "gauge",
    "hodei_workers_event_drops": "counter",
    "hodei_workers_event_queue_length": "gauge",
    "hodei_workers_leader": "gauge",
    "hodei_workers_leader_term": "gauge",
}


class Cloud:
    """A provider that fails the creates and destroys it is told to."""

    provider_id = "cloud"
    provider_type = "docker"

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.fail_creates = 0
        self.fail_destroys = 0

    # The spec is the last argument whatever comes before it (the worker id, in newer cores).
    def create_worker(self, *args: object) -> str:
        if self.fail_creates:
            self.fail_creates -= 1
            raise RuntimeError("quota exceeded")
        return f"i-{next(self.ids)}"

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        if self.fail_destroys:
            self.fail_destroys -= 1
            raise RuntimeError("api timeout")


# Typed handles on the parsers (the package does not annotate them).
openmetrics_families: Callable[[str], Iterable[Metric]] = openmetrics.text_string_to_metric_families
prometheus_families: Callable[[str], Iterable[Metric]] = prometheus.text_string_to_metric_families
openmetrics_latest: Callable[[CollectorRegistry], bytes] = openmetrics_exposition.generate_latest

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> tuple[dict[str, str], Samples]:
    """Family types and sample values, from the OpenMetrics parser (which checks the text)."""
    types: dict[str, str] = {}
    values: Samples = {}
    for family in openmetrics_families(text):
        types[family.name] = family.type
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return types, values


def value(values: Samples, name: str, **labels: str) -> float:
    return values[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def run() -> tuple[hw.Registry, hw.LifecycleManager, list[hw.TickReport], hw.Subscription]:
    """A scripted run: provisions (one failing), jobs claimed and released, a worker that
    goes silent with its job, a destroy that fails once, a subscriber that never reads."""
    clock = hw.ManualClock(1_700_000_000.0)
    registry = hw.Registry(clock=clock)
    lazy = registry.subscribe(capacity=1)
    config = hw.LifecycleConfig(
        heartbeat_timeout=60,
        health_check_interval=timedelta(seconds=10),
        max_workers=5,
        min_ready_workers=0,
        scale_up_cooldown=0.001,
    )
    manager = hw.LifecycleManager(registry, config)
    cloud = Cloud()
    manager.register_provider(cloud)
    manager.set_scaling_target("cloud", hw.WorkerSpec("runner:1"))
    reports = []
    cloud.fail_creates = 1
    reports.append(manager.tick(pending_jobs=3))
    clock.advance(120)  # past the provider's back-off
    reports.append(manager.tick(pending_jobs=3))
    assert len(reports[-1].provisioned) == 3, reports[-1].decisions
    workers = [w.id for w in registry.find()]
    for w in workers:
        registry.update_state(w, hw.WorkerState.READY)
    for job in ("a", "b", "c"):
        assert registry.claim(job) is not None
    busy = [w.id for w in registry.find() if w.current_job is not None]
    registry.release_from_job(busy[0])
    registry.release_from_job(busy[1])
    manager.clear_scaling_target()
    cloud.fail_destroys = 1
    for _ in range(8):  # busy[2] goes silent with job "c"
        clock.advance(10)
        for w in workers:
            if w != busy[2]:
                manager.process_heartbeat(w)
        reports.append(manager.tick(pending_jobs=0))
    return registry, manager, reports, lazy


def test_every_family_exists_with_its_type(
    run: tuple[hw.Registry, hw.LifecycleManager, list[hw.TickReport], hw.Subscription],
) -> None:
    _, manager, _, _ = run
    text = manager.metrics_text()
    assert text.endswith("# EOF\n")
    types, _ = samples(text)
    for name, kind in FAMILIES.items():
        assert types.get(name) == kind, (name, types.get(name))


def test_values_equal_stats_and_reports(
    run: tuple[hw.Registry, hw.LifecycleManager, list[hw.TickReport], hw.Subscription],
) -> None:
    registry, manager, reports, lazy = run
    _, v = samples(manager.metrics_text())
    stats = manager.stats()
    assert stats.registry == registry.stats()
    for state, n in stats.registry.by_state.items():
        assert value(v, "hodei_workers_workers", state=state.value) == n
    for provider, n in stats.registry.by_provider.items():
        assert value(v, "hodei_workers_workers_by_provider", provider=provider) == n
    assert value(v, "hodei_workers_providers") == stats.providers == 1

    def total(reports_field: str) -> int:
        return sum(len(getattr(r, reports_field)) for r in reports)

    # The reports and stats() agree, and the metrics say the same.
    assert stats.provisioned_total == total("provisioned") == 3
    assert stats.provision_failures_total == total("provision_failures") == 1
    assert stats.unhealthy_total == total("unhealthy") == 1
    assert stats.lost_jobs_total == total("lost_jobs") == 1
    assert stats.destroy_failures_total == total("failed") == 1
    assert stats.terminated_total == total("terminated")
    for name, expected in [
        ("hodei_workers_provisions_succeeded_total", stats.provisioned_total),
        ("hodei_workers_provisions_failed_total", stats.provision_failures_total),
        ("hodei_workers_unhealthy_detections_total", stats.unhealthy_total),
        ("hodei_workers_lost_jobs_total", stats.lost_jobs_total),
        ("hodei_workers_destroy_failures_total", stats.destroy_failures_total),
        ("hodei_workers_destroys_total", stats.terminated_total),
        ("hodei_workers_mass_expiry_holds_total", stats.mass_expiry_holds_total),
        ("hodei_workers_provisions_in_flight", stats.in_flight),
        ("hodei_workers_destroys_pending", stats.pending_destroys),
    ]:
        assert value(v, name) == expected, name
    assert value(v, "hodei_workers_provisions_requested_total", provider="cloud") == 4
    assert value(v, "hodei_workers_jobs_assigned_total") == 3
    assert value(v, "hodei_workers_jobs_released_total") == 2
    assert value(v, "hodei_workers_tick_duration_seconds_count") == len(reports)
    assert value(v, "hodei_workers_health_check_duration_seconds_count") == sum(
        r.health_checked for r in reports
    )
    # Counted whatever the timing; timed (the default), the histograms' _count says the same.
    assert value(v, "hodei_workers_ticks_total") == len(reports)
    assert value(v, "hodei_workers_health_checks_total") == sum(r.health_checked for r in reports)
    monitored = stats.registry.connecting + stats.registry.ready + stats.registry.busy + stats.registry.draining
    assert value(v, "hodei_workers_heartbeat_monitored_workers") == monitored
    ages = [value(v, "hodei_workers_heartbeat_age_seconds", quantile=q) for q in ("0.5", "0.9", "0.99", "1")]
    assert ages == sorted(ages) and 0 <= ages[0]
    drops = [
        val for (name, _), val in v.items() if name == "hodei_workers_event_drops_total"
    ]
    assert lazy.dropped > 0 and lazy.dropped in drops
    # The back-off after the failed create has expired by now: 0 for the provider.
    assert value(v, "hodei_workers_provider_backoff_seconds", provider="cloud") == 0


def test_timing_off_stands_the_duration_histograms_still_and_the_counts_go_on() -> None:
    clock = hw.ManualClock(1_700_000_000.0)
    manager = hw.LifecycleManager(
        hw.Registry(clock=clock),
        hw.LifecycleConfig(min_ready_workers=0, health_check_interval=timedelta(seconds=10)),
    )
    assert manager.metrics_timing() is True, "on by default"
    timed = manager.tick()
    assert timed.health_checked
    manager.set_metrics_timing(False)
    assert manager.metrics_timing() is False
    untimed = []
    for _ in range(3):
        clock.advance(10)
        untimed.append(manager.tick())
    manager.run_health_check()
    checks = 1 + sum(r.health_checked for r in untimed) + 1
    _, v = samples(manager.metrics_text())
    # Counted...
    assert value(v, "hodei_workers_ticks_total") == 4
    assert value(v, "hodei_workers_health_checks_total") == checks
    # ...but not observed while the timing is off.
    assert value(v, "hodei_workers_tick_duration_seconds_count") == 1
    assert value(v, "hodei_workers_health_check_duration_seconds_count") == 1
    # On again, the next ones are observed.
    manager.set_metrics_timing(True)
    assert manager.metrics_timing() is True
    manager.tick()
    _, v = samples(manager.metrics_text())
    assert value(v, "hodei_workers_ticks_total") == 5
    assert value(v, "hodei_workers_tick_duration_seconds_count") == 2
    # A bool, nothing else (as the module's other bool parameters): nothing changed.
    for wrong in (0, 1, "off", None):
        with pytest.raises(TypeError):
            manager.set_metrics_timing(wrong)  # type: ignore[arg-type]
    assert manager.metrics_timing() is True


def test_collector_in_a_prometheus_client_registry(
    run: tuple[hw.Registry, hw.LifecycleManager, list[hw.TickReport], hw.Subscription],
) -> None:
    _, manager, _, _ = run
    registry = CollectorRegistry()
    collector = Collector(manager)
    registry.register(collector)
    assert "Collector" in repr(collector)
    exposed = generate_latest(registry).decode()
    # The Prometheus text format, parsed back by its own parser: same families and values.
    families = {f.name: f for f in prometheus_families(exposed)}
    for name, kind in FAMILIES.items():
        assert families[name].type == kind, name
    by_name = {s.name: s.value for f in families.values() for s in f.samples if not s.labels}
    assert by_name["hodei_workers_jobs_assigned_total"] == 3
    assert by_name["hodei_workers_lost_jobs_total"] == manager.stats().lost_jobs_total
    assert registry.get_sample_value(
        "hodei_workers_workers", {"state": "busy"}
    ) == manager.stats().registry.busy


class PoolCloud:
    """A provider whose creates always succeed."""

    provider_type = "ec2"

    def __init__(self, provider_id: str) -> None:
        self.provider_id = provider_id
        self.ids = itertools.count(1)

    def create_worker(self, *args: object) -> str:
        return f"{self.provider_id}-{next(self.ids)}"

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        pass


def test_pool_families_count_the_last_pools_tick(registry: hw.Registry, clock: hw.ManualClock) -> None:
    manager = hw.LifecycleManager(registry, hw.LifecycleConfig(min_ready_workers=0, heartbeat_timeout=600))
    for name in ("k8s", "ec2"):
        manager.register_provider(PoolCloud(name))
    gpu = hw.WorkerSpec("trainer", labels={"gpu": "a100"})
    manager.set_pools(
        [
            hw.Pool("cpu", "k8s", hw.WorkerSpec("runner"), priority=20, max_workers=10),
            hw.Pool("gpu", "ec2", gpu, max_workers=4),
        ]
    )
    demand = hw.Demand([{"count": 2}, {"labels": {"gpu": "a100"}, "count": 1}])
    first = manager.tick(demand)
    assert len(first.provisioned) == 3
    for p in first.provisioned:
        registry.update_state(p.worker_id, hw.WorkerState.READY)
    busy = next(w for w in registry.find(labels={"hodei.pool": "cpu"}))
    registry.assign_to_job(busy.id, "job-1")
    clock.advance(1)  # within the scale-up cooldown: nothing more is provisioned
    assert manager.tick(demand).provisioned == []

    types, v = samples(manager.metrics_text())
    assert types["hodei_workers_pool_workers"] == "gauge"
    assert types["hodei_workers_pool_demand"] == "gauge"
    assert value(v, "hodei_workers_pool_workers", pool="cpu", state="ready") == 1
    assert value(v, "hodei_workers_pool_workers", pool="cpu", state="busy") == 1
    assert value(v, "hodei_workers_pool_workers", pool="gpu", state="ready") == 1
    assert value(v, "hodei_workers_pool_workers", pool="gpu", state="creating") == 0
    assert value(v, "hodei_workers_pool_demand", pool="cpu") == 2
    assert value(v, "hodei_workers_pool_demand", pool="gpu") == 1

    manager.remove_pool("gpu")
    _, v = samples(manager.metrics_text())
    assert not [key for key in v if ("pool", "gpu") in key[1]]
    # The Prometheus text format too, through the collector.
    reg = CollectorRegistry()
    reg.register(Collector(manager))
    assert reg.get_sample_value("hodei_workers_pool_workers", {"pool": "cpu", "state": "busy"}) == 1


def test_back_off_ages_queues_and_provider_types_read_exactly() -> None:
    """The families whose values the scripted run leaves at zero: a provider backed off now,
    heartbeat ages of a small (exactly counted) fleet, an event queue, provider types."""
    clock = hw.ManualClock(1_700_000_000.0)
    registry = hw.Registry(clock=clock)
    sub = registry.subscribe(capacity=64)
    manager = hw.LifecycleManager(
        registry,
        hw.LifecycleConfig(
            heartbeat_timeout=600,
            min_ready_workers=0,
            max_workers=5,
            scale_up_cooldown=0.001,
            provider_backoff_initial=600,
            provider_backoff_max=600,
        ),
    )
    cloud = Cloud()
    manager.register_provider(cloud)
    manager.set_scaling_target("cloud", hw.WorkerSpec("runner:1"))
    cloud.fail_creates = 2
    report = manager.tick(pending_jobs=1)
    (backoff,) = report.provider_backoff
    manager.clear_scaling_target()
    # Four workers heard 0, 30, 30 and 90 s ago; one still CREATING (not watched).
    ids = [registry.register("k8s", "kubernetes", f"pod-{i}").id for i in range(5)]
    for w in ids[:4]:
        registry.update_state(w, hw.WorkerState.READY)
    clock.advance(60)
    for w in ids[1:3]:
        manager.process_heartbeat(w)
    clock.advance(30)
    manager.process_heartbeat(ids[0])

    _, v = samples(manager.metrics_text())
    assert value(v, "hodei_workers_provider_consecutive_failures", provider="cloud") == backoff.consecutive_failures >= 1
    assert value(v, "hodei_workers_provider_backoff_seconds", provider="cloud") == pytest.approx(
        max(0.0, backoff.until - clock.now())
    )
    assert value(v, "hodei_workers_heartbeat_monitored_workers") == 4
    ages = {q: value(v, "hodei_workers_heartbeat_age_seconds", quantile=q) for q in ("0.5", "0.9", "0.99", "1")}
    assert ages == {"0.5": 30.0, "0.9": 90.0, "0.99": 90.0, "1": 90.0}
    assert value(v, "hodei_workers_workers_by_provider_type", provider_type="kubernetes") == 5
    assert value(v, "hodei_workers_workers_by_provider", provider="k8s") == 5
    queued = [val for (name, _), val in v.items() if name == "hodei_workers_event_queue_length"]
    assert queued == [len(sub)] and len(sub) > 0
    assert [val for (name, _), val in v.items() if name == "hodei_workers_event_drops_total"] == [0]


class OddCloud(PoolCloud):
    """A provider whose id has what a label value must escape (quote, backslash) and
    characters beyond ASCII."""

    def __init__(self) -> None:
        super().__init__('k8s "east"\\1 ünï ☃')


def test_odd_provider_ids_survive_the_text_and_both_expositions() -> None:
    """The text parses strictly with the odd provider id as a label value, exactly as given;
    the Collector's families, exposed again by prometheus_client in the OpenMetrics and the
    Prometheus formats, parse back to the same samples."""
    registry = hw.Registry(clock=hw.ManualClock(1_700_000_000.0))
    manager = hw.LifecycleManager(registry, hw.LifecycleConfig(min_ready_workers=0, heartbeat_timeout=600))
    cloud = OddCloud()
    manager.register_provider(cloud)
    manager.set_scaling_target(cloud.provider_id, hw.WorkerSpec("img"))
    assert len(manager.tick(pending_jobs=2).provisioned) == 2
    text = manager.metrics_text()
    _, v = samples(text)
    assert value(v, "hodei_workers_workers_by_provider", provider=cloud.provider_id) == 2
    assert value(v, "hodei_workers_provisions_requested_total", provider=cloud.provider_id) == 2
    assert value(v, "hodei_workers_provider_backoff_seconds", provider=cloud.provider_id) == 0

    reg = CollectorRegistry()
    reg.register(Collector(manager))
    _, again = samples(openmetrics_latest(reg).decode())
    assert again == v
    by_prometheus = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in prometheus_families(generate_latest(reg).decode())
        for s in f.samples
    }
    assert by_prometheus[
        ("hodei_workers_workers_by_provider", (("provider", cloud.provider_id),))
    ] == 2
