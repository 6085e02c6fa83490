"""SockJS 0.3.3 framing, sans-I/O: what goes on the wire and how client bodies are read.

Pure functions of values (no asyncio, no sockets), so the protocol's rules can be tested by
feeding them strings; the transports (``transports.py``) only move what these produce.

Frames to the client:

    o                   open (first frame of a session)
    h                   heartbeat
    a["m1","m2"]        messages, each a JSON string
    c[3000,"Go away!"]  close

How each HTTP transport wraps a frame (``xhr_chunk``, ``eventsource_chunk``,
``htmlfile_chunk``, ``jsonp_chunk``) and what a streaming response sends first (its
prelude) are here too, as are the bodies the client sends: ``xhr_send`` and
``jsonp_send`` (a JSON array of strings, the latter possibly as form field ``d``) and a
SockJS-framed WebSocket message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

OPEN = "o"
HEARTBEAT = "h"

# Characters a server must escape in JSON (sockjs-protocol 0.3.3, "JSON Unicode
# Encoding"): browsers mangle them, and lone surrogates cannot be encoded as UTF-8.
_ESCAPED = re.compile("[\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff\ud800-\udfff]")


def dumps(value: Any) -> str:
    """JSON as SockJS servers write it: compact, UTF-8, with the unsafe characters escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _ESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def message_frame(messages: list[str]) -> str:
    return "a" + dumps(messages)


def close_frame(code: int, reason: str) -> str:
    return "c" + dumps([code, reason])


class HTTPError(Exception):
    """An error answer; ``close``: end the connection after it (a body left unread)."""

    def __init__(self, status: int, message: str = "", *, close: bool = False) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.close = close


# --- what the client sends ---------------------------------------------------------------


def send_body(body: str) -> list[str]:
    """The messages of an ``xhr_send``/``jsonp_send`` body: a JSON array of strings.

    The statuses are those sockjs-protocol's suite expects (500 for an empty or broken
    body); valid JSON nested deeper than a frame ever is gets 400, the client's fault,
    without a traceback (the session goes on)."""
    if not body:
        raise HTTPError(500, "Payload expected.")
    try:
        messages = json.loads(body)
    except ValueError:
        raise HTTPError(500, "Broken JSON encoding.") from None
    except RecursionError:
        raise HTTPError(400, "Payload nested too deep.") from None
    if not isinstance(messages, list):
        raise HTTPError(500, "Payload expected.")
    if not all(isinstance(m, str) for m in messages):
        raise HTTPError(500, "Broken JSON encoding.")
    return messages


def jsonp_send_body(content_type: str, body: str) -> str:
    """The JSON array of a ``jsonp_send`` body: form field ``d`` when the body is a form
    (as sockjs-client's iframe posts it), else the body itself."""
    if content_type.split(";")[0].strip() == "application/x-www-form-urlencoded":
        return parse_qs(body, keep_blank_values=True).get("d", [""])[0]
    return body


def websocket_messages(text: str) -> list[str] | None:
    """The messages of one SockJS-framed WebSocket message: a JSON array of strings or a
    single JSON string; an empty message carries none. None: broken framing (the session
    is then terminated abruptly, as sockjs-node does)."""
    if not text:
        return []
    try:
        messages = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(messages, str):
        return [messages]
    if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
        return None
    return messages


def valid_close_code(code: int) -> bool:
    """A code a WebSocket close may carry (RFC 6455 7.4): a raw WebSocket closes with 1000
    instead of any other."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code <= 4999


# --- how the HTTP transports carry frames ------------------------------------------------

#: xhr_streaming: IE shows nothing of a response before 2 KiB
XHR_STREAMING_PRELUDE = b"h" * 2048 + b"\n"
#: eventsource: Opera needs a new line first
EVENTSOURCE_PRELUDE = b"\r\n"

_HTMLFILE = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {{c.message(d);}};
    window.onload = function() {{c.stop();}};
  </script>"""


def xhr_chunk(frame: str) -> str:
    return frame + "\n"


def eventsource_chunk(frame: str) -> str:
    return f"data: {frame}\r\n\r\n"


def htmlfile_chunk(frame: str) -> str:
    # "<" escaped too: a message must not end the script element
    return "<script>\np(" + dumps(frame).replace("<", "\\u003c") + ");\n</script>\r\n"


def htmlfile_prelude(callback: str) -> bytes:
    """The page an htmlfile response starts with, padded to 1 KiB (for IE)."""
    page = _HTMLFILE.format(callback=callback)
    return (page + " " * (1024 - len(page) + 14) + "\r\n\r\n").encode()


def jsonp_chunk(callback: str) -> Callable[[str], str]:
    return lambda frame: f"{callback}({dumps(frame)});\r\n"
