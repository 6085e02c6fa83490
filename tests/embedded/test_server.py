"""The embedded PostgreSQL: persistent, and safe to start twice or from several processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from livedata.embedded.server import ensure_server

CLIENT = textwrap.dedent(
    """
    import sys, time, psycopg
    from livedata.embedded.server import ensure_server
    server = ensure_server(sys.argv[1])
    server.ensure_database("shared")
    with psycopg.connect(server.uri("shared")) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(1)")  # CREATE IF NOT EXISTS races
        conn.execute("CREATE TABLE IF NOT EXISTS hits (who text)")
        conn.execute("INSERT INTO hits VALUES (%s)", [sys.argv[2]])
    time.sleep(float(sys.argv[3]))
    print("ok")
    """
)


def start_clients(data_dir, names, hold):
    return [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(data_dir), name, str(hold)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]


def test_concurrent_starts_share_one_server_and_data_persists(tmp_path):
    data_dir = tmp_path / "pgdata"
    # three processes start the same (not yet initialised) server at the same moment
    procs = start_clients(data_dir, ["a", "b", "c"], hold=1.0)
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    # the last process to leave stopped the server; starting again finds the data
    [proc] = start_clients(data_dir, ["d"], hold=0)
    assert proc.communicate(timeout=120)[0].strip() == "ok"
    server = ensure_server(data_dir)
    try:
        import psycopg

        with psycopg.connect(server.uri("shared")) as conn:
            rows = conn.execute("SELECT who FROM hits ORDER BY who").fetchall()
        assert [r[0] for r in rows] == ["a", "b", "c", "d"]
        assert ensure_server(data_dir) is server  # starting twice in one process: same server
    finally:
        server.discard()


def test_a_killed_process_does_not_keep_the_server_forever(tmp_path):
    data_dir = tmp_path / "pgdata"
    [proc] = start_clients(data_dir, ["x"], hold=60)
    import json
    import time

    handles = data_dir / ".handle_pids.json"
    deadline = time.monotonic() + 60
    while not (handles.exists() and proc.pid in json.loads(handles.read_text() or "[]")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    server = ensure_server(data_dir)  # forgets the dead pid while joining
    try:
        assert json.loads(handles.read_text()) == [__import__("os").getpid()]
    finally:
        server.discard()
