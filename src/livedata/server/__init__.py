"""The process that serves clients: an ASGI application with DDP over WebSocket and
SockJS, Django for every other path, and one change-log listener per process.

- ``app``: routing, and the composition root: makes the process's ``livedata.runtime``
  hub and the ``DDPService`` sessions share (engine, registries, token watch).
- ``without_middleware``: livedata's HTTP API views, served without the project's
  middleware.
- ``tokens``: a deleted login token closes the sessions logged in with it.
- ``session``: a DDP session over any transport: runs the protocol core, methods with
  their write fences, heartbeats, and bounded outgoing buffers.
- ``websocket``: the raw DDP WebSocket transport at ``/websocket``.
- ``sockjs``: SockJS 0.3 (generic; DDP is mounted at ``/sockjs``).
"""
