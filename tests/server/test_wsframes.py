"""The WebSocket frame parser, fed bytes (no sockets): every rule a client can break."""

from __future__ import annotations

import os
import struct

import pytest

from livedata.server import wsframes
from livedata.server.wsframes import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Close,
    Failure,
    FrameParser,
    Message,
    Ping,
    Pong,
)


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """A frame as a client sends it (masked), with the shortest length form."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, (0x80 if masked else 0) | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_text_binary_and_control_frames_become_events():
    parser = FrameParser(max_size=1 << 20)
    data = (
        client_frame(TEXT, "héllo".encode())
        + client_frame(BINARY, b"\x00\x01")
        + client_frame(PING, b"p")
        + client_frame(PONG, b"q")
        + client_frame(CLOSE, struct.pack("!H", 1000) + b"bye")
    )
    assert parser.feed(data) == [
        Message("héllo"),
        Message(b"\x00\x01"),
        Ping(b"p"),
        Pong(b"q"),
        Close(1000, "bye"),
    ]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_every_length_form_fed_a_byte_at_a_time_or_whole(size):
    payload = os.urandom(size)
    data = client_frame(BINARY, payload)
    assert FrameParser(1 << 20).feed(data) == [Message(payload)]
    parser, events = FrameParser(1 << 20), []
    step = 1 if size < 300 else 997
    for i in range(0, len(data), step):
        events += parser.feed(data[i : i + step])
    assert events == [Message(payload)]


def test_fragments_join_with_control_frames_between():
    parser = FrameParser(1 << 20)
    events = parser.feed(
        client_frame(TEXT, b"ab", fin=False)
        + client_frame(PING, b"")
        + client_frame(CONT, b"cd", fin=False)
        + client_frame(CONT, "é".encode())
    )
    assert events == [Ping(b""), Message("abcdé")]
    # a character split across fragments is fine: UTF-8 is checked on the whole message
    split = "é".encode()
    events = parser.feed(client_frame(TEXT, split[:1], fin=False) + client_frame(CONT, split[1:]))
    assert events == [Message("é")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(TEXT, b"x", masked=False), 1002),
        (bytes((0x80 | 0x40 | TEXT, 0x80)) + b"\0\0\0\0", 1002),  # RSV1: no extension
        (bytes((0x80 | 0x3, 0x80)) + b"\0\0\0\0", 1002),  # opcode 3 is reserved
        (client_frame(CONT, b"x"), 1002),  # nothing to continue
        (client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"), 1002),
        (client_frame(PING, b"x", fin=False), 1002),
        (client_frame(PING, b"x" * 126), 1002),
        (client_frame(TEXT, b"\xff\xfe"), 1007),
        (client_frame(CLOSE, b"\x03"), 1002),  # a close of one byte
        (client_frame(CLOSE, struct.pack("!H", 1005)), 1002),  # may not be sent
        (client_frame(CLOSE, struct.pack("!H", 999)), 1002),
        (client_frame(CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
        (client_frame(BINARY, b"x" * 101), 1009),
        (client_frame(TEXT, b"x" * 60, fin=False) + client_frame(CONT, b"x" * 60), 1009),
    ],
)
def test_a_broken_rule_fails_with_its_close_code_and_nothing_after(data, code):
    parser = FrameParser(max_size=100)
    events = parser.feed(data + client_frame(TEXT, b"after"))
    assert isinstance(events[-1], Failure) and events[-1].code == code, events
    assert parser.feed(client_frame(TEXT, b"more")) == []


def test_an_empty_close_is_1005_and_codes_3000_to_4999_are_the_apps():
    parser = FrameParser(100)
    assert parser.feed(client_frame(CLOSE, b"")) == [Close(1005, "")]
    assert parser.feed(client_frame(CLOSE, struct.pack("!H", 4003))) == [Close(4003, "")]


def test_a_huge_declared_length_fails_before_the_bytes_come():
    parser = FrameParser(max_size=1 << 20)
    head = struct.pack("!BBQ", 0x80 | BINARY, 0x80 | 127, 1 << 40)
    assert parser.feed(head) == [Failure(1009, "message over 1048576 bytes")]


def test_server_frames_and_the_handshake_key():
    assert wsframes.frame(TEXT, b"hi") == b"\x81\x02hi"
    assert wsframes.frame(BINARY, b"x" * 300)[:4] == b"\x82\x7e\x01\x2c"
    assert wsframes.frame(BINARY, b"x" * 70000)[:2] == b"\x82\x7f"
    assert wsframes.close_frame(1005) == b"\x88\x00"
    long = wsframes.close_frame(1000, "é" * 100)  # cut to 125 bytes, still UTF-8
    assert len(long) <= 127 and long[4:].decode("utf-8")
    # RFC 6455 section 1.3's example
    assert wsframes.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert wsframes.valid_key(b"dGhlIHNhbXBsZSBub25jZQ==")
    assert not wsframes.valid_key(b"short") and not wsframes.valid_key(b"!!!!")
