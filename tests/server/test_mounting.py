"""Which application serves: ``livedata serve`` runs the settings' ``ASGI_APPLICATION``
(and refuses one that does not mount livedata), and ``livedata.server.asgi`` refuses to
load without ``DJANGO_SETTINGS_MODULE`` instead of loading the demo's settings, while the
demo's own application still finds them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import CHILD_PYTHONPATH, ROOT, livedata_cmd, livedata_env
from tests.server.conftest import _serve
from tests.server.test_channels import _echo


def _without_settings() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return {**env, "PYTHONPATH": CHILD_PYTHONPATH}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_server_asgi_refuses_to_load_without_settings(workers):
    cmd = [sys.executable, "-m", "uvicorn", "livedata.server.asgi:application"]
    done = subprocess.run(
        [*cmd, "--port", "0", "--workers", workers],
        env=_without_settings(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    line = (
        "livedata.server.asgi: DJANGO_SETTINGS_MODULE is not set: set it to your project's "
        "settings (e.g. DJANGO_SETTINGS_MODULE=myproject.settings); `livedata demo` serves "
        "the demo"
    )
    # one line per process that tried (uvicorn's parent stops once its worker failed)
    assert done.stderr.count(line) == int(workers), done.stderr
    assert "Traceback" not in done.stderr and "demo.settings" not in done.stderr
    if workers == "1":
        assert done.returncode == 3


def test_the_demo_application_finds_the_demo_settings():
    code = (
        "import livedata.demo.asgi as m, django.conf as c;"
        "print(type(m.application).__name__, c.settings.SETTINGS_MODULE)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_without_settings(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["LivedataApp", "livedata.demo.settings"]


@pytest.mark.django_db(transaction=True)
def test_serve_runs_the_settings_asgi_application(transactional_db):
    # only this application has a consumer at /ws/echo/ (livedata's default refuses it)
    app = "tests.testapp.channels_asgi.outside"
    for server in _serve("1", LIVEDATA_TEST_ASGI_APPLICATION=app):
        assert _echo(server, "hi") == "echo: hi"


@pytest.mark.parametrize(
    ("app", "says"),
    [
        ("tests.testapp.plain_asgi.application", "does not mount livedata: wrap"),
        ("tests.testapp.nowhere.application", "cannot be imported"),
    ],
)
@pytest.mark.django_db
def test_serve_refuses_an_application_it_cannot_serve_ddp_with(app, says):
    done = subprocess.run(
        livedata_cmd("serve", "--port", "0"),
        env=livedata_env(LIVEDATA_TEST_ASGI_APPLICATION=app),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"CommandError: ASGI_APPLICATION {app!r} ") and says in line, line


def test_without_asgi_application_serve_runs_livedatas_own(settings):
    from livedata.server.mounting import checked_application

    del settings.ASGI_APPLICATION  # a project that names none
    assert checked_application() == "livedata.server.asgi:application"
    settings.ASGI_APPLICATION = "tests.testapp.asgi.application"
    assert checked_application() == "tests.testapp.asgi:application"
