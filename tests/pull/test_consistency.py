"""The hand-over argument of ``livedata.pull``, step by step, with real transactions that
commit out of order (deterministic; the randomized version is test_mirror.py)."""

from __future__ import annotations

import time

from livedata.demo.bookstore.models import Book
from tests.conftest import settle
from tests.pull.conftest import follow, state_of
from tests.pull.test_feed import books


def _xid(conn) -> None:
    """Give ``conn``'s open transaction an xid now (it starts before the others)."""
    conn.execute("SELECT pg_current_xact_id()")


def test_one_rows_changes_arrive_in_write_order(feed, author, connect):
    """T1 takes its xid first, T2 updates the row and commits, then T1 updates it: the
    feed has T2's change first (it committed first), then T1's; livedata 0.1's (txid, id)
    order had them the other way round and had to skip T2's as stale."""
    pk = Book.objects.create(title="A", author_id=author).pk
    _, handle, offset = follow(feed)
    t1, t2 = connect(autocommit=False), connect(autocommit=False)
    _xid(t1)
    t2.execute("UPDATE livedata_demo_book SET title = 'B' WHERE id = %s", [pk])
    t2.commit()
    t1.execute("UPDATE livedata_demo_book SET title = 'C' WHERE id = %s", [pk])
    t1.commit()
    settle(connect())
    changes = feed(offset=offset, handle=handle).json()
    got = [(m["op"], m["value"]["title"]) for m in changes if "op" in m]
    assert got == [("update", "B"), ("update", "C")]
    assert books()[str(pk)]["title"] == "C"


def test_filtered_row_leaves_when_its_last_change_comes_first(feed, author, connect):
    """Filter title__startswith=A. The row is "A1"; T2 renames it "B" (it leaves) and
    commits; T1 (older xid) renames it "C". T2's change says delete; T1's matches neither
    before nor after and says nothing."""
    pk = Book.objects.create(title="A1", author_id=author).pk
    messages, handle, offset = follow(feed, title__startswith="A")
    assert state_of(messages) == books()
    t1, t2 = connect(autocommit=False), connect(autocommit=False)
    _xid(t1)
    t2.execute("UPDATE livedata_demo_book SET title = 'B' WHERE id = %s", [pk])
    t2.commit()
    t1.execute("UPDATE livedata_demo_book SET title = 'C' WHERE id = %s", [pk])
    t1.commit()
    settle(connect())
    changes = feed(offset=offset, handle=handle, title__startswith="A").json()
    assert [(m["op"], m["pk"]) for m in changes if "op" in m] == [("delete", str(pk))]
    assert state_of(changes, state_of(messages)) == {}


def test_snapshot_pages_show_the_table_at_the_first_snapshot(feed, author, connect):
    """Pages read after rows changed (committed, and a transaction open at the first
    page's snapshot committing later) still show the first snapshot; the changes then
    bring exactly what came after it."""
    Book.objects.bulk_create([Book(title=f"r{i:02}", author_id=author) for i in range(30)])
    ids = sorted(Book.objects.values_list("pk", flat=True))
    open_tx = connect(autocommit=False)
    open_tx.execute("UPDATE livedata_demo_book SET title = 'in flight' WHERE id = %s", [ids[25]])
    expected = books()
    expected[str(ids[25])]["title"] = "r25"  # not committed at the first snapshot

    first = feed(offset="-1", limit=10)
    handle = first.headers["Livedata-Handle"]
    snapshot = list(first.json())

    db = connect()
    db.execute("UPDATE livedata_demo_book SET title = 'later' WHERE id = %s", [ids[15]])
    db.execute("DELETE FROM livedata_demo_book WHERE id = %s", [ids[12]])
    db.execute("DELETE FROM livedata_demo_book WHERE id = %s", [ids[29]])
    db.execute("INSERT INTO livedata_demo_book (title, author_id) VALUES ('new', %s)", [author])
    db.execute("UPDATE livedata_demo_book SET title = 'twice' WHERE id = %s", [ids[20]])
    db.execute("UPDATE livedata_demo_book SET title = 'thrice' WHERE id = %s", [ids[20]])
    open_tx.commit()

    offset = first.headers["Livedata-Offset"]
    while offset.startswith("s"):  # snapshot offsets start with "s"
        response = feed(offset=offset, handle=handle, limit=10)
        assert response.status_code == 200, response.text
        assert response.headers["Livedata-Phase"] == "snapshot"
        offset = response.headers["Livedata-Offset"]
        snapshot += response.json()
    assert state_of(snapshot) == expected
    assert len(snapshot) == len({m["pk"] for m in snapshot}) == 30  # each row once

    settle(db)
    time.sleep(0.1)
    changes = []
    while True:
        response = feed(offset=offset, handle=handle, limit=3)
        changes += response.json()
        offset = response.headers["Livedata-Offset"]
        if "Livedata-Up-To-Date" in response.headers:
            break
    assert state_of(changes, state_of(snapshot)) == books()
    ops = [m["op"] for m in changes if "op" in m]
    assert sorted(ops) == ["delete", "delete", "insert", "update", "update", "update", "update"]
