"""Where dispatchers run: inside ``livedata serve`` (a runtime service fed by the
runtime's listener) and as ``livedata deliver`` (with a listener of its own)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from livedata.capture.leader import listener as cluster_listener
from livedata.capture.listener import Listener
from livedata.webhooks.dispatcher import Dispatcher


class Service:
    """Webhook delivery inside ``livedata serve``: a dispatcher on the runtime's listener."""

    def __init__(self, listener: Listener) -> None:
        self.dispatcher = Dispatcher(listener)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.dispatcher.run())

    async def stop(self) -> None:
        self.dispatcher.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def runtime_service(runtime: Any) -> Service | None:
    """The factory ``livedata.runtime.Runtime`` calls (when ``WEBHOOK_IN_SERVE``)."""
    if runtime.listener is None or not runtime.settings.WEBHOOK_IN_SERVE:
        return None
    service = Service(runtime.listener)
    runtime.figures.add("webhooks", service.dispatcher.figures)
    return service


async def run_worker(
    concurrency: int | None = None, *, ready: Callable[[], None] | None = None
) -> None:
    """``livedata deliver``: a listener and a dispatcher, until SIGINT/SIGTERM."""
    import signal

    listener = cluster_listener()  # a Listener, fed by the broker when one is configured
    dispatcher = Dispatcher(listener, concurrency=concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, dispatcher.stop)
    listen = asyncio.create_task(listener.run())
    work = asyncio.create_task(dispatcher.run())
    if ready is not None:
        ready()
    try:
        await work
    finally:
        listener.stop()
        await asyncio.gather(listen, return_exceptions=True)
