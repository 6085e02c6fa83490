"""The ``livedata`` command: Django's management command runner.

Settings come from ``--settings`` or ``DJANGO_SETTINGS_MODULE``; without either, the bundled
demo project (``livedata.demo.settings``) is used, so ``livedata migrate``, ``livedata tail``
and ``livedata demo`` work right after installation.
"""

from __future__ import annotations

import os
import sys

DEFAULT_SETTINGS = "livedata.demo.settings"
ALIASES = {"sockjs-testserver": "sockjs_testserver"}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    given = any(a == "--settings" or a.startswith("--settings=") for a in argv)
    if not given and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        os.environ["DJANGO_SETTINGS_MODULE"] = DEFAULT_SETTINGS
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    argv[0] = "livedata"
    # Django names commands after their module; accept the dashed spelling too
    if len(argv) > 1 and argv[1] in ALIASES:
        argv[1] = ALIASES[argv[1]]
    try:
        execute_from_command_line(argv)
    except KeyboardInterrupt:
        sys.exit(130)
    except DatabaseError as exc:
        if "--traceback" in argv:
            raise
        sys.stderr.write(f"livedata: {explain_database_error(exc)}\n")
        sys.exit(1)


def explain_database_error(exc: Exception) -> str:
    """One clear sentence for the database errors a newcomer meets, instead of a traceback."""
    import psycopg

    cause = exc.__cause__ or exc
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if isinstance(cause, psycopg.errors.UndefinedTable):
        return f"{first}: the database is not migrated; run `livedata migrate`"
    if isinstance(cause, psycopg.OperationalError):
        where = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "the embedded PostgreSQL"
        return (
            f"cannot use the database ({where}): {first}. "
            "Is PostgreSQL running and DATABASE_URL right? (--traceback for details)"
        )
    return f"database error: {first} (--traceback for details)"


if __name__ == "__main__":
    main()
