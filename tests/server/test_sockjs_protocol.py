"""The generic SockJS layer (``livedata.server.sockjs``): the protocol over a real
``livedata sockjs_testserver`` (echo/close services, fast heartbeats and expiry), and the
session rules in process. The official sockjs-protocol suite runs in test_sockjs_suite.py.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from livedata.server.sockjs import SockJSEndpoint, SockJSSession
from livedata.server.sockjs.sockjs_session import Receiver, dumps
from tests.conftest import spawn_livedata
from tests.server.conftest import free_port, wait_listening


def start_testserver(*args: str) -> tuple[str, subprocess.Popen]:
    port = free_port()
    proc = spawn_livedata("sockjs_testserver", "--port", str(port), *args, stderr=subprocess.STDOUT)
    wait_listening(port, proc)
    return f"127.0.0.1:{port}", proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def sockjs() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a test server: heartbeats after 0.5 s, sessions expire after 1 s."""
    where, proc = start_testserver("--heartbeat-delay", "0.5", "--disconnect-delay", "1")
    try:
        yield where
    finally:
        stop(proc)


def request(server: str, method: str, path: str, body: str | bytes = b"", headers=None):
    conn = http.client.HTTPConnection(server, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read().decode()
    conn.close()
    return response, data


def session_url(service: str = "echo") -> str:
    return f"/{service}/000/{uuid.uuid4()}"


def streaming(server: str, method: str, path: str) -> Iterator[str]:
    """The raw body pieces of a streaming response, as they arrive (None-terminated)."""
    conn = http.client.HTTPConnection(server, timeout=10)
    conn.request(method, path)
    response = conn.getresponse()
    assert response.status == 200
    try:
        while chunk := response.read1(65536):
            yield chunk.decode()
    finally:
        conn.close()


def lines(pieces: Iterator[str], sep: str = "\n") -> Iterator[str]:
    buffer = ""
    for piece in pieces:
        buffer += piece
        while sep in buffer:
            line, buffer = buffer.split(sep, 1)
            yield line


# --- static URLs ---------------------------------------------------------------------------


def test_greeting_info_and_404s(sockjs):
    for path in ("/echo", "/echo/"):
        response, body = request(sockjs, "GET", path)
        assert (response.status, body) == (200, "Welcome to SockJS!\n")
        assert response.headers["content-type"] == "text/plain; charset=UTF-8"
    for path in ("/echo/a", "/echo//", "/echo/a/a", "/echo/a/a/", "/echo/a./a/xhr", "/nope"):
        assert request(sockjs, "GET", path)[0].status == 404, path
    infos = [json.loads(request(sockjs, "GET", "/echo/info")[1]) for _ in range(2)]
    assert infos[0]["websocket"] is True and infos[0]["cookie_needed"] is False
    assert infos[0]["origins"] == ["*:*"] and infos[0]["entropy"] != infos[1]["entropy"]
    assert (
        json.loads(request(sockjs, "GET", "/disabled_websocket_echo/info")[1])["websocket"] is False
    )
    assert (
        json.loads(request(sockjs, "GET", "/cookie_needed_echo/info")[1])["cookie_needed"] is True
    )


def test_options_and_cors(sockjs):
    response, body = request(
        sockjs, "OPTIONS", "/echo/info", headers={"Origin": "https://a.example"}
    )
    assert (response.status, body) == (204, "")
    assert response.headers["access-control-allow-methods"] == "OPTIONS, GET"
    assert response.headers["access-control-allow-origin"] == "https://a.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "max-age=31536000" in response.headers["cache-control"]
    assert int(response.headers["access-control-max-age"]) > 1_000_000
    response, _ = request(
        sockjs, "OPTIONS", f"{session_url()}/xhr_send", headers={"Origin": "null"}
    )
    assert response.headers["access-control-allow-methods"] == "OPTIONS, POST"
    assert response.headers["access-control-allow-origin"] == "*"  # "null" (file://) gets *
    headers = {"Access-Control-Request-Headers": "a, b"}
    response, _ = request(sockjs, "POST", f"{session_url()}/xhr", headers=headers)
    assert response.headers["access-control-allow-headers"] == "a, b"
    response, body = request(sockjs, "GET", f"{session_url()}/xhr")
    assert (response.status, response.headers["allow"], body) == (405, "OPTIONS, POST", "")


def test_iframe_is_cacheable(sockjs):
    response, body = request(sockjs, "GET", "/echo/iframe-1.6.1.html?t=1")
    assert response.status == 200 and "SockJS.bootstrap_iframe()" in body
    assert "public" in response.headers["cache-control"] and response.headers["expires"]
    etag = response.headers["etag"]
    response, body = request(sockjs, "GET", "/echo/iframe.html", headers={"If-None-Match": etag})
    assert (response.status, body, response.headers["content-type"]) == (304, "", None)
    assert request(sockjs, "GET", "/echo/IFRAME.HTML")[0].status == 404


# --- polling ---------------------------------------------------------------------------------


def test_xhr_polling_session(sockjs):
    url = session_url()
    response, body = request(sockjs, "POST", f"{url}/xhr")
    assert (response.status, body) == (200, "o\n")
    assert response.headers["cache-control"] == "no-store, no-cache, must-revalidate, max-age=0"
    response, body = request(sockjs, "POST", f"{url}/xhr_send", '["a", "b\\u2028c"]')
    assert (response.status, body) == (204, "")
    assert response.headers["content-type"] == "text/plain; charset=UTF-8"
    assert request(sockjs, "POST", f"{url}/xhr")[1] == 'a["a","b\\u2028c"]\n'
    # unknown session, bad payloads
    assert request(sockjs, "POST", f"{session_url()}/xhr_send", '["x"]')[0].status == 404
    assert request(sockjs, "POST", f"{url}/xhr_send", '["x')[1] == "Broken JSON encoding."
    assert request(sockjs, "POST", f"{url}/xhr_send", "")[1] == "Payload expected."
    assert request(sockjs, "POST", f"{url}/xhr_send", '{"a": 1}')[1] == "Payload expected."
    assert request(sockjs, "POST", f"{url}/xhr_send", "[1]")[1] == "Broken JSON encoding."


def test_heartbeat_ends_an_idle_poll(sockjs):
    url = session_url()
    request(sockjs, "POST", f"{url}/xhr")
    assert request(sockjs, "POST", f"{url}/xhr")[1] == "h\n"  # after 0.5 s here


def test_a_second_receiver_gets_2010_and_an_aborted_one_closes_the_session(sockjs):
    url = session_url()
    request(sockjs, "POST", f"{url}/xhr")
    waiting = socket.create_connection(tuple(sockjs.split(":")))  # type: ignore[arg-type]
    waiting.sendall(f"POST {url}/xhr HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    time.sleep(0.1)
    assert request(sockjs, "POST", f"{url}/xhr")[1] == 'c[2010,"Another connection still open"]\n'
    waiting.close()  # the client went away while polling
    time.sleep(0.1)
    assert request(sockjs, "POST", f"{url}/xhr")[1] == 'c[1002,"Connection interrupted"]\n'


def test_server_close_is_served_until_the_session_expires(sockjs):
    url = session_url("close")
    assert request(sockjs, "POST", f"{url}/xhr")[1] == "o\n"
    for _ in range(2):
        assert request(sockjs, "POST", f"{url}/xhr")[1] == 'c[3000,"Go away!"]\n'
    time.sleep(1.5)  # expired (1 s here): the id opens a new session
    assert request(sockjs, "POST", f"{url}/xhr")[1] == "o\n"


def test_jsonp(sockjs):
    url = session_url()
    response, body = request(sockjs, "GET", f"{url}/jsonp?c=%63b")
    assert (response.status, body) == (200, 'cb("o");\r\n')
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response, body = request(sockjs, "POST", f"{url}/jsonp_send", "d=%5B%22x%22%5D", form)
    assert (response.status, body) == (200, "ok")
    assert request(sockjs, "POST", f"{url}/jsonp_send", '["y"]')[1] == "ok"
    assert request(sockjs, "GET", f"{url}/jsonp?callback=cb")[1] == 'cb("a[\\"x\\",\\"y\\"]");\r\n'
    assert request(sockjs, "POST", f"{url}/jsonp_send", "d=", form)[1] == "Payload expected."
    response, body = request(sockjs, "GET", f"{session_url()}/jsonp")
    assert (response.status, body) == (500, '"callback" parameter required')
    for bad in ("a(b", "%20", "x" * 33):
        assert request(sockjs, "GET", f"{session_url()}/jsonp?c={bad}")[1] == (
            'invalid "callback" parameter'
        )


def test_jsessionid_cookie(sockjs):
    url = session_url("cookie_needed_echo")
    response, _ = request(sockjs, "POST", f"{url}/xhr")
    assert response.headers["set-cookie"] == "JSESSIONID=dummy; path=/"
    response, _ = request(sockjs, "POST", f"{url}/xhr_send", '["x"]', {"Cookie": "JSESSIONID=ab"})
    assert response.headers["set-cookie"] == "JSESSIONID=ab; path=/"
    assert request(sockjs, "POST", f"{session_url()}/xhr")[0].headers["set-cookie"] is None


# --- streaming -------------------------------------------------------------------------------


def test_xhr_streaming_prelude_frames_and_response_limit(sockjs):
    url = session_url()
    frames = lines(streaming(sockjs, "POST", f"{url}/xhr_streaming"))
    assert next(frames) == "h" * 2048
    assert next(frames) == "o"
    message = "x" * 1000
    for _ in range(5):  # 4 KiB response limit in the test server: the 5th passes it
        request(sockjs, "POST", f"{url}/xhr_send", json.dumps([message]))
        assert next(frames) == f'a["{message}"]'
    assert list(frames) == []  # the response ended; the session goes on
    request(sockjs, "POST", f"{url}/xhr_send", '["later"]')
    assert request(sockjs, "POST", f"{url}/xhr")[1] == 'a["later"]\n'


def test_eventsource_and_htmlfile(sockjs):
    url = session_url()
    frames = lines(streaming(sockjs, "GET", f"{url}/eventsource"), "\r\n\r\n")
    assert next(frames) == "\r\ndata: o"  # the "\r\n" prelude, then the open frame
    request(sockjs, "POST", f"{url}/xhr_send", '["</script>"]')
    assert next(frames) == 'data: a["</script>"]'
    url = session_url()
    pieces = streaming(sockjs, "GET", f"{url}/htmlfile?c=parent_cb")
    page = next(pieces)
    assert "var c = parent.parent_cb;" in page and len(page) > 1024
    frames = lines(pieces, "\r\n")
    assert next(frames) == '<script>\np("o");\n</script>'
    request(sockjs, "POST", f"{url}/xhr_send", '["</script>"]')
    # "<" is escaped: a message cannot end the script element
    assert next(frames) == '<script>\np("a[\\"\\u003c/script>\\"]");\n</script>'


# --- WebSocket -------------------------------------------------------------------------------


def test_websocket_framing(sockjs):
    with connect(f"ws://{sockjs}{session_url()}/websocket", open_timeout=10) as ws:
        assert ws.recv(timeout=5) == "o"
        ws.send("")  # ignored
        ws.send('["a","b"]')
        assert ws.recv(timeout=5) == 'a["a","b"]'
        ws.send('"c"')  # a single JSON string is a message too
        assert ws.recv(timeout=5) == 'a["c"]'
        assert ws.recv(timeout=5) == "h"  # 0.5 s without frames
        ws.send('["d')  # broken JSON: the socket is closed at once
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    with connect(f"ws://{sockjs}{session_url('close')}/websocket", open_timeout=10) as ws:
        assert [ws.recv(timeout=5), ws.recv(timeout=5)] == ["o", 'c[3000,"Go away!"]']
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_raw_websocket(sockjs):
    with connect(f"ws://{sockjs}/echo/websocket", open_timeout=10) as ws:
        ws.send("Hello world!\uffff")
        assert ws.recv(timeout=5) == "Hello world!\uffff"
    with connect(f"ws://{sockjs}/close/websocket", open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (3000, "Go away!")


def test_disabled_websocket_is_404(sockjs):
    for path in ("/disabled_websocket_echo/websocket", "/disabled_websocket_echo/0/0/websocket"):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://{sockjs}{path}", open_timeout=10)
        assert refused.value.response.status_code == 404
        assert request(sockjs, "GET", path)[0].status == 404


def test_websocket_url_without_upgrade(sockjs):
    response, body = request(sockjs, "GET", "/echo/0/0/websocket")
    assert (response.status, body) == (400, 'Can "Upgrade" only to "WebSocket".')
    headers = {"Upgrade": "WebSocket", "Connection": "close"}
    response, body = request(sockjs, "GET", "/echo/0/0/websocket", headers=headers)
    assert (response.status, body) == (400, '"Connection" must be "Upgrade".')
    assert request(sockjs, "POST", "/echo/0/0/websocket")[0].status == 405


# --- sessions, in process ----------------------------------------------------------------------


def test_dumps_escapes_what_sockjs_requires():
    assert dumps(["\u2028\u200c\ufff0\ud800", "é\n"]) == '["\\u2028\\u200c\\ufff0\\ud800","é\\n"]'


class Recorder:
    def __init__(self, session: SockJSSession) -> None:
        self.session = session
        self.calls: list[tuple[str, ...]] = []
        recorded.append(self)

    async def on_open(self) -> None:
        self.calls.append(("open",))
        await asyncio.sleep(0.01)  # messages wait for on_open

    async def on_message(self, text: str) -> None:
        self.calls.append(("message", text))
        await self.session.send(text.upper())

    async def on_close(self) -> None:
        self.calls.append(("close",))


recorded: list[Recorder] = []


class ListReceiver(Receiver):
    """Frames into a list; polling-like (``polling``) or kept until stopped."""

    def __init__(self, polling: bool = True) -> None:
        super().__init__()
        self.frames: list[str] = []
        self.polling = polling

    async def frame(self, frame: str) -> bool:
        self.frames.append(frame)
        self.finished = self.finished or self.polling
        return self.finished


def test_session_callbacks_in_order_once_and_a_bounded_queue():
    async def scenario() -> None:
        endpoint = SockJSEndpoint("/x", Recorder, disconnect_delay=0.05, max_queue_bytes=10)
        session = endpoint._new_session("s1", {"client": ("10.0.0.1", 1)}, {"h": "v"}, "xhr")
        handler = recorded[-1]
        first = ListReceiver()
        await session.attach(first)
        assert first.frames == ["o"] and handler.calls == [("open",)]
        await asyncio.gather(session.deliver(["a", "b"]), session.deliver(["c"]))
        assert [c for c in handler.calls if c[0] == "message"] == [
            ("message", "a"),
            ("message", "b"),
            ("message", "c"),
        ]
        second = ListReceiver()
        await session.attach(second)
        assert second.frames == ['a["A","B","C"]']
        assert session.client_address == "10.0.0.1" and session.http_headers == {"h": "v"}
        await session.send("x" * 11)  # past max_queue_bytes: closed like a slow client
        await asyncio.sleep(0.01)
        assert handler.calls[-1] == ("close",)
        await session.deliver(["ignored"])
        third = ListReceiver()
        await session.attach(third)
        assert third.frames == ['c[1008,"Outgoing buffer limit"]']
        await asyncio.sleep(0.1)
        assert "s1" not in endpoint.sessions  # expired
        assert handler.calls.count(("close",)) == 1

    asyncio.run(scenario())


def test_an_idle_session_expires_and_its_handler_hears_of_it():
    async def scenario() -> None:
        endpoint = SockJSEndpoint("/x", Recorder, disconnect_delay=0.05)
        session = endpoint._new_session("s2", {}, {}, "xhr")
        await session.attach(ListReceiver())
        await session.send("queued, never polled")
        await asyncio.sleep(0.15)
        assert "s2" not in endpoint.sessions and session.closed
        assert recorded[-1].calls == [("open",), ("close",)]

    asyncio.run(scenario())


def test_close_delivers_queued_messages_first():
    async def scenario() -> None:
        endpoint = SockJSEndpoint("/x", Recorder)
        session = endpoint._new_session("s3", {}, {}, "xhr_streaming")
        receiver = ListReceiver(polling=False)
        carrying = asyncio.ensure_future(session.attach(receiver))
        await asyncio.sleep(0.02)
        await session.send("last words")
        await session.close(4000, "bye")
        await asyncio.wait_for(carrying, 1)
        assert receiver.frames == ["o", 'a["last words"]', 'c[4000,"bye"]']

    asyncio.run(scenario())
