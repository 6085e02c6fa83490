"""The process's figures: one source of truth for the metrics endpoint and the dashboard.

Every part of a serving process registers a *source* on its runtime's ``Board``: a
callable that reads the part's own in-memory state and returns ``Figure`` records (a
name, a kind, a help text, and labelled values). Nothing is counted on the hot paths for
this: a source is read when someone asks (a Prometheus scrape, the admin dashboard of
issue 18), on the event loop, from what the parts keep anyway. The few totals that
outlive the objects holding them (a closed session's messages) are carried on the board
with ``carry``.

Who registers what (each where it is composed, so this module knows none of them):

- ``Runtime`` (``hub``): the listener (reads, batches, rows, connection) and each of its
  followers' lag (``consumer_lag``);
- ``server.app.DDPService``: DDP sessions by transport, messages out; the live-query
  engine's observers and subscriptions;
- ``webhooks.worker.runtime_service``: the dispatcher's subscriptions and backlog;
- ``pull.live.runtime_service``: held pull clients.

**Cluster hooks.** ``Board.broker`` and ``Board.leader`` are ``None`` without a broker
(``LISTENER_BROKER_URL``): their figures are then absent. With one, the runtime sets
them to read its ``ClusterListener`` (``Runtime._plug_cluster``), and the figures
``livedata_broker_connected`` and ``livedata_leader`` appear.

``current()`` is the board of the runtime serving in this process (``livedata serve``
starts one), for views that have no runtime passed in.

For the dashboard (issue 18): its publication reads ``board.read()`` on the event loop
while someone is subscribed (nothing is read otherwise), and shows the same records the
endpoint exposes. Labels stay bounded for Prometheus (publication, transport, consumer,
subscription id): a detail the page needs beyond them (a subscription's parameters, a
webhook's last attempts) belongs in a source of its own, not in these figures' labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger("livedata.server")

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured quantity: ``name`` (without the ``livedata_`` prefix), its kind
    (``counter``: only grows while the process lives; ``gauge``: goes up and down),
    what it means, and its values by labels (``(("transport", "websocket"),)``)."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    values: list[tuple[Labels, float]] = field(default_factory=list)

    @classmethod
    def one(cls, name: str, kind: Literal["counter", "gauge"], help: str, value: float) -> Figure:
        return cls(name, kind, help, [((), float(value))])


Source = Callable[[], Iterable[Figure]]


@dataclass(frozen=True, slots=True)
class BrokerState:
    """What a configured broker reports (issue 15): its kind ("nats", "redis"), whether
    this process is connected to it, and a line for operators."""

    kind: str
    connected: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LeaderState:
    """Who reads the log for the cluster (issue 15): whether it is this process, and
    the holder's name when known."""

    is_leader: bool
    holder: str | None = None


class Board:
    """The figures sources of one runtime, read on demand (see the module docstring)."""

    def __init__(self) -> None:
        self._sources: dict[str, Source] = {}
        #: totals that outlive their objects: (figure name, labels) → value
        self._carried: dict[tuple[str, Labels], float] = {}
        #: plugged in by the scale-out work; None: not configured (figures absent)
        self.broker: Callable[[], BrokerState] | None = None
        self.leader: Callable[[], LeaderState] | None = None

    def add(self, name: str, source: Source) -> None:
        """Register (or replace) the source called ``name``."""
        self._sources[name] = source

    def remove(self, name: str) -> None:
        self._sources.pop(name, None)

    def carry(self, name: str, labels: Labels, amount: float) -> None:
        """Add ``amount`` to a carried total (what a closing session had sent)."""
        key = (name, labels)
        self._carried[key] = self._carried.get(key, 0.0) + amount

    def carried(self, name: str, labels: Labels) -> float:
        return self._carried.get((name, labels), 0.0)

    def read(self) -> list[Figure]:
        """Every source's figures, those of one name merged (in registration order). A
        source that fails is logged and left out: a scrape never fails for one part."""
        merged: dict[str, Figure] = {}
        for name, source in [*self._sources.items(), ("cluster", self._cluster)]:
            try:
                figures = list(source())
            except Exception:
                logger.exception("livedata: reading the figures of %s failed", name)
                continue
            for figure in figures:
                known = merged.get(figure.name)
                if known is None:
                    merged[figure.name] = Figure(
                        figure.name, figure.kind, figure.help, list(figure.values)
                    )
                else:
                    known.values.extend(figure.values)
        return list(merged.values())

    def _cluster(self) -> Iterable[Figure]:
        if self.broker is not None:
            state = self.broker()
            yield Figure(
                "broker_connected",
                "gauge",
                "1 while this process is connected to the cluster's broker",
                [((("kind", state.kind),), float(state.connected))],
            )
        if self.leader is not None:
            leader = self.leader()
            yield Figure(
                "leader",
                "gauge",
                "1 while this process is the cluster's reader of the change log",
                [((("holder", leader.holder or ""),), float(leader.is_leader))],
            )


#: boards of the runtimes started in this process and not stopped, latest last
_serving: list[Board] = []


def serving(board: Board) -> None:
    """A runtime started: its board is ``current()``."""
    if board not in _serving:
        _serving.append(board)


def stopped(board: Board) -> None:
    if board in _serving:
        _serving.remove(board)


def current() -> Board | None:
    """The board of the runtime serving in this process (the latest started), or None
    (no runtime runs here: another ASGI server, a management command)."""
    return _serving[-1] if _serving else None
