"""The audit context of DDP methods' writes: a real client calls methods of a real
``livedata serve``; each change-log row names the user, the method, the DDP session
and the client's address (``ddp_session.DDPSession._audit``), while a write made with
``psql`` meanwhile keeps its own (none)."""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from django.contrib.auth.models import User
from django.db import connection

from livedata.demo.bookstore.models import Author, Book
from livedata.models import Change
from tests.server.test_websocket import CONNECT, Client

pytestmark = pytest.mark.django_db(transaction=True)


def connected(server: str) -> tuple[Client, str]:
    client = Client(server)
    assert client.recv() == {"server_id": "0"}
    client.send(CONNECT)
    answer = client.recv()
    assert answer["msg"] == "connected"
    return client, answer["session"]


def result(client: Client, method_id: str, *args: object) -> object:
    got = client.call(method_id, *args)
    [found] = [m for m in got if m["msg"] == "result" and m["id"] == method_id]
    assert "error" not in found, found
    return found.get("result")


def psql(sql: str) -> None:
    """A write as an operator makes it: psql on the test database."""
    params = connection.get_connection_params()
    cmd = ["psql", "-h", params["host"], "-U", params["user"]]
    if params.get("port"):  # the embedded server has only its socket directory
        cmd += ["-p", str(params["port"])]
    subprocess.run([*cmd, "-d", params["dbname"], "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True)


def test_method_writes_carry_user_method_session_and_address(server):
    user = User.objects.create_user("ada", "ada@example.com", "ada-password")
    Author.objects.create(name="Ada", email="ada@example.com")
    ada, ada_session = connected(server)
    other, other_session = connected(server)
    try:
        # Meteor's login (an account method): its token row has the method's context,
        # the caller still anonymous when it ran
        digest = hashlib.sha256(b"ada-password").hexdigest()
        password = {"digest": digest, "algorithm": "sha-256"}
        result(ada, "1", "login", {"user": {"username": "ada"}, "password": password})
        [token] = Change.objects.filter(model="livedata.logintoken", op="insert")
        assert token.context == {
            "ddp_method": "login",
            "ddp_session": ada_session,
            "remote_addr": "127.0.0.1",
        }
        # a method of the project's, logged in
        pk = result(ada, "2", "test.addBook", "Analytical Engine", "ada@example.com")
        result(ada, "4", "test.addBookAsync", "Async Engine", "ada@example.com")
        # another session's anonymous write, and psql's, in between
        result(other, "3", "test.addBook", "Other", "ada@example.com")
        psql(
            "INSERT INTO livedata_demo_book (title, author_id) "
            "SELECT 'By psql', id FROM livedata_demo_author WHERE email = 'ada@example.com'"
        )
    finally:
        ada.close()
        other.close()
    contexts = {
        book.title: Change.objects.get(model="livedata_demo.book", object_pk=str(book.pk)).context
        for book in Book.objects.all()
    }
    assert contexts == {
        "Analytical Engine": {
            "user_id": user.pk,
            "username": "ada",
            "ddp_method": "test.addBook",
            "ddp_session": ada_session,
            "remote_addr": "127.0.0.1",
        },
        "Async Engine": {
            "user_id": user.pk,
            "username": "ada",
            "ddp_method": "test.addBookAsync",
            "ddp_session": ada_session,
            "remote_addr": "127.0.0.1",
        },
        "Other": {
            "ddp_method": "test.addBook",
            "ddp_session": other_session,
            "remote_addr": "127.0.0.1",
        },
        "By psql": None,
    }
    assert Book.objects.get(title="Analytical Engine").pk == int(pk)
