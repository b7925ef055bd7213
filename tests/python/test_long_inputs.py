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
