"""Silent failures become loud (issue 16), met as a user meets them: a new project in a
temporary directory, ``python manage.py check|makemigrations|migrate|triggers|serve`` as
subprocesses, on its own database of the real PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.fresh_project import Project
from tests.server.conftest import free_port, wait_listening

BOOK = """\
from livedata.api import API, Collection
from shop import models


class Book(Collection):
    model = models.Book


API.register([Book])
"""


@pytest.fixture
def project(tmp_path, db_params) -> Iterator[Project]:
    p = Project(tmp_path, db_params)
    try:
        yield p
    finally:
        p.drop()


def _warnings(out: str, check_id: str) -> list[str]:
    return [line for line in out.splitlines() if f"({check_id})" in line]


def test_a_collection_without_installed_triggers_is_reported_with_the_commands(project):
    # the app is migrated, then a Collection is registered: makemigrations never run since
    assert project.manage("makemigrations", "shop").returncode == 0
    assert project.manage("migrate", "-v0").returncode == 0
    project.write("shop/ddp.py", BOOK)

    check = project.manage("check")
    assert check.returncode == 0, check.stderr  # a warning: makemigrations must still run
    [warning] = _warnings(check.stderr, "livedata.W005")
    assert "shop.Book's changes are not captured" in warning
    fix = "`python manage.py makemigrations shop && python manage.py migrate shop`"
    assert f"HINT: Run {fix}." in check.stderr

    ls = project.manage("triggers", "ls")
    line = next(x for x in ls.stdout.splitlines() if "shop.Book:livedata_insert" in x)
    assert line.startswith("UNINSTALLED") and f"run {fix}" in line

    served = project.manage("serve", "--port", str(free_port()), timeout=60)
    assert served.returncode == 1 and "Traceback" not in served.stderr
    assert "not serving: shop.Book's changes are not captured" in served.stderr
    assert fix.strip("`") in served.stderr

    # makemigrations written, not applied: the hint is migrate now
    made = project.manage("makemigrations", "shop")
    assert made.returncode == 0 and "livedata.W005" not in made.stderr
    assert "livedata.W005" not in project.manage("check").stderr
    check = project.manage("check", "--database", "default")
    [warning] = _warnings(check.stderr, "livedata.W006")
    assert "not applied yet (shop.0002_" in warning
    assert "HINT: Run `python manage.py migrate shop`." in check.stderr
    ls = project.manage("triggers", "ls")
    line = next(x for x in ls.stdout.splitlines() if "shop.Book:livedata_update" in x)
    assert line.startswith("UNINSTALLED") and "run `python manage.py migrate shop`" in line
    assert "makemigrations" not in ls.stdout
    served = project.manage("serve", "--port", str(free_port()), timeout=60)
    assert served.returncode == 1 and "run `python manage.py migrate shop`" in served.stderr

    migrated = project.manage("migrate")
    assert migrated.returncode == 0 and "livedata.W006" not in migrated.stderr
    check = project.manage("check", "--database", "default")
    assert "System check identified no issues" in check.stdout, check.stderr
    ls = project.manage("triggers", "ls")
    assert all(line.startswith("INSTALLED") for line in ls.stdout.splitlines()), ls.stdout


def test_a_publication_of_a_model_without_collection(project):
    project.write("shop/ddp.py", BOOK)
    assert project.manage("makemigrations", "shop").returncode == 0
    assert project.manage("migrate", "-v0").returncode == 0
    project.write(
        "shop/ddp.py",
        BOOK
        + """
from livedata.api import Publication


class AllAuthors(Publication):
    queries = [models.Author.objects.all()]


class AuthorsNamed(Publication):
    def get_queries(self, name):
        return [models.Author.objects.filter(name=name)]


API.register([AllAuthors, AuthorsNamed])
""",
    )
    # static queries: found by check (an error) and at start-up
    check = project.manage("check")
    assert check.returncode == 1
    [error] = _warnings(check.stderr, "livedata.E007")
    assert "Publication 'AllAuthors' publishes shop.Author rows" in error
    served = project.manage("serve", "--port", str(free_port()), timeout=60)
    assert served.returncode == 1 and "Publication 'AllAuthors'" in served.stderr

    # get_queries: known only when it runs: the client's nosub says why, the log one line
    project.write(
        "shop/ddp.py",
        (project.root / "shop/ddp.py")
        .read_text()
        .replace("API.register([AllAuthors, AuthorsNamed])", "API.register([AuthorsNamed])"),
    )
    assert project.manage("check").returncode == 0
    from tests.server.test_database_wait import connected

    port = free_port()
    proc = project.spawn("serve", "--port", str(port), "--log-level", "warning")
    try:
        wait_listening(port, proc)
        c = connected(port)
        c.send({"msg": "sub", "id": "s1", "name": "AuthorsNamed", "params": ["Ann"]})
        nosub = c.recv()
        while nosub.get("msg") != "nosub":
            nosub = c.recv()
        assert nosub["error"]["error"] == 500
        assert nosub["error"]["reason"] == (
            "Publication 'AuthorsNamed': this publication returns shop.author rows, but no "
            "Collection of shop.author is registered (API.register it in ddp.py)"
        )
        c.close()
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    logged = [line for line in output.splitlines() if "AuthorsNamed" in line]
    assert len(logged) == 1, output
    assert "Traceback" not in output


def test_settings_that_livedata_would_ignore_are_warned_about(project):
    project.write("shop/ddp.py", BOOK)
    assert project.manage("makemigrations", "shop").returncode == 0
    project.settings(
        """
        LIVE_DATA = {"SITE_URL": "https://shop.example"}
        LiveData = {}
        DDP_ALLOWED_ORIGINS = ["https://shop.example"]
        LISTENER_POL_INTERVAL = 2
        WEBHOOK_SECRET = "another library's"
        SITE_URL = "https://shop.example"
        """,
        replace=('    "livedata.capture.context.ContextMiddleware",\n', ""),
    )
    check = project.manage("check")
    assert check.returncode == 0, check.stderr
    named = sorted(re.findall(r"settings\.(\w+) is not read", check.stderr))
    assert named == ["DDP_ALLOWED_ORIGINS", "LISTENER_POL_INTERVAL", "LIVE_DATA", "LiveData"]
    assert "Move it into LIVEDATA: LIVEDATA = {..., 'DDP_ALLOWED_ORIGINS': ...}" in check.stderr
    assert "LIVEDATA['LISTENER_POLL_INTERVAL'] misspelt" in check.stderr
    [middleware] = _warnings(check.stderr, "livedata.W007")
    assert "ContextMiddleware is not in MIDDLEWARE" in middleware
    # this project never logs a Meteor client in: no hasher nor SITE_URL warnings
    assert "livedata.W001" not in check.stderr and "livedata.W003" not in check.stderr

    project.settings('LIVEDATA = {"LISTENER_POL_INTERVAL": 2}\n')
    check = project.manage("check")  # ImproperlyConfigured when Django starts, as Django's own
    assert check.returncode == 1
    assert "LISTENER_POL_INTERVAL (did you mean LISTENER_POLL_INTERVAL?)" in check.stderr


def test_the_digest_hasher_warning_comes_when_accounts_are_used(project):
    project.write("shop/ddp.py", BOOK)
    assert project.manage("makemigrations", "shop").returncode == 0
    assert "System check identified no issues" in project.manage("check").stdout
    project.write(
        "shop/ddp.py",
        BOOK
        + """
from livedata.api import Publication


class MyBooks(Publication):
    def get_queries(self):
        return [models.Book.objects.filter(author__name=self.user.get_username())]


API.register([MyBooks])
""",
    )
    check = project.manage("check")
    [warning] = _warnings(check.stderr, "livedata.W001")
    assert "publication 'MyBooks' reads self.user" in warning
    project.write("shop/ddp.py", BOOK)
    project.settings('LIVEDATA = {"ACCOUNTS": True}\n')  # a setting says so
    [warning] = _warnings(project.manage("check").stderr, "livedata.W001")
    assert "LIVEDATA sets ACCOUNTS" in warning
    project.settings(
        'LIVEDATA = {"ACCOUNTS": True, "SITE_URL": "https://shop.example"}\n'
        'PASSWORD_HASHERS = ["livedata.accounts.hashers.DigestPBKDF2PasswordHasher"]\n'
    )
    assert "System check identified no issues" in project.manage("check").stdout
