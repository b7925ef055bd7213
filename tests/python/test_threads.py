"""Many Python threads on one registry: claims never hand a worker or a job out twice."""

from __future__ import annotations

import threading
import time

import hodei_workers as hw
from conftest import ReadyWorker

WORKERS = 12
THREADS = 8
ROUNDS = 300


def test_threads_claiming_releasing_and_heartbeating(
    registry: hw.Registry, ready_worker: ReadyWorker
) -> None:
    ids = [ready_worker().id for _ in range(WORKERS)]
    holders: dict[str, str] = {}  # worker id -> job, while a thread holds it
    guard = threading.Lock()
    doubles: list[str] = []
    errors: list[BaseException] = []
    claimed = [0] * THREADS
    start = threading.Barrier(THREADS + 1)
    stop = threading.Event()

    def scheduler(n: int) -> None:
        try:
            start.wait()
            for i in range(ROUNDS):
                job = f"job-{n}-{i}"
                worker = registry.claim(job)
                if worker is None:
                    continue
                assert worker.current_job == job and worker.state is hw.WorkerState.BUSY
                with guard:
                    if worker.id in holders:
                        doubles.append(f"{worker.id} given {job} while holding {holders[worker.id]}")
                    holders[worker.id] = job
                registry.heartbeat(worker.id)
                now = registry.get(worker.id)
                assert now is not None and now.current_job == job
                with guard:
                    del holders[worker.id]
                assert registry.release_from_job(worker.id, expected_job=job) == job
                claimed[n] += 1
        except BaseException as e:  # reported below, with the thread's failure
            errors.append(e)

    def heartbeater() -> None:
        try:
            start.wait()
            while not stop.is_set():
                for worker_id in ids:
                    registry.heartbeat(worker_id)
                registry.stats()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=scheduler, args=(n,)) for n in range(THREADS - 1)]
    beat = threading.Thread(target=heartbeater)
    for t in (*threads, beat):
        t.start()
    start.wait()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    beat.join(timeout=30)

    assert not errors, errors[0]
    assert not doubles, doubles[:3]
    total = sum(claimed)
    assert total > 0
    stats = registry.stats()
    assert (stats.ready, stats.busy) == (WORKERS, 0)
    assert sum(w.jobs_executed for w in registry.find()) == total


def test_threads_race_for_one_job(registry: hw.Registry, ready_worker: ReadyWorker) -> None:
    for _ in range(4):
        ready_worker()
    results: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def racer() -> None:
        start.wait()
        try:
            got = registry.claim("the-one-job")
            outcome = "won" if got is not None else "none"
        except hw.JobAlreadyAssignedError:
            outcome = "already"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["already"] * 7 + ["won"]
    assert registry.stats().busy == 1


class ThreadSafeCloud:
    """A provider called from the ticking thread while other threads use the registry."""

    provider_id = "cloud"
    provider_type = "kubernetes"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instances: set[str] = set()
        self.counter = 0

    def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
        with self.lock:
            self.counter += 1
            name = f"pod-{self.counter}"
            self.instances.add(name)
            return name

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        with self.lock:
            self.instances.discard(handle.resource_id)


def test_ticking_while_threads_claim_release_and_report_in(
    registry: hw.Registry, clock: hw.ManualClock
) -> None:
    cloud = ThreadSafeCloud()
    config = hw.LifecycleConfig(
        max_workers=8, min_ready_workers=2, scale_up_cooldown=0.001, scale_down_cooldown=0.001
    )
    manager = hw.LifecycleManager(registry, config)
    manager.register_provider(cloud)
    manager.set_scaling_target("cloud", hw.WorkerSpec("runner", idle_timeout=30))
    errors: list[BaseException] = []
    stop = threading.Event()
    holders: dict[str, str] = {}
    guard = threading.Lock()
    doubles: list[str] = []

    claims = [0, 0, 0]
    start = threading.Barrier(5)

    def ticker() -> None:
        try:
            start.wait()
            for _ in range(150):
                clock.advance(0.5)
                manager.tick(pending_jobs=3)
                time.sleep(0.002)  # the host's tick period, compressed
        except BaseException as e:
            errors.append(e)
        finally:
            stop.set()

    def host() -> None:  # agents of new workers call in
        try:
            start.wait()
            while not stop.is_set():
                for w in registry.find(states=hw.WorkerState.CREATING):
                    try:
                        registry.update_state(w.id, hw.WorkerState.READY)
                    except (hw.WorkerNotFoundError, hw.InvalidTransitionError):
                        pass  # retired meanwhile: fine
                for w in registry.find(states=[hw.WorkerState.READY, hw.WorkerState.BUSY]):
                    try:
                        manager.process_heartbeat(w.id)
                    except hw.WorkerNotFoundError:
                        pass
        except BaseException as e:
            errors.append(e)

    def scheduler(n: int) -> None:
        try:
            start.wait()
            i = 0
            while not stop.is_set():
                i += 1
                job = f"job-{n}-{i}"
                worker = registry.claim(job)
                if worker is None:
                    continue
                with guard:
                    if worker.id in holders:
                        doubles.append(worker.id)
                    holders[worker.id] = job
                with guard:
                    del holders[worker.id]
                claims[n] += 1
                try:
                    registry.release_from_job(worker.id, expected_job=job)
                except (hw.WorkerNotFoundError, hw.WorkerNotBusyError):
                    pass  # retired by the engine while busy: its job was reported lost
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=ticker), threading.Thread(target=host)]
    threads += [threading.Thread(target=scheduler, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    assert not errors, errors[0]
    assert not doubles
    assert sum(claims) > 0, "the schedulers got work"

    stats = registry.stats()
    assert stats.total <= 8
    recount = {state: 0 for state in hw.WorkerState}
    for w in registry.find():
        recount[w.state] += 1
    assert stats.by_state == recount

    # Tear down: nothing leaks at the provider.
    manager.clear_scaling_target()
    for w in registry.find():
        if w.state is not hw.WorkerState.TERMINATING:
            manager.terminate_worker(w.id)
    for _ in range(5):
        clock.advance(10)
        manager.tick()
    assert len(registry) == 0 and cloud.instances == set()
    assert manager.stats().provisioned_total == cloud.counter
