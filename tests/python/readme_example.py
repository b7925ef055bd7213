from datetime import timedelta

from hodei_workers import ManualClock, Registry, WorkerSpec, WorkerState

clock = ManualClock()  # or Registry() for the system clock
registry = Registry(clock=clock)
events = registry.subscribe()

# The provider started a container; its agent reports in and heartbeats.
spec = WorkerSpec("ubuntu:24.04", labels={"pool": "ci"}, idle_timeout=timedelta(minutes=5))
worker = registry.register("docker-local", "docker", "container-1", spec)
registry.update_state(worker.id, WorkerState.READY)
registry.heartbeat(worker.id)

# The scheduler hands out a job atomically, and takes it back when done.
busy = registry.claim("build-1234", labels={"pool": "ci"})
assert busy is not None and busy.current_job == "build-1234"
assert registry.release_from_job(busy.id, expected_job="build-1234") == "build-1234"

# A worker silent past its deadline shows up as unhealthy.
clock.advance(120)
assert [w.id for w in registry.find_unhealthy(timeout=60)] == [worker.id]
assert registry.stats().ready == 1 and worker.id in registry
print([event.kind for event in events.drain()])
