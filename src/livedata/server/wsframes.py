"""WebSocket frames (RFC 6455), server side, as a pure state machine: bytes in, events out.

``livedata serve``'s own WebSocket protocol (``server.wsprotocol``) is built on this: no
sockets, no asyncio, so every rule is tested by feeding bytes (as ``h11`` and
``wsproto`` are). It knows what a DDP server needs and nothing more: no extensions (a
client offering permessage-deflate is answered without it, which RFC 6455 allows), no
client side.

    parser = FrameParser(max_size=1 << 20)
    for event in parser.feed(data):      # Message, Ping, Pong, Close or Failure
        ...
    transport.write(frame(TEXT, payload))

A ``Failure`` is the last event: the connection is to be closed with its code (1002 a
protocol error, 1007 invalid UTF-8, 1009 a message too big); the parser then ignores
whatever else comes.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

try:  # websockets' C helper (a dependency of uvicorn's own protocol): 20x the fallback
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover
    _apply_mask = None

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = (CONT, TEXT, BINARY)
_CONTROL = (CLOSE, PING, PONG)

#: Close codes a peer may send (RFC 6455 7.4.1, 7.4.2, and IANA's 1012-1014).
_VALID_CLOSE = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015)))

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True, slots=True)
class Message:
    """A whole data message: ``str`` for a text message, ``bytes`` for a binary one."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The peer's close frame (1005: it gave no code)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Failure:
    """The peer broke the protocol: close with ``code`` (and stop reading)."""

    code: int
    reason: str


Event = Message | Ping | Pong | Close | Failure


def unmask(data: bytes, mask: bytes) -> bytes:
    if _apply_mask is not None:
        return _apply_mask(data, mask)
    n = len(data)  # pragma: no cover
    key = int.from_bytes(mask * (n // 4 + 1), "little") & ((1 << (8 * n)) - 1)  # pragma: no cover
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")  # pragma: no cover


class FrameParser:
    """Client frames to events (see the module docstring). One per connection: it keeps
    only the unparsed bytes and the fragments of a message in progress."""

    __slots__ = ("_buffer", "_fragment_op", "_fragments", "_size", "failed", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = b""
        self._fragments: list[bytes] | None = None  # a fragmented message in progress
        self._fragment_op = TEXT
        self._size = 0
        self.failed = False

    def feed(self, data: bytes) -> list[Event]:
        if self.failed:
            return []
        buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        offset, end = 0, len(buffer)
        while end - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if end - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset + 2)
                head = 4
            elif length == 127:
                if end - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset + 2)
                head = 10
            failure = self._check(first, second, length)
            if failure is not None:
                return self._fail(events, failure)
            if end - offset < head + 4 + length:
                break
            mask = buffer[offset + head : offset + head + 4]
            start = offset + head + 4
            payload = unmask(buffer[start : start + length], mask) if length else b""
            offset = start + length
            event = self._frame(first & 0x80, first & 0x0F, payload)
            if event is not None:
                if isinstance(event, Failure):
                    return self._fail(events, event)
                events.append(event)
        self._buffer = buffer[offset:] if offset < end else b""
        return events

    def _check(self, first: int, second: int, length: int) -> Failure | None:
        opcode = first & 0x0F
        if first & 0x70:
            return Failure(1002, "reserved bits set (no extension was agreed)")
        if opcode not in _DATA and opcode not in _CONTROL:
            return Failure(1002, f"unknown opcode {opcode}")
        if not second & 0x80:
            return Failure(1002, "client frames must be masked")
        if opcode in _CONTROL and (not first & 0x80 or length > 125):
            return Failure(1002, "control frames must be whole and at most 125 bytes")
        if opcode in _DATA and self._size + length > self.max_size:
            return Failure(1009, f"message over {self.max_size} bytes")
        return None

    def _frame(self, fin: int, opcode: int, payload: bytes) -> Event | None:
        if opcode == PING:
            return Ping(payload)
        if opcode == PONG:
            return Pong(payload)
        if opcode == CLOSE:
            return _close(payload)
        if opcode == CONT:
            if self._fragments is None:
                return Failure(1002, "a continuation frame with no message to continue")
            self._fragments.append(payload)
            self._size += len(payload)
            if not fin:
                return None
            payload = b"".join(self._fragments)
            opcode, self._fragments, self._size = self._fragment_op, None, 0
        elif self._fragments is not None:
            return Failure(1002, "a new message before the fragmented one ended")
        elif not fin:
            self._fragments, self._fragment_op, self._size = [payload], opcode, len(payload)
            return None
        if opcode == BINARY:
            return Message(payload)
        try:
            return Message(payload.decode("utf-8"))
        except UnicodeDecodeError:
            return Failure(1007, "a text message that is not UTF-8")

    def _fail(self, events: list[Event], failure: Failure) -> list[Event]:
        self.failed = True
        self._buffer, self._fragments = b"", None
        events.append(failure)
        return events


def _close(payload: bytes) -> Close | Failure:
    if not payload:
        return Close(1005, "")
    if len(payload) == 1:
        return Failure(1002, "a close frame of one byte")
    (code,) = struct.unpack_from("!H", payload)
    if code not in _VALID_CLOSE and not 3000 <= code <= 4999:
        return Failure(1002, f"close code {code} may not be sent")
    try:
        return Close(code, payload[2:].decode("utf-8"))
    except UnicodeDecodeError:
        return Failure(1007, "a close reason that is not UTF-8")


def frame(opcode: int, payload: bytes) -> bytes:
    """One whole, unmasked server frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; 1005 (no code) sends an empty one. The reason is cut to fit."""
    if code == 1005:
        return frame(CLOSE, b"")
    cut = reason.encode()[:123].decode("utf-8", "ignore").encode()  # whole characters
    return frame(CLOSE, struct.pack("!H", code) + cut)


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def valid_key(key: bytes) -> bool:
    """A ``Sec-WebSocket-Key`` is 16 random bytes in base64."""
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False
