"""livedata's own WebSocket protocol (``server.wsprotocol``) over a real socket against a
real ``livedata serve``: the handshake's refusals, control frames, fragments and the
closing handshake, spoken byte by byte (the frame rules themselves: test_wsframes.py)."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time

import pytest

from livedata.server import wsframes
from livedata.server.wsframes import CLOSE, CONT, PING, TEXT, FrameParser
from tests.server.test_wsframes import client_frame

pytestmark = pytest.mark.django_db(transaction=True)


class Raw:
    """A WebSocket client written out by hand (server frames parsed by ``FrameParser``,
    which accepts only masked frames: so server frames are masked here before parsing)."""

    def __init__(self, server: str, extra: bytes = b"", key: bytes | None = None) -> None:
        host, port = server.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.key = key if key is not None else base64.b64encode(os.urandom(16))
        self.sock.sendall(
            b"GET /websocket HTTP/1.1\r\nHost: " + server.encode() + b"\r\n"
            b"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
            b"Sec-WebSocket-Key: " + self.key + b"\r\n" + extra + b"\r\n"
        )
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.head = head

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def events(self, deadline: float = 10.0) -> list:
        """Server frames until the first batch of events (or the socket closes)."""
        end = time.monotonic() + deadline
        out: list = []
        while not out and time.monotonic() < end:
            data = self.buffer or self.sock.recv(65536)
            self.buffer = b""
            if not data:
                return [None]  # closed
            out = self._parse(data)
        return out

    def _parse(self, data: bytes) -> list:
        # the server's frames are unmasked; set the mask bit with a zero mask to reuse
        # the client-frame parser
        self._pending = getattr(self, "_pending", b"") + data
        parser, frames, rest = FrameParser(1 << 24), [], self._pending
        while len(rest) >= 2:
            n, head = rest[1] & 0x7F, 2
            if n == 126:
                n, head = struct.unpack_from("!H", rest, 2)[0], 4
            elif n == 127:
                n, head = struct.unpack_from("!Q", rest, 2)[0], 10
            if len(rest) < head + n:
                break
            masked = rest[:1] + bytes((rest[1] | 0x80,)) + rest[2:head] + b"\0\0\0\0"
            frames += parser.feed(masked + rest[head : head + n])
            rest = rest[head + n :]
        self._pending = rest
        return frames

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


def ddp(message: dict) -> bytes:
    return client_frame(TEXT, json.dumps(message).encode())


def test_the_handshake_is_accepted_with_the_rfc_key(server):
    ws = Raw(server, b"Sec-WebSocket-Version: 13\r\n")
    assert ws.status == 101
    assert b"sec-websocket-accept: " + wsframes.accept_key(ws.key) in ws.head
    (greeting,) = ws.events()
    assert json.loads(greeting.data) == {"server_id": "0"}


@pytest.mark.parametrize(
    ("extra", "key", "status"),
    [
        (b"Sec-WebSocket-Version: 8\r\n", None, 426),
        (b"Sec-WebSocket-Version: 13\r\n", b"not-a-key", 400),
    ],
)
def test_a_bad_handshake_is_refused_with_its_status(server, extra, key, status):
    ws = Raw(server, extra, key)
    assert ws.status == status


def test_ping_is_answered_fragments_join_and_close_is_echoed(server):
    ws = Raw(server, b"Sec-WebSocket-Version: 13\r\n")
    ws.events()  # greeting
    ws.send(client_frame(PING, b"hello"))
    (pong,) = ws.events()
    assert pong == wsframes.Pong(b"hello")
    connect = json.dumps({"msg": "connect", "version": "1", "support": ["1"]}).encode()
    ws.send(client_frame(TEXT, connect[:10], fin=False) + client_frame(CONT, connect[10:]))
    (connected,) = ws.events()
    assert json.loads(connected.data)["msg"] == "connected"
    ws.send(client_frame(CLOSE, struct.pack("!H", 1000) + b"done"))
    assert ws.events() == [wsframes.Close(1000, "done")]
    assert ws.events() == [None]  # and the server closes the socket


def test_a_protocol_error_closes_with_1002(server):
    ws = Raw(server, b"Sec-WebSocket-Version: 13\r\n")
    ws.events()
    ws.send(client_frame(TEXT, b"{}", masked=False))
    (close,) = ws.events()
    assert isinstance(close, wsframes.Close) and close.code == 1002
    assert ws.events() == [None]
