"""The per-connection DDP state machine, sans-I/O.

Feed it text frames with ``receive(text, now)``; it returns the actions the server must
run (``Subscribe``, ``Unsubscribe``, ``CallMethod``) and queues the frames to send, which
``data_to_send()`` drains. The server reports outcomes back (``method_result``,
``method_updated``, ``ready``, ``nosub``, ``send``) and calls ``tick(now)`` periodically
for heartbeats. Nothing here touches a socket, a database or an event loop; time is
passed in.

Behaviour follows Meteor's ddp-server (docs/ddp-wire-reference.md): versions ``1``,
``pre2``, ``pre1``; ``failed`` then close on a bad ``connect``; top-level ``error``
replies that never close the connection; ``ping`` answered at once; a duplicate ``sub``
id ignored; ``unsub`` always answered with ``nosub``; an unknown method gets 404 then
``updated``. Where Meteor misbehaves (a non-string ``unsub``/``ping`` id stalls or
throws there) we answer "Bad request" instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Container
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from livedata.ddp import errors, messages
from livedata.ddp.errors import DDPError
from livedata.ddp.messages import UNDEFINED, BadFrame

SUPPORTED_VERSIONS = ("1", "pre2", "pre1")
GREETING = '{"server_id":"0"}'
_ID_CHARS = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"


def random_id(length: int = 17) -> str:
    """Meteor's Random.id(): 17 characters from an unambiguous alphabet."""
    return "".join(secrets.choice(_ID_CHARS) for _ in range(length))


# --- actions for the server to run -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: str
    name: str
    params: list[Any]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: str


@dataclass(frozen=True, slots=True)
class CallMethod:
    id: str
    name: str
    params: list[Any]
    random_seed: str | None


@dataclass(frozen=True, slots=True)
class Close:
    """Close the transport (after sending what is queued) with ``code``."""

    reason: str
    code: int = 1000


Action = Subscribe | Unsubscribe | CallMethod | Close


class State(Enum):
    NEW = "new"  # waiting for connect
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass
class Heartbeat:
    """Meteor's server heartbeat: ping after ``interval`` without traffic, close after
    ``timeout`` more without any message (any inbound message counts as a pong)."""

    interval: float = 15.0
    timeout: float = 15.0
    last_seen: float = 0.0
    ping_sent_at: float | None = None

    def seen(self, now: float) -> None:
        self.last_seen = now
        self.ping_sent_at = None

    def tick(self, now: float) -> str | None:
        """``"ping"`` to send one, ``"timeout"`` to close, or None."""
        if self.ping_sent_at is not None:
            return "timeout" if now - self.ping_sent_at >= self.timeout else None
        if self.interval and now - self.last_seen >= self.interval:
            self.ping_sent_at = now
            return "ping"
        return None


@dataclass
class DDPConnection:
    """One client's DDP session.

    ``publications`` and ``methods`` answer ``name in ...`` (e.g. the registries'
    dicts); unknown names are rejected here with Meteor's 404 errors.
    """

    publications: Container[str] = field(default_factory=frozenset)
    methods: Container[str] = field(default_factory=frozenset)
    heartbeat: Heartbeat | None = field(default_factory=Heartbeat)
    greeting: bool = True
    #: more concurrent subscriptions than this on one connection are refused
    max_subscriptions: int = 1000
    #: when a connection still without ``connect`` is closed (``tick``; None: never), so
    #: one that opens a socket and says nothing does not hold it for ever
    connect_deadline: float | None = None
    state: State = State.NEW
    version: str | None = None
    session: str | None = None
    subscriptions: set[str] = field(default_factory=set)
    _out: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.greeting:
            self._out.append(GREETING)

    # --- input --------------------------------------------------------------------------

    def receive(self, text: str | bytes, now: float = 0.0) -> list[Action]:
        """Process one client frame; returns the actions to run, in order."""
        if self.state is State.CLOSED:
            return []
        if self.heartbeat is not None:
            self.heartbeat.seen(now)
        msg = messages.parse(text)
        if isinstance(msg, BadFrame):
            self._send(messages.error(msg.reason, msg.offending))
            return []
        kind = msg["msg"]
        if kind == "connect":
            if self.state is State.CONNECTED:
                self._send(messages.error("Already connected", msg))
                return []
            return self._connect(msg)
        if self.state is not State.CONNECTED:
            self._send(messages.error("Must connect first", msg))
            return []
        # a non-string ``msg`` (an object, a list) names no handler: Meteor's lookup by
        # property name finds none either and answers "Bad request"
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None or (self.version == "pre1" and kind in ("ping", "pong")):
            self._send(messages.error("Bad request", msg))
            return []
        return handler(self, msg)

    def _connect(self, msg: dict[str, Any]) -> list[Action]:
        version, support = msg.get("version"), msg.get("support")
        valid = (
            isinstance(version, str)
            and isinstance(support, list)
            and all(isinstance(v, str) for v in support)
            and version in support
        )
        if not valid:
            return self._fail(SUPPORTED_VERSIONS[0])
        best = next((v for v in support if v in SUPPORTED_VERSIONS), SUPPORTED_VERSIONS[0])
        if version != best:
            return self._fail(best)
        self.state = State.CONNECTED
        self.version = version
        self.session = random_id()
        if version == "pre1":
            self.heartbeat = None
        self._send({"msg": "connected", "session": self.session})
        return []

    def _fail(self, version: str) -> list[Action]:
        self._send({"msg": "failed", "version": version})
        self.state = State.CLOSED
        return [Close("DDP version negotiation failed")]

    def _ping(self, msg: dict[str, Any]) -> list[Action]:
        ping_id = msg.get("id", UNDEFINED)
        if not _id_ok(ping_id):
            self._send(messages.error("Bad request", msg))
        else:
            self._send({"msg": "pong", "id": ping_id})
        return []

    def _pong(self, msg: dict[str, Any]) -> list[Action]:
        return []

    def _sub(self, msg: dict[str, Any]) -> list[Action]:
        sub_id, name, params = msg.get("id"), msg.get("name"), msg.get("params", [])
        if not isinstance(sub_id, str) or not isinstance(name, str) or not isinstance(params, list):
            self._send(messages.error("Malformed subscription", msg))
            return []
        if name not in self.publications:
            self.nosub(sub_id, errors.not_found_subscription(name))
            return []
        if sub_id in self.subscriptions:
            return []  # Meteor ignores a duplicate id (it happens during reconnects)
        if len(self.subscriptions) >= self.max_subscriptions:
            self.nosub(
                sub_id,
                DDPError(
                    "too-many-requests",
                    f"Too many subscriptions on this connection (limit {self.max_subscriptions})",
                ),
            )
            return []
        self.subscriptions.add(sub_id)
        return [Subscribe(sub_id, name, params)]

    def _unsub(self, msg: dict[str, Any]) -> list[Action]:
        sub_id = msg.get("id", UNDEFINED)
        if not _id_ok(sub_id):
            self._send(messages.error("Bad request", msg))
            return []
        if isinstance(sub_id, str) and sub_id in self.subscriptions:
            return [Unsubscribe(sub_id)]  # the server retracts its documents, then nosub()
        self._send({"msg": "nosub", "id": sub_id})
        return []

    def _method(self, msg: dict[str, Any]) -> list[Action]:
        method_id, name = msg.get("id"), msg.get("method")
        params = msg.get("params", [])
        seed = msg.get("randomSeed", UNDEFINED)
        if (
            not isinstance(method_id, str)
            or not isinstance(name, str)
            or not isinstance(params, list)
            or (seed is not UNDEFINED and not isinstance(seed, str))
        ):
            self._send(messages.error("Malformed method invocation", msg))
            return []
        if name not in self.methods:
            self.method_result(method_id, error=errors.not_found_method(name))
            self.method_updated(method_id)
            return []
        return [CallMethod(method_id, name, params, seed or None)]

    # --- output reported by the server --------------------------------------------------

    def method_result(
        self, method_id: str, result: Any = UNDEFINED, error: DDPError | None = None
    ) -> None:
        if error is not None:
            self._send({"msg": "result", "id": method_id, "error": error.to_wire()})
        else:
            self._send({"msg": "result", "id": method_id, "result": result})

    def method_updated(self, *method_ids: str) -> None:
        self._send({"msg": "updated", "methods": list(method_ids)})

    def ready(self, *sub_ids: str) -> None:
        ids = [s for s in sub_ids if s in self.subscriptions]
        if ids:
            self._send({"msg": "ready", "subs": ids})

    def nosub(self, sub_id: str, error: DDPError | None = None) -> None:
        """A subscription ended (unsub, error or stop): forget it and tell the client."""
        self.subscriptions.discard(sub_id)
        out: dict[str, Any] = {"msg": "nosub", "id": sub_id}
        if error is not None:
            out["error"] = error.to_wire()
        self._send(out)

    def send(self, message: dict[str, Any]) -> None:
        """Queue any server message (data messages: added/changed/removed)."""
        self._send(message)

    def tick(self, now: float) -> list[Action]:
        """Heartbeat: maybe queue a ping, or close a connection that stopped answering
        (or that never sent ``connect`` by ``connect_deadline``: closed with 1008)."""
        if self.state is State.NEW and self.connect_deadline is not None:
            if now >= self.connect_deadline:
                self.state = State.CLOSED
                return [Close("connect timeout", 1008)]
            return []
        if self.state is not State.CONNECTED or self.heartbeat is None:
            return []
        what = self.heartbeat.tick(now)
        if what == "ping":
            self._send({"msg": "ping"})
        elif what == "timeout":
            self.state = State.CLOSED
            return [Close("heartbeat timeout")]
        return []

    def close(self) -> None:
        self.state = State.CLOSED

    def data_to_send(self) -> list[str]:
        """Frames queued since the last call, in order."""
        out, self._out = self._out, []
        return out

    def _send(self, message: dict[str, Any]) -> None:
        self._out.append(messages.serialize(message))


def _id_ok(value: Any) -> bool:
    """Absent, null or a string: Meteor echoes these; other types make it throw."""
    return value is UNDEFINED or value is None or isinstance(value, str)


_HANDLERS = {
    "ping": DDPConnection._ping,
    "pong": DDPConnection._pong,
    "sub": DDPConnection._sub,
    "unsub": DDPConnection._unsub,
    "method": DDPConnection._method,
}
