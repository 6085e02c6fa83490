"""SockJS 0.3.3 server, as a generic ASGI layer carrying any message handler.

Meteor's browser client speaks DDP over SockJS (``/sockjs/info``, then
``/sockjs/<server>/<session>/<transport>``); ``ddp`` mounts this layer for DDP. Anything
else can ride it too::

    class Echo:
        def __init__(self, session):  # a SockJSSession: send(), close(), client_address...
            self.session = session

        async def on_open(self): ...  # optional

        async def on_message(self, text):
            await self.session.send(text)

        async def on_close(self): ...

    app = SockJSEndpoint("/echo", Echo)  # an ASGI app for /echo and everything below it

Transports: websocket (SockJS-framed, and raw at ``prefix/websocket``), xhr,
xhr_streaming, eventsource, htmlfile, jsonp (with xhr_send / jsonp_send), plus ``info``
and ``iframe.html``. Sessions live in this process's memory; with several worker
processes, the polling and streaming transports need sticky sessions (``cookie_needed``
sets the ``JSESSIONID`` cookie load balancers key on). Pure asyncio, no dependency.
"""

from livedata.server.sockjs.endpoint import SockJSEndpoint
from livedata.server.sockjs.session import Handler, HandlerFactory, SockJSSession

__all__ = ["Handler", "HandlerFactory", "SockJSEndpoint", "SockJSSession"]
