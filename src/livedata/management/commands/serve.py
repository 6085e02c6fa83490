"""``livedata serve``: the site and DDP in one process (or N), on uvicorn: the project's
``ASGI_APPLICATION`` (which must mount ``LivedataApp``), else ``livedata.server.asgi``'s."""

from __future__ import annotations

import math
import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Serve the Django site and DDP (/websocket) on one port with uvicorn."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="processes sharing the port, each with its own listener",
        )
        parser.add_argument("--log-level", default="info")
        parser.add_argument(
            "--ssl-certfile", metavar="PEM", help="serve https and wss with this certificate"
        )
        parser.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
        parser.add_argument(
            "--uds", metavar="PATH", help="listen on this Unix socket instead of --host/--port"
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="development: restart when a .py file changes (one process, not --workers)",
        )
        parser.add_argument(
            "--reload-dir",
            action="append",
            metavar="DIR",
            help="directories --reload watches (repeatable; default: the current one)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        cert, key = options["ssl_certfile"], options["ssl_keyfile"]
        if bool(cert) != bool(key):
            raise CommandError("--ssl-certfile and --ssl-keyfile go together: give both")
        for path in (cert, key):
            if path and not os.path.isfile(path):
                raise CommandError(f"no such file: {path}")
        if options["reload"] and options["workers"] > 1:
            raise CommandError("--reload runs one process: drop --workers")
        if options["reload_dir"] and not options["reload"]:
            raise CommandError("--reload-dir needs --reload")
        serve(
            options["host"],
            options["port"],
            workers=options["workers"],
            log_level=options["log_level"],
            ssl_certfile=cert,
            ssl_keyfile=key,
            uds=options["uds"],
            reload=options["reload"],
            reload_dirs=options["reload_dir"],
        )


def ready_to_serve() -> None:
    """Refuse to start (``CommandError``, one line per problem with the commands that fix
    it) when a captured model's triggers are not installed, or a publication's static
    queries have no Collection: either way clients would be served data that never
    changes, or errors. A database that cannot be reached is not a reason to refuse: the
    server waits for it (``DDP_DATABASE_WAIT``)."""
    import sys

    from django.core.management.base import CommandError
    from django.db import DatabaseError

    from livedata.capture.readiness import not_installed
    from livedata.checks import publications_have_collections

    problems = [e.msg for e in publications_have_collections()]
    try:
        problems += [m.message() for m in not_installed()]
    except DatabaseError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        sys.stderr.write(f"livedata: capture triggers not checked (database: {first})\n")
    if problems:
        raise CommandError(
            "not serving: " + "\n  ".join(["", *problems])
            if len(problems) > 1
            else f"not serving: {problems[0]}"
        )


def serve(
    host: str,
    port: int,
    *,
    workers: int = 1,
    log_level: str = "info",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    uds: str | None = None,
    reload: bool = False,
    reload_dirs: list[str] | None = None,
) -> None:
    """uvicorn with livedata's protocols and limits. ``ssl_*``: TLS (https, wss);
    ``uds``: a Unix socket (for a proxy on this host: list ``"unix"`` in
    ``HTTP_FORWARDED_ALLOW_IPS``); ``reload``: restart on code changes (development).
    The client address comes from the proxies trusted by ``HTTP_FORWARDED_ALLOW_IPS``
    (``livedata.server.proxies``, in the app), never from uvicorn's own handling."""
    import uvicorn

    ready_to_serve()

    from livedata.conf import livedata_settings
    from livedata.server.logs import uvicorn_log_config
    from livedata.server.mounting import checked_application
    from livedata.server.protocols import GuardedHttpToolsProtocol, GuardedWebSocketProtocol
    from livedata.server.wsprotocol import LeanWebSocketProtocol

    conf = livedata_settings()
    # livedata's own WebSocket protocol (a fraction of the memory per socket); uvicorn's
    # websockets-sansio when permessage-deflate is wanted (ours negotiates no extension)
    compress = conf.DDP_WEBSOCKET_COMPRESSION
    ws = GuardedWebSocketProtocol if compress else LeanWebSocketProtocol
    try:
        app = checked_application()  # the project's ASGI_APPLICATION, else livedata's
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from None
    uvicorn.run(
        app,
        host=host,
        port=port,
        uds=uds,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        reload=reload,
        reload_dirs=reload_dirs,
        workers=workers if workers > 1 else None,
        lifespan="on",
        # with a header timeout and caps on header size and connections per address
        # (livedata.server.protocols, livedata.server.wsprotocol)
        ws=ws,
        http=GuardedHttpToolsProtocol,
        timeout_keep_alive=conf.HTTP_KEEP_ALIVE_TIMEOUT,
        # protocol-level cap above ours, so messages between the two get a DDP error first
        ws_max_size=2 * conf.DDP_MAX_MESSAGE_BYTES,
        ws_ping_interval=None,  # DDP has its own heartbeat
        ws_per_message_deflate=compress,
        log_level=log_level,
        log_config=uvicorn_log_config(),  # SockJS session ids never in the access log
        proxy_headers=False,  # livedata.server.proxies does it, for any ASGI server
        # WebSockets close over HTTP_SHUTDOWN_PERIOD (protocols.Drain); then open SockJS
        # streams and long polls, which would otherwise hold a shutdown forever, are cut
        timeout_graceful_shutdown=math.ceil(conf.HTTP_SHUTDOWN_PERIOD) + 3,
    )
