"""A new Django project in a temporary directory, as a user makes one: ``manage.py``, a
settings module, an app ``shop`` with models and a ``ddp.py``, and its own database on
the test server. Its commands are run as the user runs them (``python manage.py ...``,
subprocesses); the code under test is this checkout's."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg

from tests.conftest import CHILD_PYTHONPATH

MANAGE = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

SETTINGS = """\
from livedata.dbconfig import database_config

SECRET_KEY = "fresh-project-test"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "pgtrigger",
    "livedata",
    "shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "livedata.capture.context.ContextMiddleware",
]
ROOT_URLCONF = "proj.urls"
DATABASES = {"default": database_config("shop")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
"""

MODELS = """\
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)


class Book(models.Model):
    title = models.CharField(max_length=100)
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
"""


class Project:
    """The project's directory, its database, and ``manage(...)`` to run its commands."""

    def __init__(self, root: Path, db_params: dict) -> None:
        self.root = root
        self.dbname = f"fresh_{uuid.uuid4().hex[:10]}"
        self._db_params = db_params
        with psycopg.connect(**db_params, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        (root / "proj").mkdir()
        (root / "shop").mkdir()
        for path, text in {
            "manage.py": MANAGE,
            "proj/__init__.py": "",
            "proj/urls.py": "urlpatterns = []\n",
            "proj/settings.py": SETTINGS,
            "shop/__init__.py": "",
            "shop/models.py": MODELS,
            "shop/ddp.py": "",
        }.items():
            self.write(path, text)

    def write(self, path: str, text: str) -> None:
        (self.root / path).write_text(textwrap.dedent(text))
        for cached in (self.root / Path(path).parent / "__pycache__").glob("*.pyc"):
            cached.unlink()

    def settings(self, extra: str = "", *, replace: tuple[str, str] | None = None) -> None:
        """Rewrite settings.py: the default one, with ``replace`` (old, new) and ``extra``
        lines appended."""
        text = SETTINGS if replace is None else SETTINGS.replace(*replace)
        self.write("proj/settings.py", text + textwrap.dedent(extra))

    def env(self) -> dict[str, str]:
        ignored = ("DJANGO_SETTINGS_MODULE", "LIVEDATA_SETTINGS", "LIVEDATA_TEST_OVERRIDES")
        env = {k: v for k, v in os.environ.items() if k not in ignored}
        env.update(PYTHONPATH=CHILD_PYTHONPATH, LIVEDATA_DB_NAME=self.dbname, PYTHONUNBUFFERED="1")
        return env

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def spawn(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def drop(self) -> None:
        with psycopg.connect(**self._db_params, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
