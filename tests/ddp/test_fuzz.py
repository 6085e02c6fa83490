"""Fuzzing the protocol core: no input raises, every reply is valid DDP."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livedata.ddp.connection import GREETING, Close, DDPConnection

SERVER_MSGS = {
    "connected",
    "failed",
    "pong",
    "ping",
    "error",
    "nosub",
    "result",
    "updated",
    "ready",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
special_keys = st.sampled_from(
    ["$date", "$binary", "$InfNaN", "$escape", "$type", "$value", "msg", "id", "params"]
)
ddp_like = st.fixed_dictionaries(
    {"msg": st.sampled_from(["connect", "ping", "pong", "sub", "unsub", "method", "x", ""])},
    optional={
        "id": json_values,
        "name": st.sampled_from(["books", "nope"]) | json_values,
        "method": st.sampled_from(["addBook", "nope"]) | json_values,
        "params": st.lists(json_values | st.dictionaries(special_keys, json_values, max_size=2))
        | json_values,
        "version": st.sampled_from(["1", "pre1", "pre2", "2"]) | json_values,
        "support": st.lists(st.sampled_from(["1", "pre1", "pre2", "x"])) | json_values,
        "randomSeed": json_values,
    },
)
frames = (
    st.text(max_size=64)
    | st.binary(max_size=64)
    | json_values.map(json.dumps)
    | ddp_like.map(json.dumps)
)


def check(frames_in: list) -> None:
    conn = DDPConnection(publications={"books"}, methods={"addBook"})
    out = conn.data_to_send()
    assert out == [GREETING]
    conn.receive('{"msg":"connect","version":"1","support":["1"]}')
    for frame in frames_in:
        actions = conn.receive(frame, now=1.0)
        for action in actions:
            if isinstance(action, Close):
                return
        for text in conn.data_to_send():
            reply = json.loads(text)
            assert reply["msg"] in SERVER_MSGS, reply
            if reply["msg"] == "error":
                assert isinstance(reply["reason"], str)
            if "id" in reply:
                assert reply["id"] is None or isinstance(reply["id"], str)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(frames, max_size=8))
def test_random_frames_never_raise_and_replies_are_ddp(frames_in):
    check(frames_in)


@settings(max_examples=300, deadline=None)
@given(st.lists(ddp_like.map(json.dumps), min_size=1, max_size=8))
def test_mutated_messages_never_raise(frames_in):
    check(frames_in)


def test_deeply_nested_input_is_a_bad_request_not_a_crash():
    conn = DDPConnection(greeting=False)
    conn.receive('{"msg":"connect","version":"1","support":["1"]}')
    conn.data_to_send()
    conn.receive("[" * 100_000 + "]" * 100_000)
    assert json.loads(conn.data_to_send()[0])["reason"] == "Bad request"
    deep = '{"msg":"method","id":"1","method":"m","params":' + "[" * 5000 + "]" * 5000 + "}"
    conn.receive(deep)
    assert json.loads(conn.data_to_send()[0])["msg"] == "error"
