"""livedata's own WebSocket protocol for uvicorn: ASGI over ``wsframes``, light per socket.

uvicorn takes a WebSocket protocol class (``ws=``) and hands it each upgraded connection.
Its websockets-sansio protocol held 18.4 KiB per idle connection of a trivial ASGI app,
where an asyncio protocol and a task hold 2.6 (issue 14: an idle DDP session's memory is
mostly the WebSocket implementation's). This one keeps per connection only what the
ASGI WebSocket spec needs: the scope, a frame parser (``wsframes``), a deque of received
events with one waiter, and the transport's flow control. The handshake, close codes,
the denial response extension (``websocket.http.response``, livedata's 503 when busy)
and uvicorn's shutdown follow uvicorn's own protocol, with the same limits as
``protocols.GuardedWebSocketProtocol``: a place in the per-address count, released when
the connection ends, and the gradual close of ``HTTP_SHUTDOWN_PERIOD``.

It does not negotiate extensions: ``livedata serve`` uses it unless
``DDP_WEBSOCKET_COMPRESSION`` asks for permessage-deflate (then uvicorn's protocol).
No keepalive pings either: DDP has its own heartbeat (``serve`` sets no ping interval).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections import deque
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)

from livedata.server import wsframes
from livedata.server.outgoing import SEND_MANY
from livedata.server.protocols import connections, drain_delay
from livedata.server.wsframes import BINARY, PONG, TEXT, Close, Failure, Message, Ping

logger = logging.getLogger("uvicorn.error")  # uvicorn's own lines, through its filters

#: Received messages queued before the socket stops reading (flow control: a client
#: cannot make the server buffer without bound while its session is busy).
MAX_QUEUED = 32
#: Seconds to wait for the client's close reply after ours.
CLOSE_TIMEOUT = 10.0


#: Text frames built lately, by the identity of their text (each entry holds its str, so
#: its id is not reused meanwhile): a fan-out sends the same strs to every subscriber in
#: turn, so each is encoded and framed once, not once per socket.
_frames: dict[int, tuple[str, bytes]] = {}
FRAME_CACHE = 256


def _text_frame(text: str) -> bytes:
    found = _frames.get(id(text))
    if found is not None and found[0] is text:
        return found[1]
    if len(_frames) >= FRAME_CACHE:
        _frames.clear()
    built = wsframes.frame(TEXT, text.encode())
    _frames[id(text)] = (text, built)
    return built


def _response(status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode())]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    return b"".join([*lines, b"\r\n", body])


class LeanWebSocketProtocol(asyncio.Protocol):
    """One upgraded connection (see the module docstring)."""

    __slots__ = (
        "__weakref__",
        "accept_key",
        "app",
        "app_state",
        "client",
        "close_sent",
        "close_timer",
        "config",
        "connections",
        "default_headers",
        "denial",
        "disconnected",
        "handshake_complete",
        "loop",
        "parser",
        "queue",
        "read_paused",
        "root_path",
        "scope",
        "server",
        "tasks",
        "transport",
        "waiter",
        "writable",
    )

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()  # pragma: no cover
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.root_path: str = config.root_path
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scope: dict[str, Any] | None = None
        self.parser: wsframes.FrameParser | None = None  # None until the handshake
        self.queue: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None  # receive() waiting for an event
        self.writable: asyncio.Future[None] | None = None  # set while writing is paused
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.read_paused = False
        self.close_timer: asyncio.TimerHandle | None = None
        self.denial: tuple[int, list[tuple[bytes, bytes]], bytes] | None = None
        self.accept_key = b""

    @property
    def websocket_open(self) -> bool:
        """Accepted and not gone (counted in the shutdown's drain)."""
        return self.parser is not None and not self.disconnected

    # --- asyncio's side ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.server = get_local_addr(self.transport)
        self.client = get_remote_addr(self.transport)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            if self.scope is None:
                self._handshake(data)
            return  # bytes before the app accepted: uvicorn's protocol drops them too
        for event in parser.feed(data):
            if type(event) is Message:
                if self.close_sent:
                    continue  # past our close: read on until the client's close reply
                data_ = event.data
                self._put(
                    {"type": "websocket.receive", "text": data_}
                    if type(data_) is str
                    else {"type": "websocket.receive", "bytes": data_}
                )
                if len(self.queue) >= MAX_QUEUED and not self.read_paused:
                    self.read_paused = True
                    self.transport.pause_reading()
            elif type(event) is Ping:
                if not self.close_sent:
                    self.transport.write(wsframes.frame(PONG, event.payload))
            elif type(event) is Close:
                self._peer_closed(event)
            elif type(event) is Failure:
                self._fail(event)
            # Pong: no pings are sent, nothing to match

    def connection_lost(self, exc: Exception | None) -> None:
        connections.close(self.transport)
        self._put({"type": "websocket.disconnect", "code": 1005 if self.parser else 1006})
        self.connections.discard(self)
        self.handshake_complete = True
        self.disconnected = True
        self._resume_writers()
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        self._resume_writers()

    def _resume_writers(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def shutdown(self) -> None:
        """uvicorn's shutdown: closed at this connection's turn of the drain."""
        delay = drain_delay(self) if self.parser is not None else 0.0
        if delay <= 0:
            self._shutdown_now()
        else:
            self.loop.call_later(delay, self._shutdown_now)

    def _shutdown_now(self) -> None:
        if self.transport.is_closing():
            return
        if self.close_sent:
            self.transport.close()
            return
        if self.parser is not None:
            self._put({"type": "websocket.disconnect", "code": 1012})
            self.transport.write(wsframes.close_frame(1012))
        else:
            self._send_500()
        self.transport.close()

    # --- the handshake ----------------------------------------------------------------
    def _handshake(self, head: bytes) -> None:
        """The upgrade request, as uvicorn's HTTP protocol hands it over (its head)."""
        lines = head.split(b"\r\n")
        method, _, rest = lines[0].partition(b" ")
        target = rest.rpartition(b" ")[0]
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                headers.append((name.strip().lower(), value.strip()))
        found = dict(headers)
        key = found.get(b"sec-websocket-key", b"")
        problem = None
        if method != b"GET":
            problem = "a WebSocket opens with GET"
        elif b"upgrade" not in [
            t.strip().lower() for t in found.get(b"connection", b"").split(b",")
        ]:
            problem = "missing Connection: Upgrade"
        elif found.get(b"sec-websocket-version") != b"13":
            problem = "unsupported Sec-WebSocket-Version (13 is)"
        elif not wsframes.valid_key(key):
            problem = "invalid Sec-WebSocket-Key"
        if problem is not None:
            self.close_sent = self.handshake_complete = True
            status = 426 if "Version" in problem else 400
            extra = [(b"sec-websocket-version", b"13")] if status == 426 else []
            self.transport.write(self._plain(status, problem, extra))
            self.transport.close()
            return
        raw_path, _, query = target.partition(b"?")
        subprotocols = [
            token.strip().decode("latin-1")
            for name, value in headers
            if name == b"sec-websocket-protocol"
            for token in value.split(b",")
        ]
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(self.transport) else "ws",
            "server": self.server,
            "client": self.client,
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path.decode("ascii")),
            "raw_path": self.root_path.encode("ascii") + raw_path,
            "query_string": query,
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}, SEND_MANY: {}},
        }
        self.accept_key = wsframes.accept_key(key)
        self._put({"type": "websocket.connect"})
        task = self.loop.create_task(self._run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _plain(
        self, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> bytes:
        body = text.encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *(extra or []),
        ]
        return _response(status, headers, body)

    async def _run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            logger.exception("Exception in ASGI application\n")
            self._send_500()
        else:
            if not self.handshake_complete:
                logger.error("ASGI callable returned without completing handshake.")
                self._send_500()
            elif result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None:
            self.transport.close()

    def _send_500(self) -> None:
        if self.denial is not None or self.handshake_complete:
            return
        self.handshake_complete = self.close_sent = True
        self.transport.write(self._plain(500, "Internal Server Error"))

    # --- the ASGI app's side ----------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        queue = self.queue
        while not queue:
            waiter = self.waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self.waiter = None
        message = queue.popleft()
        if self.read_paused and len(queue) < MAX_QUEUED // 2:
            self.read_paused = False
            self.transport.resume_reading()
        return message

    def _put(self, event: dict[str, Any]) -> None:
        self.queue.append(event)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send(self, message: dict[str, Any]) -> None:
        if self.writable is not None:
            # shielded: a sender cancelled while it waits must not cancel the others' wait
            await asyncio.shield(self.writable)
        if self.disconnected:
            raise ClientDisconnected()
        kind = message["type"]
        if self.parser is not None and not self.close_sent:  # open: the hot path first
            if kind == SEND_MANY:
                self.transport.write(b"".join([_text_frame(t) for t in message["texts"]]))
            elif kind == "websocket.send":
                text = message.get("text")
                if text is not None:
                    self.transport.write(_text_frame(text))
                else:
                    self.transport.write(wsframes.frame(BINARY, message.get("bytes") or b""))
            elif kind == "websocket.close":
                self._close(message.get("code", 1000), message.get("reason") or "")
            else:
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', got '{kind}'."
                )
        elif not self.handshake_complete and self.denial is None:
            self._before_accept(message)
        elif self.denial is not None:
            self._denial_body(message)
        elif self.parser is None:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' after the handshake failed.")
        # after our close: uvicorn ignores nothing here either, but raising would end a
        # session that is closing anyway; dropped

    def _before_accept(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        scope = self.scope
        assert scope is not None
        if kind == "websocket.accept":
            logger.info(
                '%s - "WebSocket %s" [accepted]',
                get_client_addr(scope),  # type: ignore[arg-type]
                get_path_with_query_string(scope),  # type: ignore[arg-type]
            )
            if self.transport.is_closing():
                return
            headers = [
                (name.lower(), value)
                for name, value in [*self.default_headers, *message.get("headers", [])]
                if name.lower() != b"date"
            ]
            headers += [
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", self.accept_key),
            ]
            if message.get("subprotocol"):
                headers.append((b"sec-websocket-protocol", message["subprotocol"].encode()))
            self.handshake_complete = True
            self.parser = wsframes.FrameParser(self.config.ws_max_size)
            self.transport.write(_response(101, headers))
        elif kind == "websocket.close":
            self._put({"type": "websocket.disconnect", "code": 1006})
            logger.info(
                '%s - "WebSocket %s" 403',
                get_client_addr(scope),  # type: ignore[arg-type]
                get_path_with_query_string(scope),  # type: ignore[arg-type]
            )
            self.close_sent = self.handshake_complete = True
            self.transport.write(self._plain(403, ""))
            self.transport.close()
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
            logger.info(
                '%s - "WebSocket %s" %d',
                get_client_addr(scope),  # type: ignore[arg-type]
                get_path_with_query_string(scope),  # type: ignore[arg-type]
                status,
            )
            self.denial = (status, list(message.get("headers", [])), b"")
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' "
                f"or 'websocket.http.response.start' but got '{kind}'."
            )

    def _denial_body(self, message: dict[str, Any]) -> None:
        assert self.denial is not None
        if message["type"] != "websocket.http.response.body":
            raise RuntimeError(
                f"Expected ASGI message 'websocket.http.response.body' but got '{message['type']}'."
            )
        status, headers, body = self.denial
        body += message.get("body", b"")
        self.denial = (status, headers, body)
        if message.get("more_body", False) or self.close_sent:
            return
        names = {name.lower() for name, _ in headers}
        defaults = [
            (b"date", email.utils.formatdate(usegmt=True).encode()),
            (b"connection", b"close"),
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
        ]
        headers = headers + [(n, v) for n, v in defaults if n not in names]
        self._put({"type": "websocket.disconnect", "code": 1006})
        self.close_sent = self.handshake_complete = True
        self.transport.write(_response(status, headers, body))
        self.transport.close()

    # --- closing ----------------------------------------------------------------------
    def _close(self, code: int, reason: str) -> None:
        """The app closes: our close frame, then wait for the client's reply."""
        if self.transport.is_closing():
            return
        self._put({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(wsframes.close_frame(code, reason))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.close)

    def _peer_closed(self, event: Close) -> None:
        if self.close_sent:  # the reply to ours: the closing handshake is complete
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
            self.transport.close()
            return
        if not self.transport.is_closing():
            self._put({"type": "websocket.disconnect", "code": event.code, "reason": event.reason})
            self.transport.write(wsframes.close_frame(event.code, event.reason))
            self.close_sent = True
            self.transport.close()

    def _fail(self, event: Failure) -> None:
        self._put({"type": "websocket.disconnect", "code": event.code, "reason": event.reason})
        if not self.close_sent and not self.transport.is_closing():
            self.transport.write(wsframes.close_frame(event.code, event.reason))
        self.close_sent = True
        self.transport.close()
