"""Leadership from Python: a single-process manager leads (term 1, holder "local"); after
step_down() it follows and its leader-only calls raise NotLeaderError, until a tick takes the
lease again."""

from __future__ import annotations

import pytest

import hodei_workers as hw


class Cloud:
    provider_id = "cloud"
    provider_type = "docker"

    def __init__(self) -> None:
        self.created = 0

    def create_worker(self, *args: object) -> str:
        self.created += 1
        return f"i-{self.created}"

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        pass


def test_a_single_process_manager_leads_under_term_1(registry: hw.Registry) -> None:
    manager = hw.LifecycleManager(registry)
    assert manager.is_leader()
    report = manager.tick()
    assert report.leading
    leader = report.leader
    assert isinstance(leader, hw.LeaderInfo)
    assert (leader.holder, leader.term) == ("local", 1)
    assert leader.expires_at is None
    assert leader == manager.leader()
    assert '"holder":"local"' in report.to_json()


def test_replicated_on_an_unshared_registry_always_leads(registry: hw.Registry, backend: str) -> None:
    manager = hw.LifecycleManager.replicated(registry, "host-1", 15.0)
    with pytest.raises(TypeError):
        hw.LifecycleManager.replicated(registry, "host-1", "15s")  # type: ignore[arg-type]
    if backend != "memory":
        # A shared registry: the manager leads once its first tick has taken the lease.
        report = manager.tick(0)
        assert report.leading and manager.is_leader()
        leader = manager.leader()
        assert leader is not None and leader.holder == "host-1"
        return
    assert manager.is_leader()
    leader = manager.leader()
    assert leader is not None and leader.holder == "local"


def test_after_stepping_down_leader_only_calls_raise_until_a_tick(registry: hw.Registry) -> None:
    manager = hw.LifecycleManager(registry)
    cloud = Cloud()
    manager.register_provider(cloud)
    manager.step_down()
    assert not manager.is_leader()
    with pytest.raises(hw.NotLeaderError) as caught:
        manager.provision_worker("cloud", hw.WorkerSpec("img"))
    assert isinstance(caught.value, hw.HodeiWorkersError)
    assert caught.value.kind == "not_leader"
    with pytest.raises(hw.NotLeaderError):
        manager.reconcile()
    assert cloud.created == 0
    report = manager.tick()  # takes the lease again (a takeover: grace, reconcile)
    assert report.leading
    assert any(d.startswith("took the lease: local leads under term 1") for d in report.decisions)
    manager.provision_worker("cloud", hw.WorkerSpec("img"))
    assert cloud.created == 1
