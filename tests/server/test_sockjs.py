"""DDP over SockJS (``/sockjs``) against a real ``livedata serve``: xhr polling, xhr
streaming and the SockJS WebSocket, spoken by hand from Python."""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
import urllib.request
import uuid

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from livedata.demo.bookstore.models import Author, Book
from tests.server.ddp_client import DDPCalls

pytestmark = pytest.mark.django_db(transaction=True)

CONNECT = {"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}


class Closed(Exception):
    """The server sent a SockJS close frame ``c[code, reason]``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code, self.reason = code, reason


class SockJSClient(DDPCalls):
    """A SockJS session from Python: ``frames()`` yields the raw frames (o, h, a[...], c[...]);
    ``recv()`` returns the next DDP message (as a dict) and raises Closed on ``c``."""

    transport = ""

    def __init__(
        self, server: str, headers: dict[str, str] | None = None, prefix: str = "/sockjs"
    ) -> None:
        self.server = server
        self.headers = headers or {}
        self.base = f"{prefix}/000/{uuid.uuid4().hex}"
        self.pending: list[str] = []

    def frame(self, timeout: float = 10) -> str:
        raise NotImplementedError

    def send_raw(self, body: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def send(self, *messages: dict | str) -> None:
        texts = [m if isinstance(m, str) else json.dumps(m) for m in messages]
        self.send_raw(json.dumps(texts))

    def recv(self, timeout: float = 10) -> dict:
        while not self.pending:
            frame = self.frame(timeout)
            if frame.startswith("a"):
                self.pending.extend(json.loads(frame[1:]))
            elif frame.startswith("c"):
                raise Closed(*json.loads(frame[1:]))
            else:
                assert frame == "h", frame
        return json.loads(self.pending.pop(0))

    def request(self, method: str, path: str, body: str = "", timeout: float = 10):
        conn = http.client.HTTPConnection(self.server, timeout=timeout)
        conn.request(method, path, body=body.encode(), headers=self.headers)
        response = conn.getresponse()
        data = response.read().decode()
        conn.close()
        return response, data


class XhrPolling(SockJSClient):
    transport = "xhr"

    def frame(self, timeout: float = 10) -> str:
        response, body = self.request("POST", f"{self.base}/xhr", timeout=timeout)
        assert response.status == 200, (response.status, body)
        assert response.headers["content-type"] == "application/javascript; charset=UTF-8"
        assert body.endswith("\n") and body.count("\n") == 1, body  # one frame per poll
        return body[:-1]

    def send_raw(self, body: str) -> None:
        response, text = self.request("POST", f"{self.base}/xhr_send", body)
        assert response.status == 204, (response.status, text)


class XhrStreaming(XhrPolling):
    """One streaming response at a time, read by a thread; reopened when the server ends it."""

    transport = "xhr_streaming"

    def __init__(
        self, server: str, headers: dict[str, str] | None = None, prefix: str = "/sockjs"
    ) -> None:
        super().__init__(server, headers, prefix)
        self.frames: queue.Queue[str | None] = queue.Queue()
        self.responses = 0
        self._conn: http.client.HTTPConnection | None = None
        self._reader: threading.Thread | None = None
        self._open()

    method = "POST"
    query = ""

    def _open(self) -> None:
        self.close()
        self._conn = http.client.HTTPConnection(self.server, timeout=30)
        path = f"{self.base}/{self.transport}{self.query}"
        self._conn.request(self.method, path, headers=self.headers)
        response = self._conn.getresponse()
        assert response.status == 200
        assert response.headers["transfer-encoding"] == "chunked"
        self.responses += 1
        self._reader = threading.Thread(target=self._read, args=(response,), daemon=True)
        self._reader.start()

    def _prelude(self, line: str) -> None:
        assert line == "h" * 2048

    def _frame_of(self, line: str) -> str | None:
        """The SockJS frame a line of the response carries (None: not one)."""
        return line

    def _read(self, response: http.client.HTTPResponse) -> None:
        buffer = ""
        prelude = True
        try:
            while chunk := response.read1(65536):
                buffer += chunk.decode()
                while "\n" in buffer:
                    line, buffer = buffer.split("\n", 1)
                    if prelude:
                        self._prelude(line)
                        prelude = False
                    elif (frame := self._frame_of(line)) is not None:
                        self.frames.put(frame)
        except (OSError, AttributeError, http.client.HTTPException):
            pass  # closed by close(), from the test's thread
        self.frames.put(None)  # the response ended

    def frame(self, timeout: float = 10) -> str:
        while True:
            frame = self.frames.get(timeout=timeout)
            if frame is not None:
                return frame
            self._open()  # the server ended the response (size limit): reopen, as clients do

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class EventSource(XhrStreaming):
    """``text/event-stream`` responses: ``data: <frame>`` events, reopened at the limit."""

    transport = "eventsource"
    method = "GET"

    def _prelude(self, line: str) -> None:
        assert line == "\r"

    def _frame_of(self, line: str) -> str | None:
        line = line.rstrip("\r")
        return line.removeprefix("data: ") if line else None


class HtmlFile(XhrStreaming):
    """htmlfile responses: a page, then one ``<script>p("<frame>");</script>`` per frame."""

    transport = "htmlfile"
    method = "GET"

    query = "?c=p"

    def _prelude(self, line: str) -> None:
        assert line.startswith("<!doctype html>")

    def _frame_of(self, line: str) -> str | None:
        line = line.rstrip("\r")
        if line.startswith("p(") and line.endswith(");"):
            return json.loads(line[2:-2])
        return None


class WebSocket(SockJSClient):
    transport = "websocket"

    def __init__(
        self, server: str, headers: dict[str, str] | None = None, prefix: str = "/sockjs"
    ) -> None:
        super().__init__(server, headers, prefix)
        self._cm = connect(
            f"ws://{server}{self.base}/websocket", open_timeout=10, additional_headers=headers
        )
        self.ws = self._cm.__enter__()

    def frame(self, timeout: float = 10) -> str:
        return self.ws.recv(timeout=timeout)

    def send_raw(self, body: str) -> None:
        self.ws.send(body)

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


TRANSPORTS = [XhrPolling, XhrStreaming, WebSocket]


def open_session(server: str, kind: type[SockJSClient], **kwargs) -> SockJSClient:
    c = kind(server, **kwargs)
    assert c.frame() == "o"
    assert c.recv() == {"server_id": "0"}
    return c


@pytest.fixture(params=TRANSPORTS, ids=lambda kind: kind.transport)
def client(request, server):
    c = open_session(server, request.param)
    c.send(CONNECT)
    connected = c.recv()
    assert connected["msg"] == "connected" and len(connected["session"]) == 17
    yield c
    c.close()


def test_connect_ping_hello_and_unknown_method(client):
    client.send({"msg": "ping", "id": "p1"})
    assert client.recv() == {"msg": "pong", "id": "p1"}
    got = client.call("1", "hello", "livedata")
    assert got == [  # no writes: updated, then result (as over the raw WebSocket)
        {"msg": "updated", "methods": ["1"]},
        {"msg": "result", "id": "1", "result": "hello livedata"},
    ]
    [*_, result] = [m for m in client.call("2", "nope") if m["msg"] == "result"]
    assert result["error"] == {
        "isClientSafe": True,
        "error": 404,
        "reason": "Method 'nope' not found",
        "message": "Method 'nope' not found [404]",
        "errorType": "Meteor.Error",
    }


def test_a_method_that_writes_and_several_messages_in_one_send(client):
    author = Author.objects.create(name="Janet Evanovich", email="janet@evanovich.com")
    got = client.call("7", "test.addBook", "Hot Six", "janet@evanovich.com")
    assert [m["msg"] for m in got] == ["result", "updated"]
    book = Book.objects.get(pk=int(got[0]["result"]))
    assert (book.title, book.author_id) == ("Hot Six", author.pk)
    # SockJS clients batch: one send carrying several DDP messages, handled in order
    client.send({"msg": "ping", "id": "a"}, {"msg": "ping", "id": "b"}, "{not json")
    assert client.recv() == {"msg": "pong", "id": "a"}
    assert client.recv() == {"msg": "pong", "id": "b"}
    assert client.recv() == {"msg": "error", "reason": "Bad request"}


@pytest.mark.parametrize("kind", TRANSPORTS, ids=lambda kind: kind.transport)
def test_a_failed_negotiation_is_a_sockjs_close_frame(server, kind):
    c = open_session(server, kind)
    c.send({"msg": "connect", "version": "9", "support": ["9"]})
    assert c.recv() == {"msg": "failed", "version": "1"}
    with pytest.raises(Closed) as closed:
        c.recv()
    # DDPSession.shutdown(1000, reason) is SockJS's normal close, 3000, keeping the reason
    assert (closed.value.code, closed.value.reason) == (3000, "DDP version negotiation failed")
    c.close()


def test_heartbeat_timeout_over_polling(fast_heartbeat_server):
    server = fast_heartbeat_server
    c = open_session(server, XhrPolling)
    c.send(CONNECT)
    assert c.recv()["msg"] == "connected"
    assert c.recv(timeout=5) == {"msg": "ping"}  # 1 s interval in test settings
    with pytest.raises(Closed) as closed:  # never answered: closed after the 1 s timeout
        c.recv(timeout=5)
    assert (closed.value.code, closed.value.reason) == (3000, "heartbeat timeout")
    with pytest.raises(Closed):  # served to every later poll until the session expires
        c.recv()


@pytest.mark.parametrize("kind", [XhrPolling, WebSocket], ids=lambda kind: kind.transport)
def test_oversized_message_gets_an_error_then_close(server, kind):
    c = open_session(server, kind)
    c.send(CONNECT)
    c.recv()
    # over DDP_MAX_MESSAGE_BYTES (64 KiB in test settings), under the 2x transport cap
    c.send({"msg": "method", "id": "1", "method": "test.echo", "params": ["x" * 70_000]})
    error = c.recv()
    assert error["msg"] == "error" and "Message too big" in error["reason"]
    with pytest.raises(Closed) as closed:
        c.recv()
    assert closed.value.code == 1009
    c.close()


def test_a_body_over_the_transport_cap_is_refused(server):
    c = open_session(server, XhrPolling)
    response, body = c.request("POST", f"{c.base}/xhr_send", json.dumps(["x" * 200_000]))
    assert (response.status, body) == (413, "Payload too large.")
    with pytest.raises(Closed) as closed:
        c.recv()
    assert closed.value.code == 1009


def test_a_deeply_nested_send_is_a_400_and_the_session_goes_on(server):
    """Issue 19: 100,000 nested "[" raised RecursionError (a 500 with a traceback)."""
    c = open_session(server, XhrPolling)
    response, body = c.request("POST", f"{c.base}/xhr_send", "[" * 100_000)
    assert (response.status, body) == (400, "Payload nested too deep.")
    c.send(CONNECT)
    assert c.recv()["msg"] == "connected"
    c.send({"msg": "ping", "id": "p"})
    assert c.recv() == {"msg": "pong", "id": "p"}


def test_a_client_that_does_not_poll_is_disconnected(server):
    c = open_session(server, XhrPolling)
    c.send(CONNECT)
    c.recv()
    # ~1 MB of results, never polled: past DDP_MAX_OUTGOING_BYTES (256 KiB in test settings)
    for i in range(5):
        c.send({"msg": "method", "id": str(i), "method": "test.big", "params": [200_000]})
    time.sleep(0.5)  # not polling (and under the 1 s DDP heartbeat of the test settings)
    with pytest.raises(Closed) as closed:
        c.recv()  # what was queued is dropped: only the close frame is left
    assert (closed.value.code, closed.value.reason) == (1008, "Outgoing buffer limit")


def test_streaming_responses_end_at_the_limit_and_the_session_goes_on(server):
    c = open_session(server, XhrStreaming)
    c.send(CONNECT)
    c.recv()
    for i in range(3):  # 3 x 60 KB of results: past the 128 KiB response limit
        [*_, result] = [m for m in c.call(str(i), "test.big", 60_000) if m["msg"] == "result"]
        assert result["result"] == "x" * 60_000
    c.send({"msg": "ping", "id": "still"})
    assert c.recv() == {"msg": "pong", "id": "still"}
    assert c.responses == 2  # the client reopened once; same session, same DDP connection
    c.close()


def test_info_greeting_and_iframe(server):
    with urllib.request.urlopen(f"http://{server}/sockjs/info", timeout=10) as page:
        info = json.loads(page.read())
        assert page.headers["access-control-allow-origin"] == "*"
    assert info["websocket"] is True and info["cookie_needed"] is False
    assert info["origins"] == ["*:*"] and 0 <= info["entropy"] < 2**32
    for path in ("/sockjs", "/sockjs/"):
        with urllib.request.urlopen(f"http://{server}{path}", timeout=10) as page:
            assert page.read() == b"Welcome to SockJS!\n"
    with urllib.request.urlopen(f"http://{server}/sockjs/iframe.html", timeout=10) as page:
        assert b"SockJS.bootstrap_iframe()" in page.read()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://{server}/sockjs/a/b", timeout=10)
    assert missing.value.code == 404


def test_origin_rule_is_the_websockets_one(server):
    evil = {"Origin": "http://evil.example"}
    request = urllib.request.Request(f"http://{server}/sockjs/info", headers=evil)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    with pytest.raises(AssertionError):
        XhrPolling(server, headers=evil).frame()
    with pytest.raises(InvalidStatus) as refused_ws:
        WebSocket(server, headers=evil)
    assert refused_ws.value.response.status_code == 403
    same = open_session(server, XhrPolling, headers={"Origin": f"http://{server}"})
    same.send(CONNECT)
    assert same.recv()["msg"] == "connected"


def test_raw_websocket_under_sockjs_is_plain_ddp(server):
    with connect(f"ws://{server}/sockjs/websocket", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"server_id": "0"}
        ws.send(json.dumps(CONNECT))
        assert json.loads(ws.recv(timeout=10))["msg"] == "connected"


def test_websocket_disconnect_ends_the_session(server):
    c = open_session(server, WebSocket)
    c.send(CONNECT)
    c.recv()
    c.close()
    with pytest.raises(ConnectionClosed):
        c.ws.recv(timeout=1)


@pytest.fixture
def capped_server(transactional_db):
    """A server allowing 5 SockJS HTTP sessions per client address."""
    from tests.server.conftest import _serve

    yield from _serve("1", LIVEDATA_SETTINGS=json.dumps({"DDP_SOCKJS_MAX_SESSIONS_PER_ADDRESS": 5}))


def test_sessions_per_address_are_capped(capped_server):
    """Issue 19: 5000 sessions from one address cost 19-31 MB; past the cap, 429."""
    sessions = [open_session(capped_server, XhrPolling) for _ in range(5)]
    extra = XhrPolling(capped_server)
    response, body = extra.request("POST", f"{extra.base}/xhr")
    assert response.status == 429
    assert body == "Too many SockJS sessions from this address (limit 5)."
    # the open sessions go on, and a WebSocket (one session per socket) is not counted
    sessions[0].send(CONNECT)
    assert sessions[0].recv()["msg"] == "connected"
    ws = open_session(capped_server, WebSocket)
    ws.send(CONNECT)
    assert ws.recv()["msg"] == "connected"
    ws.close()
