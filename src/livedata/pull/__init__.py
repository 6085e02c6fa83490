"""Pull: every row of an exposed model, then every change after, over plain HTTP.

What this package owns:

- the feed (``views``: ``GET <prefix>/pull/<app.model>``, JSON pages, ``live=true``
  long-polls, server-sent events; ``spec``: the request checked against the model's
  ``Collection``; ``reader``: snapshot and change pages from the database; ``live``: held
  requests fed in memory by the process's one listener);
- the positions (``position``: the signed handle and the offset);
- the Python client (``client``: ``PullClient``, sync and async) and ``livedata mirror``
  (``mirror``, ``models.MirrorPosition``).

The client imports nothing of Django: ``from livedata.pull import PullClient`` works in
any Python service.

Why the hand-over from snapshot to changes has no gap and no duplicate
----------------------------------------------------------------------

Notation: the change log holds, per committed row change, ``(txid, id)``; ``id`` comes
from one sequence at write time, ``txid`` is the writing transaction. Readers take the
log by snapshot difference (``livedata.capture.log``): a position is a snapshot, and each
read returns the rows of the transactions that became visible since, in id order.

1. **The snapshot is the table at one PostgreSQL snapshot S1.** The first request
   (``offset=-1``) reads its page in a REPEATABLE READ transaction and records that
   transaction's ``pg_current_snapshot()`` (xmin, xmax, xip) in the signed handle. Every
   later page is read in its own short transaction at its own snapshot Si (no
   transaction is held between requests), by primary key: the rows with a key in
   ``(a, b]``, ``a`` the offset's key and ``b`` the page's last key.

2. **Each later page is turned back into S1's state.** In the same transaction the page
   reads the log rows of its key range whose transaction S1 did not see (``txid`` in
   S1's xip, or at least its xmax: exactly ``NOT pg_visible_in_snapshot(txid, S1)``;
   those that Si sees are visible to the reading transaction, the rest are not). For
   each such key, the *first* of those changes by ``id`` carries in ``old`` the row as S1
   saw it (an insert: the row did not exist). First by ``id`` is right because writes to
   one row are serialised by its row lock: a change written later (higher id) was
   written after the earlier one committed, so if S1 saw a change it saw every earlier
   change of that row, and every change S1 missed has a higher id than every change it
   saw. Keys without such a change are unchanged since S1. So each page is exactly S1's
   rows of its key range, whatever committed meanwhile; pages cover disjoint ranges, so
   the snapshot is S1's table, each row once. A TRUNCATE after S1 cannot be undone:
   must-refetch.

3. **The changes continue at S1 itself.** A log position is a snapshot, so after the last
   page the offset is the position ``S1``: "every transaction S1 sees was received" (it
   is in the snapshot). The log read from there returns exactly the rows of the
   transactions S1 did not see, each once, as they become visible. No committed change
   is missed and none is sent twice: a change is either visible in S1, hence in the
   snapshot, or in the stream, never both.

4. **Per row, changes come in write order.** Two writes of one row are serialised by its
   row lock: the second writer waits until the first transaction ends, so the first
   becomes visible no later than the second, in an earlier read or in the same one,
   where rows are in id (write) order. So a client applying changes in feed order ends
   equal to the table. (livedata 0.1 read in ``(txid, id)`` order, where this did not
   hold and an older change of a row had to be skipped as stale; that is gone.)

5. **Filters.** A row is in a filtered feed while its values match (matched in memory
   on the log row, ``exposure.matching.compile_matcher``; the snapshot filters in SQL
   and, for rows turned back to S1, in memory). A change whose new value matches is an
   insert or update; one whose new value does not match is a delete when the old value
   matched. Otherwise the client never had the row and nothing is sent.

6. **Positions are checked, not trusted.** The handle is signed (Django's ``signing``),
   names the model, the fields and filters it was made for and a fingerprint of the
   model's published columns (a change of it: 409 must-refetch). A change offset that
   does not cover S1 is a 400; one the log no longer has (``livedata prune``) is a 409
   must-refetch, never a silent gap.

A page holds at most ``limit`` rows; when more are waiting in one read (a transaction
larger than the page, or a backlog), the page may end inside a transaction and the next
one continues it.
The cost of step 2: each page after the first reads the model's log rows committed since
S1 in its key range (found through the ``(txid, id)`` index from S1's xmax and xip).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Batch", "PullClient", "PullError"]


def __getattr__(name: str) -> Any:
    # the client without importing Django (``livedata.pull`` may be imported anywhere)
    if name in __all__:
        from livedata.pull import client

        return getattr(client, name)
    raise AttributeError(name)
