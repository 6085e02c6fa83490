"""The demo's example subscriber receives signed PUTs for changes made with raw SQL."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import spawn_livedata
from tests.server.conftest import free_port, wait_listening

pytestmark = pytest.mark.django_db(transaction=True)


def test_example_receiver_gets_raw_sql_changes(connect) -> None:
    port = free_port()
    proc = spawn_livedata("demo", "--port", str(port), "--no-input", stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc)
        db = connect()
        author = db.execute("SELECT id FROM livedata_demo_author ORDER BY id LIMIT 1").fetchone()[0]
        db.execute(
            "INSERT INTO livedata_demo_book (title, author_id) VALUES ('Raw SQL', %s)", [author]
        )
        deadline = time.monotonic() + 30
        while True:
            url = f"http://127.0.0.1:{port}/example-receiver/"
            with urllib.request.urlopen(url, timeout=5) as page:
                received = json.load(page)["received"]
            found = [e for e in received if (e["data"]["new"] or {}).get("title") == "Raw SQL"]
            if found:
                break
            assert time.monotonic() < deadline, received
            time.sleep(0.2)
        event = found[0]
        assert event["type"] == "livedata_demo.book.insert"
        assert event["webhook_id"].startswith("msg_")
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert "example-receiver" in out
