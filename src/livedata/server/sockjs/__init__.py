"""SockJS 0.3.3 server, as a generic ASGI layer carrying any message handler.

Meteor's browser client speaks DDP over SockJS (``/sockjs/info``, then
``/sockjs/<server>/<session>/<transport>``); ``ddp`` mounts this layer for DDP. Anything
else can ride it too::

    class Echo:
        def __init__(self, sockjs_session):  # send(), close(), client_address...
            self.sockjs_session = sockjs_session

        async def on_open(self): ...  # optional

        async def on_message(self, text):
            await self.sockjs_session.send(text)

        async def on_close(self): ...

    app = SockJSEndpoint("/echo", Echo)  # an ASGI app for /echo and everything below it

Transports: websocket (SockJS-framed, and raw at ``prefix/websocket``), xhr,
xhr_streaming, eventsource, htmlfile, jsonp (with xhr_send / jsonp_send), plus ``info``
and ``iframe.html``. Sessions live in this process's memory; with several worker
processes, the polling and streaming transports need sticky sessions (``cookie_needed``
sets the ``JSESSIONID`` cookie load balancers key on). Pure asyncio, no dependency.

Modules, h11-style: a sans-I/O core (no asyncio, no sockets) and drivers around it.

- ``frames``: the frames, SockJS's JSON escaping, how each transport wraps a frame, and
  the parsing of ``xhr_send``/``jsonp_send`` bodies and WebSocket messages (pure);
- ``protocol``: the URL -> route rules, CORS/caching/cookie headers, callbacks (pure);
- ``core``: a session's state machine around its bounded outbox (pure;
  ``livedata.server.outbox``, the connection's only one: DDP queues into it too);
- ``sockjs_session``: drives a core for a handler (timers, wake-ups, heartbeats, callbacks);
- ``receivers``: what carries frames to the client (HTTP response, WebSocket);
- ``transports``: one driver per transport (xhr, xhr_streaming, eventsource,
  htmlfile, jsonp, the two sends, websocket);
- ``http``: ASGI plumbing (responses, bounded bodies, disconnects);
- ``endpoint``: the ASGI app: the route table, sessions by id and their binding;
- ``ddp``: DDP over it.
"""

from livedata.server.sockjs.endpoint import SockJSEndpoint
from livedata.server.sockjs.sockjs_session import Handler, HandlerFactory, SockJSSession

__all__ = ["Handler", "HandlerFactory", "SockJSEndpoint", "SockJSSession"]
