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


def test_replicated_refuses_a_bad_holder_or_ttl_on_every_backend(registry: hw.Registry) -> None:
    # The same rules in memory as on PostgreSQL: 1 to 128 bytes without NUL, 3 ms to 100 years.
    century = 100 * 365 * 86_400.0
    for holder, ttl in [
        ("", 15.0),
        ("h\0", 15.0),
        ("h" * 129, 15.0),
        ("h", 0.0),
        ("h", 0.002),
        ("h", century + 0.001),
        ("h", 2.0**63),
    ]:
        with pytest.raises(hw.InvalidArgumentError):
            hw.LifecycleManager.replicated(registry, holder, ttl)
    hw.LifecycleManager.replicated(registry, "h" * 128, 0.003)
    hw.LifecycleManager.replicated(registry, "h", century)


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


class FencedCloud:
    """A cloud that keeps the largest fencing token it has served and refuses smaller ones."""

    provider_id = "fenced"
    provider_type = "docker"

    def __init__(self) -> None:
        self.tokens: list[tuple[str, int]] = []
        self.highest = 0
        self.live: set[str] = set()

    def admit(self, call: str, fencing_token: int) -> None:
        assert isinstance(fencing_token, int)
        self.tokens.append((call, fencing_token))
        if fencing_token < self.highest:
            raise hw.Fenced(f"token {fencing_token} is below {self.highest}")
        self.highest = fencing_token

    # A default keeps the method a `hw.Provider` for type checkers; the manager always passes it.
    def create_worker(self, worker_id: str, spec: hw.WorkerSpec, *, fencing_token: int = 0) -> str:
        self.admit("create", fencing_token)
        resource = f"i-{len(self.tokens)}"
        self.live.add(resource)
        return resource

    def destroy_worker(self, handle: hw.WorkerHandle, **kwargs: int) -> None:
        self.admit(f"destroy {handle.resource_id}", kwargs["fencing_token"])
        self.live.discard(handle.resource_id)


def lead(registry: hw.Registry, name: str, cloud: FencedCloud) -> tuple[hw.LifecycleManager, int]:
    """A replica named ``name`` with ``cloud``, after the tick that made it the leader; and its
    term."""
    manager = hw.LifecycleManager.replicated(registry, name, 15.0)
    manager.register_provider(cloud)
    assert manager.tick(0).leading
    leader = manager.leader()
    assert leader is not None
    return manager, leader.term


def test_each_create_and_destroy_is_told_its_fencing_token(registry: hw.Registry, backend: str) -> None:
    """A provider method that takes a ``fencing_token`` keyword (by name or through
    ``**kwargs``) is told the term the manager calls under; a replica that took over calls with
    a larger one. Methods without it are called as before (``Cloud`` above)."""
    cloud = FencedCloud()
    a, term_a = lead(registry, "host-a", cloud)
    w = a.provision_worker("fenced", hw.WorkerSpec("img"))
    a.terminate_worker(w.id, hw.TerminationReason.REQUESTED)
    assert cloud.tokens == [("create", term_a), ("destroy i-1", term_a)]
    if backend == "memory":
        # An unshared registry: the manager is the only one, and leads under term 1.
        assert term_a == 1
        return
    # On a shared registry another replica takes over once a steps down: its term, and so
    # its tokens, are larger, and the cloud refuses a's from then on.
    a.step_down()
    b, term_b = lead(registry, "host-b", cloud)
    assert term_b > term_a
    b.provision_worker("fenced", hw.WorkerSpec("img"))
    assert cloud.tokens[-1] == ("create", term_b)
    assert cloud.highest == term_b


def test_a_refused_token_says_another_replica_leads(registry: hw.Registry) -> None:
    """``hw.Fenced`` from the provider: ``NotLeaderError``, not a failure of the provider (no
    back-off, nothing counted), and no provider call until a tick renews the lease."""
    cloud = FencedCloud()
    cloud.highest = 10**9  # a replica with a far larger term served the cloud already
    manager = hw.LifecycleManager(registry)
    manager.register_provider(cloud)
    with pytest.raises(hw.NotLeaderError, match="refused fencing token 1") as refused:
        manager.provision_worker("fenced", hw.WorkerSpec("img"))
    assert "token 1 is below 1000000000" in str(refused.value)
    assert cloud.live == set()
    assert not manager.is_leader()
    assert manager.provider_backoff() == []
    assert manager.stats().provision_failures_total == 0
    calls = len(cloud.tokens)
    with pytest.raises(hw.NotLeaderError):
        manager.provision_worker("fenced", hw.WorkerSpec("img"))
    assert len(cloud.tokens) == calls, "no provider call before a renewal"
    # This manager is the only one: its tick renews its lease (the cloud, served by some other
    # deployment's larger terms, goes on refusing).
    manager.tick(0)
    assert manager.is_leader()


def test_any_other_exception_for_a_refused_token_is_a_provider_failure(registry: hw.Registry) -> None:
    class Refusing(FencedCloud):
        def admit(self, call: str, fencing_token: int) -> None:
            raise RuntimeError(f"token {fencing_token} refused")

    manager = hw.LifecycleManager(registry)
    manager.register_provider(Refusing())
    with pytest.raises(hw.ProviderError, match="token 1 refused"):
        manager.provision_worker("fenced", hw.WorkerSpec("img"))
    assert [b.provider_id for b in manager.provider_backoff()] == ["fenced"]


def test_a_takeover_is_a_leader_changed_event(registry: hw.Registry, backend: str) -> None:
    sub = registry.subscribe()
    if backend == "memory":
        manager = hw.LifecycleManager(registry)
        manager.tick()
        manager.step_down()
        holder = "local"
    else:
        manager = hw.LifecycleManager.replicated(registry, "host-1", 15.0)
        holder = "host-1"
    assert manager.tick(0).leading
    changes = [e for e in sub.drain() if e.kind == "leader_changed"]
    assert len(changes) == 1, changes
    event = changes[0]
    # Its own class with its fields, not a bare Event.
    assert isinstance(event, hw.LeaderChanged)
    leader = manager.leader()
    assert leader is not None
    assert (event.holder, event.term, event.by) == (holder, leader.term, holder)
    assert event.worker_id is None
    match event:
        case hw.LeaderChanged(h, t, b):
            assert (h, t, b) == (holder, leader.term, holder)
        case _:
            pytest.fail(f"no positional pattern: {event!r}")
    assert f"holder={holder!r}" in repr(event)


def test_a_manager_that_does_not_lead_drains_no_pool_until_its_tick_leads(registry: hw.Registry) -> None:
    # Pools are each replica's configuration, draining is leader work: a follower's
    # set_pools/remove_pool drain nothing; its first tick as leader drains what they removed.
    manager = hw.LifecycleManager(registry)
    manager.register_provider(Cloud())
    spec = hw.WorkerSpec("img")
    manager.set_pools([hw.Pool("a", "cloud", spec, min_ready=1), hw.Pool("b", "cloud", spec, min_ready=1)])
    ids = sorted(p.worker_id for p in manager.tick(0).provisioned)
    assert len(ids) == 2
    for worker_id in ids:
        registry.update_state(worker_id, hw.WorkerState.READY)
    manager.step_down()
    assert manager.remove_pool("a") == []
    assert manager.set_pools([]) == []
    assert manager.pools() == []
    assert [registry.get(i).state for i in ids] == [hw.WorkerState.READY] * 2  # type: ignore[union-attr]
    report = manager.tick(0)
    assert report.leading
    assert sorted(report.drained) == ids
    assert [registry.get(i).state for i in ids] == [hw.WorkerState.DRAINING] * 2  # type: ignore[union-attr]
