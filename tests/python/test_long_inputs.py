"""A refused argument of any size gets a short message: an exception quotes at most 64
characters of the caller's string and says how long it was ("… (N bytes)"), so that a
megabyte-long argument does not become a megabyte-long exception (or log line)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

import hodei_workers as hw

MB = 1 << 20
HUGE = "k" * MB


def _spec() -> Any:
    # Any: the stubs (rightly) refuse a keyword WorkerSpec.replace does not have.
    return hw.WorkerSpec("i")


def _manager() -> hw.LifecycleManager:
    return hw.LifecycleManager(hw.Registry())


@pytest.mark.parametrize(
    ("exception", "call"),
    [
        (hw.InvalidArgumentError, lambda: hw.Pool(HUGE, "p", hw.WorkerSpec("i"))),
        (hw.InvalidArgumentError, lambda: hw.LifecycleManager.replicated(hw.Registry(), HUGE, 10.0)),
        (hw.InvalidArgumentError, lambda: _manager().remove_pool(HUGE)),
        (hw.InvalidArgumentError, lambda: hw.Registry().heartbeat(HUGE)),
        (hw.InvalidArgumentError, lambda: hw.Registry().find(states=[HUGE])),
        (hw.InvalidArgumentError, lambda: hw.Registry.postgres("host=/nonexistent", name=HUGE)),
        (hw.SnapshotError, lambda: hw.Registry().restore('"' + HUGE + '"')),
        (hw.SnapshotError, lambda: hw.Registry().restore('{"' + HUGE + '": 1}')),
        # Refused by the Python binding itself.
        (hw.InvalidArgumentError, lambda: hw.WorkerSpec("i\0" + HUGE)),
        (hw.InvalidArgumentError, lambda: hw.Demand([{HUGE: 1}])),
        (TypeError, lambda: _spec().replace(**{HUGE: 1})),
        # A map's value refused under a huge key: the key names the value in the message.
        (hw.InvalidArgumentError, lambda: hw.WorkerSpec("i", labels={HUGE: "\0"})),
        (hw.InvalidArgumentError, lambda: hw.WorkerSpec("i", environment={HUGE: "\ud800"})),
        (hw.InvalidArgumentError, lambda: hw.Registry().find(labels={HUGE: "\0"})),
    ],
)
def test_a_huge_refused_string_gives_a_short_message(
    exception: type[BaseException], call: Callable[[], Any]
) -> None:
    with pytest.raises(exception) as info:
        call()
    text = str(info.value)
    assert len(text) < 1024, f"a {len(text)}-byte message: {text[:200]!r}"
    assert f"({MB} bytes)" in text or f"({MB + 2} bytes)" in text, text[:200]


@pytest.mark.parametrize("value", [10**5000, -(10**5000)], ids=["big", "negative"])
def test_a_huge_int_is_an_invalid_argument_with_a_short_message(value: int) -> None:
    # Without the fix: repr() of an int over 4300 digits raises Python's own ValueError
    # ("Exceeds the limit (4300 digits) for integer string conversion"), not the library's.
    with pytest.raises(hw.InvalidArgumentError) as info:
        hw.Registry().find(limit=value)
    text = str(info.value)
    assert len(text) < 400, f"a {len(text)}-byte message: {text[:200]!r}"
    assert "out of range" in text


class _Verbose:
    """A provider whose creates raise with a whole (huge) response body as the message."""

    provider_id = "verbose"
    provider_type = "docker"

    def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
        raise ValueError("x" * 1_000_000)

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        pass


def test_a_huge_provider_exception_is_cut_in_the_report_and_the_event() -> None:
    # Without the fix: the report's and the event's message held all 1 000 000 bytes (only a
    # C provider's message was cut).
    registry = hw.Registry()
    events = registry.subscribe()
    manager = hw.LifecycleManager(registry)
    manager.register_provider(_Verbose())
    manager.set_scaling_target("verbose", hw.WorkerSpec("i"))
    [failure] = manager.tick(pending_jobs=1).provision_failures
    [event] = [e for e in events.drain() if isinstance(e, hw.ProvisionFailed)]
    for text in (failure.error, event.error):
        assert len(text.encode()) <= 4096 + 64, f"a {len(text.encode())}-byte message"
        assert "ValueError" in text and text.endswith("… (truncated) (failed)"), text[-80:]
