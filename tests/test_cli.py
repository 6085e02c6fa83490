"""The ``livedata`` command: default settings, and clear errors instead of tracebacks."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import ROOT, livedata_cmd, run_livedata


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
