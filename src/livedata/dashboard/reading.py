"""One reading of the process's figures as the dashboard shows them: the "now" and
"flow" documents and the rates since the previous reading.

Shared by the page's refresh (``feed``) and the process's report to the cluster table
(``cluster``), so a process's row in the "Processes" table and its own "now" document
come from the same figures, computed the same way. Each keeps its own ``Reading``: a
rate is the difference of two readings of a counter, and each has its own pace.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livedata.dashboard import documents as docs
from livedata.runtime.figures import Figure


def process_name() -> str:
    """This process as the page names it (``host:pid``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Snapshot:
    figures: dict[str, Figure]
    now: dict[str, Any]
    flow: dict[str, Any]
    messages_per_s: float
    changes_per_s: dict[str, float]


class Reading:
    """Successive readings of one process's board (``runtime.figures``)."""

    def __init__(
        self, runtime: Any, engine: Any, changes_by_model: Callable[[], dict[str, int]]
    ) -> None:
        self.runtime = runtime
        self.engine = engine
        self.changes_by_model = changes_by_model
        self.process = process_name()
        self._before: tuple[float, float, dict[str, float]] | None = None

    def reset(self) -> None:
        """Forget the previous reading (the next rates start from 0)."""
        self._before = None

    def take(self, *, dashboard_subscribers: int) -> Snapshot:
        figures = docs.by_name(self.runtime.figures.read())
        clock = time.monotonic()
        messages = docs.total(figures, "messages_out_total")
        by_model = {m: float(n) for m, n in self.changes_by_model().items()}
        before = self._before or (clock, messages, by_model)
        seconds = clock - before[0]
        per_s = max(0.0, (messages - before[1]) / seconds if seconds > 0 else 0.0)
        changes_per_s = docs.rates(by_model, before[2], seconds)
        self._before = (clock, messages, by_model)
        observers = [] if self.engine is None else self.engine.observer_details()
        now = docs.now_document(
            figures,
            observers,
            process=self.process,
            messages_per_s=per_s,
            memory_bytes=resident_memory(),
            dashboard_subscribers=dashboard_subscribers,
        )
        flow = docs.flow_document(figures, changes_per_s)
        return Snapshot(figures, now, flow, per_s, changes_per_s)


def resident_memory() -> float | None:
    """The process's resident memory, as ``process_resident_memory_bytes`` (the
    Prometheus client's process collector, which the metrics endpoint exposes too)."""
    from prometheus_client import ProcessCollector

    for metric in ProcessCollector(registry=None).collect():
        if metric.name == "process_resident_memory_bytes":
            return metric.samples[0].value if metric.samples else None
    return None
