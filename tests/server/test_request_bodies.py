"""Oversized request bodies are refused at the limit, not read whole (issue 19, finding 16).

Each test sends a 50 MiB body over a real socket and records how much it had sent when
the answer came: a server that reads the whole body first answers only after all of it.
"""

from __future__ import annotations

import select
import socket
import time
import uuid

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

BIG = 50 * 1024 * 1024
CHUNK = b"x" * 65536


def send_big(server: str, head: str, *, chunked: bool = False) -> tuple[bytes, int]:
    """Send ``head``, then up to 50 MiB of body while watching for an answer; returns
    (the answer's first bytes, body bytes sent when it arrived)."""
    host, port = server.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head.encode())
    sock.setblocking(False)
    sent = 0
    answer = b""
    frame = (b"%x\r\n" % len(CHUNK)) + CHUNK + b"\r\n" if chunked else CHUNK
    pending = frame
    deadline = time.monotonic() + 60
    try:
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            want_write = [sock] if sent < BIG else []
            readable, writable, _ = select.select([sock], want_write, [], 1)
            if readable:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
                continue
            if writable:
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    want_write = []
                    sent = max(sent, 1)
                    continue
                pending = pending[n:]
                if not pending:
                    pending = frame
                sent += n
    finally:
        sock.close()
    return answer, sent


def test_a_huge_webhook_subscription_body_is_refused_before_it_is_sent(server):
    answer, sent = send_big(
        server,
        f"PUT /livedata/subscriptions/x HTTP/1.1\r\nHost: {server}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {BIG}\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < BIG // 4, sent  # answered while the client was still writing


def test_a_chunked_body_to_the_pull_feed_is_cut_at_the_limit(server):
    answer, sent = send_big(
        server,
        f"GET /livedata/pull/livedata_demo.book?offset=-1 HTTP/1.1\r\nHost: {server}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        chunked=True,
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < BIG // 4, sent


def test_a_huge_sockjs_send_is_refused_before_it_is_sent(server):
    from tests.server.test_sockjs import XhrPolling, open_session

    c = open_session(server, XhrPolling)
    answer, sent = send_big(
        server,
        f"POST {c.base}/xhr_send HTTP/1.1\r\nHost: {server}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {BIG}\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < BIG // 4, sent
    # the same for a receiving request's (meaningless) body
    answer, sent = send_big(
        server,
        f"POST /sockjs/000/{uuid.uuid4().hex}/xhr HTTP/1.1\r\nHost: {server}\r\n"
        f"Content-Length: {BIG}\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < BIG // 4, sent
