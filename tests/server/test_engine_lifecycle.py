"""Sessions and observers in one process: sharing, and memory back to baseline."""

from __future__ import annotations

import asyncio
import json

import pytest

from livedata.api import API
from livedata.demo.bookstore.models import Author, Book
from livedata.runtime import Runtime
from livedata.server.app import DDPService
from livedata.server.ddp_session import DDPSession
from livedata.server.outgoing import Writer

pytestmark = pytest.mark.django_db(transaction=True)


class Pipe:
    """An in-memory transport: what a session sends, as parsed messages."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.closed: tuple[int, str] | None = None

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def open_session(runtime: DDPService) -> tuple[DDPSession, Pipe]:
    pipe = Pipe()
    limit = runtime.settings.DDP_MAX_OUTGOING_BYTES
    session = DDPSession(runtime, Writer(pipe.send, pipe.close, limit))
    session.start()
    await session.feed('{"msg":"connect","version":"1","support":["1"]}')
    return session, pipe


async def settle(pipe: Pipe, predicate, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate(pipe.sent):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(pipe.sent)


def test_shared_observers_and_baseline_after_disconnect():
    author = Author.objects.create(name="Janet", email="janet@evanovich.com")
    Book.objects.create(title="One", author=author)
    assert "BooksByAuthorEmail" in API.publications

    async def main() -> None:
        runtime = DDPService(Runtime(listen=False))
        sessions = [await open_session(runtime) for _ in range(20)]
        for i, (session, _) in enumerate(sessions):
            for j in range(5):  # 5 subs each, 3 distinct parameter sets in all
                params = json.dumps([["janet@evanovich.com", "x@y.z", "q@r.s"][(i + j) % 3]])
                await session.feed(
                    f'{{"msg":"sub","id":"s{j}","name":"BooksByAuthorEmail","params":{params}}}'
                )
        for _, pipe in sessions:
            await settle(pipe, lambda sent: sum(1 for m in sent if m.get("msg") == "ready") == 5)
        assert len(runtime.engine.observers) == 3  # shared: one per distinct parameter set
        subscribers = sum(len(o.subscribers) for o in runtime.engine.observers.values())
        assert subscribers == 100
        for session, _ in sessions:
            await session.stop()
        engine = runtime.engine
        assert engine.observers == {} and engine.by_model == {}
        assert engine.by_key == {} and engine.all_by_model == {}
        assert engine.joins.indexes == {}  # the join index of the authors' emails too
        assert runtime.runtime.sessions == set()
        await runtime.runtime.stop()

    asyncio.run(main())


def test_observers_are_per_user_only_when_the_publication_reads_the_user():
    from django.contrib.auth.models import User

    author = Author.objects.create(name="Janet", email="janet@evanovich.com")
    users = [User.objects.create_user(f"u{i}") for i in range(3)]
    for user in users:
        Book.objects.create(title=f"By {user.username}", author=author, added_by=user)

    async def main() -> None:
        runtime = DDPService(Runtime(listen=False))
        sessions = [await open_session(runtime) for _ in users]
        for (session, _), user in zip(sessions, users, strict=True):
            await session.set_user(user)
            await session.feed('{"msg":"sub","id":"all","name":"AllBooks","params":[]}')
            await session.feed('{"msg":"sub","id":"my","name":"MyBooks","params":[]}')
        for _, pipe in sessions:
            await settle(pipe, lambda sent: sum(1 for m in sent if m.get("msg") == "ready") == 2)
        names = sorted(o.key[0] for o in runtime.engine.observers.values())
        # AllBooks never reads self.user: one observer for everyone; MyBooks: one per user
        assert names == ["AllBooks", "MyBooks", "MyBooks", "MyBooks"]
        # logging out moves the subscriptions to the anonymous observers
        await sessions[0][0].set_user(None)
        names = sorted(o.key[0] for o in runtime.engine.observers.values())
        assert names == ["AllBooks", "MyBooks", "MyBooks", "MyBooks"]
        anonymous = runtime.engine.observers[("MyBooks", "[]", None)]
        assert anonymous.per_user and all(not q.docs for q in anonymous.queries)
        for session, _ in sessions:
            await session.stop()
        assert runtime.engine.observers == {}
        await runtime.runtime.stop()

    asyncio.run(main())
