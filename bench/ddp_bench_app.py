"""livedata's DDP server with one bench-only method, for bench/ddp_server.py.

``bench.broadcast(k)`` sends k precomputed ``changed`` frames to every connected session
through the same path live queries use (``DDPSession.send_frames``: outbox and writer).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livedata.demo.settings")
os.environ.setdefault("LIVEDATA_DB_NAME", "livedata_bench")

import django

django.setup()

from bench.asgi_bench_app import MESSAGE  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

from livedata.publish.methods import MethodRegistry  # noqa: E402
from livedata.runtime import Runtime  # noqa: E402
from livedata.server.app import LivedataApp  # noqa: E402

methods = MethodRegistry()
runtime = Runtime(listen=False)


def broadcast(call, k: int) -> int:
    frames = [MESSAGE] * k
    loop = app_loop["loop"]
    done = __import__("concurrent.futures").futures.Future()

    def push() -> None:
        for session in list(sessions):
            session.send_frames(frames)
        done.set_result(len(sessions))

    loop.call_soon_threadsafe(push)
    return done.result()


methods.register(broadcast, name="bench.broadcast", atomic=False)
app_loop: dict = {}
sessions = runtime.sessions  # every connected session (heartbeats are on)

_inner = LivedataApp(get_asgi_application(), runtime=runtime, methods=methods)


async def app(scope, receive, send):
    if "loop" not in app_loop:
        import asyncio

        app_loop["loop"] = asyncio.get_running_loop()
    await _inner(scope, receive, send)
