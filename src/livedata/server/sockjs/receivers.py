"""Receivers: what carries a session's frames to the client while it is attached (an HTTP
response, polling or streaming, or a WebSocket).

A SockJS session (``sockjs_session.py``) attaches one receiver at a time and calls ``open``,
``messages``, ``heartbeat`` and ``closing``; each returns True when the receiver is
finished after it (a polling response after one frame, a streaming one past its size
limit). The frames themselves come from ``frames.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from livedata.server.sockjs.frames import (
    HEARTBEAT,
    OPEN,
    close_frame,
    message_frame,
    valid_close_code,
)
from livedata.server.sockjs.http import Send, respond
from livedata.server.sockjs.protocol import Headers

logger = logging.getLogger("livedata.server.sockjs")


class Receiver:
    """One request or WebSocket carrying frames to the client while it is attached."""

    #: send ``h`` after ``heartbeat_delay`` idle seconds (not on raw WebSockets)
    heartbeats = True

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self.finished = False  # the receiver ended (response complete, socket closed)
        self.stopped = False  # the client went away, or the transport must stop now

    def stop(self) -> None:
        """The client went away (or the transport is aborted): detach at once."""
        if not self.finished:
            self.stopped = True
            self.wakeup.set()

    async def frame(self, frame: str) -> bool:
        """Write one frame; True when the receiver is finished after it."""
        raise NotImplementedError

    async def finish(self) -> None:
        """End the response or close the socket (idempotent)."""
        self.finished = True

    async def open(self) -> bool:
        return await self.frame(OPEN)

    async def heartbeat(self) -> bool:
        return await self.frame(HEARTBEAT)

    async def messages(self, messages: list[str]) -> bool:
        return await self.frame(message_frame(messages))

    async def closing(self, code: int, reason: str) -> None:
        await self.frame(close_frame(code, reason))
        self.finished = True


class HTTPReceiver(Receiver):
    """A response carrying frames: polling (``limit=None``: one frame, then the response
    ends) or streaming (chunks until ``limit`` bytes of frames were sent)."""

    def __init__(
        self, send: Send, headers: Headers, *, wrap: Callable[[str], str], limit: int | None
    ) -> None:
        super().__init__()
        self._send = send
        self._headers = headers
        self._wrap = wrap
        self._limit = limit
        self._started = False
        self._size = 0

    async def start(self, prelude: bytes) -> None:
        """Streaming: send the headers and the prelude now."""
        await self._send({"type": "http.response.start", "status": 200, "headers": self._headers})
        await self._send({"type": "http.response.body", "body": prelude, "more_body": True})
        self._started = True

    async def frame(self, frame: str) -> bool:
        data = self._wrap(frame).encode()
        if self._limit is None:  # polling: the whole response at once, with its length
            self.finished = True
            await respond(self._send, 200, data, self._headers)
            return True
        self._size += len(data)
        if self._size >= self._limit:
            self.finished = True
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        return self.finished

    async def finish(self) -> None:
        if self._started:
            self._started = False
            self.finished = True
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


class WebSocketReceiver(Receiver):
    """A WebSocket's frames: SockJS-framed, or raw (one message per WebSocket message)."""

    def __init__(self, send: Send, *, raw: bool) -> None:
        super().__init__()
        self._send = send
        self.raw = raw
        self.heartbeats = not raw
        self.closed = False  # the socket is closed (by either side)
        self.close_code = 1000
        self.close_reason = ""

    def stop(self) -> None:
        self.stopped = True
        self.wakeup.set()

    async def _text(self, text: str) -> None:
        try:
            await self._send({"type": "websocket.send", "text": text})
        except Exception:  # the socket is gone (uvicorn raises ClientDisconnected)
            self.stop()

    async def frame(self, frame: str) -> bool:
        await self._text(frame)
        return self.stopped

    async def open(self) -> bool:
        return False if self.raw else await super().open()

    async def messages(self, messages: list[str]) -> bool:
        if not self.raw:
            return await self.frame(message_frame(messages))
        for text in messages:
            await self._text(text)
        return self.stopped

    async def closing(self, code: int, reason: str) -> None:
        if self.raw:
            self.close_code = code if valid_close_code(code) else 1000
            self.close_reason = reason
        else:
            await self.frame(close_frame(code, reason))
        self.finished = True

    async def finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self._send(
                {
                    "type": "websocket.close",
                    "code": self.close_code,
                    "reason": self.close_reason[:120],
                }
            )
        except Exception:
            logger.debug("sockjs: closing a WebSocket failed", exc_info=True)
