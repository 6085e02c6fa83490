"""The live-query engine: publications kept up to date from the change log alone.

It owns what serves a subscription once a client asks for one: the observers (one per
publication, parameters and, when ``get_queries`` reads it, user), how each is refreshed
from a listener batch, the limits on what one client may hold, and the ``Subscriber``
protocol through which it reaches connections. What a publication *is* (``Publication``,
``API.register``) is declared in ``livedata.publish``, which does not know this package;
``livedata.server`` makes the ``Engine`` and feeds it the listener's batches.

- ``engine``: ``Engine``, subscribing and unsubscribing, routing a batch to the
  observers it may affect, and applying it under one lock, fairly across clients;
- ``observer``: ``Observer`` and ``QueryObserver``, what one live query holds and how it
  is refreshed (in memory from the log rows, by re-querying the changed keys, or in full);
- ``joins``: ``JoinIndexes``, the joined rows' columns that join queries are matched
  against in memory, shared by the engine's observers and kept from its batches;
- ``limits``: ``Holdings``, which observer serves each subscription and the limits on
  what a connection and a client address hold;
- ``subscriber``: the ``Subscriber`` protocol (``server.session.Session`` implements it).

It sits with ``webhooks`` and ``pull`` (peers: another consumer of the listener's
batches), above ``publish``, ``exposure``, ``runtime`` and ``capture``.
"""
