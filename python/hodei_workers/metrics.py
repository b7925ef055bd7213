"""The lifecycle manager's metrics for the ``prometheus_client`` package.

``LifecycleManager.metrics_text()`` already gives the OpenMetrics text (serve it as is, with
the content type ``application/openmetrics-text; version=1.0.0; charset=utf-8``). To merge
the metrics into a ``prometheus_client`` registry instead, next to the host's own::

    from prometheus_client import REGISTRY, start_http_server
    from hodei_workers.metrics import Collector

    REGISTRY.register(Collector(manager))
    start_http_server(9100)

``prometheus_client`` is an optional dependency (``pip install 'hodei-workers[prometheus]'``);
only this module needs it. Every scrape reads the manager once: workers by state and provider,
workers by pool and state and each pool's demand (as of the last pools tick), jobs assigned and
released, provisions, destroys, failures, brake holds, provider back-off,
tick and health-check durations, heartbeat ages and event drops, at O(1) cost in the fleet
size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from hodei_workers._native import LifecycleManager

__all__ = ["Collector"]


def _parser() -> Callable[[str], Iterable[Metric]]:
    try:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "hodei_workers.metrics needs the prometheus_client package: "
            "pip install 'hodei-workers[prometheus]'"
        ) from e
    return text_string_to_metric_families


class Collector:
    """A ``prometheus_client`` collector of one :class:`~hodei_workers.LifecycleManager`'s
    metrics. Register it with ``REGISTRY.register(Collector(manager))``; each scrape calls
    :meth:`collect`, which parses ``manager.metrics_text()`` with ``prometheus_client``'s own
    OpenMetrics parser, so names, types, units and labels are exactly those of the text form.
    """

    def __init__(self, manager: LifecycleManager) -> None:
        self._parse = _parser()
        self._manager = manager

    def collect(self) -> Iterator[Metric]:
        """The metric families, read from the manager now."""
        text: str = self._manager.metrics_text()
        yield from self._parse(text)

    def __repr__(self) -> str:
        return f"<hodei_workers.metrics.Collector of {self._manager!r}>"
