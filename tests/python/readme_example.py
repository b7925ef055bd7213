from datetime import timedelta

from hodei_workers import (
    LifecycleConfig, LifecycleManager, ManualClock, Registry, WorkerHandle, WorkerSpec, WorkerState,
)


class DockerProvider:  # any object of this shape is a provider (see hodei_workers.Provider)
    provider_id = "docker-local"
    provider_type = "docker"

    def __init__(self) -> None:
        self.running: set[str] = set()

    def create_worker(self, worker_id: str, spec: WorkerSpec) -> str:
        # really: `docker run -e HODEI_WORKER_ID=<worker_id> <spec.image>`: the agent reports in
        # and heartbeats with the id the manager made for it
        container = f"container-{len(self.running) + 1}"
        self.running.add(container)
        return container  # the instance's resource id

    def destroy_worker(self, handle: WorkerHandle) -> None:
        self.running.remove(handle.resource_id)  # a LookupError means "already gone"


clock = ManualClock()  # Registry() alone runs on the system clock
registry = Registry(clock=clock)
events = registry.subscribe()
manager = LifecycleManager(registry, LifecycleConfig(heartbeat_timeout=60))
docker = DockerProvider()
manager.register_provider(docker)

# Ask the provider for a worker; its agent reports in and heartbeats.
spec = WorkerSpec("ubuntu:24.04", labels={"pool": "ci"}, idle_timeout=timedelta(minutes=5))
worker = manager.provision_worker("docker-local", spec)
registry.update_state(worker.id, WorkerState.READY)
manager.process_heartbeat(worker.id)

# The scheduler hands out a job atomically, and takes it back when done.
busy = registry.claim("build-1234", labels={"pool": "ci"})
assert busy is not None and busy.current_job == "build-1234"
assert registry.release_from_job(busy.id, expected_job="build-1234") == "build-1234"

# The host ticks regularly; a worker silent past its deadline is retired and destroyed.
retired = []
for _ in range(8):
    clock.advance(10)
    retired += manager.tick(pending_jobs=0).terminated
assert [t.worker_id for t in retired] == [worker.id] and docker.running == set()
print([event.kind for event in events.drain()])
