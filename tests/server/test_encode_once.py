"""Encode once, send many (issue 14): a shared observer's changes and initial documents
are encoded once and the same frame object goes to every session whose mergebox agrees
it is exactly its own diff; a session with overlapping subscriptions gets its own.

In memory (DDP sessions over a recording pipe, the engine's publishing without a
database); over the wire the same data is checked by test_publications.py and the npm
clients' tests."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from livedata.ddp.messages import UNDEFINED
from livedata.livequery.engine import Engine
from livedata.livequery.observer import Observer
from livedata.server.ddp_session import DDPSession
from livedata.server.outgoing import Writer
from tests.server.test_outgoing import services


class Pipe:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        pass


def session_with(*sub_ids: str) -> tuple[DDPSession, Pipe]:
    pipe = Pipe()
    session = DDPSession(services(), Writer(pipe.send, pipe.close, 1 << 20))
    session.protocol.subscriptions.update(sub_ids)
    session.protocol.data_to_send()  # the greeting: only the data frames are compared
    return session, pipe


def observer(name: str, *subscribers: tuple[DDPSession, str]) -> Observer:
    return Observer(key=(name, "[]", None), queries=[], subscribers=dict.fromkeys(subscribers))


def engine() -> Engine:
    return Engine(SimpleNamespace(settings=services().settings))


def test_a_change_is_encoded_once_and_the_same_frame_goes_to_every_session():
    async def scenario() -> None:
        sessions = [session_with("s") for _ in range(5)]
        books = observer("AllBooks", *((s, "s") for s, _ in sessions))
        e = engine()
        e._publish(books, [[("books", "added", "1", {"title": "A", "n": 1})]])
        e._publish(books, [[("books", "changed", "1", {"title": "B", "n": UNDEFINED})]])
        e._publish(books, [[("books", "removed", "1", None)]])
        await asyncio.sleep(0.01)
        first = sessions[0][1].sent
        assert [json.loads(f) for f in first] == [
            {"msg": "added", "collection": "books", "id": "1", "fields": {"title": "A", "n": 1}},
            {"msg": "changed", "collection": "books", "id": "1", "fields": {"title": "B"}}
            | {"cleared": ["n"]},
            {"msg": "removed", "collection": "books", "id": "1"},
        ]
        for _session, pipe in sessions[1:]:
            assert len(pipe.sent) == 3
            assert all(a is b for a, b in zip(pipe.sent, first, strict=True))  # same objects

    asyncio.run(scenario())


def test_a_session_with_overlapping_subscriptions_gets_its_own_diff():
    async def scenario() -> None:
        alone, alone_pipe = session_with("s")
        both, both_pipe = session_with("a", "b")
        all_books = observer("AllBooks", (alone, "s"), (both, "a"))
        one_book = observer("OneBook", (both, "b"))
        e = engine()
        e._publish(all_books, [[("books", "added", "1", {"title": "A", "n": 1})]])
        e._publish(one_book, [[("books", "added", "1", {"title": "A", "n": 2})]])
        e._publish(all_books, [[("books", "changed", "1", {"title": "B"})]])
        e._publish(all_books, [[("books", "removed", "1", None)]])
        await asyncio.sleep(0.01)
        assert [json.loads(f) for f in both_pipe.sent] == [
            {"msg": "added", "collection": "books", "id": "1", "fields": {"title": "A", "n": 1}},
            # b's document was merged in silently (a's fields came first); then a's change
            {"msg": "changed", "collection": "books", "id": "1", "fields": {"title": "B"}},
            # a retracts: b's values show, the document stays
            {"msg": "changed", "collection": "books", "id": "1", "fields": {"title": "A", "n": 2}},
        ]
        assert both_pipe.sent[0] is alone_pipe.sent[0]  # still alone in it then
        assert both_pipe.sent[2] is not alone_pipe.sent[2]  # its own diff, not the shared one
        assert json.loads(alone_pipe.sent[2]) == {
            "msg": "removed",
            "collection": "books",
            "id": "1",
        }
        assert both.mergebox.document("books", "1") == {"title": "A", "n": 2}

    asyncio.run(scenario())


def test_initial_documents_are_encoded_once_while_unchanged():
    e = engine()
    docs = [("books", "1", {"title": "A"}), ("books", "2", {"title": "B"})]
    books = observer("AllBooks")
    first = e._initial_frames(books, docs)
    again = e._initial_frames(books, docs)
    assert first is not None and again is not None
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert json.loads(first[0]) == {
        "msg": "added",
        "collection": "books",
        "id": "1",
        "fields": {"title": "A"},
    }
    e._publish(books, [[("books", "changed", "2", {"title": "C"})]])
    docs[1] = ("books", "2", {"title": "C"})  # a refresh replaces a changed document
    after = e._initial_frames(books, docs)
    assert after is not None and after[0] is first[0]
    assert json.loads(after[1])["fields"] == {"title": "C"}


def test_initial_documents_go_out_as_the_shared_frames_where_the_view_agrees():
    async def scenario() -> None:
        e = engine()
        docs = [("books", "1", {"title": "A"}), ("books", "2", {"title": "B"})]
        books = observer("AllBooks")
        frames = e._initial_frames(books, docs)
        alone, alone_pipe = session_with("s")
        both, both_pipe = session_with("a", "b")
        both.publish_added("a", [("books", "1", {"title": "Z"})])  # "a" provides 1 already
        await both.stream()
        alone.publish_added("s", docs, frames)
        both.publish_added("b", docs, frames)
        await alone.stream()
        await both.stream()
        await asyncio.sleep(0.01)
        assert alone_pipe.sent == frames and alone_pipe.sent[0] is frames[0]
        assert [json.loads(f) for f in both_pipe.sent[1:]] == [
            {"msg": "added", "collection": "books", "id": "2", "fields": {"title": "B"}}
        ]
        assert both_pipe.sent[1] is frames[1]

    asyncio.run(scenario())
