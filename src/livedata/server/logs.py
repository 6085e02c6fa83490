"""Keep SockJS session ids out of access logs.

An HTTP SockJS session is addressed by ``/sockjs/<server>/<session>/<transport>``: the
id is in every URL a client requests, and an access log keeps them all. The sessions are
bound to their clients (see ``livedata.server.sockjs.endpoint``), but an id is still
nobody's business: ``livedata serve`` logs ``/sockjs/<server>/*/xhr`` instead.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

_SESSION_PATH = re.compile(
    r"(/[^/?\s]+/)[^/?\s]+(/(?:xhr|xhr_send|xhr_streaming|eventsource|htmlfile|jsonp|"
    r"jsonp_send|websocket)\b)"
)


def redact(text: str) -> str:
    return _SESSION_PATH.sub(r"\1*\2", text)


class RedactSockJSSessions(logging.Filter):
    """Rewrite a record's message arguments (uvicorn's access log passes the path as one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging, with the filter on its access and error loggers (the
    latter logs WebSocket handshakes with their paths)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["sockjs_sessions"] = {"()": f"{__name__}.RedactSockJSSessions"}
    for name in ("uvicorn.access", "uvicorn.error"):
        config["loggers"].setdefault(name, {})["filters"] = ["sockjs_sessions"]
    return config
