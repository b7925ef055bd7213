"""hodei_workers: the registry of a job system's ephemeral workers and the engine of their
lifecycle (registration, heartbeats, job assignment, health checks, cleanup, provisioning
through providers, autoscaling), backed by a thread-safe Rust core.

Start with :class:`Registry` (and :class:`LifecycleManager` to drive the fleet)::

    from hodei_workers import Registry, WorkerSpec, WorkerState

    registry = Registry()
    worker = registry.register("docker-local", "docker", "container-1", WorkerSpec("ubuntu:24.04"))
    registry.update_state(worker.id, WorkerState.READY)
    busy = registry.claim("job-42")

Ids are ``str``, durations float seconds (or ``datetime.timedelta``), timestamps float seconds
since the Unix epoch. Every error is a :class:`HodeiWorkersError`.
"""

from hodei_workers._native import (
    AssignedToJob,
    BackendError,
    CapacityExceededError,
    CleanupResult,
    DestroyFailed,
    DestroyFailure,
    Event,
    HealthCheckResult,
    HeartbeatReceived,
    HodeiWorkersError,
    InternalError,
    InvalidArgumentError,
    InvalidTransitionError,
    JobAlreadyAssignedError,
    JobLost,
    LifecycleConfig,
    LifecycleManager,
    LifecycleStats,
    LostJob,
    ManualClock,
    MassExpiryHeld,
    MassExpiryHold,
    OrphanInstance,
    ProviderBackoff,
    ProviderError,
    ProviderNotFoundError,
    ProvisionFailed,
    ProvisionFailure,
    ProvisionRequested,
    ProvisionedWorker,
    ReconcileReport,
    Registered,
    Registry,
    RegistryStats,
    ReleasedFromJob,
    Resources,
    ScalingPlan,
    SnapshotError,
    StateChanged,
    Subscription,
    TerminatedWorker,
    TerminationReason,
    TickReport,
    UnhealthyDetected,
    UnhealthyWorker,
    Unregistered,
    Worker,
    WorkerAlreadyExistsError,
    WorkerHandle,
    WorkerNotAvailableError,
    WorkerNotBusyError,
    WorkerNotFoundError,
    WorkerSpec,
    WorkerState,
    __version__,
)
from hodei_workers.provider import Created, Provider

__all__ = [
    # registry and values
    "Registry",
    "ManualClock",
    "Worker",
    "WorkerSpec",
    "Resources",
    "WorkerState",
    "TerminationReason",
    "RegistryStats",
    # lifecycle engine
    "LifecycleManager",
    "LifecycleConfig",
    "Provider",
    "Created",
    "WorkerHandle",
    "TickReport",
    "ScalingPlan",
    "HealthCheckResult",
    "CleanupResult",
    "ReconcileReport",
    "LifecycleStats",
    "LostJob",
    "UnhealthyWorker",
    "TerminatedWorker",
    "DestroyFailure",
    "ProvisionedWorker",
    "ProvisionFailure",
    "ProviderBackoff",
    "MassExpiryHold",
    "OrphanInstance",
    # events
    "Subscription",
    "Event",
    "Registered",
    "StateChanged",
    "AssignedToJob",
    "ReleasedFromJob",
    "HeartbeatReceived",
    "UnhealthyDetected",
    "JobLost",
    "Unregistered",
    "ProvisionRequested",
    "ProvisionFailed",
    "DestroyFailed",
    "MassExpiryHeld",
    # errors
    "HodeiWorkersError",
    "WorkerNotFoundError",
    "WorkerAlreadyExistsError",
    "InvalidTransitionError",
    "WorkerNotAvailableError",
    "WorkerNotBusyError",
    "JobAlreadyAssignedError",
    "ProviderNotFoundError",
    "ProviderError",
    "CapacityExceededError",
    "InvalidArgumentError",
    "SnapshotError",
    "BackendError",
    "InternalError",
    "__version__",
]
