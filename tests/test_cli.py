"""The ``livedata`` command: whose settings it runs (a project's, never the demo's against
the project's database), and clear errors instead of tracebacks.

The project tests do what a user does: ``django-admin startproject`` in a temporary
directory, an app labelled ``bookstore`` (the README's example label, which the demo's
used to be) with a tracked model and a ``ddp.py``, then real ``livedata`` and
``python manage.py`` processes against a PostgreSQL database of the project's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from livedata.cli import DEFAULT_SETTINGS, SettingsNotFound, choose_settings, manage_py_settings
from tests.conftest import ROOT, livedata_cmd, run_livedata

#: the stderr line saying the demo's settings are in use
DEMO_LINE = "using the bundled demo"

APP_MODELS = """
from django.db import models

import livedata


@livedata.track
class Book(models.Model):
    title = models.CharField(max_length=200)
"""

APP_DDP = """
from livedata.api import API, Collection, Publication

from bookstore import models


class Book(Collection):
    model = models.Book


class AllBooks(Publication):
    queries = [models.Book.objects.all()]


API.register([Book, AllBooks])
"""

SETTINGS_TAIL = """
from livedata.dbconfig import database_config

INSTALLED_APPS += ["pgtrigger", "livedata", "bookstore"]
MIDDLEWARE += ["livedata.capture.context.ContextMiddleware"]
DATABASES = {"default": database_config(%r)}
LIVEDATA = {"SITE_URL": "https://shop.example.com"}
"""


class Project:
    """A fresh Django project in a temporary directory, with its own database."""

    def __init__(self, path: Path, env: dict[str, str], dbname: str) -> None:
        self.path, self.env, self.dbname = path, env, dbname

    def run(self, *argv: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv,
            cwd=cwd or self.path,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def livedata(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
        return self.run(*livedata_cmd(*args), **kwargs)

    def manage(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "manage.py", *args, **kwargs)


def user_env(**extra: str) -> dict[str, str]:
    """A user's shell: this checkout's livedata importable, no test settings."""
    ignored = ("DJANGO_SETTINGS_MODULE", "LIVEDATA_DB_NAME", "LIVEDATA_SETTINGS", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k not in ignored}
    return {**env, "PYTHONPATH": str(ROOT / "src"), **extra}


@pytest.fixture
def project(tmp_path: Path, connect: Callable[..., psycopg.Connection]) -> Iterator[Project]:
    dbname = f"livedata_cli_project_{os.getpid()}"
    admin = connect()
    admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {dbname}")
    path = tmp_path / "site"
    path.mkdir()
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "proj", str(path)],
        check=True,
        env=user_env(),
        timeout=60,
    )
    app = path / "bookstore"
    (app / "migrations").mkdir(parents=True)
    for name, text in {
        "__init__.py": "",
        "migrations/__init__.py": "",
        "models.py": APP_MODELS,
        "ddp.py": APP_DDP,
    }.items():
        (app / name).write_text(textwrap.dedent(text))
    with (path / "proj" / "settings.py").open("a") as settings:
        settings.write(SETTINGS_TAIL % dbname)
    env = user_env()
    if os.environ.get("DATABASE_URL"):  # the same server, the project's own database
        env["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + dbname
    try:
        yield Project(path, env, dbname)
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def applied_apps(db_params: dict[str, Any], project: Project) -> set[str]:
    """The apps whose migrations are recorded in the project's database."""
    with psycopg.connect(**{**db_params, "dbname": project.dbname}) as conn:
        return {app for (app,) in conn.execute("SELECT DISTINCT app FROM django_migrations")}


@pytest.mark.django_db(transaction=True)
def test_in_a_project_the_commands_use_its_settings_and_never_the_demo(project, db_params):
    made = project.livedata("makemigrations")
    assert made.returncode == 0, made.stderr
    assert (project.path / "bookstore" / "migrations" / "0001_initial.py").is_file()

    planned = project.livedata("migrate", "--plan")
    assert planned.returncode == 0, planned.stderr
    assert "bookstore.0001_initial" in planned.stdout  # the user's bookstore
    assert "livedata.0001_initial" in planned.stdout
    assert "livedata_demo" not in planned.stdout and "0002_book_added_by" not in planned.stdout
    assert DEMO_LINE not in planned.stderr

    checked = project.livedata("check")
    assert checked.returncode == 0, checked.stderr
    assert DEMO_LINE not in checked.stderr

    migrated = project.manage("migrate", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    applied = applied_apps(db_params, project)
    assert {"bookstore", "livedata"} <= applied and "livedata_demo" not in applied
    triggers = project.manage("triggers", "ls")
    assert triggers.returncode == 0, triggers.stderr
    assert "bookstore" in triggers.stdout and "INSTALLED" in triggers.stdout
    assert "livedata_demo" not in triggers.stdout


def test_defaults_to_the_demo_settings():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = subprocess.run(
        [*livedata_cmd("diffsettings"), "--all"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "SETTINGS_MODULE = 'livedata.demo.settings'" in out.stdout
    helped = subprocess.run(livedata_cmd("help"), env=env, capture_output=True, text=True)
    for command in ("tail", "triggers", "prune", "demo", "migrate"):
        assert command in helped.stdout


def test_database_down_is_one_clear_line():
    out = subprocess.run(
        livedata_cmd("migrate"),
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "livedata.demo.settings",
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing",
        },
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "cannot use the database (DATABASE_URL)" in out.stderr
    assert "Is PostgreSQL running" in out.stderr


@pytest.mark.django_db(transaction=True)
def test_unmigrated_database_names_the_command(connect):
    name = f"livedata_unmigrated_{os.getpid()}"
    admin = connect()
    admin.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        for args in (("tail",), ("prune",)):
            out = run_livedata(*args, LIVEDATA_DB_NAME=name, timeout=60)
            assert out.returncode == 1, out
            assert "Traceback" not in out.stderr
            assert "livedata migrate" in out.stderr
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.django_db(transaction=True)
def test_the_settings_module_named_in_the_environment_imports_from_here(project):
    (project.path / "manage.py").unlink()  # only the environment says
    for how in ({"DJANGO_SETTINGS_MODULE": "proj.settings"}, {}):
        args = ("check",) if how else ("check", "--settings", "proj.settings")
        out = project.livedata(*args, **how)
        assert out.returncode == 0, out.stderr  # was ModuleNotFoundError: No module named 'proj'
        assert "ModuleNotFoundError" not in out.stderr and DEMO_LINE not in out.stderr
    planned = project.livedata("migrate", "--plan", DJANGO_SETTINGS_MODULE="proj.settings")
    assert planned.returncode == 0, planned.stderr
    assert "bookstore.0001_initial" not in planned.stdout  # not made yet: the user's app only
    assert "livedata_demo" not in planned.stdout and "livedata.0001_initial" in planned.stdout


@pytest.mark.django_db(transaction=True)
def test_the_demo_is_used_only_by_livedata_demo_or_without_a_project_and_says_so(project):
    demo = project.livedata("demo", "--help")  # in the project's directory
    assert demo.returncode == 0, demo.stderr
    assert "Set up the bookstore demo" in demo.stdout
    [line] = demo.stderr.splitlines()
    assert line.startswith("livedata: `livedata demo`: using the bundled demo, database ")

    elsewhere = project.path.parent / "elsewhere"
    elsewhere.mkdir()
    out = project.livedata("migrate", "--plan", cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    [line] = out.stderr.splitlines()
    assert line.startswith("livedata: no Django project here (no --settings, ")
    # the demo's database: DATABASE_URL's (the project's, here), else the embedded "livedata"
    expected = project.dbname if "DATABASE_URL" in project.env else "livedata"
    assert DEMO_LINE in line and f"database {expected!r}" in line
    assert "livedata_demo.0001_initial" in out.stdout


def test_a_manage_py_naming_no_settings_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "manage.py").write_text("import sys\nprint('a script')\n")
    out = subprocess.run(
        livedata_cmd("check"),
        cwd=tmp_path,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "does not set DJANGO_SETTINGS_MODULE" in out.stderr and DEMO_LINE not in out.stderr


def test_settings_are_chosen_in_order(tmp_path: Path) -> None:
    (tmp_path / "manage.py").write_text(
        'import os\n\ndef main():\n    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "a.b")\n'
    )
    assert manage_py_settings(tmp_path / "manage.py") == "a.b"
    assert choose_settings(["livedata", "check", "--settings=x"], {}, tmp_path) is None
    assert choose_settings(["livedata", "check"], {"DJANGO_SETTINGS_MODULE": "y"}, tmp_path) is None
    assert choose_settings(["livedata", "check"], {}, tmp_path)[0] == "a.b"
    assert choose_settings(["livedata", "demo"], {}, tmp_path)[0] == DEFAULT_SETTINGS
    (tmp_path / "manage.py").unlink()
    assert choose_settings(["livedata", "check"], {}, tmp_path)[0] == DEFAULT_SETTINGS
    (tmp_path / "manage.py").write_text("def broken(:\n")
    with pytest.raises(SettingsNotFound):
        choose_settings(["livedata"], {}, tmp_path)
