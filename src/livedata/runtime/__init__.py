"""The runtime hub: what one serving process shares, made once and passed in.

- ``hub``: ``Runtime`` owns the change-log listener (and the followers registered on it),
  the thread pools (each thread keeps a database connection), the background services
  (webhook delivery, the pull feed's notifier), the heartbeat ticker, the rate limiter,
  and method invocation with its write fence.
- ``admission``: admission control, the pace at which new DDP sessions start and the
  subscriptions set up at once (a reconnect storm queues rather than piles up).
- ``fence``: the SQL of the write fence (a snapshot taken after a method's commit) and
  a sync method's transaction.

It knows the change log (``capture``) and nothing above it: the live-query engine, the
DDP sessions and the HTTP views get a ``Runtime`` from the composition root
(``livedata.server.app.LivedataApp``), never from a global.
"""

from livedata.runtime.hub import Runtime

__all__ = ["Runtime"]
