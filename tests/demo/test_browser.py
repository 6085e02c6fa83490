"""The demo page in a real browser (headless Chromium): books appear and update live."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from livedata.demo.bookstore.models import Author, Book
from tests.server.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


class Browser:
    """Chromium driven over the DevTools protocol (no driver library needed)."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            pytest.fail("Chromium is required for the browser test: apt-get install chromium")
        port = free_port()
        self.proc = subprocess.Popen(
            [
                binary,
                *CHROMIUM_FLAGS,
                f"--remote-debugging-port={port}",
                f"--user-data-dir={tmp / 'chromium'}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Chromium did not start"
            time.sleep(0.2)
        self._cm = connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        self.ws = self._cm.__enter__()
        self._ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        message_id = next(self._ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == message_id:
                assert "error" not in reply, reply
                return reply["result"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)[
            "result"
        ].get("value")

    def wait_for(self, expression: str, timeout: float = 20):
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.1)
        return value

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.mark.parametrize("transport", ["websocket", "sockjs"])
def test_demo_page_shows_books_live(server, connect, tmp_path, transport):
    from django.contrib.auth.models import User

    User.objects.create_user("demo", "demo@example.com", "demo-password")
    janet = Author.objects.create(name="Janet Evanovich", email="janet@evanovich.com")
    Book.objects.create(title="One for the Money", author=janet)
    browser = Browser(tmp_path)
    try:
        browser.call("Page.enable")
        query = "?transport=sockjs" if transport == "sockjs" else ""
        browser.call("Page.navigate", url=f"http://{server}/{query}")
        browser.wait_for("document.getElementById('status').dataset.ready === '1'")
        text = "document.getElementById('books').innerText"
        assert "One for the Money — Janet Evanovich" in browser.wait_for(text)
        # a row written by another client (psql): no Django, no page reload
        connect().execute(
            "INSERT INTO livedata_demo_book (title, author_id) VALUES ('Two for the Dough', %s)",
            [janet.pk],
        )
        browser.wait_for(f"{text}.includes('Two for the Dough')")
        # the page's own form calls the DDP method addBook: logged in only (issue 19)
        add = (
            "document.querySelector('[name=title]').value = 'Three to Get Deadly';"
            "document.getElementById('add').requestSubmit()"
        )
        browser.evaluate(add)
        error = "document.getElementById('error').innerText"
        browser.wait_for(f"{error}.includes('You must be logged in')")
        assert not Book.objects.filter(title="Three to Get Deadly").exists()
        browser.evaluate(
            "document.querySelector('[name=email]').value = 'demo@example.com';"
            "document.querySelector('[name=password]').value = 'demo-password';"
            "document.getElementById('login').requestSubmit()"
        )
        browser.wait_for("document.getElementById('username').innerText === 'demo'")
        browser.evaluate(add)
        browser.wait_for(f"{text}.includes('Three to Get Deadly')")
        browser.wait_for(f"{error} === ''")
        assert Book.objects.filter(title="Three to Get Deadly").exists()
        assert "live" in browser.evaluate("document.getElementById('status').innerText")
        shot = browser.call("Page.captureScreenshot", format="png")["data"]
        (tmp_path / f"demo-{transport}.png").write_bytes(__import__("base64").b64decode(shot))
    finally:
        browser.close()


def test_demo_page_login_shows_the_users_own_books(server, tmp_path):
    from django.contrib.auth.models import User

    janet = Author.objects.create(name="Janet Evanovich", email="janet@evanovich.com")
    demo = User.objects.create_user("demo", "demo@example.com", "demo-password")
    Book.objects.create(title="Demo's pick", author=janet, added_by=demo)
    Book.objects.create(title="Someone else's", author=janet)
    browser = Browser(tmp_path)
    mine = "document.getElementById('mybooks').innerText"
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"http://{server}/")
        browser.wait_for("document.getElementById('status').dataset.ready === '1'")
        assert browser.evaluate(mine) == ""
        # a wrong password: Meteor's message, still logged out
        browser.evaluate(
            "document.querySelector('[name=email]').value = 'demo@example.com';"
            "document.querySelector('[name=password]').value = 'wrong';"
            "document.getElementById('login').requestSubmit()"
        )
        browser.wait_for("document.getElementById('login-error').innerText.includes('credentials')")
        browser.evaluate(
            "document.querySelector('[name=password]').value = 'demo-password';"
            "document.getElementById('login').requestSubmit()"
        )
        browser.wait_for("document.getElementById('username').innerText === 'demo'")
        browser.wait_for(f'{mine}.includes("Demo\'s pick")')
        assert "Someone else's" not in browser.evaluate(mine)
        # a book added while logged in is the user's
        browser.evaluate(
            "document.querySelector('[name=title]').value = 'Added by demo';"
            "document.getElementById('add').requestSubmit()"
        )
        browser.wait_for(f"{mine}.includes('Added by demo')")
        assert Book.objects.get(title="Added by demo").added_by_id == demo.pk
        # a reload resumes the login with the stored token
        browser.call("Page.reload")
        browser.wait_for("document.getElementById('username').innerText === 'demo'")
        browser.wait_for(f"{mine}.includes('Added by demo')")
        browser.evaluate("document.getElementById('logout').click()")
        browser.wait_for(f"{mine} === ''")
        browser.wait_for("!document.getElementById('login').hidden")
        shot = browser.call("Page.captureScreenshot", format="png")["data"]
        (tmp_path / "demo-login.png").write_bytes(__import__("base64").b64decode(shot))
    finally:
        browser.close()
