"""What the benchmarks share: Django set-up on the bench database, and the server measured.

The database is ``livedata_bench`` (``LIVEDATA_DB_NAME``) on the embedded PostgreSQL, or on
the server of ``DATABASE_URL`` when that is set; it is created if missing and migrated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql


def setup(extra_apps: Sequence[str] = ()) -> dict[str, Any]:
    """Set up Django, create and migrate the bench database; returns psycopg.connect() kwargs."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livedata.demo.settings")
    os.environ.setdefault("LIVEDATA_DB_NAME", "livedata_bench")
    import django
    from django.conf import settings
    from django.core.management import call_command

    missing = [app for app in extra_apps if app not in settings.INSTALLED_APPS]
    if missing:
        settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, *missing]
    django.setup()

    from livedata.capture.listener import connection_params

    params = connection_params()
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as conn:
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        if not conn.execute(query, [params["dbname"]]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(params["dbname"])))
    call_command("migrate", verbosity=0)
    return params


def server_info(params: dict[str, Any]) -> dict[str, str]:
    """Which PostgreSQL was measured, where, and its commit durability."""
    from livedata.capture.listener import describe

    with psycopg.connect(**params) as conn:
        row = conn.execute("SELECT version(), current_setting('synchronous_commit')").fetchone()
    assert row is not None
    embedded = not os.environ.get("DATABASE_URL", "").strip()
    return {
        "version": row[0],
        "server": ("embedded PostgreSQL, " if embedded else "DATABASE_URL, ") + describe(params),
        "synchronous_commit": row[1],
    }


def print_server(info: dict[str, str]) -> None:
    print(f"PostgreSQL: {info['version']}")
    print(f"Server:     {info['server']} (synchronous_commit={info['synchronous_commit']})")


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Write ``results`` to bench/results/NAME.json (not kept in git) and say where."""
    out = Path(__file__).resolve().parent / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nWrote {out}")
    return out
