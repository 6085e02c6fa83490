"""Change capture: the one source every consumer reads.

- ``declare``: which models are captured (``@livedata.track`` or ``LIVEDATA["TRACK"]``),
  as django-pgtrigger triggers installed and removed by migrations.
- ``models``: the append-only change log (``livedata_change``).
- ``context``: the audit context (who/what request) stamped on every change.
- ``log``: gap-free reading of the log by ``(txid, id)`` cursor, retention.
- ``listener``: one asyncio LISTEN connection per process that reads the log and hands
  batches to consumers (live queries, webhooks, pull, ``livedata tail``).
- ``leader``, ``broker``, ``wire``: with ``LISTENER_BROKER_URL``, one reader per cluster: a
  leader elected in PostgreSQL reads the log and appends each batch (positions and rows)
  to a Redis stream that every process's listener consumes.
- ``history``: an object's history for audit.
"""
