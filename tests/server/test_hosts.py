"""Several hosts: HAProxy, configured as the README's "Deployment: several hosts" shows
(bench/haproxy.py makes both), in front of 4 ``livedata serve`` processes, each on a test
host of its own: a network namespace joined to a bridge of the root namespace by a veth
pair, made here with ``ip netns`` and removed at the end, even on failure. PostgreSQL
(a throwaway cluster of this test's) and Redis (the broker, ``LISTENER_BROKER_URL``)
listen on the bridge's address, as a database host and a broker host would.

Where namespaces cannot be made (no permission), the same deployment runs on separate
ports of 127.0.0.1, and the test says so in its output.

Which process served a request: HAProxy names it (``X-Livedata-Server``), and the
process itself says its pid (the test app's ``test.pid`` method) over the same session.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from bench import haproxy
from websockets.exceptions import ConnectionClosed

from livedata.management.commands.status import LEADER_SQL
from tests.capture.redis_server import RedisServer, wait_for
from tests.conftest import CHILD_PYTHONPATH, ROOT, livedata_cmd
from tests.server.conftest import free_port
from tests.server.test_sockjs import XhrPolling, open_session
from tests.server.test_websocket import CONNECT, Client

HOSTS = 4
DBNAME = "livedata_hosts"
SERVED_BY = "X-Livedata-Server"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


class Network:
    """``HOSTS`` test hosts on a bridge (``host`` is the root namespace's address on it),
    or, when namespaces cannot be made, all of them on 127.0.0.1."""

    def __init__(self) -> None:
        tag = str(os.getpid() % 100_000)
        self.bridge = f"ldbr{tag}"
        self.namespaces = [f"livedata-{tag}-{i}" for i in range(HOSTS)]
        self.made: list[str] = []
        try:
            # a /24 of 10.0.0.0/8 that no interface of this machine uses
            used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
            third = int(tag) % 250
            while f"10.213.{third}." in used:
                third = (third + 1) % 250
            self.host = f"10.213.{third}.1"
            self.addresses = [f"10.213.{third}.{11 + i}" for i in range(HOSTS)]
            self._make()
            self.fallback = ""
        except (OSError, subprocess.CalledProcessError) as exc:
            self.close()
            reason = getattr(exc, "stderr", "") or str(exc)
            self.fallback = f"network namespaces unavailable ({reason.strip()})"
            self.host, self.addresses, self.namespaces = "127.0.0.1", ["127.0.0.1"] * HOSTS, []
            print(f"FALLBACK: {self.fallback}: separate ports on 127.0.0.1", flush=True)

    def _make(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        self.made.append(self.bridge)
        ip("addr", "add", f"{self.host}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i, (ns, address) in enumerate(zip(self.namespaces, self.addresses, strict=True)):
            ip("netns", "add", ns)
            self.made.append(ns)
            outside, inside = f"{self.bridge}h{i}", f"{self.bridge}n{i}"
            ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
            ip("link", "set", outside, "master", self.bridge, "up")
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
            ip("-n", ns, "link", "set", inside, "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def run_on(self, i: int, cmd: list[str]) -> list[str]:
        """``cmd`` run on host ``i`` (``ip netns exec`` execs it: the pid is ``cmd``'s)."""
        return ["ip", "netns", "exec", self.namespaces[i], *cmd] if self.namespaces else cmd

    def close(self) -> None:
        """Remove what was made."""
        for name in reversed(self.made):
            if name != self.bridge:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        if self.bridge in self.made:  # and the veths' outer ends, should any be left
            for name in [*(f"{self.bridge}h{i}" for i in range(HOSTS)), self.bridge]:
                subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10)
        self.made.clear()


class Postgres:
    """A throwaway PostgreSQL cluster listening on ``host`` only, trusting its subnet."""

    def __init__(self, host: str) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            pytest.fail("PostgreSQL's initdb is missing: apt-get install postgresql")
        self.bin = Path(bins[-1]).parent
        self.host, self.port = host, free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="livedata-hosts-pg-"))
        self.data = self.dir / "data"
        # initdb refuses root: the cluster belongs to postgres
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self.url = f"postgresql://postgres@{host}:{self.port}/{DBNAME}"

    def pg_ctl(self, *args: str) -> None:
        cmd = [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
        subprocess.run([*self.as_user, *initdb, "--no-sync"], check=True, capture_output=True)
        subnet = self.host.rsplit(".", 1)[0] + ".0/24"
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {subnet} trust\n")
        options = f"-c listen_addresses={self.host} -p {self.port} -k {self.dir} -c fsync=off"
        self.pg_ctl("-w", "-l", str(self.dir / "log"), "-o", options, "start")
        with psycopg.connect(self.url.replace(DBNAME, "postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DBNAME}")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def psql(db: Postgres, sql: str) -> None:
    """A change made as an operator would make it: psql on the database host."""
    cmd = ["psql", "-h", db.host, "-p", str(db.port), "-U", "postgres", "-d", DBNAME]
    subprocess.run([*cmd, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, timeout=30)


def add_book(db: Postgres, title: str) -> None:
    psql(
        db,
        "WITH a AS (INSERT INTO livedata_demo_author (name, email) "
        f"VALUES ('{title}', '{title}@example.org') RETURNING id) "
        f"INSERT INTO livedata_demo_book (title, author_id) SELECT '{title}', id FROM a",
    )


class Deployment:
    """The 4 serve processes (``procs[i]`` on ``addresses[i]``) and HAProxy on 127.0.0.1."""

    def __init__(self, net: Network, db: Postgres, broker: RedisServer, work: Path) -> None:
        self.net, self.work = net, work
        # PGAPPNAME would rename the sessions leader() tells the processes apart by
        ignored = ("LIVEDATA_DB_NAME", "LIVEDATA_PGDATA", "LIVEDATA_TEST_OVERRIDES", "PGAPPNAME")
        self.env = {k: v for k, v in os.environ.items() if k not in ignored}
        self.env.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            PYTHONPATH=CHILD_PYTHONPATH,
            PYTHONUNBUFFERED="1",
            DATABASE_URL=db.url,
            LIVEDATA_SETTINGS=json.dumps(
                {"LISTENER_BROKER_URL": broker.url, "HTTP_FORWARDED_ALLOW_IPS": [net.host]}
            ),
        )
        # on their own hosts every process has the same port, as in production
        port = free_port()
        self.servers = [f"{a}:{port if net.namespaces else free_port()}" for a in net.addresses]
        self.procs: list[subprocess.Popen] = []  # close() stops what start() started
        self.haproxy: subprocess.Popen | None = None

    def start(self, binary: str) -> None:
        subprocess.run(livedata_cmd("migrate", "-v0"), env=self.env, check=True, cwd=ROOT)
        for i in range(HOSTS):
            self.procs.append(self._serve(i))
        self.haproxy_port = free_port()
        work = self.work
        config = work / "haproxy.cfg"
        config.write_text(haproxy.config(f"127.0.0.1:{self.haproxy_port}", self.servers))
        self.haproxy = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            stdout=(work / "haproxy.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self._listening(f"127.0.0.1:{self.haproxy_port}"), 20, "HAProxy")
        self.balancer = f"127.0.0.1:{self.haproxy_port}"

    def _serve(self, i: int) -> subprocess.Popen:
        host, port = self.servers[i].split(":")
        cmd = livedata_cmd("serve", "--host", host, "--port", port, "--log-level", "warning")
        log = (self.work / f"serve{i}.log").open("w")
        proc = subprocess.Popen(
            self.net.run_on(i, cmd), env=self.env, stdout=log, stderr=log, cwd=ROOT
        )
        wait_for(lambda: self._listening(self.servers[i]) or proc.poll() is not None, 60, "serve")
        assert proc.poll() is None, (self.work / f"serve{i}.log").read_text()
        return proc

    @staticmethod
    def _listening(address: str) -> bool:
        host, port = address.split(":")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 1):
            return True
        return False

    def leader(self, db: Postgres) -> int | None:
        """The pid of the serve process holding the leader's lock (from its session's
        ``application_name``, ``livedata listener HOST:PID``), if one does."""
        with psycopg.connect(db.url, autocommit=True) as conn:
            held = conn.execute(LEADER_SQL, ["livedata"]).fetchall()
        return int(held[0][0].rsplit(":", 1)[1]) if len(held) == 1 else None

    def close(self) -> None:
        procs = [p for p in [*self.procs, self.haproxy] if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in sorted(self.work.glob("*.log")):
            print(f"--- {log.name} ---\n{log.read_text()[-3000:]}")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[Deployment, Postgres]]:
    binary = haproxy.binary()
    if binary is None:
        pytest.fail("haproxy is missing and could not be installed: apt-get install haproxy")
    with contextlib.ExitStack() as stack:
        net = Network()
        stack.callback(net.close)  # last: after every process in it is gone
        db = Postgres(net.host)
        stack.callback(db.stop)
        db.start()
        broker = RedisServer(tmp_path, host=net.host)
        stack.callback(broker.stop)
        broker.start()
        deploy = Deployment(net, db, broker, tmp_path)
        stack.callback(deploy.close)
        deploy.start(binary)
        yield deploy, db


def served_by(deploy: Deployment, name: str, pid: int) -> int:
    """The index of server ``name`` (as HAProxy named it), checked against the pid that
    the process itself gave over the same session."""
    index = int(name.removeprefix("s"))
    assert deploy.procs[index].pid == pid, f"HAProxy says {name}, the process says pid {pid}"
    return index


def whoami(client: Client | XhrPolling) -> int:
    [result] = [m for m in client.call("pid", "test.pid") if m["msg"] == "result"]
    return result["result"]


def ddp_client(deploy: Deployment) -> tuple[Client, int]:
    """A DDP client through HAProxy, subscribed to AllBooks; the server it reached."""
    client = Client(deploy.balancer)
    assert client.recv() == {"server_id": "0"}
    client.send(CONNECT)
    assert client.recv()["msg"] == "connected"
    index = served_by(deploy, client.ws.response.headers[SERVED_BY], whoami(client))
    client.send({"msg": "sub", "id": "all", "name": "AllBooks", "params": []})
    client.until(lambda m: m["msg"] == "ready")
    return client, index


def sees(client: Client | XhrPolling, title: str) -> None:
    client.until(
        lambda m: m.get("collection") == "livedata_demo.book" and m["fields"]["title"] == title,
        timeout=15,
    )


class TrackedPolling(XhrPolling):
    """xhr-polling that records which server HAProxy sent each request to."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.served: list[str] = []

    def request(self, method: str, path: str, body: str = "", timeout: float = 10):
        response, data = super().request(method, path, body, timeout)
        self.served.append(response.getheader(SERVED_BY))
        return response, data


def sockjs_session(deploy: Deployment) -> tuple[TrackedPolling, int]:
    session = open_session(deploy.balancer, TrackedPolling)
    session.send(CONNECT)
    assert session.recv()["msg"] == "connected"
    index = served_by(deploy, session.served[-1], whoami(session))
    session.send({"msg": "sub", "id": "all", "name": "AllBooks", "params": []})
    session.until(lambda m: m["msg"] == "ready")
    return session, index


def test_haproxy_in_front_of_four_hosts_with_sticky_sockjs_and_a_killed_leader(deployment):
    deploy, db = deployment
    print(f"hosts: {deploy.servers} behind HAProxy at {deploy.balancer}")
    # one raw WebSocket client on each host (round-robin), at most 3 tries each
    clients: dict[int, Client] = {}
    for _ in range(3 * HOSTS):
        client, index = ddp_client(deploy)
        if index in clients:
            client.close()
        clients[index] = clients.get(index, client)
        if len(clients) == HOSTS:
            break
    assert sorted(clients) == list(range(HOSTS)), "round-robin left a host without a client"
    session, sockjs_host = sockjs_session(deploy)
    wait_for(lambda: deploy.leader(db) is not None, 10, "one leader")
    pids = [p.pid for p in deploy.procs]
    assert deploy.leader(db) in pids

    add_book(db, "Dune")
    for client in clients.values():
        sees(client, "Dune")
    sees(session, "Dune")
    # a method's write names the client (127.0.0.1, from HAProxy's X-Forwarded-For), not
    # HAProxy's address on the bridge
    clients[0].call("w", "test.addBook", "Via HAProxy", "Dune@example.org")
    with psycopg.connect(db.url, autocommit=True) as conn:
        [(address,)] = conn.execute(
            "SELECT context->>'remote_addr' FROM livedata_change "
            "WHERE model = 'livedata_demo.book' AND new->>'title' = 'Via HAProxy'"
        ).fetchall()
    assert address == "127.0.0.1"
    # every request of the SockJS session went to one process: the one that answered
    # test.pid and holds the subscription
    assert len(session.served) > 5 and set(session.served) == {f"s{sockjs_host}"}

    # SIGKILL the leader's process: its clients come back through HAProxy to the others
    killed = pids.index(deploy.leader(db))
    os.kill(pids[killed], signal.SIGKILL)
    deploy.procs[killed].wait(timeout=10)
    with pytest.raises(ConnectionClosed):
        clients[killed].recv(timeout=10)
    clients[killed].close()
    survivors = [pids[i] for i in range(HOSTS) if i != killed]
    wait_for(lambda: deploy.leader(db) in survivors, 10, "another process to lead")
    clients[killed], index = ddp_client(deploy)
    assert index != killed
    if sockjs_host == killed:
        session, sockjs_host = sockjs_session(deploy)
        assert sockjs_host != killed

    add_book(db, "Emma")
    for client in clients.values():
        sees(client, "Emma")
    sees(session, "Emma")
    assert set(session.served) == {f"s{sockjs_host}"}
    for client in clients.values():
        client.close()
    session.close()
    assert deploy.procs[killed].returncode == -signal.SIGKILL
    print(f"killed s{killed}, the leader; the other 3 served on")


def test_the_readme_shows_the_configuration_the_test_runs() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Deployment: several hosts") :]
    block = section[section.index("```haproxy\n") + len("```haproxy\n") :]
    block = block[: block.index("```")]
    assert block == haproxy.config(haproxy.EXAMPLE_BIND, haproxy.EXAMPLE_SERVERS)
