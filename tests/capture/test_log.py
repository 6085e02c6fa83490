"""Reading by snapshot difference: gap-free, in commit order, never held back by others."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from livedata.capture import log
from livedata.capture.log import Position, PositionError, PositionExpired, Snapshot
from tests.conftest import private_database, settle

pytestmark = pytest.mark.django_db(transaction=True)

INSERT = "INSERT INTO livedata_demo_author (name, email) VALUES (%s, %s)"


def read_all(reader, position, **kw) -> tuple[list[log.ChangeRow], Position]:
    """Everything committed after ``position`` now, and the position after it."""
    rows: list[log.ChangeRow] = []
    while True:
        batch = log.read_batch(reader, position, **kw)
        rows += batch.rows
        position = batch.end
        if batch.caught_up:
            return rows, position


def names(rows) -> list[str]:
    return [r.new["name"] for r in rows]


def test_out_of_order_commits_are_delivered_in_commit_order(head, connect):
    """A takes the lower id and txid, B commits first: B is read at once, A when it commits."""
    reader = connect()
    a, b = connect(autocommit=False), connect(autocommit=False)
    a.execute(INSERT, ["A", "a@example.com"])  # lower txid and id, commits last
    b.execute(INSERT, ["B", "b@example.com"])
    b.commit()
    rows, position = read_all(reader, head)
    assert names(rows) == ["B"]  # without waiting for A
    assert read_all(reader, position)[0] == []
    a.commit()
    rows, position = read_all(reader, position)
    assert names(rows) == ["A"]  # not skipped although the reader moved past its id
    assert read_all(reader, position)[0] == []


@pytest.mark.parametrize("kind", ["unrelated", "idle-same-table"])
def test_a_long_transaction_holds_nothing_back(head, connect, kind):
    """A transaction left open (writing another table, or a row of the same captured table
    then idle) does not delay a later commit; its own rows come when it commits."""
    reader = connect()
    long = connect(autocommit=False)
    if kind == "unrelated":
        long.execute("CREATE TEMP TABLE scratch (x int)")
        long.execute("INSERT INTO scratch VALUES (1)")
    else:
        long.execute(INSERT, ["Long", "long@example.com"])
    assert long.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] is not None
    connect().execute(INSERT, ["Now", "now@example.com"])
    rows, position = read_all(reader, head)
    assert names(rows) == ["Now"]
    assert str(position.snapshot).count(",") >= 0 and not position.sees(
        int(long.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
    )
    long.commit()
    rows, _ = read_all(reader, position)
    assert names(rows) == ([] if kind == "unrelated" else ["Long"])


def test_a_rows_writes_come_in_write_order_across_batches(head, connect):
    """T1 takes its xid first and writes last; T2 (higher xid) writes the row and commits
    first. Read back in batches smaller than the backlog, the row's changes still come as
    written: T2's, then T1's (a step cut by txid would put T1's first)."""
    from livedata.demo.bookstore.models import Author

    pk = Author.objects.create(name="v0", email="row@example.com").pk
    start = log.head(connect())
    t1 = connect(autocommit=False)
    t1.execute("SELECT pg_current_xact_id()")
    for i in range(10):
        connect().execute(INSERT, [f"filler{i}", f"f{i}@example.com"])
    t2 = connect(autocommit=False)
    t2.execute("UPDATE livedata_demo_author SET name = 'by T2' WHERE id = %s", [pk])
    t2.commit()
    t1.execute("UPDATE livedata_demo_author SET name = 'by T1' WHERE id = %s", [pk])
    t1.commit()
    rows, _ = read_all(connect(), start, limit=3)
    assert [r.new["name"] for r in rows if r.pk == str(pk)] == ["by T2", "by T1"]
    assert len(rows) == 12


def test_savepoints(head, connect):
    """A rolled-back savepoint's rows never appear; a released one's do."""
    writer = connect(autocommit=False)
    writer.execute(INSERT, ["kept", "kept@example.com"])
    writer.execute("SAVEPOINT s1")
    writer.execute(INSERT, ["rolled back", "rb@example.com"])
    writer.execute("ROLLBACK TO SAVEPOINT s1")
    writer.execute("SAVEPOINT s2")
    writer.execute(INSERT, ["released", "rel@example.com"])
    writer.execute("RELEASE SAVEPOINT s2")
    writer.commit()
    assert names(read_all(connect(), head)[0]) == ["kept", "released"]


@pytest.fixture
def twophase(connect, db_params, tmp_path) -> Iterator[Callable[[], Any]]:
    """Connections to a database with prepared transactions enabled: the test database
    when its server allows them, else a throwaway embedded server configured for them."""
    if int(connect().execute("SHOW max_prepared_transactions").fetchone()[0]) > 0:
        yield connect
        return

    import psycopg

    from livedata.embedded.server import ensure_server

    server = ensure_server(tmp_path / "pgdata")
    try:
        with psycopg.connect(server.uri(), autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET max_prepared_transactions = 4")
        server.stop()
        server.start()
        private_database(server, "twophase")
        opened: list[Any] = []

        def _connect(autocommit: bool = True) -> Any:
            conn = psycopg.connect(server.uri("twophase"), autocommit=autocommit)
            opened.append(conn)
            return conn

        yield _connect
        for conn in opened:
            conn.close()
    finally:
        server.discard()


def test_a_prepared_transaction_in_flight(twophase):
    """2PC: a prepared transaction is in flight until COMMIT PREPARED; others go on, and
    it is delivered when it commits.

    Its log row is written directly: PostgreSQL refuses to PREPARE a transaction that sent
    a NOTIFY, which the capture triggers do (see the README's note on 2PC)."""
    connect = twophase
    start = log.head(connect())
    gid = f"livedata-test-{time.monotonic_ns()}"
    prepared = connect(autocommit=False)
    prepared.execute(
        "INSERT INTO livedata_change (model, table_name, op, pk, new) VALUES"
        " ('livedata_demo.author', 'livedata_demo_author', 'insert', '0',"
        ' \'{"name": "Prepared"}\')'
    )
    prepared.execute(f"PREPARE TRANSACTION '{gid}'")
    admin = connect()
    try:
        connect().execute(INSERT, ["Other", "o@example.com"])
        rows, position = read_all(connect(), start)
        assert names(rows) == ["Other"]
        assert read_all(connect(), position)[0] == []
    finally:
        admin.execute(f"COMMIT PREPARED '{gid}'")
    assert names(read_all(connect(), position)[0]) == ["Prepared"]


def test_a_huge_transaction_comes_in_bounded_batches(head, connect):
    """200,000 rows of one transaction: batches of at most `limit`, in id order, once each."""
    connect().execute(
        "INSERT INTO livedata_demo_author (name, email) "
        "SELECT 'bulk', 'bulk' || g || '@example.com' FROM generate_series(1, 200000) g"
    )
    connect().execute(INSERT, ["after", "after@example.com"])
    reader = connect()
    position, sizes, ids, last = head, [], [], None
    while True:
        batch = log.read_batch(reader, position, limit=5000)
        assert batch.start == position
        sizes.append(len(batch.rows))
        ids += [r.id for r in batch.rows]
        last = batch.rows[-1].new["name"] if batch.rows else last
        position = batch.end
        # a position inside the transaction resumes exactly, also from its text form
        position = Position.parse(str(position))
        if batch.caught_up:
            break
    assert max(sizes) <= 5000 and len(sizes) >= 40
    assert len(ids) == 200_001 and ids == sorted(set(ids))
    assert last == "after"


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
            position = head
            while True:
                done = stop.is_set()
                batch = log.read_batch(conn, position, limit=37)
                seen.extend(batch.rows)
                position = batch.end
                if done and batch.caught_up and not batch.rows:
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
                                "UPDATE livedata_demo_author SET name = name || '!'"
                                " WHERE email = %s",
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
            " WHERE NOT pg_visible_in_snapshot(txid, %s::pg_snapshot) ORDER BY txid, id",
            [str(head.snapshot)],
        )
        .fetchall()
    ]
    got = [(c.txid, c.id) for c in seen]
    assert len(got) == len(set(got)), "a change was delivered twice"
    assert sorted(got) == history
    # one row's changes in write order: within a row, ids only grow
    last: dict[str, int] = {}
    for c in seen:
        assert c.id > last.get(c.pk, 0)
        last[c.pk] = c.id
    total_rows = (
        connect()
        .execute("SELECT count(*) FROM livedata_demo_author WHERE email LIKE 'w%%'")
        .fetchone()[0]
    )
    assert sum(1 for c in seen if c.op == "insert") == total_rows
    # ids were assigned in one order and committed in another: the test exercised the trap
    ids = [c.id for c in seen]
    assert ids != sorted(ids)


def test_position_parsing():
    snap = Position.parse("812:815:812,813")
    assert snap == Position(Snapshot(812, 815, (812, 813)))
    assert str(snap) == "812:815:812,813"
    inside = Position.parse("812:815:812/812:820:812/4410")
    assert inside.until == Snapshot(812, 820, (812,)) and inside.last_id == 4410
    assert Position.parse(str(inside)) == inside
    # an old TXID:ID cursor: everything below 12, and 12's rows up to id 34
    old = Position.parse("12:34")
    assert old == Position(Snapshot(12, 12), Snapshot(13, 13), 34)
    assert old.sees(11) and not old.sees(12)
    for bad in [
        "",
        "12",
        "a:b",
        "12:-1",
        "5:3:",
        "3:5:9",
        "1:2:3/1:2:/x",
        "99999999999999999999999:1",
    ]:
        with pytest.raises(PositionError, match="invalid"):
            Position.parse(bad)


def test_an_old_cursor_resumes_exactly(head, connect):
    """``TXID:ID`` from livedata 0.1 (e.g. saved by a client) reads what came after it."""
    writer = connect(autocommit=False)
    writer.execute(INSERT, ["one", "1@example.com"])
    writer.execute(INSERT, ["two", "2@example.com"])
    writer.commit()
    connect().execute(INSERT, ["three", "3@example.com"])
    reader = connect()
    rows, _ = read_all(reader, head)
    first = rows[0]
    old = Position.parse(f"{first.txid}:{first.id}")
    assert names(read_all(reader, old)[0]) == ["two", "three"]


def test_head_and_models_filter(head, connect):
    from livedata.demo.bookstore.models import Author, Book

    a = Author.objects.create(name="H", email="h@example.com")
    Book.objects.create(title="T", author=a)
    conn = connect()
    rows = log.read(conn, head, models=["livedata_demo.Book"])
    assert [r.model for r in rows] == ["livedata_demo.book"]
    assert read_all(conn, log.head(conn))[0] == []


def age_marks(conn, days: int) -> None:
    conn.execute(f"UPDATE livedata_log_mark SET taken_at = taken_at - interval '{days} days'")


def test_prune_then_old_position_must_refetch(head, connect):
    from livedata.demo.bookstore.models import Author

    Author.objects.create(name="Old", email="old@example.com")
    reader = connect()
    settle(reader)  # nothing else in flight: the mark's xmin is past "Old"
    call_command("prune")  # records a mark: what had committed by now
    admin = connect()
    age_marks(admin, 40)
    Author.objects.create(name="New", email="new@example.com")
    call_command("prune")  # default retention: 30 days: the 40-day-old mark decides
    with pytest.raises(PositionExpired, match="refetch"):
        log.read(reader, head)
    # a reader at the horizon goes on normally
    assert names(read_all(reader, log.oldest(reader))[0]) == ["New"]


def test_prune_keeps_a_transaction_that_committed_after_the_cutoff(head, connect):
    """A transaction that wrote before the cutoff but committed after it is kept for
    readers that have not received it (rows' `at` would say it is old)."""
    from livedata.demo.bookstore.models import Author

    long = connect(autocommit=False)
    long.execute(INSERT, ["Late", "late@example.com"])
    Author.objects.create(name="Early", email="early@example.com")
    call_command("prune")  # a mark while "Late" is still open
    admin = connect()
    age_marks(admin, 40)
    admin.execute("UPDATE livedata_change SET at = at - interval '40 days'")
    long.commit()
    call_command("prune")
    reader = connect()
    # the mark saw neither as committed below its xmin (Late was in flight): both kept
    assert names(read_all(reader, head)[0]) == ["Late", "Early"] or names(
        read_all(reader, head)[0]
    ) == ["Early", "Late"]


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
