"""HTTP Basic brute force (issue 19, finding 7), against a real ``livedata serve`` with
Django's real PBKDF2 cost.

Before: 40 concurrent wrong passwords all got 401, every one was hashed, and the hashes
held the threads, so a correct request of another user took 12 s. Now attempts are rate
limited per username and per address (429 with Retry-After, nothing hashed) and checked
on their own threads in turns across addresses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from django.contrib.auth.models import Permission, User

from livedata.accounts.hashers import DigestPBKDF2PasswordHasher
from tests.server.conftest import _serve

pytestmark = pytest.mark.django_db(transaction=True)

FLOOD = 40


@pytest.fixture
def real_hash_server(transactional_db: None) -> Iterator[str]:
    yield from _serve("1", LIVEDATA_TEST_HASHER="real")


def real_user(username: str, password: str) -> User:
    hasher = DigestPBKDF2PasswordHasher()  # Django's full cost, not the tests' fast one
    user = User.objects.create(username=username, password=hasher.encode(password, hasher.salt()))
    user.user_permissions.add(*Permission.objects.filter(codename="view_book"))
    return user


def client(server: str, address: str) -> httpx.Client:
    """An HTTP client whose requests come from ``address`` (any of 127/8 is loopback)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=f"http://{server}", transport=transport, timeout=120)


def test_a_flood_of_wrong_passwords_is_refused_and_delays_no_one(real_hash_server):
    real_user("victim", "victim-password")
    real_user("other", "other-password")
    responses: list[httpx.Response] = []
    start = threading.Barrier(FLOOD + 1)

    def attempt(i: int) -> None:
        with client(real_hash_server, "127.0.0.1") as http:
            start.wait()
            responses.append(http.get("/livedata/subscriptions/", auth=("victim", f"guess-{i}")))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(FLOOD)]
    for t in threads:
        t.start()
    start.wait()
    deadline = time.monotonic() + 60
    while not responses:  # the flood has reached the server
        assert time.monotonic() < deadline, "no answer to the flood"
        time.sleep(0.005)
    with client(real_hash_server, "127.0.0.2") as http:  # another user, another address
        t0 = time.monotonic()
        outstanding = FLOOD - len(responses)
        ok = http.get("/livedata/subscriptions/", auth=("other", "other-password"))
        answered = time.monotonic() - t0
    for t in threads:
        t.join(timeout=180)
    statuses = sorted(r.status_code for r in responses)
    print(f"correct request answered in {answered:.2f} s; flood: {statuses}")
    assert outstanding > 0, "the flood was over before the correct request: it proves nothing"
    assert ok.status_code == 200, ok.text
    assert answered < 2.0  # was 12 s: every wrong password hashed on the one sync thread
    assert len(responses) == FLOOD
    refused = [r for r in responses if r.status_code == 429]
    assert len(refused) >= FLOOD - 5, statuses  # 5 attempts per username per 10 s
    assert set(statuses) <= {401, 429}
    for r in refused:
        assert r.json()["error"] == "too-many-requests"
        assert 1 <= int(r.headers["Retry-After"]) <= 10
    # the flood's address is limited on every API, async ones too (the pull feed)
    with client(real_hash_server, "127.0.0.1") as http:
        pull = http.get(
            "/livedata/pull/livedata_demo.book", params={"offset": "-1"}, auth=("other", "x")
        )
    assert pull.status_code == 429 and "Retry-After" in pull.headers


def test_correct_passwords_use_no_budget_and_limits_are_per_username(real_hash_server):
    real_user("svc", "svc-password")
    with client(real_hash_server, "127.0.0.4") as http:
        feed = "/livedata/pull/livedata_demo.book"
        for _ in range(7):  # more than the limit, all correct: never refused
            ok = http.get(feed, params={"offset": "-1"}, auth=("svc", "svc-password"))
            assert ok.status_code == 200, ok.text
        wrong = [
            http.get(feed, params={"offset": "-1"}, auth=("svc", "nope")).status_code
            for _ in range(6)
        ]
        assert wrong == [401] * 5 + [429]
