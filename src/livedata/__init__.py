"""livedata: live data for Django on PostgreSQL.

One trigger-fed, append-only change log (``livedata.capture``) feeds every consumer:
DDP live queries for Meteor clients, webhooks, the pull feed and the audit trail.

Data flows one way: commit → change log → listener → (live queries | webhooks | pull) → clients.

Layers, lowest first; a package imports only its own modules and lower layers, and
packages of one layer do not import each other (``tests/test_layers.py`` checks it, with
imports inside functions and under ``TYPE_CHECKING`` counted), and no module imports one
that imports it back, inside a package either (the same test finds any cycle):

1. ``conf``, ``dbthreads``, ``memory``, ``ddp`` (pure: no sockets, database or asyncio),
   ``dbconfig``, ``embedded``: they import nothing of livedata;
2. ``dbwait`` (waiting out a database that went away);
3. ``capture`` (triggers, the change log, the listener and its followers);
4. ``runtime`` (the hub one process shares: listener, pools, services, ticker, fence),
   ``exposure`` (what a model exposes to DDP, webhooks and pull: Collection, fields,
   filters and their checks, in-memory matching);
5. ``publish`` (what developers declare: Publications and their registry, methods,
   access checks);
6. ``accounts`` (declares Meteor's methods and publications with ``publish``);
7. ``httpapi`` (what the HTTP APIs share: authentication, JSON errors);
8. ``livequery`` (the live-query engine: observers kept up to date from the listener's
   batches, which talks to subscribers through ``livequery.subscriber.Subscriber``),
   ``webhooks``, ``pull``, ``metrics`` (the figures of ``runtime.figures`` for
   Prometheus, and their endpoint);
9. ``dashboard`` (the operators' page and its DDP publication, over the above's state);
10. ``server`` (transports, sessions, the ASGI app: the composition root);
11. Django's entry points (``admin``, ``checks``, ``models``, ``urls``, ``api``,
    ``migrations``), then ``apps``, ``management``, ``cli`` and ``demo``, ``__main__``.

The names below are imported lazily so that ``import livedata`` works before Django is set up.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "track": "livedata.capture.declare",
    "context": "livedata.capture.context",
    "history": "livedata.capture.history",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'livedata' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["__version__", "context", "history", "track"]
