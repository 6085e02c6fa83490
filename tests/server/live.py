"""What the server tests check through a real DDP client, whatever serves it: subscribed to
``AllBooks``, a book inserted with plain SQL (as psql would, outside Django) reaches the
client live."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from livedata.demo.bookstore.models import Author, Book


def subscribe_all_books(c: Any, sub_id: str = "all") -> None:
    c.send({"msg": "sub", "id": sub_id, "name": "AllBooks", "params": []})
    c.until(lambda m: m["msg"] == "ready" and sub_id in m["subs"])


def insert_book(conn: psycopg.Connection) -> str:
    """Insert an author and a book with raw SQL; returns the book's title."""
    title = f"Live {uuid.uuid4().hex[:8]}"
    author = conn.execute(
        f"INSERT INTO {Author._meta.db_table} (name, email) VALUES (%s, %s) RETURNING id",
        ["SQL", f"{title.split()[1]}@example.com"],
    ).fetchone()[0]
    conn.execute(
        f"INSERT INTO {Book._meta.db_table} (title, author_id) VALUES (%s, %s)", [title, author]
    )
    return title


def wait_added(c: Any, title: str, timeout: float = 20) -> dict:
    """The ``added`` of the book titled ``title`` (fails after ``timeout`` s without it)."""
    return c.until(
        lambda m: m["msg"] == "added" and m.get("fields", {}).get("title") == title, timeout
    )[-1]


def connect_and_get_a_sql_insert(c: Any, connect: Any) -> None:
    """DDP ``connect`` over a freshly opened session ``c``, subscribe, insert with SQL
    through ``connect()`` (the ``connect`` fixture), and wait for the book to arrive."""
    c.send({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]})
    assert c.recv()["msg"] == "connected"
    subscribe_all_books(c)
    wait_added(c, insert_book(connect()))
