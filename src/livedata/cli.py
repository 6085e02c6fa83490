"""The ``livedata`` command: Django's management command runner.

Whose settings it runs matters: a project's commands must never run the bundled demo's
settings against the project's database (the demo's migrations would be planned there).
So the settings are, in order: ``--settings``; ``DJANGO_SETTINGS_MODULE``; the default
that a ``manage.py`` in the current directory sets (as ``python manage.py`` would). The
current directory goes on ``sys.path`` first, as it does for ``python manage.py``, so the
project's modules import. The bundled demo (``livedata.demo.settings``) is used only by
``livedata demo`` or when none of these names a project, and then one line on stderr says
so and which database it uses.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Mapping
from pathlib import Path

DEFAULT_SETTINGS = "livedata.demo.settings"
ALIASES = {"sockjs-testserver": "sockjs_testserver"}
#: the command that runs the demo, whatever project the directory holds
DEMO_COMMAND = "demo"


class SettingsNotFound(Exception):
    """The directory has a ``manage.py`` whose settings module cannot be read."""


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # `python manage.py` has the project's directory first
    try:
        chosen = choose_settings(argv, os.environ, Path(cwd))
    except SettingsNotFound as exc:
        sys.stderr.write(f"livedata: {exc}\n")
        sys.exit(2)
    if chosen is not None:
        module, why = chosen
        os.environ["DJANGO_SETTINGS_MODULE"] = module
        if module == DEFAULT_SETTINGS:
            sys.stderr.write(f"livedata: {why}: using the bundled demo, {demo_database()}\n")
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


def choose_settings(
    argv: list[str], environ: Mapping[str, str], cwd: Path
) -> tuple[str, str] | None:
    """The settings module to set and why, or None when ``--settings`` or
    ``DJANGO_SETTINGS_MODULE`` already say (Django reads those itself)."""
    if any(a == "--settings" or a.startswith("--settings=") for a in argv):
        return None
    if environ.get("DJANGO_SETTINGS_MODULE"):
        return None
    if len(argv) > 1 and argv[1] == DEMO_COMMAND:
        return DEFAULT_SETTINGS, "`livedata demo`"
    manage = cwd / "manage.py"
    if manage.is_file():
        module = manage_py_settings(manage)
        if module is None:
            raise SettingsNotFound(
                f"{manage} does not set DJANGO_SETTINGS_MODULE the way Django's manage.py "
                "does; give --settings or DJANGO_SETTINGS_MODULE (or run `python manage.py`)"
            )
        return module, f"{manage}"
    return DEFAULT_SETTINGS, (
        "no Django project here (no --settings, DJANGO_SETTINGS_MODULE or ./manage.py)"
    )


def manage_py_settings(manage: Path) -> str | None:
    """The module of ``os.environ.setdefault("DJANGO_SETTINGS_MODULE", "...")`` in a
    ``manage.py`` (what ``django-admin startproject`` writes), read without running it."""
    try:
        tree = ast.parse(manage.read_text(encoding="utf-8"), filename=str(manage))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "setdefault"
            and len(node.args) == 2
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
            and node.args[0].value == "DJANGO_SETTINGS_MODULE"
        ):
            return node.args[1].value
    return None


def demo_database() -> str:
    """Where the demo's settings put its database, said before anything connects."""
    from django.core.exceptions import ImproperlyConfigured

    from livedata.dbconfig import database_config

    try:
        config = database_config("livedata")
    except ImproperlyConfigured:  # Django reports it when the settings load
        return "its database"
    if config["ENGINE"] == "livedata.embedded":
        return f"database {config['NAME']!r} in the embedded PostgreSQL"
    host = config.get("HOST") or "localhost"
    return f"database {config['NAME']!r} on {host} from DATABASE_URL"


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
