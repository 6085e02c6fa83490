"""A Channels project mounting livedata, both ways the README shows (``livedata serve``
runs them as the settings' ``ASGI_APPLICATION``):

- ``outside``: ``LivedataApp`` wraps Channels' ``ProtocolTypeRouter``: DDP's paths are
  livedata's, every other WebSocket (``/ws/echo/``) goes through to Channels;
- ``inside``: Channels' router on top, with a ``URLRouter`` route for livedata's
  WebSocket and SockJS paths beside the project's consumer.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django_asgi_app = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from livedata.server.app import LivedataApp  # noqa: E402


class EchoConsumer(AsyncWebsocketConsumer):
    """The project's own WebSocket: answers each text frame with ``echo: <text>``."""

    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=f"echo: {text_data}")


# livedata outside Channels
outside = LivedataApp(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": URLRouter([path("ws/echo/", EchoConsumer.as_asgi())]),
        }
    )
)

# livedata inside Channels' URLRouter
livedata = LivedataApp(django_asgi_app)
inside = ProtocolTypeRouter(
    {
        "http": livedata,  # SockJS's HTTP transports, livedata's APIs, then Django
        "lifespan": livedata,  # livedata's start-up and shutdown (the listener, the pools)
        "websocket": URLRouter(
            [
                path("ws/echo/", EchoConsumer.as_asgi()),
                re_path(r"^(websocket|sockjs/)", livedata),
            ]
        ),
    }
)
