"""A DDP session's one outbox, carried by the raw WebSocket's ``Writer`` and by a SockJS
session (``sockjs.ddp.SockJSCarrier``), in memory: no server, no database.

Over the wire, the same rules are tested in test_websocket.py, test_sockjs.py and
test_initial_data.py."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from types import SimpleNamespace

from livedata.conf import livedata_settings
from livedata.runtime.admission import Admission
from livedata.runtime.figures import Board
from livedata.server.ddp_session import SLOW_CLIENT, DDPSession
from livedata.server.outgoing import Writer
from livedata.server.sockjs.core import OUTBOX_LIMIT
from livedata.server.sockjs.ddp import DDPHandler
from livedata.server.sockjs.endpoint import SockJSEndpoint
from livedata.server.sockjs.receivers import Receiver
from tests.capture.test_listener import until

LIMIT = 1000
CONNECT = '{"msg":"connect","version":"1","support":["1"]}'


def services():
    conf = replace(livedata_settings(), DDP_MAX_OUTGOING_BYTES=LIMIT, DDP_SESSION_LOGIN=False)
    conf = replace(conf, DDP_HEARTBEAT_INTERVAL=0, DDP_CONNECT_TIMEOUT=0)
    runtime = SimpleNamespace(
        settings=conf, sessions=set(), figures=Board(), admission=Admission(0, 0, 0)
    )

    class Engine:
        async def drop_session(self, session):
            pass

    tokens = SimpleNamespace(track_token=lambda *args: None)
    return SimpleNamespace(
        runtime=runtime,
        settings=conf,
        methods={},
        publications={},
        engine=Engine(),
        tokens=tokens,
        feeds={},
    )


class Pipe:
    """A WebSocket whose client reads only when told to."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.reading = asyncio.Event()
        self.outbox = None
        self.most_queued = 0  # bytes in the outbox, at most, when the client read

    async def send(self, text: str) -> None:
        await self.reading.wait()
        self.sent.append(text)
        if self.outbox is not None:
            self.most_queued = max(self.most_queued, self.outbox.total_bytes)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def test_a_websocket_client_that_does_not_read_is_disconnected_past_the_bound():
    async def scenario() -> None:
        pipe = Pipe()
        session = DDPSession(services(), Writer(pipe.send, pipe.close, LIMIT))
        session.start()
        session.send_frames(["x" * 600])  # taken by the writer, which waits on the client
        await asyncio.sleep(0)
        session.send_frames(["y" * 600, "z" * 600])  # queued: past the bound
        await asyncio.sleep(0.01)
        assert session.closed.is_set() and session.close_reason == SLOW_CLIENT[1]
        pipe.reading.set()
        await asyncio.sleep(0.01)
        assert pipe.closed == SLOW_CLIENT
        assert not any(text.startswith(("y", "z")) for text in pipe.sent)  # dropped
        await session.stop()

    asyncio.run(scenario())


def test_streamed_documents_go_out_at_the_clients_pace_and_frames_put_meanwhile_after():
    async def scenario() -> None:
        pipe = Pipe()
        pipe.reading.set()
        session = DDPSession(services(), Writer(pipe.send, pipe.close, LIMIT))
        session.start()
        await session.feed(CONNECT)
        await asyncio.sleep(0.01)  # the greeting's writer task, and "connected"
        pipe.sent.clear()
        pipe.outbox = session.outbox
        messages = [{"msg": "added", "collection": "c", "id": str(i)} for i in range(200)]
        session._begin_stream(messages)  # ~9 KB: nine times the bound
        session.send_frames(['{"msg":"behind"}'])  # waits behind the stream
        await session.stream()
        await asyncio.sleep(0.01)
        sent = [json.loads(text) for text in pipe.sent]
        assert [m.get("id") for m in sent[:-1]] == [str(i) for i in range(200)]
        assert sent[-1] == {"msg": "behind"} and not session.closed.is_set()
        assert 0 < pipe.most_queued <= LIMIT // 4 + 50  # paced: never past a quarter (+1)
        await session.stop()

    asyncio.run(scenario())


class Taken(Receiver):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[str] = []

    async def frame(self, frame: str) -> bool:
        self.frames.append(frame)
        return True  # polling: one frame per request


def test_a_ddp_session_over_sockjs_queues_into_the_sockjs_sessions_one_outbox():
    async def scenario() -> None:
        handlers: list[DDPHandler] = []

        def factory(sockjs):
            handlers.append(DDPHandler(services(), sockjs))
            return handlers[-1]

        endpoint = SockJSEndpoint("/x", factory, max_queue_bytes=LIMIT)
        sockjs = endpoint._new_session("s1", {"client": ("10.0.0.1", 1)}, {}, "xhr")
        session = handlers[0].ddp_session
        assert session.outbox is sockjs.outbox  # one outbox for the connection
        first = Taken()
        await sockjs.attach(first)
        assert first.frames == ["o"]
        await sockjs.deliver([CONNECT])
        second = Taken()
        await sockjs.attach(second)
        [frame] = second.frames  # the greeting and "connected", as one SockJS frame
        assert [json.loads(m).get("msg") for m in json.loads(frame[1:])] == [None, "connected"]
        session.send_frames(["x" * 600, "y" * 600])  # never polled: past the bound
        await asyncio.sleep(0.01)
        assert sockjs.closed and sockjs.close_status == OUTBOX_LIMIT
        third = Taken()
        await sockjs.attach(third)
        assert third.frames == ['c[1008,"Outgoing buffer limit"]']  # what was queued dropped
        await asyncio.sleep(0.01)
        assert session.closed.is_set()

    asyncio.run(scenario())


def test_the_writer_sends_inline_and_only_a_send_that_waits_goes_on_in_a_task():
    async def scenario() -> None:
        sent: list[str] = []
        gate = asyncio.Event()

        async def send(text: str) -> None:
            if text.startswith("wait"):
                await gate.wait()
            sent.append(text)

        async def close(code: int, reason: str) -> None:
            pass

        writer = Writer(send, close, LIMIT)
        writer.outbox.put(["a", "b"])
        writer.carry()
        assert sent == ["a", "b"] and writer._task is None  # inline: no task made
        writer.outbox.put(["wait", "c"])
        writer.carry()
        assert sent == ["a", "b"] and writer._task is not None
        writer.outbox.put(["d"])
        writer.carry()  # the task sends it, after the others
        gate.set()
        await asyncio.sleep(0.01)
        assert sent == ["a", "b", "wait", "c", "d"] and writer._task is None
        gate.clear()
        writer.outbox.put(["wait"])
        writer.carry()
        await writer.stop()  # cancelled before its first step: the send's finally ran
        assert writer._task is None and not writer._sending

        async def gone(text: str) -> None:
            raise ConnectionError("gone")

        broken = Writer(gone, close, LIMIT)
        broken.outbox.put(["x"])
        broken.carry()  # logged, not raised into whoever queued the frame
        assert not broken._sending

    asyncio.run(scenario())


def test_frames_queued_together_go_in_one_send_many_and_a_lone_one_alone():
    async def scenario() -> list[tuple[str, list[str]]]:
        calls: list[tuple[str, list[str]]] = []
        gate = asyncio.Event()

        async def send(text: str) -> None:
            calls.append(("one", [text]))

        async def send_many(texts: list[str]) -> None:
            if texts[0] == "wait":
                await gate.wait()
            calls.append(("many", texts))

        async def close(code: int, reason: str) -> None:
            pass

        writer = Writer(send, close, LIMIT, send_many)
        writer.outbox.put(["a", "b", "c"])
        writer.carry()
        writer.outbox.put(["d"])
        writer.carry()
        writer.outbox.put(["wait", "e"])
        writer.carry()  # waits for the socket: the rest in the writer task
        writer.outbox.put(["f"])
        writer.outbox.put(["g"])
        gate.set()
        await until(lambda: writer._task is None)
        assert writer.outbox.bytes == 0
        return calls

    calls = asyncio.run(scenario())
    assert calls == [
        ("many", ["a", "b", "c"]),
        ("one", ["d"]),
        ("many", ["wait", "e"]),
        ("many", ["f", "g"]),
    ]
