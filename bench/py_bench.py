#!/usr/bin/env python3
"""Times the `hodei_workers` Python module against a plain-Python registry (dict + lock, the
same semantics) at 10k and 100k workers: heartbeat, claim + release, stats, tick.

    .venv/bin/python bench/py_bench.py [OUT.json] [--sizes 10000,100000]

Standard library only besides the module under test. Each figure is the best of 3 runs of a
loop timed with time.perf_counter (ns per operation). `make bench` runs it and the report
(bench/report.py) prints the table.
"""

import json
import sys
import threading
import time
import uuid

import hodei_workers as hw

T0 = 1_700_000_000.0
STRIDE = 999_983  # visit workers in the order k * STRIDE mod n, as the Rust benches do
IDLE = 30 * 24 * 3600.0
LIFETIME = 365 * 24 * 3600.0
HEARTBEAT_TIMEOUT = 10 * 24 * 3600.0  # longer than the ~6,000 simulated seconds of ticks: 0% expiring


class PlainWorker:
    __slots__ = (
        "id", "provider_id", "provider_type", "resource_id", "labels", "state",
        "current_job", "jobs_executed", "created_at", "last_heartbeat", "idle_since",
        "idle_timeout", "max_lifetime",
    )


class PlainRegistry:
    """What one writes without the library: one dict, one lock, scans for the rest."""

    def __init__(self, clock):
        self.clock = clock
        self.lock = threading.Lock()
        self.workers = {}

    def register(self, provider_id, provider_type, resource_id, labels):
        w = PlainWorker()
        w.id = str(uuid.uuid4())
        w.provider_id, w.provider_type, w.resource_id = provider_id, provider_type, resource_id
        w.labels = labels
        w.state = "creating"
        w.current_job = None
        w.jobs_executed = 0
        w.created_at = w.last_heartbeat = self.clock.now()
        w.idle_since = None
        w.idle_timeout, w.max_lifetime = IDLE, LIFETIME
        with self.lock:
            self.workers[w.id] = w
        return w

    def ready(self, worker_id):
        with self.lock:
            w = self.workers[worker_id]
            w.state = "ready"
            w.idle_since = self.clock.now()

    def heartbeat(self, worker_id):
        now = self.clock.now()
        with self.lock:
            w = self.workers.get(worker_id)
            if w is None:
                raise KeyError(worker_id)
            if now > w.last_heartbeat:
                w.last_heartbeat = now

    def claim(self, job_id, labels):
        now = self.clock.now()
        with self.lock:
            best = None
            for w in self.workers.values():
                if w.current_job == job_id:
                    raise ValueError(f"job {job_id} already held by {w.id}")
                if w.state == "ready" and all(w.labels.get(k) == v for k, v in labels.items()):
                    if best is None or (w.idle_since, w.id) > (best.idle_since, best.id):
                        best = w
            if best is None:
                return None
            best.current_job = job_id
            best.state = "busy"
            return best

    def release_from_job(self, worker_id, expected_job):
        now = self.clock.now()
        with self.lock:
            w = self.workers[worker_id]
            if w.current_job is None or w.current_job != expected_job:
                raise ValueError(f"worker {worker_id} does not hold {expected_job}")
            job, w.current_job = w.current_job, None
            w.jobs_executed += 1
            if w.state == "busy":
                w.state = "ready"
                w.idle_since = now
            return job

    def stats(self):
        with self.lock:
            by_state, by_provider, by_type = {}, {}, {}
            for w in self.workers.values():
                by_state[w.state] = by_state.get(w.state, 0) + 1
                by_provider[w.provider_id] = by_provider.get(w.provider_id, 0) + 1
                by_type[w.provider_type] = by_type.get(w.provider_type, 0) + 1
            return len(self.workers), by_state, by_provider, by_type

    def tick(self):
        """A health check and a cleanup pass: what is due, found by scanning."""
        now = self.clock.now()
        unhealthy, retire = [], []
        with self.lock:
            for w in self.workers.values():
                if w.state in ("connecting", "ready", "busy", "draining") and (
                    now - w.last_heartbeat > HEARTBEAT_TIMEOUT
                ):
                    unhealthy.append(w)
                elif w.state == "ready" and now - w.idle_since > w.idle_timeout:
                    retire.append(w)
                elif w.state in ("creating", "connecting", "ready", "busy") and (
                    now - w.created_at > w.max_lifetime
                ):
                    retire.append(w)
        return unhealthy, retire


def best_ns(fn, ops, runs=3):
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn(ops)
        best = min(best, (time.perf_counter() - start) * 1e9 / ops)
    return best


def label(n):
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def bench_module(n, rows_out):
    clock = hw.ManualClock(T0)
    reg = hw.Registry(clock)
    spec = hw.WorkerSpec("ghcr.io/acme/ci-runner:2024.11", labels={"pool": "ci"},
                         idle_timeout=IDLE, max_lifetime=LIFETIME)
    ids = []
    for i in range(n):
        w = reg.register("docker-local", "docker", f"c-{i:08x}", spec)
        reg.update_state(w.id, "ready")
        ids.append(w.id)
    config = hw.LifecycleConfig(heartbeat_timeout=HEARTBEAT_TIMEOUT, health_check_interval=1.0,
                                min_ready_workers=n, max_workers=n)
    manager = hw.LifecycleManager(reg, config)

    def heartbeat(ops):
        hb = reg.heartbeat
        for k in range(ops):
            hb(ids[k * STRIDE % n])

    def claim_release(ops):
        for _ in range(ops):
            w = reg.claim("bench-job", labels={"pool": "ci"})
            reg.release_from_job(w.id, "bench-job")

    def stats(ops):
        for _ in range(ops):
            reg.stats()

    def tick(ops):
        for _ in range(ops):
            clock.advance(1.0)
            manager.tick(0)

    busy = n * 999 // 1000
    results = {"heartbeat": best_ns(heartbeat, 200_000), "stats": best_ns(stats, 20_000),
               "tick": best_ns(tick, 2_000)}
    for i in range(busy):
        reg.assign_to_job(ids[i], f"job-{i}")
    results["claim+release (99.9% busy)"] = best_ns(claim_release, 20_000)
    rows_out.update(results)


def bench_plain(n, rows_out):
    clock = hw.ManualClock(T0)  # a clock object either way; only its reads are timed
    reg = PlainRegistry(clock)
    ids = []
    for i in range(n):
        w = reg.register("docker-local", "docker", f"c-{i:08x}", {"pool": "ci"})
        reg.ready(w.id)
        ids.append(w.id)
    # The scans are slow: fewer operations, sized so each loop stays around a second.
    scan_ops = max(3, 2_000_000 // n)

    def heartbeat(ops):
        hb = reg.heartbeat
        for k in range(ops):
            hb(ids[k * STRIDE % n])

    def claim_release(ops):
        for _ in range(ops):
            w = reg.claim("bench-job", {"pool": "ci"})
            reg.release_from_job(w.id, "bench-job")

    def stats(ops):
        for _ in range(ops):
            reg.stats()

    def tick(ops):
        for _ in range(ops):
            clock.advance(1.0)
            reg.tick()

    busy = n * 999 // 1000
    results = {"heartbeat": best_ns(heartbeat, 200_000), "stats": best_ns(stats, scan_ops),
               "tick": best_ns(tick, scan_ops)}
    with reg.lock:
        for i in range(busy):
            w = reg.workers[ids[i]]
            w.state, w.current_job = "busy", f"job-{i}"
    results["claim+release (99.9% busy)"] = best_ns(claim_release, scan_ops)
    rows_out.update(results)


def main(argv):
    out = None
    sizes = [10_000, 100_000]
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--sizes":
            sizes = [int(s) for s in args.pop(0).split(",")]
        else:
            out = a
    rows = []
    for n in sizes:
        module, plain = {}, {}
        bench_module(n, module)
        bench_plain(n, plain)
        for op in module:
            rows.append({"op": op, "size": label(n), "module_ns": module[op], "plain_ns": plain[op]})
            print(f"{op:28} {label(n):>5}  module {module[op]:12.0f} ns   plain {plain[op]:14.0f} ns"
                  f"   x{plain[op] / module[op]:.1f}", flush=True)
    if out:
        with open(out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
