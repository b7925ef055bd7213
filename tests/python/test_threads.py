"""Many Python threads on one registry: claims never hand a worker or a job out twice."""

from __future__ import annotations

import threading

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
