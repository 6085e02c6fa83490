"""livedata: live data for Django on PostgreSQL.

One trigger-fed, append-only change log (``livedata.capture``) feeds every consumer:
DDP live queries for Meteor clients, webhooks, the pull feed and the audit trail.

Data flows one way: commit → change log → listener → (live queries | webhooks | pull) → clients.

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
