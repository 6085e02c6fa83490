"""A login flood (real PBKDF2 cost) does not block other connections."""

from __future__ import annotations

import threading
import time

import pytest
from django.contrib.auth.models import User

from livedata.accounts.hashers import DigestPBKDF2PasswordHasher
from tests.accounts.test_ddp_login import connected, digest
from tests.server.conftest import _serve

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def real_hash_server(transactional_db):
    # no rate limits: every call reaches the hasher (the worst case they bound)
    yield from _serve("1", LIVEDATA_TEST_HASHER="real", LIVEDATA_SETTINGS='{"DDP_RATE_LIMITS": []}')


def test_login_flood_leaves_other_connections_responsive(real_hash_server):
    real = DigestPBKDF2PasswordHasher()  # Django's full cost, not the tests' fast one
    User.objects.create(username="demo", password=real.encode("demo-password", real.salt()))
    flooders = [connected(real_hash_server) for _ in range(8)]
    done: list[float] = []
    answered_logins: list[float] = []

    def flood(c, n: int) -> None:
        for i in range(n):
            c.call(str(i), "login", {"user": {"username": "demo"}, "password": digest("bad")})
            answered_logins.append(time.monotonic())
        done.append(time.monotonic())

    threads = [threading.Thread(target=flood, args=(c, 3)) for c in flooders]
    start = time.monotonic()
    for t in threads:
        t.start()
    # the flood is hashing now (24 checks at ~0.4 s on 2 threads): the marker is a first
    # answered login, so the check below cannot run before the flood has begun
    deadline = time.monotonic() + 30
    while not answered_logins:
        assert time.monotonic() < deadline, "no login of the flood was answered"
        time.sleep(0.01)
    other = connected(real_hash_server)
    t0 = time.monotonic()
    other.send({"msg": "ping", "id": "p"})
    assert other.recv() == {"msg": "pong", "id": "p"}
    assert other.call("1", "hello")[-1]["result"] == "hello world"
    answered = time.monotonic() - t0
    still_flooding = len(done) < len(threads)
    for t in threads:
        t.join(timeout=120)
    flood_time = time.monotonic() - start
    print(f"other connection answered in {answered:.3f} s; the flood took {flood_time:.1f} s")
    assert still_flooding, "the flood ended before the check: it proves nothing"
    assert answered < flood_time / 4
    for c in [*flooders, other]:
        c.close()
