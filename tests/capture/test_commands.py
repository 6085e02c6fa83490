"""Commands: ``livedata tail``, ``livedata triggers ls|prune`` and migrations of capture."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from livedata.demo.bookstore.models import Author, Book
from tests.conftest import ROOT, livedata_cmd, livedata_env, run_livedata, spawn_livedata

pytestmark = pytest.mark.django_db(transaction=True)

TAIL_KEYS = {
    "position",
    "txid",
    "model",
    "table",
    "op",
    "pk",
    "old",
    "new",
    "changed",
    "context",
    "at",
}


def read_lines(proc: subprocess.Popen, n: int, timeout: float = 20) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < n:
        assert time.monotonic() < deadline, f"got only {lines}"
        line = proc.stdout.readline()
        if line:
            lines.append(line.rstrip("\n"))
    return lines


def test_tail_json_follows_commits_and_exits_cleanly_on_ctrl_c(head):
    proc = spawn_livedata("tail", "--json", "--since", str(head), "--model", "livedata_demo.Book")
    try:
        author = Author.objects.create(name="Tail", email="tail@example.com")
        book = Book.objects.create(title="First", author=author)
        book.title = "Second"
        book.save()
        first, second = (json.loads(line) for line in read_lines(proc, 2))
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert set(first) == TAIL_KEYS
    assert first["op"] == "insert" and first["model"] == "livedata_demo.book"
    assert first["table"] == "livedata_demo_book" and first["pk"] == str(book.pk)
    assert first["new"] == {
        "id": book.pk,
        "title": "First",
        "author_id": author.pk,
        "added_by_id": None,
    }
    assert second["op"] == "update" and second["changed"] == ["title"]
    assert second["old"]["title"] == "First" and second["new"]["title"] == "Second"
    # each line's position resumes right after it: --since it gives the second line only
    again = spawn_livedata(
        "tail", "--json", "--since", first["position"], "--model", "livedata_demo.Book"
    )
    try:
        (resumed,) = (json.loads(line) for line in read_lines(again, 1))
    finally:
        again.send_signal(signal.SIGINT)
        again.communicate(timeout=20)
    assert resumed["new"]["title"] == "Second" and resumed["position"] == second["position"]


def test_tail_readable_lines_from_start(head):
    from livedata.capture.log import START

    with override_settings():
        import livedata

        with livedata.context(user_id=1, username="alice", method="POST", path="/x/"):
            Author.objects.create(name="R", email="r@example.com")
    proc = spawn_livedata("tail", "--from-start")
    try:
        lines = []
        while not any("r@" in line or "livedata_demo.author#" in line for line in lines):
            lines += read_lines(proc, 1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    line = next(line for line in lines if "livedata_demo.author#" in line)
    assert "insert" in line and "by=alice" in line and "[POST /x/]" in line
    assert START.snapshot.xmin == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday"), "invalid position 'yesterday': expected XMIN:XMAX:XIP"),
        (("--model", "livedata_demo.Nope"), "unknown model 'livedata_demo.Nope'"),
        (
            ("--model", "nonsense"),
            "Captured models: livedata.LoginToken, livedata_demo.Author, livedata_demo.Book",
        ),
    ],
)
def test_tail_bad_input_is_a_precise_error(args, message):
    out = run_livedata("tail", *args)
    assert out.returncode == 1
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_tail_with_an_expired_position_says_refetch(head):
    Author.objects.create(name="P", email="p@example.com")
    call_command("prune", "--older-than", "0s")
    out = run_livedata("tail", "--since", "1:1")
    assert out.returncode == 1 and "refetch" in out.stderr and "Traceback" not in out.stderr


def test_triggers_ls_shows_every_declared_trigger_installed():
    out = StringIO()
    call_command("triggers", "ls", stdout=out)
    lines = out.getvalue().splitlines()
    for model in ("livedata_demo.Author", "livedata_demo.Book", "testapp.Widget", "testapp.Gadget"):
        for op in ("insert", "update", "delete", "truncate"):
            assert f"INSTALLED  {model}:livedata_{op}" in lines
    assert not any("Note" in line for line in lines)


def test_triggers_ls_flags_drift_and_prune_removes_orphans():
    from livedata.capture.declare import CAPTURE_TRIGGERS
    from tests.testapp.models import Note

    # an orphan: a capture trigger in the database that no model declares
    orphan = CAPTURE_TRIGGERS[0].compile(Note)
    with connection.cursor() as cur:
        cur.execute(orphan.install_sql)
        # drift: someone edited an installed trigger by hand
        cur.execute(
            "COMMENT ON TRIGGER pgtrigger_livedata_insert_539dc ON livedata_demo_book IS 'edited'"
        )
    out = StringIO()
    call_command("triggers", "ls", stdout=out)
    text = out.getvalue()
    assert "ORPHAN" in text and "testapp_note" in text and "livedata triggers prune" in text
    drifted = next(
        line for line in text.splitlines() if "livedata_demo.Book:livedata_insert" in line
    )
    # its migration is applied: `migrate` would do nothing, pgtrigger reinstalls it
    assert drifted.startswith("OUTDATED ") and "pgtrigger install`" in drifted

    out = StringIO()
    call_command("triggers", "prune", stdout=out)
    assert "1 orphaned capture trigger(s) pruned" in out.getvalue()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", [orphan.sql.pgid])
        assert cur.fetchone()[0] == 0  # its function went with it
    call_command("pgtrigger", "install")  # restore the edited trigger for later tests


def test_migrations_are_complete_and_removing_a_declaration_removes_triggers():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # nothing pending
    # Drop the settings declaration of testapp.Gadget: makemigrations removes its triggers.
    script = (
        "import pgtrigger.registry as r;"
        "from django.core.management import call_command;"
        "[r.delete(f'testapp.Gadget:livedata_{op}') for op in "
        "('insert','update','delete','truncate')];"
        "call_command('makemigrations', 'testapp', '--dry-run', '-v', '3')"
    )
    result = subprocess.run(
        livedata_cmd("shell", "-c", script),
        env=livedata_env(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for op in ("insert", "update", "delete", "truncate"):
        assert f"Remove trigger livedata_{op} from model gadget" in result.stdout
    assert "pgtrigger.migrations.RemoveTrigger(" in result.stdout


def test_applying_a_remove_trigger_migration_drops_trigger_and_function():
    """What `migrate` runs after a declaration is removed, applied for real (then undone)."""
    from django.db.migrations.loader import MigrationLoader
    from pgtrigger.migrations import RemoveTrigger

    state = MigrationLoader(connection).project_state()
    op = RemoveTrigger(model_name="gadget", name="livedata_update")
    new_state = state.clone()
    op.state_forwards("testapp", new_state)

    def installed() -> list[tuple[str, int]]:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT t.tgname, (SELECT count(*) FROM pg_proc p WHERE p.proname = t.tgname)"
                " FROM pg_trigger t WHERE t.tgrelid = 'testapp_gadget'::regclass"
                " AND t.tgname LIKE 'pgtrigger_livedata_update_%%'"
            )
            return cur.fetchall()

    [(pgid, functions)] = installed()
    assert functions == 1
    with connection.schema_editor() as editor:
        op.database_forwards("testapp", editor, state, new_state)
    assert installed() == []
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", [pgid])
        assert cur.fetchone()[0] == 0
    with connection.schema_editor() as editor:
        op.database_backwards("testapp", editor, new_state, state)
    assert installed() == [(pgid, 1)]


def test_tail_waits_and_retries_while_the_database_is_down():
    proc = spawn_livedata("tail", DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing")
    lines: list[str] = []

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        # the marker: a second "retrying" line, logged after the first retry failed too
        deadline = time.monotonic() + 20
        while sum("retrying in" in line for line in list(lines)) < 2:
            assert proc.poll() is None, "".join(lines)  # it must not give up
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        assert proc.poll() is None  # still running: it retries
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        reader.join(timeout=20)
        proc.stdout.close()
    err = "".join(lines)
    assert proc.returncode == 0
    assert "unavailable" in err and "retrying in" in err
    assert "Traceback" not in err
