"""The shape of a provider object, for type checkers.

A provider is any object with these members; it need not inherit from anything::

    class DockerProvider:
        provider_id = "docker-local"
        provider_type = "docker"

        def create_worker(self, worker_id: str, spec: WorkerSpec) -> str:
            # The agent starts knowing its id, reports in and heartbeats with it.
            return start_container(spec.image, env={"HODEI_WORKER_ID": worker_id})

        def destroy_worker(self, handle: WorkerHandle) -> None:
            stop_container(handle.resource_id)          # raise KeyError if already gone

        def list_workers(self) -> list[str]:            # optional, for reconcile()
            return running_containers()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Tuple, Union

if TYPE_CHECKING:
    from hodei_workers._native import WorkerHandle, WorkerSpec

__all__ = ["Provider", "Created", "NoCapacity", "Fenced"]

Created = Union[str, Tuple[str, Mapping[str, str]]]
"""What ``create_worker`` returns: the instance's resource id, or (resource id, metadata)."""


class NoCapacity(Exception):
    """Raise it from ``create_worker`` when the provider has no capacity for the spec right now
    (a spot market without instances, a full quota): the create counts as a failure of kind
    "no capacity", and a pool that gets it hands its demand to the next pool that satisfies it
    until the provider's back-off ends."""


class Fenced(Exception):
    """Raise it from ``create_worker`` or ``destroy_worker`` when the call's ``fencing_token``
    is below the largest one the provider has served: another replica leads now. The manager
    takes it as that replica's word, not as a failure of the provider: it stops acting as the
    leader until its next tick renews the lease, and neither backs the provider off nor counts
    a failed attempt. A refused create makes ``provision_worker`` raise ``NotLeaderError``; a
    refused destroy leaves the worker terminating, for the replica that leads to destroy."""


class Provider(Protocol):
    """A source of workers, as ``LifecycleManager.register_provider`` expects it.

    ``provider_id`` and ``provider_type`` may be attributes or properties. An ``Exception``
    raised by a method is a provider failure of the engine: it shows in the tick report and the
    events, and never crashes the engine. A ``BaseException`` that is not an ``Exception``
    (``KeyboardInterrupt``, ``SystemExit``, ``asyncio.CancelledError``, ``GeneratorExit``, one
    of your own) is not swallowed: the engine finishes the operation without calling a provider
    again, then it reaches the caller of the manager (see ``LifecycleManager``); a create it cut
    short is reported "interrupted" and does not back the provider off. A
    ``LookupError`` from ``destroy_worker`` means the
    instance is already gone (counted as destroyed). ``list_workers`` is optional; a provider
    without it (or raising ``NotImplementedError``) is skipped by ``reconcile``. It lists only
    the instances this provider made for this registry (a tag or name prefix of yours): each
    listed instance no record knows is destroyed as an orphan, also by the leader's ``tick``
    every ``reconcile_interval`` (there only while they are few against this provider's
    records: more are held by the brake, see ``max_unhealthy_fraction``).

    ``create_worker`` and ``destroy_worker`` may take a keyword argument ``fencing_token``
    (``def create_worker(self, worker_id, spec, *, fencing_token: int = 0)``, or ``**kwargs``;
    the default keeps the method a match for this protocol, the manager always passes it): the
    manager then passes the term of the leadership it calls under, an ``int`` that only grows
    from one leader to the next (1 for a manager that is the only one). A provider whose
    infrastructure keeps the largest token it has served, and raises ``Fenced`` for a smaller
    one, refuses a replica that was paused after its last check of the lease while another
    took over. The manager reads the signatures once, at ``register_provider``.
    """

    @property
    def provider_id(self) -> str:
        """The provider's id, e.g. ``"docker-local"`` (1..=128 bytes, no control characters)."""
        ...

    @property
    def provider_type(self) -> str:
        """``"docker"``, ``"kubernetes"``, ``"fargate"``, ... or ``"custom:NAME"``."""
        ...

    def create_worker(self, worker_id: str, spec: WorkerSpec) -> Created:
        """Asks for new worker ``worker_id`` and returns quickly with the instance's resource id.

        The manager makes ``worker_id`` (a worker id's text form) before the call: start the
        instance knowing it (an environment variable, an argument), so that its agent reports
        in and heartbeats with it. The worker is registered under it.
        """
        ...

    def destroy_worker(self, handle: WorkerHandle) -> None:
        """Destroys the instance ``handle.resource_id``."""
        ...


def _takes_fencing_token(method: Callable[..., object]) -> bool:
    """Whether ``method`` takes a ``fencing_token`` keyword: a parameter of that name that may
    be passed by keyword, or ``**kwargs`` (``register_provider`` asks, for ``create_worker`` and
    ``destroy_worker``). Raises what ``inspect.signature`` raises when it cannot tell.

    Python, not Rust, so that the whole of it (``inspect``'s import, the signature, the
    parameters' properties) runs in the one call the module guards against the interpreter's
    exit ending its thread meanwhile (see ``calls`` in the module's sources)."""
    import inspect

    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for parameter in inspect.signature(method).parameters.values():
        if parameter.kind == inspect.Parameter.VAR_KEYWORD:
            return True
        if parameter.name == "fencing_token" and parameter.kind in keyword:
            return True
    return False
