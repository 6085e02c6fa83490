"""A ``prometheus_client`` collector over the runtime's figures, read on each scrape.

Each ``runtime.figures.Figure`` becomes one metric family named ``livedata_<name>``
(counters keep their ``_total``), its labels as they are. The registry is livedata's
own, not ``prometheus_client.REGISTRY``: a project's own metrics stay where it put
them, and the library's process collector (``process_*``: memory, CPU, open files) is
added to it here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from livedata.runtime.figures import Board, Figure

PREFIX = "livedata_"


class FiguresCollector(Collector):
    """Yields the figures of ``board()`` (None: no runtime serves here, only ``livedata_up``
    0) as metric families."""

    def __init__(self, board: Callable[[], Board | None]) -> None:
        self._board = board

    def collect(self) -> Iterator[Metric]:
        board = self._board()
        yield GaugeMetricFamily(
            PREFIX + "up",
            "1 when a livedata runtime serves in this process (its figures follow)",
            value=0 if board is None else 1,
        )
        if board is None:
            return
        for figure in board.read():
            yield family(figure)


def family(figure: Figure) -> Metric:
    """``figure`` as a metric family (label names from its first value)."""
    label_names = [name for name, _ in figure.values[0][0]] if figure.values else []
    kind = CounterMetricFamily if figure.kind == "counter" else GaugeMetricFamily
    metric = kind(PREFIX + figure.name, figure.help, labels=label_names)
    for labels, value in figure.values:
        metric.add_metric([v for _, v in labels], value)
    return metric


def registry(board: Callable[[], Board | None]) -> CollectorRegistry:
    """livedata's registry: the figures of ``board()`` and the process's."""
    made = CollectorRegistry(auto_describe=False)
    made.register(FiguresCollector(board))
    ProcessCollector(registry=made)
    return made


def exposition(made: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The registry's text, in the format ``accept`` asks for (Prometheus text, or
    OpenMetrics), and its content type."""
    encode, content_type = choose_encoder(accept)
    return encode(made), content_type
