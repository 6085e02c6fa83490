"""``livedata sockjs_testserver``: the services sockjs-protocol's test suite expects.

    livedata sockjs_testserver --port 8081
    SOCKJS_URL=http://localhost:8081 python sockjs-protocol-0.3.3.py

``/echo`` echoes every message, ``/close`` closes each session as it opens,
``/disabled_websocket_echo`` has no WebSocket transport, ``/cookie_needed_echo`` sets
JSESSIONID. Streaming responses end after 4 KiB, as the suite requires of a test server;
heartbeats every 25 s and sessions expiring 5 s after their last request are the defaults it
assumes. No database is used.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from livedata.server.sockjs import SockJSEndpoint, SockJSSession


class Echo:
    def __init__(self, session: SockJSSession) -> None:
        self.session = session

    async def on_message(self, text: str) -> None:
        await self.session.send(text)

    async def on_close(self) -> None:
        pass


class Close(Echo):
    async def on_open(self) -> None:
        await self.session.close(3000, "Go away!")


class TestServer:
    """An ASGI app routing the suite's service prefixes to their endpoints."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("response_limit", 4096)
        options.setdefault("jsonp", True)  # the protocol suite tests it
        self.endpoints = [
            SockJSEndpoint("/echo", Echo, **options),
            SockJSEndpoint("/close", Close, **options),
            SockJSEndpoint("/disabled_websocket_echo", Echo, websocket=False, **options),
            SockJSEndpoint("/cookie_needed_echo", Echo, cookie_needed=True, **options),
        ]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        for endpoint in self.endpoints:
            if endpoint.handles(scope["path"]):
                await endpoint(scope, receive, send)
                return
        await self.endpoints[0](scope, receive, send)  # outside every prefix: a 404


class Command(BaseCommand):
    help = "Serve sockjs-protocol's test services (/echo, /close, ...) with uvicorn."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8081)
        parser.add_argument("--log-level", default="warning")
        parser.add_argument("--heartbeat-delay", type=float, default=25.0, help="seconds")
        parser.add_argument("--disconnect-delay", type=float, default=5.0, help="seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        import uvicorn

        uvicorn.run(
            TestServer(
                heartbeat_delay=options["heartbeat_delay"],
                disconnect_delay=options["disconnect_delay"],
            ),
            host=options["host"],
            port=options["port"],
            lifespan="off",
            ws="websockets-sansio",
            http="httptools",
            ws_ping_interval=None,
            log_level=options["log_level"],
            # streaming responses of open sessions would otherwise hold the exit
            timeout_graceful_shutdown=1,
        )
