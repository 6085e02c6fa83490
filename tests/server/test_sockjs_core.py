"""The sans-I/O core of SockJS (``frames``, ``protocol``, ``core``), fed values: no loop,
no socket. What the transports then do with it is tested over HTTP in test_sockjs*.py."""

from __future__ import annotations

import json

import pytest

from livedata.server.sockjs import core, frames, protocol
from livedata.server.sockjs.core import Closing, Messages, Queued, SockJSSessionCore, State
from livedata.server.sockjs.frames import HTTPError
from tests.imports import imported_modules

PURE = [core, frames, protocol]
#: what a pure module may import (the standard library minus I/O, and each other)
ALLOWED = {
    "__future__",
    "collections",
    "collections.abc",
    "dataclasses",
    "email.utils",
    "enum",
    "hashlib",
    "json",
    "re",
    "time",
    "typing",
    "urllib.parse",
    "livedata.server.sockjs.frames",
    "livedata.server.outbox",  # pure too: tests/server/test_outbox.py
}


@pytest.mark.parametrize("module", PURE, ids=lambda m: m.__name__)
def test_the_core_modules_import_no_io(module):
    imported = imported_modules(module)
    assert imported <= ALLOWED, imported - ALLOWED


# --- frames ------------------------------------------------------------------------------


def test_frames_are_compact_json_with_sockjs_escapes():
    assert frames.message_frame(["a", 'b"']) == 'a["a","b\\""]'
    assert frames.close_frame(3000, "Go away!") == 'c[3000,"Go away!"]'
    assert frames.message_frame(["\u2028é\ud800"]) == 'a["\\u2028é\\ud800"]'
    assert (frames.OPEN, frames.HEARTBEAT) == ("o", "h")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("", 500, "Payload expected."),
        ("[x", 500, "Broken JSON encoding."),
        ('{"a": 1}', 500, "Payload expected."),
        ('["a", 1]', 500, "Broken JSON encoding."),
        ("[" * 100_000 + "]" * 100_000, 400, "Payload nested too deep."),
    ],
)
def test_a_bad_send_body_is_a_precise_error(body, status, message):
    with pytest.raises(HTTPError) as caught:
        frames.send_body(body)
    assert (caught.value.status, caught.value.message) == (status, message)


def test_send_bodies_and_the_jsonp_form():
    assert frames.send_body('["a","b"]') == ["a", "b"]
    assert frames.send_body("[]") == []
    form = "application/x-www-form-urlencoded; charset=UTF-8"
    assert frames.jsonp_send_body(form, "d=%5B%22x%22%5D&e=1") == '["x"]'
    assert frames.jsonp_send_body(form, "e=1") == ""
    assert frames.jsonp_send_body("text/plain", '["x"]') == '["x"]'


@pytest.mark.parametrize(
    ("text", "messages"),
    [
        ("", []),
        ('"one"', ["one"]),
        ('["a","b"]', ["a", "b"]),
        ("[]", []),
        ("[1]", None),
        ("{}", None),
        ("not json", None),
        ("[" * 100_000, None),
    ],
)
def test_websocket_messages(text, messages):
    assert frames.websocket_messages(text) == messages


def test_transport_wrapping():
    assert frames.xhr_chunk("o") == "o\n"
    assert frames.eventsource_chunk('a["x"]') == 'data: a["x"]\r\n\r\n'
    assert frames.jsonp_chunk("cb")('a["x"]') == 'cb("a[\\"x\\"]");\r\n'
    chunk = frames.htmlfile_chunk('a["</script>"]')
    assert '</script>"' not in chunk and chunk.startswith("<script>\np(")
    assert json.loads(chunk[len("<script>\np(") : -len(");\n</script>\r\n")]) == 'a["</script>"]'
    prelude = frames.htmlfile_prelude("cb")
    assert b"var c = parent.cb;" in prelude and len(prelude) > 1024
    assert len(frames.XHR_STREAMING_PRELUDE) == 2049


def test_close_codes_a_raw_websocket_may_carry():
    assert frames.valid_close_code(1000) and frames.valid_close_code(4999)
    assert not frames.valid_close_code(1006) and not frames.valid_close_code(2010)


# --- protocol ----------------------------------------------------------------------------

SESSION_TRANSPORTS = {"xhr", "xhr_send", "websocket"}


@pytest.mark.parametrize(
    ("rest", "websocket", "found"),
    [
        (None, True, None),
        ("", True, ("greeting", None)),
        ("/", True, ("greeting", None)),
        ("/info", True, ("info", None)),
        ("/iframe-1.0.html", True, ("iframe", None)),
        ("/websocket", True, ("websocket", None)),
        ("/websocket", False, None),
        ("/000/abc/xhr", True, ("xhr", "abc")),
        ("/000/abc/xhr/", True, ("xhr", "abc")),
        ("/000/abc/jsonp", True, None),  # not served
        ("/000/a.b/xhr", True, None),  # no dots in ids
        ("/000/abc/websocket", False, None),
        ("/000/abc/websocket", True, ("websocket", "abc")),
        ("/000/abc", True, None),
    ],
)
def test_route(rest, websocket, found):
    assert protocol.route(rest, SESSION_TRANSPORTS, websocket=websocket) == found


def test_websocket_route():
    assert protocol.websocket_route("/websocket", websocket=True) == "raw-websocket"
    assert protocol.websocket_route("/1/2/websocket", websocket=True) == "websocket"
    assert protocol.websocket_route("/1/2/xhr", websocket=True) is None
    assert protocol.websocket_route("/websocket", websocket=False) is None
    assert protocol.websocket_route(None, websocket=True) is None


def test_callback_names():
    assert protocol.callback(b"c=a.b_c-1") == "a.b_c-1"
    assert protocol.callback(b"callback=x") == "x"
    for query, message in [(b"", "required"), (b"c=%3Cscript%3E", "invalid")]:
        with pytest.raises(HTTPError) as caught:
            protocol.callback(query)
        assert caught.value.status == 500 and message in caught.value.message


def test_response_headers():
    assert protocol.cors({"origin": "https://a.example"})[0] == (
        b"access-control-allow-origin",
        b"https://a.example",
    )
    assert protocol.cors({"origin": "null"})[0][1] == b"*"
    assert (b"access-control-allow-headers", b"x-y") in protocol.cors(
        {"access-control-request-headers": "x-y"}
    )
    assert protocol.cache_for(60, now=0) == [
        (b"cache-control", b"public, max-age=60"),
        (b"expires", b"Thu, 01 Jan 1970 00:01:00 GMT"),
    ]
    page, etag = protocol.iframe_page("https://cdn.example/sockjs.js")
    assert b'src="https://cdn.example/sockjs.js"' in page and etag.startswith(b'"')
    assert protocol.not_upgraded({"upgrade": "websocket", "connection": "keep-alive"}) == (
        '"Connection" must be "Upgrade".'
    )


def test_cookies():
    headers = {"cookie": "a=1; sockjs_bind=x; JSESSIONID=bad value; sockjs_bind=y"}
    assert protocol.cookies(headers, "sockjs_bind") == ["x", "y"]
    assert protocol.sticky_cookie(headers) == [(b"set-cookie", b"JSESSIONID=dummy; path=/")]
    assert protocol.sticky_cookie({"cookie": "JSESSIONID=abc"}) == [
        (b"set-cookie", b"JSESSIONID=abc; path=/")
    ]
    [(name, value)] = protocol.bind_cookie("s3cret", "/sockjs/000/abc/xhr", https=True)
    assert name == b"set-cookie"
    assert value == (
        b"sockjs_bind=s3cret; Path=/sockjs/000/abc; Max-Age=3600; HttpOnly; Secure; SameSite=None"
    )
    [(_, value)] = protocol.bind_cookie("s", "/sockjs/000/abc/xhr_send/", https=False)
    assert value.endswith(b"Path=/sockjs/000/abc; Max-Age=3600; HttpOnly; SameSite=Lax")


# --- the session core --------------------------------------------------------------------


def test_a_session_opens_on_its_first_receiver_only():
    session = SockJSSessionCore(max_queue_bytes=100)
    assert session.state is State.CONNECTING and not session.is_open
    assert session.attached() is True and session.is_open
    assert session.attached() is False
    assert session.next_frame() is None


def test_messages_are_taken_in_order_all_at_once():
    session = SockJSSessionCore(max_queue_bytes=100)
    session.attached()
    assert session.queue("a") is Queued.QUEUED and session.queue("bc") is Queued.QUEUED
    assert session.queued_bytes == 3
    assert session.next_frame() == Messages(["a", "bc"])
    assert session.queued_bytes == 0 and session.next_frame() is None


def test_queued_messages_go_before_the_close_frame_and_nothing_queues_after():
    session = SockJSSessionCore(max_queue_bytes=100)
    session.queue("last words")
    assert session.close(4000, "bye") is True
    assert session.close(3000, "again") is False  # the first close's status stays
    assert session.queue("late") is Queued.DROPPED
    assert session.next_frame() == Messages(["last words"])
    assert session.next_frame() == Closing(4000, "bye")
    assert session.next_frame() == Closing(4000, "bye")  # to every receiver


def test_past_the_bound_the_queue_is_dropped_and_the_session_closed():
    session = SockJSSessionCore(max_queue_bytes=10)
    assert session.queue("x" * 10) is Queued.QUEUED
    assert session.queue("y") is Queued.OVERFLOW
    assert session.closed and session.queued_bytes == 0
    assert session.next_frame() == Closing(1008, "Outgoing buffer limit")


def test_an_interrupted_open_session_closes_with_1002():
    connecting = SockJSSessionCore(max_queue_bytes=10)
    assert connecting.interrupted() is False and connecting.state is State.CONNECTING
    session = SockJSSessionCore(max_queue_bytes=10)
    session.attached()
    assert session.interrupted() is True
    assert session.next_frame() == Closing(1002, "Connection interrupted")
    assert session.interrupted() is False


def test_expiry_drops_the_queue():
    session = SockJSSessionCore(max_queue_bytes=100)
    session.attached()
    session.queue("never polled")
    assert session.expire() is True
    assert session.next_frame() == Closing(1000, "Session expired")
    closed = SockJSSessionCore(max_queue_bytes=100)
    closed.close(3000, "Go away!")
    closed.queue("x")
    assert closed.expire() is False and closed.close_status == (3000, "Go away!")
