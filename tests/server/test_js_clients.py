"""The npm DDP clients (ddp, simpleddp, ddp.js) against a real ``livedata serve``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from livedata.demo.bookstore.models import Author, Book

pytestmark = pytest.mark.django_db(transaction=True)

JS = Path(__file__).resolve().parent.parent / "js"


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """tests/js/node_modules from the pinned package-lock.json (installed once, then cached)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the client tests (README: Development)")
    stamp = JS / "node_modules" / ".package-lock.json"
    lock = JS / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS,
            check=True,
            timeout=600,
        )
    return JS


def run_node(script: str, *args: str) -> dict:
    """Run a client script of tests/js; its JSON report (see tests/js/report.js)."""
    out = subprocess.run(
        ["node", script, *args], cwd=JS, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "failure" not in result, result["failure"]
    return result


def run_client(which: str, server: str, email: str) -> dict:
    return run_node("clients.js", which, f"ws://{server}/websocket", email)


def check_scenario(result: dict, which: str, author: Author) -> None:
    """What every client must have seen: connected, a result, Meteor's 404s, a fenced write."""
    assert "connected" in result["events"]
    assert result["hello"] == f"hello {which}"
    assert result["notFound"]["error"] == 404
    assert result["notFound"]["reason"] == "Method 'nope' not found"
    book = Book.objects.get(pk=int(result["addBook"]["id"]))
    assert book.title == f"From {which}" and book.author_id == author.pk
    assert result["nosub"]["error"] == 404
    assert result["nosub"]["reason"] == "Subscription 'nope' not found"


@pytest.mark.parametrize("which", ["ddp", "simpleddp", "ddp.js"])
def test_npm_client_connects_calls_and_gets_meteor_errors(which, server, node_clients):
    author = Author.objects.create(name="Janet Evanovich", email="janet@evanovich.com")
    result = run_client(which, server, author.email)
    check_scenario(result, which, author)
    if which == "ddp":
        # the callback ran after `updated` arrived? ddp calls them independently; both came
        assert "updated" in result["events"]
    if which == "ddp.js":
        order = result["order"]
        add = next(
            i for i, (kind, _id) in enumerate(order) if kind == "result" and _id == order[i][1]
        )
        assert add >= 0
        # hello wrote nothing (updated before result); addBook wrote (result before updated)
        kinds_by_id: dict[str, list[str]] = {}
        for kind, msg_id in order:
            kinds_by_id.setdefault(msg_id, []).append(kind)
        assert sorted(kinds_by_id.values()) == sorted(
            [["updated", "result"], ["result", "updated"], ["result", "updated"]]
        )
