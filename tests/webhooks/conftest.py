"""Webhook test helpers: real HTTP receivers on 127.0.0.1, `livedata deliver` workers,
subscriptions owned by a user with view permissions."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from livedata.accounts import tokens
from tests.conftest import spawn_livedata


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """A real HTTP server; ``respond(request) -> (status, headers, body)`` decides each
    answer (default 204). ``requests`` holds every request received, in arrival order."""

    respond: Callable[[Received], tuple[int, dict[str, str], bytes]] | None = None
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self, port: int = 0) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                )
                receiver.requests.append(request)
                if receiver.delay:
                    time.sleep(receiver.delay)
                status, headers, out = (
                    receiver.respond(request) if receiver.respond else (204, {}, b"")
                )
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass

            do_POST = do_PUT

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.requests)} of {count} requests arrived: {self.requests[-3:]}"
            )
            time.sleep(0.02)
        return list(self.requests)

    def delivered(self) -> list[Received]:
        """Requests answered 2xx (with the default answer: all)."""
        return list(self.requests)


@pytest.fixture(autouse=True)
def demo_collections() -> Iterator[None]:
    """The demo's exposed Collections (other test modules register their own at import)."""
    from livedata.demo.bookstore.ddp import Author, Book
    from livedata.publish.publication import API

    saved = dict(API.collections)
    API.register([Book, Author])
    yield
    API.collections.clear()
    API.collections.update(saved)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        r = Receiver(**kwargs).start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def svc(transactional_db: None) -> User:
    """A service user who may view books and authors."""
    user = User.objects.create_user("svc", "svc@example.com", "svc-password")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="livedata_demo", codename__in=["view_book", "view_author"]
        )
    )
    return User.objects.get(pk=user.pk)


@pytest.fixture
def token(svc: User) -> str:
    return tokens.issue(svc, kind="api")[0]


@dataclass
class Worker:
    proc: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def stop(self, timeout: float = 20) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                out = self.proc.communicate(timeout=timeout)[0]
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out = self.proc.communicate()[0]
        else:
            out = self.proc.communicate()[0]
        print(f"--- livedata deliver output ---\n{out}")
        return out or ""

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def start_worker(transactional_db: None) -> Iterator[Callable[..., Worker]]:
    """Start ``livedata deliver`` processes on the test database (stopped afterwards)."""
    workers: list[Worker] = []

    def start(*args: str, settings: dict[str, Any] | None = None) -> Worker:
        env = {"LIVEDATA_SETTINGS": json.dumps(settings)} if settings else {}
        proc = spawn_livedata("deliver", *args, stderr=subprocess.STDOUT, **env)
        worker = Worker(proc)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def subscribe(owner: User, name: str, url: str, **body: Any) -> dict[str, Any]:
    """Create a subscription through the API (validated as a service's would be)."""
    from django.test import Client

    secret = tokens.issue(owner, kind="api")[0]
    response = Client().put(
        f"/livedata/subscriptions/{name}",
        json.dumps({"url": url, "models": ["livedata_demo.book"], **body}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code in (200, 201), response.json()
    return response.json()


def api_call(owner: User, method: str, path: str, body: Any = None) -> Any:
    from django.test import Client

    secret = tokens.issue(owner, kind="api")[0]
    kwargs: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    if body is not None:
        kwargs.update(data=json.dumps(body), content_type="application/json")
    return getattr(Client(), method.lower())(f"/livedata/subscriptions/{path}", **kwargs)
