"""Every committed change of a captured table is recorded, however it was made."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction

import livedata
from livedata.demo.bookstore.models import Author, Book
from tests.testapp.models import Gadget, Note, Widget

pytestmark = pytest.mark.django_db(transaction=True)


def ops(rows):
    return [(r.model, r.op, r.pk) for r in rows]


def test_orm_save_update_delete(head, read_since):
    author = Author.objects.create(name="Janet", email="janet@evanovich.com")
    author.name = "Janet Evanovich"
    author.save()
    author.delete()
    rows = read_since(head)
    pk = str(author.pk) if author.pk else None
    assert [(r.op, r.model, r.table) for r in rows] == [
        ("insert", "livedata_demo.author", "livedata_demo_author"),
        ("update", "livedata_demo.author", "livedata_demo_author"),
        ("delete", "livedata_demo.author", "livedata_demo_author"),
    ]
    insert, update, delete = rows
    pk = insert.pk
    assert insert.new == {"id": int(pk), "name": "Janet", "email": "janet@evanovich.com"}
    assert insert.old is None and insert.changed is None
    assert update.old["name"] == "Janet" and update.new["name"] == "Janet Evanovich"
    assert update.changed == ["name"]
    assert delete.old["name"] == "Janet Evanovich" and delete.new is None
    assert insert.txid < update.txid < delete.txid  # autocommit: one transaction each


def test_bulk_create_queryset_update_and_delete(head, read_since):
    author = Author.objects.create(name="A", email="a@example.com")
    Book.objects.bulk_create([Book(title=f"t{i}", author=author) for i in range(50)])
    assert Book.objects.filter(title__startswith="t1").update(title="x") == 11
    Book.objects.filter(author=author).delete()
    rows = read_since(head, models=["livedata_demo.book"])
    assert [r.op for r in rows] == ["insert"] * 50 + ["update"] * 11 + ["delete"] * 50
    assert len({r.txid for r in rows[:50]}) == 1  # one bulk statement, one transaction
    assert all(r.changed == ["title"] for r in rows[50:61])


def test_raw_sql_from_another_connection(head, read_since, connect):
    """Writes that bypass Django entirely (psql, another service) are captured too."""
    other = connect()
    other.execute(
        "INSERT INTO livedata_demo_author (name, email) VALUES ('Raw', 'raw@example.com')"
    )
    other.execute("UPDATE livedata_demo_author SET name = 'Raw 2' WHERE email = 'raw@example.com'")
    other.execute("DELETE FROM livedata_demo_author WHERE email = 'raw@example.com'")
    assert [r.op for r in read_since(head)] == ["insert", "update", "delete"]
    assert read_since(head)[0].context is None


def test_truncate_is_its_own_event(head, read_since, connect):
    Widget.objects.create(code="w1")
    connect().execute("TRUNCATE testapp_widget")
    rows = read_since(head, models=["testapp.widget"])
    assert [(r.op, r.pk) for r in rows] == [("insert", "w1"), ("truncate", None)]


def test_rolled_back_transaction_records_nothing(head, read_since, connect):
    with pytest.raises(RuntimeError), transaction.atomic():
        Author.objects.create(name="Ghost", email="ghost@example.com")
        raise RuntimeError("roll back")
    conn = connect(autocommit=False)
    conn.execute("INSERT INTO livedata_demo_author (name, email) VALUES ('G2', 'g2@example.com')")
    conn.rollback()
    # a rolled-back savepoint inside a committed transaction records nothing either
    with transaction.atomic():
        Author.objects.create(name="Kept", email="kept@example.com")
        try:
            with transaction.atomic():
                Author.objects.create(name="Undone", email="undone@example.com")
                raise RuntimeError
        except RuntimeError:
            pass
    rows = read_since(head)
    assert [(r.op, r.new["name"]) for r in rows] == [("insert", "Kept")]


def test_noop_update_is_not_recorded(head, read_since):
    author = Author.objects.create(name="Same", email="same@example.com")
    Author.objects.filter(pk=author.pk).update(name="Same")
    author.save()  # saves identical values
    assert [r.op for r in read_since(head)] == ["insert"]


def test_primary_key_change_is_delete_then_insert(head, read_since, connect):
    Widget.objects.create(code="old")
    connect().execute("UPDATE testapp_widget SET code = 'new' WHERE code = 'old'")
    rows = read_since(head, models=["testapp.widget"])
    assert [(r.op, r.pk) for r in rows] == [("insert", "old"), ("delete", "old"), ("insert", "new")]


def test_non_integer_keys_json_and_decimal_values(head, read_since):
    w = Widget.objects.create(code="k-1", data={"tags": ["a", "b"], "n": 1}, price=Decimal("9.99"))
    w.data = {"tags": ["a"], "n": 1}
    w.save()
    g = Gadget.objects.create(name="settings-declared")
    rows = read_since(head)
    assert rows[0].new == {"code": "k-1", "data": {"tags": ["a", "b"], "n": 1}, "price": 9.99}
    assert rows[1].changed == ["data"]
    assert (rows[2].model, rows[2].pk) == ("testapp.gadget", str(g.pk))


def test_uncaptured_model_is_not_recorded(head, read_since):
    Note.objects.create(text="private")
    assert read_since(head) == []


def test_one_transaction_reads_as_one_block_in_order(head, read_since):
    with transaction.atomic():
        a = Author.objects.create(name="Order", email="order@example.com")
        Book.objects.create(title="first", author=a)
        Book.objects.create(title="second", author=a)
    rows = read_since(head)
    assert len({r.txid for r in rows}) == 1
    assert [r.model for r in rows] == [
        "livedata_demo.author",
        "livedata_demo.book",
        "livedata_demo.book",
    ]
    assert [r.id for r in rows] == sorted(r.id for r in rows)


def test_context_manager_stamps_scripts(head, read_since):
    with livedata.context(task="import", batch=7):
        Author.objects.create(name="Ctx", email="ctx@example.com")
        with livedata.context(step="inner"):
            Author.objects.filter(email="ctx@example.com").update(name="Ctx2")
    Author.objects.filter(email="ctx@example.com").delete()
    rows = read_since(head)
    assert rows[0].context == {"task": "import", "batch": 7}
    assert rows[1].context == {"task": "import", "batch": 7, "step": "inner"}
    assert rows[2].context is None


def test_context_inside_atomic_and_with_bulk_and_raw_cursor(head, read_since):
    with livedata.context(job="bulk"), transaction.atomic():
        a = Author.objects.create(name="B", email="b@example.com")
        Book.objects.bulk_create([Book(title="x", author=a), Book(title="y", author=a)])
        with connection.cursor() as cur:
            cur.execute(
                "UPDATE livedata_demo_book SET title = %s WHERE title = %s", ["100% x", "x"]
            )
            cur.executemany(
                "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s)",
                [("m1", a.pk), ("m2", a.pk)],
            )
    rows = read_since(head)
    assert len(rows) == 6
    assert all(r.context == {"job": "bulk"} for r in rows)
    assert rows[3].new["title"] == "100% x"


def test_context_decorator_sync_and_async(head, read_since):
    import asyncio

    from asgiref.sync import sync_to_async

    @livedata.context(worker="sync")
    def sync_job():
        Author.objects.create(name="S", email="s@example.com")

    @livedata.context(worker="async")
    async def async_job():
        await Author.objects.acreate(name="A", email="as@example.com")
        await sync_to_async(lambda: connection.close())()  # the ORM worker thread's

    sync_job()
    asyncio.run(async_job())
    assert [r.context for r in read_since(head)] == [{"worker": "sync"}, {"worker": "async"}]


def test_a_big_update_after_small_ones_on_one_connection_stays_linear(head, read_since, connect):
    """Guard against a plan cached for a 1-row update making a 5,000-row update quadratic
    (it took minutes with the statement-level update trigger; here it must fit in 5 s)."""
    conn = connect()
    conn.execute("INSERT INTO livedata_demo_author (name, email) VALUES ('one', 'one@example.com')")
    conn.execute(
        "INSERT INTO livedata_demo_author (name, email)"
        " SELECT 'n' || i, 'n' || i || '@example.com' FROM generate_series(1, 5000) i"
    )
    conn.execute("UPDATE livedata_demo_author SET name = 'one!' WHERE email = 'one@example.com'")
    conn.execute("SET statement_timeout = '5s'")
    conn.execute("UPDATE livedata_demo_author SET name = name || '?' WHERE name LIKE 'n%'")
    rows = read_since(head)
    assert sum(1 for r in rows if r.op == "update") == 5001
    assert all(r.changed == ["name"] for r in rows if r.op == "update")
