"""Where the database is: ``DATABASE_URL`` when set, else the embedded PostgreSQL server."""

from __future__ import annotations

import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured


def database_config(name: str = "livedata", *, env: str = "DATABASE_URL") -> dict[str, Any]:
    """A ``DATABASES["default"]`` entry.

    ``DATABASE_URL=postgresql://user:pass@host:5432/db`` selects that server; without it the
    embedded server (data in ``$LIVEDATA_PGDATA`` or ``~/.local/share/livedata/pgdata``) is
    started on first connection and database ``name`` is created in it.
    ``LIVEDATA_DB_NAME`` overrides the database name in both cases (tests and benchmarks
    use it to point child processes at their own database).
    """
    url = os.environ.get(env, "").strip()
    override = os.environ.get("LIVEDATA_DB_NAME", "").strip()
    if not url:
        return {"ENGINE": "livedata.embedded", "NAME": override or name, "CONN_MAX_AGE": 0}
    import dj_database_url

    config = dict(dj_database_url.parse(url))
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            f"{env} must point at PostgreSQL (postgresql://...), got engine {config['ENGINE']}."
        )
    if override:
        config["NAME"] = override
    return config
