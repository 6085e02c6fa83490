"""Reading the log is gap-free even when transactions commit out of order."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from livedata.capture import log
from livedata.capture.log import Cursor, CursorError, CursorExpired

pytestmark = pytest.mark.django_db(transaction=True)

INSERT = "INSERT INTO bookstore_author (name, email) VALUES (%s, %s)"


def test_out_of_order_commits_are_never_skipped(head, connect):
    """A takes the lower id, B commits first; a reader that saw B still gets A later."""
    reader = connect()
    a, b = connect(autocommit=False), connect(autocommit=False)
    a.execute(INSERT, ["A", "a@example.com"])  # lower id, commits last
    b.execute(INSERT, ["B", "b@example.com"])
    b.commit()

    cursor = head
    first = log.read(reader, cursor)
    # A is still in flight and holds back xmin: B is not visible yet either (no gap).
    assert first == []
    a.commit()
    rows = log.read(reader, cursor)
    assert [r.new["name"] for r in rows] == ["A", "B"]  # txid order: A's transaction began first
    cursor = rows[-1].cursor
    assert log.read(reader, cursor) == []


def test_reader_that_moved_past_a_later_commit_still_sees_the_earlier_one(head, connect):
    """The pubsubpull bug: ordering by id alone would move past A's id and lose it."""
    reader = connect()
    a, b = connect(autocommit=False), connect(autocommit=False)
    b.execute(INSERT, ["B", "b@example.com"])  # B's transaction starts first (lower txid)
    a.execute(INSERT, ["A", "a@example.com"])  # A: higher txid, higher id
    b.commit()
    rows = log.read(reader, head)
    assert [r.new["name"] for r in rows] == ["B"]  # B is below every in-flight txid
    cursor = rows[-1].cursor
    a.commit()
    assert [r.new["name"] for r in log.read(reader, cursor)] == ["A"]


@pytest.mark.slow
def test_stress_many_writers_random_commit_order(head, connect, db_params):
    """Many concurrent writers commit in random order; one reader polling all along ends
    with exactly the table's history: every change once, nothing missing, nothing twice."""
    writers, per_writer = 8, 40
    stop = threading.Event()
    seen: list[log.ChangeRow] = []
    errors: list[BaseException] = []

    def reader() -> None:
        import psycopg

        with psycopg.connect(**db_params, autocommit=True) as conn:
            cursor = head
            while True:
                done = stop.is_set()
                rows = log.read(conn, cursor, limit=37)
                seen.extend(rows)
                if rows:
                    cursor = rows[-1].cursor
                elif done:
                    return

    def writer(n: int) -> None:
        import psycopg

        rng = random.Random(n)
        try:
            with psycopg.connect(**db_params) as conn:
                for i in range(per_writer):
                    with conn.transaction():
                        for j in range(rng.randint(1, 3)):
                            conn.execute(INSERT, [f"w{n}", f"w{n}-{i}-{j}@example.com"])
                        if rng.random() < 0.3:
                            conn.execute(
                                "UPDATE bookstore_author SET name = name || '!' WHERE email = %s",
                                [f"w{n}-{i}-0@example.com"],
                            )
                        time.sleep(rng.random() * 0.004)  # hold the transaction open
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    r = threading.Thread(target=reader)
    r.start()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join(timeout=60)
    assert not errors

    history = [
        (row[0], row[1])
        for row in connect()
        .execute(
            "SELECT txid::text::bigint, id FROM livedata_change"
            " WHERE (txid, id) > (%s::text::xid8, %s) ORDER BY txid, id",
            [str(head.txid), head.id],
        )
        .fetchall()
    ]
    got = [(c.txid, c.id) for c in seen]
    assert len(got) == len(set(got)), "a change was delivered twice"
    assert got == history
    total_rows = (
        connect()
        .execute("SELECT count(*) FROM bookstore_author WHERE email LIKE 'w%%'")
        .fetchone()[0]
    )
    assert sum(1 for c in seen if c.op == "insert") == total_rows
    # ids were assigned in one order and committed in another: the test exercised the trap
    ids = [c.id for c in seen]
    assert ids != sorted(ids)


def test_cursor_parsing():
    assert Cursor.parse("12:34") == Cursor(12, 34)
    assert str(Cursor(12, 34)) == "12:34"
    for bad in ["", "12", "a:b", "12:-1", "1:2:3", "99999999999999999999999:1"]:
        with pytest.raises(CursorError, match="expected TXID:ID"):
            Cursor.parse(bad)


def test_head_and_models_filter(head, connect):
    from livedata.demo.bookstore.models import Author, Book

    a = Author.objects.create(name="H", email="h@example.com")
    Book.objects.create(title="T", author=a)
    conn = connect()
    rows = log.read(conn, head, models=["bookstore.Book"])
    assert [r.model for r in rows] == ["bookstore.book"]
    assert log.head(conn) == log.read(conn, head)[-1].cursor


def test_prune_then_old_cursor_must_refetch(head, connect):
    from livedata.demo.bookstore.models import Author

    Author.objects.create(name="Old", email="old@example.com")
    reader = connect()
    old_cursor = head
    connect().execute("UPDATE livedata_change SET at = at - interval '40 days'")
    Author.objects.create(name="New", email="new@example.com")

    call_command("prune")  # default retention: 30 days
    with pytest.raises(CursorExpired, match="refetch"):
        log.read(reader, old_cursor)
    # a reader at or past the horizon goes on normally
    horizon = Cursor(*reader.execute(log.HORIZON_SQL).fetchone())
    assert [r.new["name"] for r in log.read(reader, horizon)] == ["New"]


def test_prune_keeps_recent_rows_and_reports(head, connect, capsys):
    from livedata.demo.bookstore.models import Author

    Author.objects.create(name="Recent", email="recent@example.com")
    call_command("prune", "--older-than", "1d")
    assert "pruned 0 change(s)" in capsys.readouterr().out
    assert len(log.read(connect(), head)) == 1
    call_command("prune", "--older-than", "0s")
    assert log.read(connect(), log.head(connect())) == []
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM livedata_change WHERE at > %s",
            [timezone.now() - timedelta(days=1)],
        )
        assert cur.fetchone()[0] == 0


def test_a_transaction_open_in_another_database_does_not_stall_the_log(head, connect, db_params):
    """xmin is cluster-wide; the read bound ignores transactions of other databases only."""
    import os

    import psycopg

    name = f"livedata_other_{os.getpid()}"
    admin = connect()
    admin.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(**{**db_params, "dbname": name}) as foreign:
            foreign.execute("SELECT pg_current_xact_id()")  # holds an xid, stays open
            local = connect(autocommit=False)
            local.execute("SELECT pg_current_xact_id()")  # an open transaction here
            writer = connect()
            writer.execute(INSERT, ["W", "w@example.com"])
            reader = connect()
            assert log.read(reader, head) == []  # the local one holds it back: correct
            local.rollback()
            rows = log.read(reader, head)
            assert [r.new["name"] for r in rows] == ["W"]  # the foreign one does not
            foreign.rollback()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
