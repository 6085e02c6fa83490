"""Give freed memory back to the operating system after a big release.

When a client leaves, its observers' documents and its mergebox are freed at once (by
reference counting), but the C allocator keeps the pages: measured (bench/client_cost.py),
a server that held 200 observers of 5000 documents stayed at ~600 MB RSS after the client
left. glibc's ``malloc_trim(0)`` returns every free page of its heaps, so after releasing
many documents livedata calls it (in a thread, at most once per ``INTERVAL``). Elsewhere
(musl, macOS) this does nothing: memory is still reused by the process.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from typing import Any

logger = logging.getLogger("livedata.server")

#: Documents released since the last trim before one is worth it.
THRESHOLD = 10_000
#: Seconds between trims at most.
INTERVAL = 1.0

_trim: Any = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = getattr(_libc, "malloc_trim", None)
except OSError:  # pragma: no cover - no C library to load
    pass

_pending = 0
_last = 0.0
_scheduled = False


def give_back(documents: int) -> None:
    """``documents`` were just freed: trim the C heap soon if enough were."""
    global _pending, _scheduled
    _pending += documents
    if _trim is None or _pending < THRESHOLD or _scheduled:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    _scheduled = True
    delay = max(0.0, _last + INTERVAL - time.monotonic())
    loop.call_later(delay, lambda: loop.run_in_executor(None, _run))


def _run() -> None:
    global _pending, _last, _scheduled
    _pending = 0
    _scheduled = False
    _last = time.monotonic()
    try:
        _trim(0)
    except Exception:  # pragma: no cover
        logger.debug("malloc_trim failed", exc_info=True)
