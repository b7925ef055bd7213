# Type stubs of the compiled module hodei_workers._native (checked against it by
# `python -m mypy.stubtest hodei_workers._native` in `make test-python`).

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar, Union, final

from typing_extensions import TypeAlias, disjoint_base

from hodei_workers.provider import Provider

__version__: str
POOL_LABEL: str
"""The label the manager puts on every worker of a pool, with the pool's name as value
(``"hodei.pool"``): ``RegistryStats.by_pool`` counts by it, and a scheduler claims from one pool
with ``labels={POOL_LABEL: "gpu-spot"}``."""

__all__ = [
    "__version__",
    "POOL_LABEL",
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
    "NotLeaderError",
    "InternalError",
    "WorkerState",
    "TerminationReason",
    "Resources",
    "WorkerSpec",
    "Worker",
    "RegistryStats",
    "ManualClock",
    "Registry",
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
    "LeaderChanged",
    "LifecycleConfig",
    "LifecycleManager",
    "WorkerHandle",
    "LostJob",
    "UnhealthyWorker",
    "TerminatedWorker",
    "DestroyFailure",
    "ProvisionedWorker",
    "ProvisionFailure",
    "ProviderBackoff",
    "ReconcileHold",
    "MassExpiryHold",
    "MassExpiryGiveUp",
    "HealthCheckResult",
    "CleanupResult",
    "ScalingPlan",
    "TickReport",
    "OrphanInstance",
    "ReconcileReport",
    "LifecycleStats",
    "LeaderInfo",
    "Ticker",
    "TickerStats",
    "Demand",
    "Pool",
    "PoolDecision",
    "PoolPlan",
    "Replacement",
    "Serving",
    "Spill",
    "UnmetDemand",
    "Unschedulable",
]

# A duration: float seconds or a datetime.timedelta.
_Seconds: TypeAlias = Union[float, timedelta]

_StateLike: TypeAlias = Union["WorkerState", str]
_ReasonLike: TypeAlias = Union["TerminationReason", str]

# --- errors -----------------------------------------------------------------------------------
# Defined in Python (hodei_workers/_errors.py, with their docstrings); the native module imports
# them and raises them.

from hodei_workers._errors import BackendError as BackendError
from hodei_workers._errors import NotLeaderError as NotLeaderError
from hodei_workers._errors import CapacityExceededError as CapacityExceededError
from hodei_workers._errors import HodeiWorkersError as HodeiWorkersError
from hodei_workers._errors import InternalError as InternalError
from hodei_workers._errors import InvalidArgumentError as InvalidArgumentError
from hodei_workers._errors import InvalidTransitionError as InvalidTransitionError
from hodei_workers._errors import JobAlreadyAssignedError as JobAlreadyAssignedError
from hodei_workers._errors import ProviderError as ProviderError
from hodei_workers._errors import ProviderNotFoundError as ProviderNotFoundError
from hodei_workers._errors import SnapshotError as SnapshotError
from hodei_workers._errors import WorkerAlreadyExistsError as WorkerAlreadyExistsError
from hodei_workers._errors import WorkerNotAvailableError as WorkerNotAvailableError
from hodei_workers._errors import WorkerNotBusyError as WorkerNotBusyError
from hodei_workers._errors import WorkerNotFoundError as WorkerNotFoundError

def _error_classes() -> list[tuple[str, type[HodeiWorkersError]]]:
    """``[(kind, exception class)]`` for every core error kind, made by the conversion the API
    uses (for the tests: each kind has its own class)."""

# --- enums ------------------------------------------------------------------------------------

class WorkerState(enum.Enum):
    CREATING = "creating"
    CONNECTING = "connecting"
    READY = "ready"
    BUSY = "busy"
    DRAINING = "draining"
    TERMINATING = "terminating"
    TERMINATED = "terminated"

class TerminationReason(enum.Enum):
    IDLE = "idle"
    LIFETIME = "lifetime"
    DRAINED = "drained"
    MAX_JOBS = "max_jobs"
    UNHEALTHY = "unhealthy"
    STARTUP_TIMEOUT = "startup_timeout"
    VANISHED = "vanished"
    SCALED_DOWN = "scaled_down"
    REQUESTED = "requested"
    INTERRUPTED = "interrupted"

# --- values -----------------------------------------------------------------------------------

@final
class Resources:
    """What a worker needs of its host: CPU cores (fractions allowed), memory and disk in bytes,
    GPUs. Immutable; compares by value."""
    def __new__(
        cls,
        cpu_cores: float = 0.0,
        memory_bytes: int = 0,
        disk_bytes: int = 0,
        gpu_count: int = 0,
        gpu_type: str | None = None,
    ) -> Resources:
        """Resources to ask for.

        Raises:
            InvalidArgumentError: a negative or non-finite amount, a huge int, a NUL character
                in ``gpu_type``.
            TypeError: a bool or another non-number for an amount.
        """
    @property
    def cpu_cores(self) -> float:
        """CPU cores (fractions allowed)."""
    @property
    def memory_bytes(self) -> int:
        """Memory in bytes."""
    @property
    def disk_bytes(self) -> int:
        """Disk in bytes."""
    @property
    def gpu_count(self) -> int:
        """Number of GPUs."""
    @property
    def gpu_type(self) -> str | None:
        """GPU model, if one is asked for."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class WorkerSpec:
    """What a worker is: image, resources, labels, environment, capabilities, architecture and
    limits. Immutable and validated on construction; compares by value.

    ``idle_timeout`` (default 300 s): a READY worker idle this long is cleaned up (heartbeats do
    not reset it; a release does). ``max_lifetime`` (default 3600 s): a worker is retired this
    long after creation (a busy one is drained first). ``max_jobs``: after that many jobs the
    worker is drained (1 makes a one-shot ephemeral worker)."""
    def __new__(
        cls,
        image: str = "",
        *,
        resources: Resources | None = None,
        labels: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
        capabilities: str | Iterable[str] | None = None,
        architecture: str = "amd64",
        idle_timeout: _Seconds = 300.0,
        max_lifetime: _Seconds = 3600.0,
        max_jobs: int | None = None,
    ) -> WorkerSpec:
        """A spec, validated now.

        Arguments:
            image: the container image (or AMI, function name, ...).
            resources: what the worker needs of its host.
            labels: str -> str labels, matched exactly by filters' ``labels=``.
            environment: str -> str environment for the agent.
            capabilities: what the worker can do (a str counts as one capability).
            architecture: ``"amd64"``, ``"arm64"`` or ``"arm"``.
            idle_timeout: a READY worker idle this long is retired (heartbeats do not reset it).
            max_lifetime: a worker is retired this long after creation (a busy one drained).
            max_jobs: after this many jobs the worker is drained (1: one-shot).

        Raises:
            InvalidArgumentError: a NUL character in any string, a string over its documented
                maximum size, a zero or out-of-range duration, ``max_jobs`` out of range.
            TypeError: a wrong type (a bool for a duration included).
        """
    def replace(
        self,
        *,
        image: str = ...,
        resources: Resources | None = ...,
        labels: Mapping[str, str] | None = ...,
        environment: Mapping[str, str] | None = ...,
        capabilities: str | Iterable[str] | None = ...,
        architecture: str = ...,
        idle_timeout: _Seconds = ...,
        max_lifetime: _Seconds = ...,
        max_jobs: int | None = ...,
    ) -> WorkerSpec:
        """A copy with some fields changed: ``spec.replace(max_jobs=1, labels={"pool": "gpu"})``.
        Takes the constructor's keyword arguments (and validates like it)."""
    @property
    def image(self) -> str:
        """Container image (or AMI, function name…)."""
    @property
    def resources(self) -> Resources:
        """Resources asked for."""
    @property
    def labels(self) -> dict[str, str]:
        """Labels (a copy); a filter's ``labels=`` must match them exactly."""
    @property
    def environment(self) -> dict[str, str]:
        """Environment for the worker process (a copy)."""
    @property
    def capabilities(self) -> frozenset[str]:
        """What the worker can do; a filter's ``capabilities=`` may require some."""
    @property
    def architecture(self) -> str:
        """CPU architecture: ``"amd64"``, ``"arm64"`` or ``"arm"``."""
    @property
    def idle_timeout(self) -> float:
        """Idle timeout in seconds."""
    @property
    def max_lifetime(self) -> float:
        """Maximum lifetime in seconds."""
    @property
    def max_jobs(self) -> int | None:
        """Job limit, or None for no limit."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Worker:
    """A snapshot of one worker's record, taken at one instant: it never changes, and changing the
    registry does not change it (ask the registry again for fresh data).

    Ids are str; timestamps are float seconds since the Unix epoch on the registry's clock."""
    @property
    def id(self) -> str:
        """The worker's id (a lowercase hyphenated UUID)."""
    @property
    def provider_id(self) -> str:
        """The provider that owns the instance."""
    @property
    def provider_type(self) -> str:
        """The provider's type: ``"docker"``, ``"kubernetes"``, …, ``"custom:NAME"``."""
    @property
    def resource_id(self) -> str:
        """The provider's id of the instance (container id, pod name, instance id…)."""
    @property
    def metadata(self) -> dict[str, str]:
        """What the provider remembers about the instance (a copy)."""
    @property
    def spec(self) -> WorkerSpec:
        """What the worker is."""
    @property
    def state(self) -> WorkerState:
        """Current state (a WorkerState)."""
    @property
    def current_job(self) -> str | None:
        """The job it holds (BUSY, or DRAINING while finishing it), or None."""
    @property
    def jobs_executed(self) -> int:
        """Jobs released so far."""
    @property
    def created_at(self) -> float:
        """When it was registered."""
    @property
    def updated_at(self) -> float:
        """Last change of any field but the heartbeat."""
    @property
    def state_changed_at(self) -> float:
        """Last change of state."""
    @property
    def last_heartbeat(self) -> float:
        """Last heartbeat (registration counts as one)."""
    @property
    def idle_since(self) -> float | None:
        """When it last entered READY (the idle deadline starts there), or None."""
    @property
    def is_available(self) -> bool:
        """Whether it accepted jobs at the snapshot (READY, no job)."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class RegistryStats:
    """Counts of the registry's workers, per state, provider, provider type and pool, taken at one
    instant (maintained counters: reading them costs nothing however large the fleet)."""
    @property
    def total(self) -> int:
        """Registered workers."""
    @property
    def by_state(self) -> dict[WorkerState, int]:
        """Workers per state: a dict with every WorkerState as a key."""
    @property
    def by_provider(self) -> dict[str, int]:
        """Workers per provider id (providers with none are absent)."""
    @property
    def by_provider_type(self) -> dict[str, int]:
        """Workers per provider type (types with none are absent)."""
    @property
    def by_pool(self) -> dict[str, dict[WorkerState, int]]:
        """Workers per pool (the value of their ``POOL_LABEL`` label), each a dict with every
        WorkerState as a key; pools with no worker are absent. Maintained counters, like the
        rest: what a pool-mode manager reads every tick."""
    @property
    def live(self) -> int:
        """Workers not on their way out (every state but TERMINATING and TERMINATED)."""
    @property
    def starting(self) -> int:
        """Workers still starting (CREATING + CONNECTING): capacity on its way."""
    @property
    def creating(self) -> int:
        """Workers in CREATING."""
    @property
    def connecting(self) -> int:
        """Workers in CONNECTING."""
    @property
    def ready(self) -> int:
        """Workers in READY."""
    @property
    def busy(self) -> int:
        """Workers in BUSY."""
    @property
    def draining(self) -> int:
        """Workers in DRAINING."""
    @property
    def terminating(self) -> int:
        """Workers in TERMINATING."""
    @property
    def terminated(self) -> int:
        """Workers in TERMINATED."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class ManualClock:
    """A clock that moves only when told to: tests and simulations. Give it to
    ``Registry(clock=...)``; every deadline of that registry (and of its manager) is then
    measured on it. Times are float seconds since the Unix epoch; it never goes backwards."""
    def __new__(cls, start: float = 1700000000.0) -> ManualClock:
        """A clock reading ``start`` (float seconds since the epoch; default a fixed instant,
        so that runs are reproducible).

        Raises:
            InvalidArgumentError: a negative, non-finite or huge start.
            TypeError: a bool.
        """
    def now(self) -> float:
        """The time now, in float seconds since the epoch (millisecond resolution)."""
    def set(self, at: float) -> float:
        """Sets the time. An earlier time than now is ignored (the clock never goes backwards).
        Returns the time now in force."""
    def advance(self, by: _Seconds) -> float:
        """Moves the clock forward by ``by`` (float seconds or timedelta); returns the new time."""

# --- events -----------------------------------------------------------------------------------

@disjoint_base
class Event:
    """Something that happened to a worker or to the fleet, in order.

    ``seq`` increases strictly per registry (a gap means this subscriber missed events: its
    queue was full, which ``Subscription.dropped`` counts, or they were HeartbeatReceived
    events, which it did not ask for and another subscription did; on PostgreSQL also a write
    that failed after taking its number, or events pruned before it read them); ``at`` is the
    time on the registry's clock (float seconds since the epoch); ``kind`` is the stable
    snake_case name (``"state_changed"``, …). Each kind is a subclass with its own fields; an
    event of a kind newer than this module is a plain Event. Registered, StateChanged,
    AssignedToJob, ReleasedFromJob, JobLost and Unregistered are the registry's own: only a
    change of its records emits them (``Registry.publish``, the host's way onto the stream,
    refuses them), so each one read tells of a change that happened. The other kinds can be made
    with their fields, to publish."""
    @property
    def seq(self) -> int:
        """Strictly increasing per registry; a gap means this subscriber missed events."""
    @property
    def at(self) -> float:
        """When it happened, on the registry's clock (float seconds since the epoch)."""
    @property
    def kind(self) -> str:
        """The stable snake_case name of the kind (``"registered"``, ``"state_changed"``, …)."""
    @property
    def worker_id(self) -> str | None:
        """The worker the event is about, or None for fleet events (provisioning, mass expiry)."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Registered(Event):
    """A worker was registered (it starts in CREATING)."""
    __match_args__: ClassVar[tuple[str, ...]]
    @property
    def worker_id(self) -> str:
        """The event's ``worker_id`` (see the class docstring)."""
    @property
    def provider_id(self) -> str:
        """The event's ``provider_id`` (see the class docstring)."""
    @property
    def provider_type(self) -> str:
        """The event's ``provider_type`` (see the class docstring)."""

@final
class StateChanged(Event):
    """A worker changed state: ``from_state`` -> ``to_state`` (WorkerState members)."""
    __match_args__: ClassVar[tuple[str, ...]]
    @property
    def worker_id(self) -> str:
        """The event's ``worker_id`` (see the class docstring)."""
    @property
    def from_state(self) -> WorkerState:
        """The event's ``from_state`` (see the class docstring)."""
    @property
    def to_state(self) -> WorkerState:
        """The event's ``to_state`` (see the class docstring)."""

@final
class AssignedToJob(Event):
    """A worker took a job."""
    __match_args__: ClassVar[tuple[str, ...]]
    @property
    def worker_id(self) -> str:
        """The event's ``worker_id`` (see the class docstring)."""
    @property
    def job_id(self) -> str:
        """The event's ``job_id`` (see the class docstring)."""

@final
class ReleasedFromJob(Event):
    """A worker finished (released) a job."""
    __match_args__: ClassVar[tuple[str, ...]]
    @property
    def worker_id(self) -> str:
        """The event's ``worker_id`` (see the class docstring)."""
    @property
    def job_id(self) -> str:
        """The event's ``job_id`` (see the class docstring)."""

@final
class HeartbeatReceived(Event):
    """A heartbeat arrived (only for subscriptions made with ``heartbeats=True``)."""
    __match_args__: ClassVar[tuple[str, ...]]
    def __new__(cls, worker_id: str) -> HeartbeatReceived:
        """An event to give to ``Registry.publish``: ``seq`` 0 and ``at`` 0.0 until
        then (the registry numbers and dates the event it puts on the stream; this object does
        not change).

        Raises:
            InvalidArgumentError: a malformed ``worker_id``.
            TypeError: an argument of the wrong type.
        """
    @property
    def worker_id(self) -> str:
        """The event's ``worker_id`` (see the class docstring)."""

@final
class UnhealthyDetected(Event):
    """A worker missed its heartbeat or startup deadline; ``last_heartbeat`` is float seconds."""
    __match_args__: ClassVar[tuple[str, ...]]
    def __new__(cls, worker_id: str, last_heartbeat: float) -> UnhealthyDetected:
        """An event to give to ``Registry.publish``: ``seq`` 0 and ``at`` 0.0 until
        then (the registry numbers and dates the event it puts on the stream; this object does
        not change).

        Raises:
            InvalidArgumentError: a malformed ``worker_id``; a negative, non-finite or huge
                ``last_heartbeat`` (float seconds since the epoch).
            TypeError: an argument of the wrong type (a bool included).
        """
    @property
    def worker_id(self) -> str:
        """The event's ``worker_id`` (see the class docstring)."""
    @property
    def last_heartbeat(self) -> float:
        """The event's ``last_heartbeat`` (see the class docstring)."""

@final
class JobLost(Event):
    """A worker holding a job left service: the host must requeue ``job_id``."""
    __match_args__: ClassVar[tuple[str, ...]]
    @property
    def worker_id(self) -> str:
        """The event's ``worker_id`` (see the class docstring)."""
    @property
    def job_id(self) -> str:
        """The event's ``job_id`` (see the class docstring)."""

@final
class Unregistered(Event):
    """A worker's record left the registry; ``reason`` is a TerminationReason."""
    __match_args__: ClassVar[tuple[str, ...]]
    @property
    def worker_id(self) -> str:
        """The event's ``worker_id`` (see the class docstring)."""
    @property
    def reason(self) -> TerminationReason:
        """The event's ``reason`` (see the class docstring)."""

@final
class ProvisionRequested(Event):
    """The manager asked a provider for a worker."""
    __match_args__: ClassVar[tuple[str, ...]]
    def __new__(cls, provider_id: str) -> ProvisionRequested:
        """An event to give to ``Registry.publish``: ``seq`` 0 and ``at`` 0.0 until
        then (the registry numbers and dates the event it puts on the stream; this object does
        not change).

        Raises:
            InvalidArgumentError: a malformed ``provider_id`` (1..=128 bytes, no control
                characters).
            TypeError: an argument of the wrong type.
        """
    @property
    def provider_id(self) -> str:
        """The event's ``provider_id`` (see the class docstring)."""

@final
class ProvisionFailed(Event):
    """A provider failed to create a worker; ``error`` says what it said."""
    __match_args__: ClassVar[tuple[str, ...]]
    def __new__(cls, provider_id: str, error: str) -> ProvisionFailed:
        """An event to give to ``Registry.publish``: ``seq`` 0 and ``at`` 0.0 until
        then (the registry numbers and dates the event it puts on the stream; this object does
        not change).

        Raises:
            InvalidArgumentError: a malformed ``provider_id``.
            TypeError: an argument of the wrong type.
        """
    @property
    def provider_id(self) -> str:
        """The event's ``provider_id`` (see the class docstring)."""
    @property
    def error(self) -> str:
        """The event's ``error`` (see the class docstring)."""

@final
class DestroyFailed(Event):
    """A provider failed to destroy a worker; it stays TERMINATING and is retried with backoff.
    Not for an orphan instance (no record): its failed destroys are in the reports only."""
    __match_args__: ClassVar[tuple[str, ...]]
    def __new__(cls, worker_id: str, provider_id: str, error: str, attempts: int) -> DestroyFailed:
        """An event to give to ``Registry.publish``: ``seq`` 0 and ``at`` 0.0 until
        then (the registry numbers and dates the event it puts on the stream; this object does
        not change).

        Raises:
            InvalidArgumentError: a malformed ``worker_id`` or ``provider_id``; ``attempts``
                outside 0..=2**32-1.
            TypeError: an argument of the wrong type (a bool included).
        """
    @property
    def worker_id(self) -> str:
        """The event's ``worker_id`` (see the class docstring)."""
    @property
    def provider_id(self) -> str:
        """The event's ``provider_id`` (see the class docstring)."""
    @property
    def error(self) -> str:
        """The event's ``error`` (see the class docstring)."""
    @property
    def attempts(self) -> int:
        """The event's ``attempts`` (see the class docstring)."""

@final
class MassExpiryHeld(Event):
    """The health check would have declared too many workers unhealthy at once (a partition
    on the host's side, most likely) and declared none."""
    __match_args__: ClassVar[tuple[str, ...]]
    def __new__(cls, would_expire: int, live: int) -> MassExpiryHeld:
        """An event to give to ``Registry.publish``: ``seq`` 0 and ``at`` 0.0 until
        then (the registry numbers and dates the event it puts on the stream; this object does
        not change).

        Raises:
            InvalidArgumentError: a negative or huge count.
            TypeError: an argument of the wrong type (a bool included).
        """
    @property
    def would_expire(self) -> int:
        """The event's ``would_expire`` (see the class docstring)."""
    @property
    def live(self) -> int:
        """The event's ``live`` (see the class docstring)."""

@final
class LeaderChanged(Event):
    """A replica's manager took the leadership lease (``holder`` is then its own name) or found
    it lost (``holder`` is the new leader, or None when unknown); ``term`` is the lease's
    term (the fencing token), ``by`` the replica that published the event."""
    __match_args__: ClassVar[tuple[str, ...]]
    def __new__(cls, holder: str | None, term: int, by: str) -> LeaderChanged:
        """An event to give to ``Registry.publish``: ``seq`` 0 and ``at`` 0.0 until
        then (the registry numbers and dates the event it puts on the stream; this object does
        not change).

        Raises:
            InvalidArgumentError: a negative or huge ``term``.
            TypeError: an argument of the wrong type (a bool included).
        """
    @property
    def holder(self) -> str | None:
        """The event's ``holder`` (see the class docstring)."""
    @property
    def term(self) -> int:
        """The event's ``term`` (see the class docstring)."""
    @property
    def by(self) -> str:
        """The event's ``by`` (see the class docstring)."""

@final
class Subscription:
    """A subscriber's end of a registry's event stream (from ``Registry.subscribe``).

    Events queue in a bounded buffer; when it is full the registry never waits: the event is
    dropped for this subscriber, ``dropped`` grows and ``seq`` shows a gap. Iterating blocks for
    each next event and ends when the registry is gone; use ``drain()`` or ``try_recv()`` to
    read without waiting. Dropping the Subscription unsubscribes. Safe to share between threads."""
    def recv(self, timeout: _Seconds | None = None) -> Event | None:
        """The next event, waiting up to ``timeout`` (float seconds or timedelta; None: until one
        comes or the registry is gone). The GIL is released while waiting, and Ctrl-C (any
        signal handler that raises) interrupts any wait within a tenth of a second. On a
        PostgreSQL registry whose server stops answering, each read takes up to 5 s more (the
        reader's reply timeout): the call returns None up to 10 s after ``timeout``, and
        Ctrl-C is seen within 5 s. Once the server answers again the subscription goes on,
        nothing lost or repeated.

        Returns:
            The event, or None on timeout (or when the registry is gone and the queue empty).

        Raises:
            InvalidArgumentError: a negative or too large timeout.
            TypeError: a timeout that is not a number or timedelta (a bool included).
        """
    def try_recv(self) -> Event | None:
        """The next event if one is queued, else None; never waits for one (on PostgreSQL it
        reads the events that have arrived, with the GIL released)."""
    def drain(self) -> list[Event]:
        """Every event queued now, oldest first; never waits for one (on PostgreSQL it reads the
        events that have arrived, with the GIL released)."""
    @property
    def dropped(self) -> int:
        """How many events were dropped for this subscriber because its queue was full."""
    def __len__(self) -> int: ...
    def __iter__(self) -> Subscription: ...
    def __next__(self) -> Event: ...

# --- registry ---------------------------------------------------------------------------------

@final
class Registry:
    """The registry of a fleet's workers: who they are, what state each is in, which job each
    holds. Thread-safe: share one Registry between threads freely; the GIL is released while
    it works (in memory, ``heartbeat`` keeps it: shorter than releasing it; on PostgreSQL every
    call that may reach the database releases it).

    ``Registry()`` runs on the system's monotonic clock; ``Registry(clock=ManualClock())`` on a
    clock that moves only when told to (tests, simulations).

    Ids are str (worker ids are UUIDs), durations float seconds or ``timedelta``, timestamps
    float seconds since the epoch. Unknown workers raise WorkerNotFoundError (a LookupError),
    malformed ids and values InvalidArgumentError (a ValueError), wrong types TypeError.
    ``len(registry)`` counts the workers; ``worker_id in registry`` tests one."""
    def __new__(
        cls, clock: ManualClock | None = None, *, retired_id_limit: int | None = None
    ) -> Registry:
        """An empty in-memory registry.

        Arguments:
            clock: a ManualClock to run on (tests, simulations); None for the system's
                monotonic clock.
            retired_id_limit: how many unregistered ids it remembers (None: 2**20). Ids are
                never reused: ``register(..., worker_id=...)`` of a remembered id raises
                WorkerAlreadyExistsError; an id retired longer ago than the last
                ``retired_id_limit`` retirements is forgotten and may come back. Ids the
                library makes never repeat: the limit matters for ids you choose.

        Raises:
            InvalidArgumentError: a negative ``retired_id_limit``.
        """
    @staticmethod
    def postgres(
        url: str,
        *,
        name: str = "hodei_workers",
        clock: ManualClock | None = None,
        retired_id_limit: int | None = None,
    ) -> Registry:
        """The registry ``name`` on a PostgreSQL server, shared by every process that opens the
        same name on the same database (scheduler replicas: one fleet).

        Arguments:
            url: any libpq connection string: ``"postgresql://user@host/db"`` or
                ``"host=/tmp user=postgres dbname=postgres"``.
            name: the schema the registry lives in (1 to 48 characters of ``[a-z0-9_]``, not
                starting with a digit), created with its tables on first use.
            clock: a ManualClock (tests); None judges deadlines on the database's clock.
            retired_id_limit: how many unregistered ids this handle keeps remembered (None:
                2**20, as in memory); older ones are forgotten at the registry's next prune (at
                most a minute later, on the health-check path).

        A process forked after this (``multiprocessing``, a pre-forking server) opens
        connections of its own and leaves the parent's alone: fork while no call of the
        registry is in flight.

        Raises:
            InvalidArgumentError: a malformed ``url`` (a NUL in it included) or ``name``, a
                negative ``retired_id_limit``.
            BackendError: the server cannot be reached (later calls too, while it is down);
                the role lacks a right to create, migrate or read the registry (the message
                names it); the registry's schema is newer than this build (a newer build
                migrated it: refused, nothing changed).
        """
    @staticmethod
    def drop_postgres(url: str, *, name: str) -> None:
        """Drops the registry ``name`` (its schema, records and events) from a server.

        Arguments:
            url: the server's libpq connection string.
            name: the registry's name.

        Raises:
            InvalidArgumentError: a malformed ``url`` (a NUL in it included) or ``name``.
            BackendError: the server cannot be reached.
        """
    @property
    def clock(self) -> ManualClock | None:
        """The ManualClock given at construction, or None on the system clock."""
    def now(self) -> float:
        """The time on the registry's clock (float seconds since the epoch). On PostgreSQL
        without a ManualClock it is the database's clock: the GIL is released while it asks."""
    def register(
        self,
        provider_id: str,
        provider_type: str,
        resource_id: str,
        spec: WorkerSpec | None = None,
        *,
        worker_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Worker:
        """Registers a worker (state CREATING) for an instance a provider started.

        Arguments:
            provider_id: the provider's id, e.g. ``"docker-local"`` (1..=128 bytes, no control
                characters).
            provider_type: ``"docker"``, ``"kubernetes"``, ... or ``"custom:NAME"``.
            resource_id: the provider's id of the instance (container id, pod name, ...); not
                empty.
            spec: what the worker is; ``WorkerSpec()`` when None. Workers registered from one
                spec object share it.
            worker_id: the id to use (e.g. the one its agent was started with); a fresh UUID
                when None.
            metadata: str -> str facts about the instance, given back to the provider.

        Returns:
            The new worker's snapshot.

        Raises:
            WorkerAlreadyExistsError: ``worker_id`` is, or once was, registered here (ids are
                never reused).
            InvalidArgumentError: a malformed id or type, an empty ``resource_id``, a string
                holding a NUL character or over its limit.
            TypeError: an argument of the wrong type.
        """
    def unregister(self, worker_id: str, reason: _ReasonLike | None = None) -> Worker:
        """Removes a worker's record. A job it held is reported lost (a JobLost event).

        Arguments:
            worker_id: the worker.
            reason: a TerminationReason or its name (default REQUESTED), in the Unregistered
                event.

        Returns:
            The worker's last snapshot.

        Raises:
            WorkerNotFoundError: no such worker.
        """
    def get(self, worker_id: str) -> Worker | None:
        """A snapshot of one worker, or None when unknown.

        Raises:
            InvalidArgumentError: a malformed id.
        """
    def find(
        self,
        *,
        states: _StateLike | Iterable[_StateLike] | None = None,
        provider_id: str | None = None,
        provider_type: str | None = None,
        accepting_jobs: bool | None = None,
        idle_for: _Seconds | None = None,
        unhealthy_for: _Seconds | None = None,
        labels: Mapping[str, str] | None = None,
        capabilities: str | Iterable[str] | None = None,
        limit: int | None = None,
        fits: Resources | None = None,
        architecture: str | None = None,
    ) -> list[Worker]:
        """The workers matching every criterion given (None: any).

        Arguments:
            states: a WorkerState, its name, or an iterable of them.
            provider_id: workers of this provider.
            provider_type: workers of this provider type (``"docker"``, ...).
            accepting_jobs: True for READY workers only, False for the others.
            idle_for: READY and idle at least this long.
            unhealthy_for: silent (no heartbeat) for longer than this, judged on
                ``last_heartbeat`` alone: any state, and a grace period does not count
                (unlike ``find_unhealthy``).
            labels: every label given must be on the worker's spec, with that value.
            capabilities: every capability given is required.
            limit: at most this many.
            fits: a Resources the worker's resources cover (at least as much of each, the same
                ``gpu_type`` when one is named): claim for a job as its demand describes it.
            architecture: ``"amd64"``, ``"arm64"`` or ``"arm"``.

        Returns:
            Snapshots, in no particular order.

        Raises:
            InvalidArgumentError: a label key, capability or ``fits.gpu_type`` over 256 bytes, a
                label value over 16 KiB, or more than 1024 labels or capabilities: no worker
                holds such strings (the message names the field).
        """
    def find_available(self) -> list[Worker]:
        """Workers that accept jobs now (READY)."""
    def longest_idle(self, n: int) -> list[Worker]:
        """The ``n`` longest-idle READY workers, longest idle first: a host's scale-in
        candidates, answered from the ready index (no fleet scan: in memory the cost follows
        ``n``, not the number of READY workers). Each worker is listed once; one claimed, or
        whose idle time restarted, during the call may be left out. To retire them, move each
        to DRAINING: one that took a job meanwhile finishes it first.

        Raises:
            InvalidArgumentError: a negative ``n``.
            TypeError: a non-int (a bool included).
        """
    def find_by_provider(self, provider_id: str) -> list[Worker]:
        """Workers of one provider."""
    def update_state(self, worker_id: str, state: _StateLike) -> Worker:
        """Moves a worker to ``state`` (a WorkerState or its name). The state it is already in
        is a no-op (no event). Leaving CREATING/CONNECTING for a live state counts as a
        heartbeat (the agent reported in).

        Returns:
            The new snapshot.

        Raises:
            WorkerNotFoundError: no such worker.
            InvalidTransitionError: the state machine refuses the move; entering or leaving
                BUSY (only assign/claim and release do that); un-draining a worker that reached
                ``spec.max_jobs``.
        """
    def heartbeat(self, worker_id: str) -> None:
        """Records a heartbeat of the worker's agent (updates ``last_heartbeat`` only; changes no
        state). In memory it keeps the GIL (shorter than releasing it); on PostgreSQL it
        releases it for the round trip.

        Raises:
            WorkerNotFoundError: unknown worker: tell its agent to register again.
        """
    def heartbeat_many(self, worker_ids: Iterable[str]) -> list[str]:
        """Records a heartbeat of each worker of ``worker_ids``, as ``heartbeat`` does for one:
        the bulk form for a host that gathers its agents' heartbeats (on PostgreSQL one
        statement for all). The GIL is released while it works.

        Returns:
            The ids the registry does not hold, in the order given: tell their agents to
            register again.

        Raises:
            InvalidArgumentError: a malformed id (then no heartbeat is recorded).
            TypeError: an item that is not a str, or a lone str for ``worker_ids`` (then no
                heartbeat is recorded).
        """
    def grant_grace(self, since: float | None = None) -> None:
        """After a stall of the host (the process was suspended, the machine slept): no
        heartbeat or startup deadline that started before ``since`` expires before ``since``
        plus its timeout. A LifecycleManager does this itself when it notices a stall; a host
        driving the registry alone may.

        Arguments:
            since: float seconds since the epoch on the registry's clock; None: now.

        Raises:
            InvalidArgumentError: a negative, non-finite or huge ``since``.
            TypeError: a non-number (a bool included).
        """
    def assign_to_job(self, worker_id: str, job_id: str) -> Worker:
        """Gives ``job_id`` (1..=256 bytes, no NUL) to a READY worker, which becomes BUSY.

        Returns:
            The new snapshot.

        Raises:
            WorkerNotFoundError: no such worker.
            WorkerNotAvailableError: it is not READY.
            JobAlreadyAssignedError: another worker holds the job.
        """
    def release_from_job(self, worker_id: str, expected_job: str | None = None) -> str:
        """Takes the job back: BUSY -> READY (the idle clock restarts), or the worker stays
        DRAINING; ``jobs_executed`` grows, and reaching ``spec.max_jobs`` drains it.

        Arguments:
            worker_id: the worker.
            expected_job: when given, a worker holding another job is left alone (a late
                release from an old assignment never frees a new one).

        Returns:
            The released job's id.

        Raises:
            WorkerNotFoundError: no such worker (ids are never reused, so a stale release for a
                removed worker lands here).
            WorkerNotBusyError: it holds no job, or another job than ``expected_job``.
        """
    def claim(
        self,
        job_id: str,
        *,
        states: _StateLike | Iterable[_StateLike] | None = None,
        provider_id: str | None = None,
        provider_type: str | None = None,
        accepting_jobs: bool | None = None,
        idle_for: _Seconds | None = None,
        unhealthy_for: _Seconds | None = None,
        labels: Mapping[str, str] | None = None,
        capabilities: str | Iterable[str] | None = None,
        limit: int | None = None,
        fits: Resources | None = None,
        architecture: str | None = None,
    ) -> Worker | None:
        """Picks a READY worker matching the filter (the keywords of ``find``) and gives it
        ``job_id``, in one atomic step: two threads claiming never get the same worker, and a
        job goes to one worker only. Prefers the most recently idle worker, so that surplus
        workers idle out.

        Returns:
            The worker, now BUSY; None when no READY worker matches.

        Raises:
            JobAlreadyAssignedError: a worker already holds ``job_id``.
            InvalidArgumentError: a filter string over its limit, as for ``find``.
        """
    def find_unhealthy(self, timeout: _Seconds) -> list[Worker]:
        """Workers past their heartbeat deadline: CONNECTING, READY, BUSY or DRAINING and silent
        for longer than ``timeout`` (float seconds or timedelta)."""
    def find_startup_expired(self, timeout: _Seconds) -> list[Worker]:
        """Workers past their startup deadline: still CREATING or CONNECTING longer than
        ``timeout`` after registration."""
    def find_for_termination(self) -> list[tuple[Worker, TerminationReason]]:
        """Workers due for retirement, each with its TerminationReason: LIFETIME (past
        ``max_lifetime``; a BUSY one is to be drained, not killed), IDLE (READY past
        ``idle_timeout``), DRAINED / MAX_JOBS (DRAINING without a job)."""
    def stats(self) -> RegistryStats:
        """Counts per state, provider and provider type (constant cost, whatever the fleet size)."""
    def subscribe(self, capacity: int = 4096, heartbeats: bool = False) -> Subscription:
        """A new subscription to the registry's events.

        Arguments:
            capacity: the queue's bound (at least 1). When it is full, events are dropped for
                this subscriber (``Subscription.dropped`` counts them; the ``seq`` gap shows
                them): the registry never waits for a slow reader.
            heartbeats: also send HeartbeatReceived events (off suits a large fleet).

        Raises:
            InvalidArgumentError: a capacity below 1 (0 as in Rust and C).
        """
    def publish(self, event: Event) -> None:
        """Puts an event of the host on the registry's stream, with the next ``seq`` and the
        registry's time: every subscriber reads it (on PostgreSQL, those of every process
        sharing the registry), as it reads the manager's. The way of a host that provisions
        workers itself to tell the fleet's subscribers what it did.

        Arguments:
            event: one of the classes a Subscription yields, made with the kind's fields
                (``ProvisionFailed("docker-local", "quota exceeded")``) or as received; its own
                ``seq`` and ``at`` are not used. Publishable: HeartbeatReceived (reaches only
                subscriptions made with ``heartbeats=True``; records no heartbeat: that is
                ``heartbeat``), UnhealthyDetected, ProvisionRequested, ProvisionFailed,
                DestroyFailed, MassExpiryHeld, LeaderChanged.

        Raises:
            InvalidArgumentError: one of the registry's own kinds (Registered, StateChanged,
                AssignedToJob, ReleasedFromJob, JobLost, Unregistered): only a change of its
                records emits them, so that each one read tells of a change that happened;
                an ``error`` over 4160 bytes (a provider's message, at most 4096, and its kind), a ``holder`` or
                ``by`` that is empty or over 128 bytes (a lease holder's rules).
            WorkerNotFoundError: an event about a worker the registry does not hold (never
                did, or unregistered: no event about a worker follows its Unregistered).
            TypeError: anything but an Event.
            BackendError: the PostgreSQL server cannot be reached.

        Nothing is published when it raises.
        """
    def snapshot(self) -> str:
        """Every record plus the event ``seq``, consistent at one instant, as JSON text."""
    def restore(self, snapshot: str) -> None:
        """Loads a JSON snapshot (from ``snapshot()``) into this registry, which must be empty.
        The snapshot is checked whole first: on any error nothing changes. Every restored
        worker gets a fresh grace period from now (no worker expires at the first check after a
        restore for the time the snapshot lay on disk). A snapshot dated after this registry's
        clock (taken on a host whose clock is ahead) has every time clamped to this clock's
        now, so that none of its workers escapes its heartbeat deadline; one dated more than an
        hour after now is refused.

        Raises:
            SnapshotError: corrupt, truncated, foreign or inconsistent text (timestamps after
                the snapshot's own time, a string holding a NUL character, ...), or a snapshot
                dated more than an hour after this registry's clock.
            InvalidArgumentError: the registry is not empty, one of the snapshot's workers was
                registered in this registry before (ids are never reused), ``snapshot`` is not
                valid text (a lone surrogate: no snapshot's text), or (PostgreSQL) the
                database's encoding cannot store one of its strings.
        """
    def __len__(self) -> int: ...
    def __contains__(self, key: str, /) -> bool:
        """Whether a worker with this id is registered: False for any str that names no worker;
        TypeError for anything but a str."""

# --- lifecycle --------------------------------------------------------------------------------

@final
class WorkerHandle:
    """How a provider knows one of its workers: passed to ``destroy_worker``. For an orphan
    instance (one ``list_workers`` yielded that no record holds) it is made from the listing:
    ``worker_id`` is an id made up for it (no worker's) and ``metadata`` is empty; destroy by
    ``resource_id``."""
    @property
    def worker_id(self) -> str:
        """The worker's id in the registry; for an orphan instance, an id made up for the listing
        (no worker's)."""
    @property
    def provider_id(self) -> str:
        """The provider that owns the instance."""
    @property
    def provider_type(self) -> str:
        """The provider's type (``"docker"``, …, ``"custom:NAME"``)."""
    @property
    def resource_id(self) -> str:
        """The provider's id of the instance, as ``create_worker`` returned it."""
    @property
    def metadata(self) -> dict[str, str]:
        """The metadata ``create_worker`` returned with it (a copy); empty for an orphan
        instance."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class LifecycleConfig:
    """The manager's timeouts, limits and scaling policy. Immutable; validated on construction
    (InvalidArgumentError naming the field). Every argument is keyword-only and named as in the
    core's JSON form (``to_json()``); None (or leaving it out) takes the default. Durations are
    float seconds or ``timedelta``; a bool where a number is expected is a TypeError.

    Defaults: heartbeat_timeout 60 s, health_check_interval 30 s, startup_timeout 300 s,
    min_ready_workers 1, max_workers 10, scale_up_threshold 5, scale_down_threshold 3,
    scale_up_cooldown 10 s, scale_down_cooldown 60 s, max_provision_per_tick 5,
    max_actions_per_tick 100 (each orphan destroy of the tick's own reconcile counts; the host's
    ``reconcile()`` is not capped), destroy_retry_initial 1 s, destroy_retry_max 300 s,
    provider_backoff_initial 5 s, provider_backoff_max 300 s, max_unhealthy_fraction 0.55
    and unhealthy_floor 1 (the brake; it also guards the ticks' reconcile: a provider's listing
    that would expire more of its workers as vanished expires none of them, one that shows
    more instances no record knows than its records allow destroys none of them, and the host's
    ``reconcile()`` is not braked), max_mass_expiry_hold 300 s (the brake's bound: held continuously longer
    than this, it lets go and the silent workers are declared unhealthy; 0 is refused),
    reconcile_interval 600 s (how often the leader's ``tick`` runs ``reconcile()`` by itself,
    counted from the last complete reconcile, so that orphan instances that appear later are
    destroyed on a host that only ticks; 0 disables it; a tick's reconcile that could not list
    every provider runs again after destroy_retry_initial, doubling up to reconcile_interval)."""
    def __new__(
        cls,
        *,
        heartbeat_timeout: _Seconds | None = None,
        health_check_interval: _Seconds | None = None,
        startup_timeout: _Seconds | None = None,
        scale_up_cooldown: _Seconds | None = None,
        scale_down_cooldown: _Seconds | None = None,
        destroy_retry_initial: _Seconds | None = None,
        destroy_retry_max: _Seconds | None = None,
        provider_backoff_initial: _Seconds | None = None,
        provider_backoff_max: _Seconds | None = None,
        max_mass_expiry_hold: _Seconds | None = None,
        reconcile_interval: _Seconds | None = None,
        min_ready_workers: int | None = None,
        max_workers: int | None = None,
        scale_up_threshold: int | None = None,
        scale_down_threshold: int | None = None,
        max_provision_per_tick: int | None = None,
        max_actions_per_tick: int | None = None,
        unhealthy_floor: int | None = None,
        max_unhealthy_fraction: float | None = None,
    ) -> LifecycleConfig:
        """A configuration: each keyword is a field of the core's JSON form, read by the core's
        deserialiser (its defaults, types and ranges), then validated as a whole.

        Raises:
            InvalidArgumentError: a value the field cannot take (negative, zero where at least
                1 ms is needed, a fraction outside (0, 1], a huge int), or a nonsense
                combination (``min_ready_workers`` above ``max_workers``, a maximum below its
                initial delay); the message names the field.
            TypeError: an unknown keyword, or a value of the wrong type (a bool, a str, a float
                for a count, a timedelta for a count).
        """
    @property
    def heartbeat_timeout(self) -> float:
        """``heartbeat_timeout`` in float seconds."""
    @property
    def health_check_interval(self) -> float:
        """``health_check_interval`` in float seconds."""
    @property
    def startup_timeout(self) -> float:
        """``startup_timeout`` in float seconds."""
    @property
    def scale_up_cooldown(self) -> float:
        """``scale_up_cooldown`` in float seconds."""
    @property
    def scale_down_cooldown(self) -> float:
        """``scale_down_cooldown`` in float seconds."""
    @property
    def destroy_retry_initial(self) -> float:
        """``destroy_retry_initial`` in float seconds."""
    @property
    def destroy_retry_max(self) -> float:
        """``destroy_retry_max`` in float seconds."""
    @property
    def provider_backoff_initial(self) -> float:
        """``provider_backoff_initial`` in float seconds."""
    @property
    def provider_backoff_max(self) -> float:
        """``provider_backoff_max`` in float seconds."""
    @property
    def max_mass_expiry_hold(self) -> float:
        """``max_mass_expiry_hold`` in float seconds."""
    @property
    def reconcile_interval(self) -> float:
        """``reconcile_interval`` in float seconds."""
    @property
    def min_ready_workers(self) -> int:
        """``min_ready_workers``."""
    @property
    def max_workers(self) -> int:
        """``max_workers``."""
    @property
    def scale_up_threshold(self) -> int:
        """``scale_up_threshold``."""
    @property
    def scale_down_threshold(self) -> int:
        """``scale_down_threshold``."""
    @property
    def max_provision_per_tick(self) -> int:
        """``max_provision_per_tick``."""
    @property
    def max_actions_per_tick(self) -> int:
        """``max_actions_per_tick``."""
    @property
    def unhealthy_floor(self) -> int:
        """``unhealthy_floor``."""
    @property
    def max_unhealthy_fraction(self) -> float:
        """``max_unhealthy_fraction`` (a fraction in (0, 1])."""
    def to_json(self) -> str:
        """The configuration as JSON text (durations in seconds): the form the constructor's
        keywords follow."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class LostJob:
    """A job that was running on a worker taken out of service: requeue it."""
    @property
    def worker_id(self) -> str:
        """The worker that held it."""
    @property
    def job_id(self) -> str:
        """The job."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class UnhealthyWorker:
    """A worker declared unhealthy by a health check."""
    @property
    def worker_id(self) -> str:
        """The worker."""
    @property
    def provider_id(self) -> str:
        """Its provider."""
    @property
    def state(self) -> WorkerState:
        """The WorkerState it was in."""
    @property
    def reason(self) -> TerminationReason:
        """TerminationReason.UNHEALTHY (heartbeat deadline) or STARTUP_TIMEOUT (never READY)."""
    @property
    def last_heartbeat(self) -> float:
        """Its last heartbeat (float seconds since the epoch)."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class TerminatedWorker:
    """A worker whose instance the provider confirmed destroyed and whose record left the
    registry."""
    @property
    def worker_id(self) -> str:
        """The worker."""
    @property
    def provider_id(self) -> str:
        """Its provider."""
    @property
    def resource_id(self) -> str:
        """The provider's instance id."""
    @property
    def reason(self) -> TerminationReason:
        """Why (a TerminationReason)."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class DestroyFailure:
    """A destroy the provider failed: the worker stays TERMINATING and is retried with
    back-off (no instance is leaked)."""
    @property
    def worker_id(self) -> str:
        """The worker."""
    @property
    def provider_id(self) -> str:
        """Its provider."""
    @property
    def resource_id(self) -> str:
        """The provider's instance id."""
    @property
    def error(self) -> str:
        """What went wrong (for a Python provider: the exception's type and message), at most
        4096 bytes (a longer message is cut and ends with ``"… (truncated)"``)."""
    @property
    def attempts(self) -> int:
        """Failed attempts so far."""
    @property
    def next_retry_at(self) -> float:
        """When the next attempt is due (float seconds since the epoch)."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class ProvisionedWorker:
    """A worker the manager asked a provider for (registered in CREATING)."""
    @property
    def worker_id(self) -> str:
        """The new worker."""
    @property
    def provider_id(self) -> str:
        """Its provider."""
    @property
    def resource_id(self) -> str:
        """The provider's instance id."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class ProvisionFailure:
    """A create the provider failed (for a Python provider: it raised)."""
    @property
    def provider_id(self) -> str:
        """The provider."""
    @property
    def kind(self) -> str:
        """``"failed"``, ``"not_found"``, ``"unsupported"``, ``"panicked"``, ``"no_capacity"``
        or ``"interrupted"`` (a KeyboardInterrupt, or another BaseException that is not an
        Exception, cut the create short during a manager call: reported, but not counted toward
        the provider's back-off)."""
    @property
    def error(self) -> str:
        """What went wrong, at most 4096 bytes (a longer message is cut and ends with
        ``"… (truncated)"``)."""
    @property
    def consecutive_failures(self) -> int:
        """Consecutive failures of this provider so far."""
    @property
    def backoff_until(self) -> float:
        """Until when automatic provisioning from it is suspended (float seconds)."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class ReconcileHold:
    """A provider's listing that the ticks' reconcile brake held: nothing of that side was done
    for it (also a ``held by the brake`` line among the decisions)."""
    @property
    def provider_id(self) -> str:
        """The provider."""
    @property
    def kind(self) -> str:
        """``"expire"`` (records the listing missed, not expired) or ``"orphans"`` (instances
        no record knows, not destroyed: only the host's reconcile() ends that)."""
    @property
    def held(self) -> int:
        """How many were held back."""
    @property
    def records(self) -> int:
        """The provider's records the brake measured against."""
    @property
    def allowed(self) -> int:
        """The most the brake allows."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class ProviderBackoff:
    """A provider that automatic provisioning leaves alone after consecutive failures."""
    @property
    def provider_id(self) -> str:
        """The provider."""
    @property
    def consecutive_failures(self) -> int:
        """Consecutive create failures."""
    @property
    def until(self) -> float:
        """When it may be asked again (float seconds since the epoch)."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class MassExpiryHold:
    """The brake's counts: too many workers under heartbeat watch were silent at once (most
    likely a partition on the host's side), so none was declared unhealthy for its
    heartbeat."""
    @property
    def would_expire(self) -> int:
        """How many are past their heartbeat deadline now (held back)."""
    @property
    def suspect(self) -> int:
        """How many are silent for more than half the heartbeat timeout: the brake's count (at
        least would_expire), but those past their startup deadline (expired regardless)."""
    @property
    def live(self) -> int:
        """Workers under heartbeat watch (CONNECTING, READY, BUSY, DRAINING), but those past
        their startup deadline."""
    @property
    def allowed(self) -> int:
        """The most that may be silent at once: max(unhealthy_floor, floor(fraction * live))."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class MassExpiryGiveUp:
    """The brake gave up: it had held continuously for longer than max_mass_expiry_hold, so
    the silent workers were declared unhealthy after all (most of the fleet really died)."""
    @property
    def held_for(self) -> float:
        """How long the brake had held (float seconds), from the first check that held."""
    @property
    def hold(self) -> MassExpiryHold:
        """The counts the brake would have held with now (a MassExpiryHold)."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class HealthCheckResult:
    """What ``run_health_check`` found and did."""
    @property
    def checked_at(self) -> float:
        """When it ran (float seconds since the epoch)."""
    @property
    def unhealthy(self) -> list[UnhealthyWorker]:
        """Workers declared unhealthy (list of UnhealthyWorker)."""
    @property
    def lost_jobs(self) -> list[LostJob]:
        """Jobs they held: requeue them (list of LostJob)."""
    @property
    def terminated(self) -> list[TerminatedWorker]:
        """Unhealthy workers destroyed and unregistered."""
    @property
    def failed(self) -> list[DestroyFailure]:
        """Destroys that failed (retried later)."""
    @property
    def held(self) -> MassExpiryHold | None:
        """Set when the mass-expiry brake held (a MassExpiryHold), else None: no worker was
        declared unhealthy for its heartbeat (startup expiries still were)."""
    @property
    def deferred(self) -> int:
        """Workers due but left for later: because of the per-tick action cap, or because
        the lease was lost during the check."""
    @property
    def brake_released(self) -> bool:
        """The brake held at the previous check and lets go now: every worker got a fresh
        grace period."""
    @property
    def brake_gave_up(self) -> MassExpiryGiveUp | None:
        """Set when the brake gave up in this check (a MassExpiryGiveUp), else None: the
        silent workers past their deadline are in ``unhealthy``, without a grace period."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class CleanupResult:
    """What ``cleanup_workers`` (and ``terminate_worker``) did."""
    @property
    def terminated(self) -> list[TerminatedWorker]:
        """Workers destroyed and unregistered, with the reason."""
    @property
    def drained(self) -> list[str]:
        """Busy workers past their lifetime moved to DRAINING (ids)."""
    @property
    def failed(self) -> list[DestroyFailure]:
        """Destroys that failed: those workers stay TERMINATING and are retried."""
    @property
    def lost_jobs(self) -> list[LostJob]:
        """Jobs lost by workers taken out of service: requeue them."""
    @property
    def deferred(self) -> int:
        """Work left for later: because of the per-tick action cap, or because the lease
        was lost meanwhile."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class ScalingPlan:
    """The autoscaler's decision with its inputs; ``explanation`` says it in one line."""
    @property
    def at(self) -> float:
        """When it was computed (float seconds since the epoch)."""
    @property
    def pending_jobs(self) -> int:
        """The jobs this plan scales for. From ``plan_scaling(n)``: n. In a tick: the jobs of
        the host's demand that the target's spec satisfies (the others are unschedulable,
        not counted) plus one per job of an interrupted worker that needs a replacement —
        of the target's, or any other whose offer the target's spec satisfies (without
        pools) — so it may differ from ``TickReport.pending_jobs`` either way."""
    @property
    def ready(self) -> int:
        """Idle READY workers of the scaling target (not those of pools)."""
    @property
    def busy(self) -> int:
        """BUSY workers of the scaling target (not those of pools)."""
    @property
    def starting(self) -> int:
        """CREATING + CONNECTING workers of the scaling target (not those of pools): capacity
        on its way."""
    @property
    def in_flight(self) -> int:
        """Provider calls in flight of the scaling target (not those of pools' specs): capacity
        on its way."""
    @property
    def total(self) -> int:
        """Registered workers plus every provision in flight: what counts against max_workers."""
    @property
    def wanted(self) -> int:
        """Workers wanted beyond what is ready or on its way."""
    @property
    def provision(self) -> int:
        """Workers to provision now, after the caps."""
    @property
    def scale_down(self) -> list[str]:
        """Idle READY workers to retire now, longest idle first (ids)."""
    @property
    def limits(self) -> list[str]:
        """What limited the decision, if anything (e.g. ``"max_workers 10"``)."""
    @property
    def explanation(self) -> str:
        """One line explaining the decision with its inputs."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class TickReport:
    """Everything one ``tick`` did, and why. ``decisions`` explains it in words."""
    @property
    def at(self) -> float:
        """When it ran (float seconds since the epoch)."""
    @property
    def pending_jobs(self) -> int:
        """The jobs of the demand the host passed to this tick (every requirement's,
        unschedulable ones included), 0 for a tick without a demand. The replacements of
        interrupted workers are not counted here: they are in the plan's own count
        (``pools.pending_jobs``, ``scaling.pending_jobs``)."""
    @property
    def stall_grace(self) -> float | None:
        """The length of the host's pause (float seconds) when the previous tick was longer
        ago than heartbeat_timeout: every worker got a fresh grace period. Else None."""
    @property
    def health_checked(self) -> bool:
        """Whether the health check ran in this tick (every health_check_interval)."""
    @property
    def unhealthy(self) -> list[UnhealthyWorker]:
        """Workers declared unhealthy."""
    @property
    def lost_jobs(self) -> list[LostJob]:
        """Jobs lost by workers taken out of service: requeue them."""
    @property
    def mass_expiry_held(self) -> MassExpiryHold | None:
        """Set when the mass-expiry brake held (a MassExpiryHold), else None."""
    @property
    def brake_released(self) -> bool:
        """The brake let go in this tick: every worker got a fresh grace period."""
    @property
    def brake_gave_up(self) -> MassExpiryGiveUp | None:
        """Set when the brake gave up in this tick (a MassExpiryGiveUp), else None: the silent
        workers were declared unhealthy after all."""
    @property
    def reconcile_held(self) -> list[ReconcileHold]:
        """The providers whose listing the tick's reconcile held by the brake, and which side
        (a list of ReconcileHold; counted in hodei_workers_reconcile_holds_total)."""
    @property
    def terminated(self) -> list[TerminatedWorker]:
        """Workers destroyed and unregistered."""
    @property
    def failed(self) -> list[DestroyFailure]:
        """Destroys that failed (retried later with back-off)."""
    @property
    def drained(self) -> list[str]:
        """Workers moved to DRAINING (ids)."""
    @property
    def provisioned(self) -> list[ProvisionedWorker]:
        """Workers provisioned."""
    @property
    def provision_failures(self) -> list[ProvisionFailure]:
        """Creates that failed (a provider that raised shows here)."""
    @property
    def provider_backoff(self) -> list[ProviderBackoff]:
        """Providers backing off after consecutive create failures."""
    @property
    def scaling(self) -> ScalingPlan | None:
        """The scaling decision (None when no scaling target is set, or pools are set)."""
    @property
    def pools(self) -> PoolPlan | None: ...
    @property
    def unschedulable(self) -> list[Unschedulable]: ...
    @property
    def decisions(self) -> list[str]:
        """Lines explaining the decisions taken (scaling, brake, stall, cap, errors)."""
    @property
    def actions(self) -> int:
        """Actions performed (state changes and provider calls)."""
    @property
    def capped(self) -> bool:
        """Whether the action cap stopped this tick early (the next ticks do the rest)."""
    @property
    def skipped(self) -> bool:
        """Whether another thread was ticking, so this call did nothing."""
    @property
    def leading(self) -> bool: ...
    @property
    def leader(self) -> LeaderInfo | None: ...
    @property
    def panicked(self) -> str | None:
        """The message of the panic that cut this tick short (a bug of a Rust registry, clock
        or lease, or of the library), else None. The report then holds what the tick did
        before the panic (requeue its lost_jobs as always); a line of decisions names the
        phase, and the next tick does the rest."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class OrphanInstance:
    """A provider instance the registry does not know, found by ``reconcile``."""
    @property
    def provider_id(self) -> str:
        """The provider."""
    @property
    def resource_id(self) -> str:
        """The instance id."""
    @property
    def error(self) -> str | None:
        """None when destroyed; the error otherwise (the leader's ticks destroy it again after
        a back-off)."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class ReconcileReport:
    """What ``reconcile`` found and did."""
    @property
    def at(self) -> float:
        """When it ran (float seconds since the epoch)."""
    @property
    def checked(self) -> list[str]:
        """Providers whose instances were compared with the registry."""
    @property
    def unsupported(self) -> list[str]:
        """Providers without ``list_workers`` (skipped)."""
    @property
    def errors(self) -> list[tuple[str, str]]:
        """Providers not wholly reconciled, with what happened: ``list_workers`` failed, the
        registry read failed or could not unregister a vanished worker, or the lease was lost
        before their listing or among their orphans."""
    @property
    def orphans(self) -> list[OrphanInstance]:
        """Instances unknown to the registry, destroyed (or attempted)."""
    @property
    def orphan_check_skipped(self) -> list[str]:
        """Providers whose orphan check waited (a provision in flight, a destroy confirmed meanwhile)."""
    @property
    def vanished(self) -> list[str]:
        """Records whose instance vanished, unregistered with reason VANISHED (ids)."""
    @property
    def lost_jobs(self) -> list[LostJob]:
        """Jobs lost with them: requeue them."""
    @property
    def adopted_terminating(self) -> list[str]:
        """TERMINATING records now queued for destruction (e.g. after a restore)."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class LifecycleStats:
    """The manager's view of the fleet: the registry's counts plus its own."""
    @property
    def registry(self) -> RegistryStats:
        """The registry's counts (a RegistryStats)."""
    @property
    def in_flight(self) -> int:
        """Provider calls to create a worker in flight."""
    @property
    def pending_destroys(self) -> int:
        """TERMINATING workers whose destroy is queued or being retried."""
    @property
    def providers(self) -> int:
        """Registered providers."""
    @property
    def provisioned_total(self) -> int:
        """Workers provisioned since the manager was made."""
    @property
    def provision_failures_total(self) -> int:
        """Failed creates since the manager was made."""
    @property
    def terminated_total(self) -> int:
        """Workers destroyed and unregistered since the manager was made."""
    @property
    def destroy_failures_total(self) -> int:
        """Failed destroy attempts since the manager was made."""
    @property
    def unhealthy_total(self) -> int:
        """Workers declared unhealthy since the manager was made."""
    @property
    def lost_jobs_total(self) -> int:
        """Jobs reported lost since the manager was made."""
    @property
    def mass_expiry_holds_total(self) -> int:
        """Health checks held by the mass-expiry brake since the manager was made."""
    def to_json(self) -> str:
        """The report as JSON text (ids as str, timestamps in milliseconds since the
        epoch), for logs."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class LifecycleManager:
    """The lifecycle engine of a registry's fleet: providers, provisioning, health checks,
    cleanup, autoscaling. Tick-driven: call ``tick(pending_jobs)`` regularly (every second, say)
    and everything due happens inside it, on the registry's clock; the TickReport says what and
    why. Thread-safe; the GIL is released while the engine works.

    Providers are plain Python objects (see ``hodei_workers.Provider``) with ``provider_id`` and
    ``provider_type`` (str attributes, or methods returning them),
    ``create_worker(worker_id, spec) -> resource_id`` (or ``(resource_id, metadata)``;
    ``worker_id`` is the new worker's id as text, made by the manager first, for the instance's
    agent to report in with), ``destroy_worker(handle)`` (raise a LookupError when the instance
    is already gone) and optionally ``list_workers() -> iterable of resource ids`` (for
    ``reconcile``). A provider may keep a reference to its manager: the garbage collector sees
    through the cycle. An Exception they raise is a provider failure of the engine (in reports and
    events; its text cut at 4096 bytes, ending ``"… (truncated)"``), never a crash. They are called on the thread that called the manager, never while
    the engine holds a lock.

    Interrupts: a BaseException that is not an Exception (KeyboardInterrupt, SystemExit,
    asyncio.CancelledError, GeneratorExit, one of your own) raised inside a provider is not a
    provider failure: it propagates, as Python's rule has it (to make a cancelled operation of
    the provider's a failure, catch it there and raise an Exception). The engine finishes the
    operation consistently without calling a provider again (the interrupted call and those it
    skips count as failed: a destroy is retried by a later tick), then the exception reaches the
    caller — and the report of the operation it cut short (``tick``, ``run_health_check``,
    ``cleanup_workers``, ``terminate_worker``, ``reconcile``), with the jobs it lost, is not
    lost: it is the exception's ``report`` attribute and ``manager.last_report``. A manager call
    made meanwhile on that thread (by a finalizer, say) calls no provider either, and does not
    raise it: the exception is for the call it cut short. Raised during a ``Ticker``'s tick
    (no caller to reach), it goes to ``sys.unraisablehook`` instead."""
    def __new__(cls, registry: Registry, config: LifecycleConfig | None = None) -> LifecycleManager:
        """A manager driving ``registry`` (on the registry's clock).

        Arguments:
            registry: the fleet's registry (shared: several managers may not drive one
                registry's providers at once, but readers may use it freely).
            config: timeouts, limits and policy; ``LifecycleConfig()`` when None.
        """
    @property
    def registry(self) -> Registry:
        """The Registry the manager drives."""
    @property
    def config(self) -> LifecycleConfig:
        """The configuration."""
    def register_provider(self, provider: Provider) -> None:
        """Adds a provider under its ``provider_id`` (read once, now). Whether its
        ``create_worker`` and ``destroy_worker`` take a ``fencing_token`` keyword is read from
        their signatures now too (see ``hodei_workers.Provider``).

        Raises:
            TypeError: the object lacks ``create_worker``/``destroy_worker``, or its id or type
                is not a str.
            InvalidArgumentError: a malformed id or type, or a provider with that id is
                registered already.
        """
    def unregister_provider(self, provider_id: str) -> None:
        """Removes a provider. Its workers stay; their destroys retry until a provider with that
        id is registered again.

        Raises:
            ProviderNotFoundError: no such provider.
        """
    def providers(self) -> list[str]:
        """The registered providers' ids, sorted."""
    def provision_worker(self, provider_id: str, spec: WorkerSpec) -> Worker:
        """Asks a provider for a worker and registers it (in CREATING; move it on when its agent
        reports in). The manager makes the worker's id first and passes it to
        ``create_worker``. Concurrent calls never exceed ``max_workers``.

        Arguments:
            provider_id: the provider to ask.
            spec: what to ask for.

        Returns:
            The new worker's snapshot.

        Raises:
            ProviderNotFoundError: no such provider.
            CapacityExceededError: at ``max_workers`` (provisions in flight count).
            ProviderError: the provider raised or returned something unusable.
            NotLeaderError: another replica leads, or led while the create was in flight and
                the provider's ``list_workers`` no longer shows the new instance (neither
                registered nor destroyed again: that leader destroyed it).
        """
    def provider_backoff(self) -> list[ProviderBackoff]:
        """Providers that automatic provisioning leaves alone after consecutive create failures."""
    def process_heartbeat(self, worker_id: str) -> None:
        """Records a worker's heartbeat.

        Raises:
            WorkerNotFoundError: unknown worker: tell its agent to register again.
        """
    def run_health_check(self) -> HealthCheckResult:
        """Runs the health check now: workers past their heartbeat or startup deadline are
        declared unhealthy, their jobs reported lost, then destroyed and unregistered — unless
        the mass-expiry brake holds (too many watched workers silent at once: ``held``), for at
        most ``max_mass_expiry_hold`` (then ``brake_gave_up``).

        Returns:
            What it found and did; also ``last_report``.
        """
    def cleanup_workers(self) -> CleanupResult:
        """Retires what is due now: idle and over-age workers (a busy one is drained first),
        drained workers without a job, and destroy retries that are due. Each decision is
        applied against the worker as it is at that moment.

        Returns:
            What it did; also ``last_report``.
        """
    def drain_worker(self, worker_id: str) -> Worker:
        """Moves a worker to DRAINING: it takes no new job and is retired once its job is done.

        Returns:
            The new snapshot.

        Raises:
            WorkerNotFoundError: no such worker.
            InvalidTransitionError: it cannot drain (TERMINATING, TERMINATED).
        """
    def terminate_worker(self, worker_id: str, reason: _ReasonLike | None = None) -> CleanupResult:
        """Kills a worker now: TERMINATING (a job it held is reported lost), destroyed by its
        provider, unregistered. A failed destroy shows in ``failed`` and is retried by later
        ticks.

        Arguments:
            worker_id: the worker.
            reason: a TerminationReason or its name (default REQUESTED).

        Returns:
            What it did, with the lost job if any; also ``last_report``.

        Raises:
            WorkerNotFoundError: no such worker.
        """
    def pending_destroys(self) -> list[tuple[str, int, float]]:
        """Destroys queued or being retried: ``(worker_id, failed_attempts, next_attempt_at)``."""
    def interruptions(self) -> list[tuple[str, float]]:
        """Workers under an interruption notice: ``(worker_id, deadline)``, in worker id order.
        Leader state: empty on a replica that does not lead."""
    def pending_orphans(self) -> list[tuple[str, str, str, int, float]]:
        """Orphan instances (listed by a provider, known to no record) the leader's ticks
        destroy — those whose destroy failed, and those a tick's reconcile found over its
        action cap: ``(provider_id, worker_id, resource_id, failed_attempts,
        next_attempt_at)``, by provider and instance; the worker id the one made for the
        listing (no record's). Two providers may list one resource id (two clusters, one pod
        name): the provider id tells them apart. Leader state: empty on a replica that does
        not lead."""
    def should_scale_up(self, pending_jobs: int) -> bool:
        """The seed's predicate: no READY worker and jobs pending, or more than
        scale_up_threshold jobs pending and room under max_workers. Its READY workers are
        those plan_scaling counts: the scaling target's own (without a target, those of no
        pool), never those of other pools; the room counts every registered worker."""
    def should_scale_down(self) -> bool:
        """The seed's predicate: more than scale_down_threshold idle READY workers, and more than
        min_ready_workers; the scaling target's own (without a target, those of no pool), as
        plan_scaling counts them."""
    def set_scaling_target(self, provider_id: str, spec: WorkerSpec) -> None:
        """Sets what ``tick`` provisions when scaling up: workers of ``provider_id`` made from
        ``spec``. Without a target, tick neither provisions nor scales down. Its workers are
        those of no pool (or of its spec's pool, if ``spec`` carries the label ``hodei.pool``):
        it neither counts nor retires the workers of pools (set on another replica), which
        count against max_workers all the same.

        Raises:
            ProviderNotFoundError: no such provider.
        """
    def clear_scaling_target(self) -> None:
        """Removes the scaling target."""
    def scaling_target(self) -> tuple[str, WorkerSpec] | None:
        """The scaling target as ``(provider_id, spec)``, or None."""
    def plan_scaling(self, pending_jobs: int) -> ScalingPlan:
        """The scaling policy's decision for ``pending_jobs``, without acting on it.

        Raises:
            InvalidArgumentError: a negative count.
        """
    def reconcile(self) -> ReconcileReport:
        """Compares the registry with each provider's ``list_workers()``: unknown instances are
        destroyed (orphans after a host crash), records whose instance vanished are expired
        with reason VANISHED, TERMINATING records nobody was destroying are queued. Not braked
        (the host asked): every vanished record is expired and every orphan destroyed, however
        many; the ticks' own reconciles expire none of a provider's when its listing misses more
        of its workers (TERMINATING ones included) than the brake allows
        (``max_unhealthy_fraction``, ``unhealthy_floor``), and destroy none of its orphans when
        the listing shows more than the brake allows against its records.

        Returns:
            What it found and did; also ``last_report``.
        """
    def tick(self, pending_jobs: int | Demand = 0) -> TickReport:
        """Does whatever is due, in one call: stall grace, health check (every
        ``health_check_interval``), cleanup and destroy retries, ``reconcile()`` (every
        ``reconcile_interval`` after the last complete one: "periodic reconcile" in
        ``decisions``), scaling toward the target.

        Arguments:
            pending_jobs: jobs waiting for a worker, as the host's scheduler counts them; or a
                Demand (jobs by requirement, scaled over the pools).

        Returns:
            What was done and why (``decisions``); also ``last_report``. The engine's own
            troubles are lines in ``decisions``, never exceptions; a call while another thread
            ticks returns at once with ``skipped``.

        Raises:
            InvalidArgumentError: a negative count.
        """
    def set_pools(self, pools: Sequence[Pool]) -> list[str]:
        """Replaces the pools; returns the ids of the workers taken out of service.

        Pools no longer listed are removed and their workers drain, and so do the workers of a
        pool listed again with a template that asks more than theirs offers. On a replicated
        manager each replica has its own pools, but draining is leader work: a follower drains
        nothing (returns ``[]``); the replica that leads drains, and a follower drains what its
        pools removed at its ticks once it leads. A tick running meanwhile provisions nothing
        for a job that a reshaped pool's new template no longer satisfies (its decisions say
        so; its next plan counts that demand again).

        Raises:
            InvalidArgumentError: two pools with one name, an invalid pool (nothing changes).
            ProviderNotFoundError: a pool's provider is not registered (nothing changes).
            BackendError: the registry failed while draining; the pools are set, the message
                names what was drained, and the leader's ticks drain the rest.
            NotLeaderError: the lease was lost midway; the pools are set, the drain stopped,
                and this replica's ticks drain the rest once it leads again.
        """
    def add_pool(self, pool: Pool) -> None: ...
    def remove_pool(self, name: str) -> list[str]:
        """Removes a pool: nothing more is provisioned for it, its workers drain.

        Returns their ids; a follower of a replicated set drains nothing and returns ``[]``
        (the leader drains; this replica drains them at its ticks once it leads), and so
        does a call for a pool removed earlier whose workers a tick is draining at that
        moment (the tick reports them). A create of the pool's spec still in flight (a tick's,
        or your own ``provision_worker`` of a spec with its ``POOL_LABEL``) registers its
        worker after this call looked: the leader's next tick takes it out of service.

        Raises:
            InvalidArgumentError: no pool has that name (nor is any left to drain under it).
            BackendError: the registry failed while draining (the pool is removed; the
                leader's ticks drain the rest).
            NotLeaderError: the lease was lost midway (the pool is removed; this replica's
                ticks drain the rest once it leads again).
        """
    def pools(self) -> list[Pool]: ...
    def plan_pools(self, demand: Demand) -> PoolPlan: ...
    def notify_interruption(self, worker_id: str, deadline: float) -> Worker: ...
    @property
    def last_report(
        self,
    ) -> TickReport | HealthCheckResult | CleanupResult | ReconcileReport | None:
        """The report of the last ``tick``, ``run_health_check``, ``cleanup_workers``,
        ``terminate_worker`` or ``reconcile`` on this manager (from any thread), or None before
        the first. After a KeyboardInterrupt raised by a provider it is the report of the
        interrupted operation (also the exception's ``report``): requeue its ``lost_jobs``."""
    @staticmethod
    def replicated(
        registry: Registry, holder: str, lease_ttl: _Seconds, config: LifecycleConfig | None = None
    ) -> LifecycleManager: ...
    def ticker(
        self,
        interval: _Seconds,
        pending: Callable[[], int | Demand] | None = None,
        on_report: Callable[[TickReport], object] | None = None,
    ) -> Ticker: ...
    def is_leader(self) -> bool: ...
    def step_down(self) -> None: ...
    def leader(self) -> LeaderInfo | None: ...
    def stats(self) -> LifecycleStats:
        """The registry's counts plus the manager's own (in flight, pending destroys, totals)."""
    def metrics_text(self) -> str:
        """The metrics in the OpenMetrics text format (ending in ``# EOF``): workers by state and
        provider, jobs, provisions, destroys, failures, brake holds, back-off, durations,
        heartbeat ages, event drops. For ``prometheus_client``, see ``hodei_workers.metrics``."""
    def set_metrics_timing(self, on: bool) -> None:
        """Turns the metrics' duration histograms (``hodei_workers_tick_duration_seconds``,
        ``hodei_workers_health_check_duration_seconds``) on (the default) or off. Off, ticks
        and health checks read no clock for the metrics and the histograms stand still; they
        are still counted (``hodei_workers_ticks_total``, ``hodei_workers_health_checks_total``),
        and the rest of the metrics is read at scrape time as before. Takes effect from the
        next tick or health check; one relaxed atomic store.

        Raises:
            TypeError: ``on`` is not a bool.
        """
    def metrics_timing(self) -> bool:
        """Whether the metrics' duration histograms are measured (``set_metrics_timing``)."""

@final
class LeaderInfo:
    @property
    def holder(self) -> str: ...
    @property
    def term(self) -> int: ...
    @property
    def since(self) -> float: ...
    @property
    def expires_at(self) -> float | None: ...
    def to_json(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class TickerStats:
    @property
    def ticks(self) -> int: ...
    @property
    def overruns(self) -> int: ...
    @property
    def missed_slots(self) -> int: ...
    @property
    def dropped_reports(self) -> int: ...
    @property
    def demand_failures(self) -> int: ...
    @property
    def report_failures(self) -> int: ...
    @property
    def tick_failures(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class Ticker:
    """A running ticker: a thread that calls ``manager.tick(pending())`` every ``interval`` and
    hands each report to ``on_report`` (or keeps it for :meth:`next_report`). Made by
    ``LifecycleManager.ticker``; a context manager that stops it on exit. ``pending()`` returns
    what ``tick`` takes: an int (jobs that need nothing in particular) or a ``Demand`` (jobs
    by requirement, scaled over the pools); anything else is a failure of ``pending``.

    The first tick runs at once, the next ones every ``interval`` (on the start time's grid).
    A tick that overruns its slot is counted (``stats.overruns``) and the slots it covered are
    skipped, not piled up. ``pending``, ``on_report`` and the providers' methods are called on
    the ticker's own thread, one at a time. An exception ``pending`` or ``on_report`` raises
    goes to ``sys.unraisablehook``, is counted (``stats.demand_failures`` /
    ``stats.report_failures``; a failing ``pending`` leaves the last good demand in use, and
    before the first one the tick does not scale: nothing provisioned or retired), and
    the ticker goes on. A provider's Exception is a provider failure in the tick's report, but
    a BaseException that is not an Exception (KeyboardInterrupt, SystemExit,
    asyncio.CancelledError, ...), with no caller there to receive it, goes to
    ``sys.unraisablehook``. A tick that fails itself (a bug of the library) is counted
    (``stats.tick_failures``); one that failed midway hands over its report, with what it did
    before (its ``lost_jobs`` to requeue) and ``panicked`` set; the ticker ticks again at the
    next slot.

    The ticker keeps its manager alive, and with it the providers its ticks call (even when the
    host keeps only the ticker and a provider holds its manager), and its callbacks. Dropping
    the last reference stops it; so does the garbage collector when the ticker is in an
    unreachable reference cycle (e.g. ``on_report`` is a bound method of the object that keeps
    the ticker). Either waits for the tick in progress, as ``stop()`` does, and yields to Ctrl-C
    likewise (on the main thread): the KeyboardInterrupt is raised as soon as the drop
    returns, while the tick finishes and the thread is joined in the background.

    Stop a ticker before the interpreter exits to let its tick in progress finish. One still
    running at exit is asked to stop by the module's ``atexit`` hook, which does not wait: from
    then on its thread calls no Python code it has not started (a provider call is reported
    ``interrupted``), dropping it does not wait for its thread, and the tick in progress ends
    with the process. The exit never waits for a provider that does not answer.
    """

    @property
    def interval(self) -> float: ...
    @property
    def running(self) -> bool: ...
    @property
    def stats(self) -> TickerStats: ...
    def stop(self) -> None: ...
    def next_report(self, timeout: _Seconds | None = None) -> TickReport | None: ...
    def __enter__(self) -> Ticker: ...
    def __exit__(self, *_args: object) -> bool: ...

# ----- pools and demand ------------------------------------------------------------------------

@final
class Demand:
    def __new__(cls, requirements: Iterable[Mapping[str, Any]] | None = None) -> Demand: ...
    @property
    def requirements(self) -> list[dict[str, Any]]: ...
    @property
    def total(self) -> int: ...
    def to_json(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class Pool:
    def __new__(
        cls,
        name: str,
        provider_id: str,
        template: WorkerSpec,
        *,
        min_ready: int = 0,
        max_workers: int | None = None,
        priority: int = 0,
        scale_up_cooldown: _Seconds | None = None,
        scale_down_cooldown: _Seconds | None = None,
    ) -> Pool: ...
    @property
    def name(self) -> str: ...
    @property
    def provider_id(self) -> str: ...
    @property
    def template(self) -> WorkerSpec: ...
    @property
    def min_ready(self) -> int: ...
    @property
    def max_workers(self) -> int | None: ...
    @property
    def priority(self) -> int: ...
    @property
    def scale_up_cooldown(self) -> float: ...
    @property
    def scale_down_cooldown(self) -> float: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Unschedulable:
    @property
    def requirement(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def description(self) -> str: ...
    @property
    def reason(self) -> str: ...
    def to_json(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class Replacement:
    @property
    def requirement(self) -> int: ...
    @property
    def pool(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def description(self) -> str: ...
    def to_json(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class Serving:
    @property
    def requirement(self) -> int: ...
    @property
    def existing(self) -> int: ...
    @property
    def wanted(self) -> int: ...
    @property
    def provisioned(self) -> int: ...
    def to_json(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class Spill:
    @property
    def requirement(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def reason(self) -> str: ...
    def to_json(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class UnmetDemand:
    @property
    def requirement(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def reason(self) -> str: ...
    def to_json(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class PoolDecision:
    @property
    def pool(self) -> str: ...
    @property
    def provider_id(self) -> str | None: ...
    @property
    def priority(self) -> int: ...
    @property
    def demand(self) -> int: ...
    @property
    def ready(self) -> int: ...
    @property
    def busy(self) -> int: ...
    @property
    def starting(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def max_workers(self) -> int: ...
    @property
    def min_ready(self) -> int: ...
    @property
    def wanted(self) -> int: ...
    @property
    def provision(self) -> int: ...
    @property
    def warm(self) -> int: ...
    @property
    def serves(self) -> list[Serving]: ...
    @property
    def retire(self) -> int: ...
    @property
    def scale_down(self) -> list[str]: ...
    @property
    def blocked(self) -> str | None: ...
    @property
    def spilled_in(self) -> list[Spill]: ...
    @property
    def spilled_out(self) -> list[Spill]: ...
    @property
    def taken_back(self) -> list[Spill]: ...
    @property
    def given_back(self) -> list[Spill]: ...
    @property
    def limits(self) -> list[str]: ...
    @property
    def explanation(self) -> str: ...
    def to_json(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class PoolPlan:
    @property
    def at(self) -> float: ...
    @property
    def pending_jobs(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def max_workers(self) -> int: ...
    @property
    def pools(self) -> list[PoolDecision]: ...
    @property
    def unschedulable(self) -> list[Unschedulable]: ...
    @property
    def unmet(self) -> list[UnmetDemand]: ...
    @property
    def replacements(self) -> list[Replacement]: ...
    @property
    def explanation(self) -> list[str]: ...
    def to_json(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...
