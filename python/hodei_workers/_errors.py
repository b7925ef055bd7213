"""The exceptions of hodei_workers (DESIGN.md §6), defined here in Python and raised by the
native module, which imports this module (as pyca/cryptography does): real classes that
pickle, show their docstrings in ``help()``, and combine builtin bases where it helps a caller
(``except LookupError`` catches an unknown worker, ``except ValueError`` a bad value).

Each core error kind maps to exactly one class; ``kind`` says which (``"not_found"``, ...).
"""

from __future__ import annotations

from typing import Optional

__all__ = [
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
]


class HodeiWorkersError(Exception):
    """Base class of every error raised by hodei_workers.

    Attributes:
        kind: the stable snake_case name of the error kind (``"not_found"``,
            ``"invalid_argument"``, ...); ``"error"`` on the base class.
        worker_id: the worker the error is about, or None.
        job_id: the job the error is about, or None.
        provider_id: the provider the error is about, or None.
    """

    kind: str = "error"
    worker_id: Optional[str] = None
    job_id: Optional[str] = None
    provider_id: Optional[str] = None

    def __init__(
        self,
        message: str = "",
        *,
        worker_id: Optional[str] = None,
        job_id: Optional[str] = None,
        provider_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        # Only what is set goes to the instance dict, which pickle carries (BaseException's
        # __reduce__ is (type, args, __dict__)): an unpickled error has the same ids.
        if worker_id is not None:
            self.worker_id = worker_id
        if job_id is not None:
            self.job_id = job_id
        if provider_id is not None:
            self.provider_id = provider_id


class WorkerNotFoundError(HodeiWorkersError, LookupError):
    """No worker with this id is registered (or it was unregistered: ids are never reused).

    Also a LookupError. ``worker_id`` names the worker.
    """

    kind = "not_found"


class WorkerAlreadyExistsError(HodeiWorkersError):
    """A worker with this id is (or was once) registered: ids are never reused."""

    kind = "already_exists"


class InvalidTransitionError(HodeiWorkersError):
    """The worker state machine does not allow this move (for instance update_state to or from
    BUSY, which only assign/claim and release do)."""

    kind = "invalid_transition"


class WorkerNotAvailableError(HodeiWorkersError):
    """The worker cannot take a job: it is not READY."""

    kind = "not_available"


class WorkerNotBusyError(HodeiWorkersError):
    """The worker holds no job, or holds another job than the one being released (``job_id``
    is the job the caller named)."""

    kind = "not_busy"


class JobAlreadyAssignedError(HodeiWorkersError):
    """The job is already held by a worker (a job runs on at most one worker); ``worker_id`` is
    the holder."""

    kind = "job_already_assigned"


class ProviderNotFoundError(HodeiWorkersError, LookupError):
    """No provider with this id is registered with the manager. Also a LookupError."""

    kind = "provider_not_found"


class ProviderError(HodeiWorkersError):
    """A provider call failed (the provider raised, or returned something unusable)."""

    kind = "provider"


class CapacityExceededError(HodeiWorkersError):
    """The fleet is at max_workers (counting provisions in flight)."""

    kind = "capacity_exceeded"


class InvalidArgumentError(HodeiWorkersError, ValueError):
    """An argument had the right type but an invalid value: a malformed id, a negative or
    too-large duration, a string holding a NUL character, a nonsense configuration. Also a
    ValueError."""

    kind = "invalid_argument"


class SnapshotError(HodeiWorkersError, ValueError):
    """A snapshot could not be read: corrupt, truncated, foreign or inconsistent. Also a
    ValueError. The registry is left untouched."""

    kind = "snapshot"


class BackendError(HodeiWorkersError):
    """A storage backend failed (a shared-database registry lost its connection, say); nothing
    was half-applied."""

    kind = "backend"


class NotLeaderError(HodeiWorkersError):
    """A leader-only operation (provisioning, terminating, a health check, cleanup, reconcile)
    on a replica whose manager does not hold the leadership lease, or whose lease was not
    renewed in time: another replica acts on the fleet. Nothing was changed."""

    kind = "not_leader"


class InternalError(HodeiWorkersError, RuntimeError):
    """A bug in hodei_workers: a Rust panic caught at the boundary. Also a RuntimeError. Please
    report it with the message."""

    kind = "internal"


# The public names say `hodei_workers.X` (where users import them from); pickle finds them
# there too, since the package re-exports every one.
for _name in __all__:
    globals()[_name].__module__ = "hodei_workers"
del _name
