"""The process that serves clients: an ASGI application with DDP over WebSocket and
SockJS, Django for every other path, and one change-log listener per process.

- ``app``: routing, and the composition root: makes the process's ``livedata.runtime``
  hub and the ``DDPService`` sessions share (engine, registries, token watch);
  ``LivedataApp`` wraps the project's ASGI application (Django's, or Channels' router).
- ``asgi``: ``application`` for a project without an ``asgi.py`` of its own;
  ``mounting``: which application ``livedata serve`` runs (``ASGI_APPLICATION``).
- ``without_middleware``: livedata's HTTP API views, served without the project's
  middleware.
- ``tokens``: a deleted login token closes the DDP sessions logged in with it.
- ``ddp_session``: a DDP session over any transport, the protocol pump: feeds the pure
  protocol core, runs subscriptions and methods (with their write fences), heartbeats;
- ``login``: who a DDP session's client is (the Django session cookie, the user's own
  document);
- ``outbox`` (pure) and ``outgoing``: the connection's one bounded outbox, whatever the
  transport, how it is carried to the client (``Carrier``, ``Writer``) and streaming.
- ``proxies``: the client's address and scheme through trusted reverse proxies
  (``HTTP_FORWARDED_ALLOW_IPS``), set on each request's scope before anything reads it.
- ``websocket``: the raw DDP WebSocket transport at ``/websocket``.
- ``wsframes`` (pure) and ``wsprotocol``: livedata's own WebSocket protocol, the one
  ``livedata serve`` gives uvicorn (``protocols``: uvicorn's, with the limits a public
  server needs, used when permessage-deflate is on).
- ``sockjs``: SockJS 0.3 (generic; DDP is mounted at ``/sockjs``, below
  ``DDP_PATH_PREFIX``).
"""
