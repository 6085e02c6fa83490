"""The DDP state machine, fed messages like a client would (no sockets involved).

Cases follow Meteor's ddp-server (docs/ddp-wire-reference.md) and meteorhacks/ddptest.
"""

from __future__ import annotations

import json

import pytest

from livedata.ddp.connection import (
    GREETING,
    CallMethod,
    Close,
    DDPConnection,
    Heartbeat,
    State,
    Subscribe,
    Unsubscribe,
)
from livedata.ddp.errors import DDPError

CONNECT = '{"msg":"connect","version":"1","support":["1","pre2","pre1"]}'


def make(**kwargs) -> DDPConnection:
    kwargs.setdefault("publications", {"books"})
    kwargs.setdefault("methods", {"addBook"})
    return DDPConnection(**kwargs)


def sent(conn: DDPConnection) -> list[dict]:
    return [json.loads(frame) for frame in conn.data_to_send()]


def connected(**kwargs) -> DDPConnection:
    conn = make(**kwargs)
    conn.receive(CONNECT)
    conn.data_to_send()
    return conn


def test_greeting_then_connected_with_a_17_char_session():
    conn = make()
    assert conn.data_to_send() == [GREETING]
    assert conn.receive(CONNECT) == []
    [reply] = sent(conn)
    assert reply["msg"] == "connected" and len(reply["session"]) == 17
    assert conn.state is State.CONNECTED and conn.version == "1"


def test_session_field_is_ignored_and_a_new_session_issued():
    conn = make()
    conn.receive('{"msg":"connect","version":"1","support":["1"],"session":"abcdefghijklmnopq"}')
    [_, reply] = sent(conn)
    assert reply["msg"] == "connected" and reply["session"] != "abcdefghijklmnopq"


@pytest.mark.parametrize(
    ("connect", "version"),
    [
        ('{"msg":"connect","version":"_","support":["_"]}', "1"),
        ('{"msg":"connect","version":"1"}', "1"),
        ('{"msg":"connect","version":"1","support":["2",1]}', "1"),
        ('{"msg":"connect","version":"2","support":["1"]}', "1"),
        ('{"msg":"connect","version":"pre2","support":["1","pre2"]}', "1"),
    ],
)
def test_failed_negotiation_names_a_version_and_closes(connect, version):
    conn = make(greeting=False)
    assert conn.receive(connect) == [Close("DDP version negotiation failed")]
    assert sent(conn) == [{"msg": "failed", "version": version}]
    assert conn.state is State.CLOSED
    assert conn.receive(CONNECT) == [] and sent(conn) == []


@pytest.mark.parametrize("version", ["pre2", "pre1"])
def test_older_versions_when_the_client_prefers_them(version):
    conn = make(greeting=False)
    conn.receive(json.dumps({"msg": "connect", "version": version, "support": [version, "1"]}))
    assert sent(conn)[0]["msg"] == "connected" and conn.version == version


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        ("not json", {"msg": "error", "reason": "Bad request"}),
        ("5", {"msg": "error", "reason": "Bad request"}),
        ("null", {"msg": "error", "reason": "Bad request"}),
        ('"s"', {"msg": "error", "reason": "Bad request"}),
        ("[1]", {"msg": "error", "reason": "Bad request", "offendingMessage": [1]}),
        ('{"foo":1}', {"msg": "error", "reason": "Bad request", "offendingMessage": {"foo": 1}}),
        (
            '{"msg":"ping"}',
            {"msg": "error", "reason": "Must connect first", "offendingMessage": {"msg": "ping"}},
        ),
        (
            '{"msg":"ping","id":"x"}',
            {
                "msg": "error",
                "reason": "Must connect first",
                "offendingMessage": {"msg": "ping", "id": "x"},
            },
        ),
    ],
)
def test_errors_before_connect_keep_the_connection(frame, reply):
    conn = make(greeting=False)
    assert conn.receive(frame) == []
    assert sent(conn) == [reply]
    assert conn.state is State.NEW
    conn.receive(CONNECT)
    assert sent(conn)[0]["msg"] == "connected"


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        ('{"msg":"ping"}', {"msg": "pong"}),
        ('{"msg":"ping","id":"abc"}', {"msg": "pong", "id": "abc"}),
        ('{"msg":"pong"}', None),
        ('{"msg":"pong","id":"abc"}', None),
        (
            CONNECT,
            {
                "msg": "error",
                "reason": "Already connected",
                "offendingMessage": json.loads(CONNECT),
            },
        ),
        (
            '{"msg":"foo"}',
            {"msg": "error", "reason": "Bad request", "offendingMessage": {"msg": "foo"}},
        ),
        (
            '{"msg":"result","id":"1"}',
            {
                "msg": "error",
                "reason": "Bad request",
                "offendingMessage": {"msg": "result", "id": "1"},
            },
        ),
        (
            '{"msg":"method","method":"addBook","params":[{"$type":"nope","$value":1}],"id":"1"}',
            {"msg": "error", "reason": "Parse error"},
        ),
        (
            '{"msg":"ping","id":5}',
            {"msg": "error", "reason": "Bad request", "offendingMessage": {"msg": "ping", "id": 5}},
        ),
        # issue 19: a non-string msg raised TypeError (unhashable) and dropped the socket
        (
            '{"msg":{"a":1}}',
            {"msg": "error", "reason": "Bad request", "offendingMessage": {"msg": {"a": 1}}},
        ),
        (
            '{"msg":["sub"]}',
            {"msg": "error", "reason": "Bad request", "offendingMessage": {"msg": ["sub"]}},
        ),
    ],
)
def test_connected_replies(frame, reply):
    conn = connected()
    assert conn.receive(frame) == []
    assert sent(conn) == ([] if reply is None else [reply])
    assert conn.state is State.CONNECTED


@pytest.mark.parametrize(
    "frame",
    [
        '{"msg":"sub","name":"books"}',
        '{"msg":"sub","id":1,"name":"books"}',
        '{"msg":"sub","id":"1"}',
        '{"msg":"sub","id":"1","name":"books","params":null}',
        '{"msg":"sub","id":"1","name":"books","params":{"a":1}}',
    ],
)
def test_malformed_subscription(frame):
    conn = connected()
    assert conn.receive(frame) == []
    assert sent(conn) == [
        {"msg": "error", "reason": "Malformed subscription", "offendingMessage": json.loads(frame)}
    ]


def test_sub_unknown_duplicate_unsub_and_nosub():
    conn = connected()
    conn.receive('{"msg":"sub","id":"x","name":"nope"}')
    assert sent(conn) == [
        {
            "msg": "nosub",
            "id": "x",
            "error": {
                "isClientSafe": True,
                "error": 404,
                "reason": "Subscription 'nope' not found",
                "message": "Subscription 'nope' not found [404]",
                "errorType": "Meteor.Error",
            },
        }
    ]
    assert conn.receive('{"msg":"sub","id":"s1","name":"books","params":["a@b.c"]}') == [
        Subscribe("s1", "books", ["a@b.c"])
    ]
    assert conn.receive('{"msg":"sub","id":"s2","name":"books"}') == [Subscribe("s2", "books", [])]
    assert conn.receive('{"msg":"sub","id":"s1","name":"books"}') == []  # duplicate: ignored
    conn.ready("s1", "s2", "unknown")
    assert sent(conn) == [{"msg": "ready", "subs": ["s1", "s2"]}]

    assert conn.receive('{"msg":"unsub","id":"s1"}') == [Unsubscribe("s1")]
    assert sent(conn) == []  # the server retracts documents first, then:
    conn.nosub("s1")
    assert sent(conn) == [{"msg": "nosub", "id": "s1"}]
    assert conn.receive('{"msg":"unsub","id":"never"}') == []
    assert sent(conn) == [{"msg": "nosub", "id": "never"}]
    assert conn.receive('{"msg":"unsub"}') == []
    assert sent(conn) == [{"msg": "nosub"}]
    conn.receive('{"msg":"unsub","id":5}')
    assert sent(conn)[0]["reason"] == "Bad request"
    conn.nosub("s2", DDPError(500, "Internal server error"))
    assert sent(conn)[0]["error"]["message"] == "Internal server error [500]"
    assert conn.subscriptions == set()


@pytest.mark.parametrize(
    "frame",
    [
        '{"msg":"method","method":"addBook"}',
        '{"msg":"method","id":1,"method":"addBook"}',
        '{"msg":"method","id":"1"}',
        '{"msg":"method","id":"1","method":"addBook","params":null}',
        '{"msg":"method","id":"1","method":"addBook","params":"x"}',
        '{"msg":"method","id":"1","method":"addBook","randomSeed":null}',
        '{"msg":"method","id":"1","method":"addBook","randomSeed":5}',
    ],
)
def test_malformed_method_invocation(frame):
    conn = connected()
    assert conn.receive(frame) == []
    assert sent(conn) == [
        {
            "msg": "error",
            "reason": "Malformed method invocation",
            "offendingMessage": json.loads(frame),
        }
    ]


def test_methods_unknown_then_known_with_result_error_and_updated():
    conn = connected()
    assert conn.receive('{"msg":"method","id":"1","method":"nope","params":[]}') == []
    assert sent(conn) == [
        {
            "msg": "result",
            "id": "1",
            "error": {
                "isClientSafe": True,
                "error": 404,
                "reason": "Method 'nope' not found",
                "message": "Method 'nope' not found [404]",
                "errorType": "Meteor.Error",
            },
        },
        {"msg": "updated", "methods": ["1"]},
    ]
    frame = (
        '{"msg":"method","id":"2","method":"addBook",'
        '"params":[{"when":{"$date":0}}],"randomSeed":"seed"}'
    )
    [call] = conn.receive(frame)
    assert isinstance(call, CallMethod)
    assert (call.id, call.name, call.random_seed) == ("2", "addBook", "seed")
    assert call.params[0]["when"].year == 1970  # EJSON-decoded
    conn.method_updated("2")
    conn.method_result("2", {"at": call.params[0]["when"], "n": 1})
    conn.receive('{"msg":"method","id":"3","method":"addBook"}')
    conn.method_result("3")  # no value: no "result" key
    conn.method_result("4", error=DDPError("too-many-requests", "Slow down", {"timeToReset": 9}))
    assert sent(conn) == [
        {"msg": "updated", "methods": ["2"]},
        {"msg": "result", "id": "2", "result": {"at": {"$date": 0}, "n": 1}},
        {"msg": "result", "id": "3"},
        {
            "msg": "result",
            "id": "4",
            "error": {
                "isClientSafe": True,
                "error": "too-many-requests",
                "reason": "Slow down",
                "details": {"timeToReset": 9},
                "message": "Slow down [too-many-requests]",
                "errorType": "Meteor.Error",
            },
        },
    ]


def test_data_messages_use_cleared_and_omit_empty_fields():
    conn = connected()
    from livedata.ddp.messages import UNDEFINED

    conn.send({"msg": "added", "collection": "c", "id": "x", "fields": {}})
    conn.send({"msg": "changed", "collection": "c", "id": "x", "fields": {"a": 1, "b": UNDEFINED}})
    conn.send({"msg": "changed", "collection": "c", "id": "x", "fields": {"b": UNDEFINED}})
    assert conn.data_to_send() == [
        '{"msg":"added","collection":"c","id":"x"}',
        '{"msg":"changed","collection":"c","id":"x","fields":{"a":1},"cleared":["b"]}',
        '{"msg":"changed","collection":"c","id":"x","cleared":["b"]}',
    ]


def test_pre1_has_no_ping():
    conn = make(greeting=False)
    conn.receive('{"msg":"connect","version":"pre1","support":["pre1"]}')
    conn.data_to_send()
    conn.receive('{"msg":"ping"}')
    assert sent(conn)[0]["reason"] == "Bad request"
    assert conn.tick(1000.0) == []


def test_heartbeat_pings_idle_connections_and_closes_dead_ones():
    conn = make(greeting=False, heartbeat=Heartbeat(interval=15, timeout=15))
    conn.receive(CONNECT, now=0.0)
    conn.data_to_send()
    assert conn.tick(10.0) == [] and sent(conn) == []
    assert conn.tick(15.0) == [] and sent(conn) == [{"msg": "ping"}]
    assert conn.tick(20.0) == [] and sent(conn) == []  # waiting for any message
    conn.receive('{"msg":"pong"}', now=21.0)  # any message counts
    assert conn.tick(30.0) == [] and sent(conn) == []
    assert conn.tick(36.0) == [] and sent(conn) == [{"msg": "ping"}]
    assert conn.tick(50.9) == []
    assert conn.tick(51.0) == [Close("heartbeat timeout")]
    assert conn.state is State.CLOSED


def test_ddptest_suite_cases():
    """meteorhacks/ddptest, re-expressed: first message arrives unprompted, then connect/ping."""
    conn = make()
    assert conn.data_to_send() == [GREETING]
    conn.receive('{"msg": "connect", "version": "1", "support": ["1"]}')
    [reply] = sent(conn)
    assert reply["msg"] == "connected" and isinstance(reply["session"], str)
    conn.receive('{"msg": "ping", "id": "r4nd"}')
    assert sent(conn) == [{"msg": "pong", "id": "r4nd"}]


def test_subscription_limit_per_connection():
    conn = connected(max_subscriptions=2)
    assert conn.receive('{"msg":"sub","id":"a","name":"books"}')
    assert conn.receive('{"msg":"sub","id":"b","name":"books"}')
    assert conn.receive('{"msg":"sub","id":"c","name":"books"}') == []
    [reply] = sent(conn)
    assert reply["msg"] == "nosub" and reply["error"]["error"] == "too-many-requests"
    conn.nosub("a")
    conn.data_to_send()
    assert conn.receive('{"msg":"sub","id":"c","name":"books"}')  # room again


def test_a_lone_surrogate_is_sent_back_escaped():
    """JSON may carry "\\ud800", which Python decodes to a string UTF-8 cannot encode: the
    reply escapes it as JavaScript's JSON.stringify does (issue 19: the result was lost)."""
    conn = connected()
    [action] = conn.receive('{"msg":"method","id":"1","method":"addBook","params":["a\\ud800"]}')
    assert action.params == ["a\ud800"]
    conn.method_result("1", {"echo": action.params, "\udfff": 1})
    [frame] = conn.data_to_send()
    frame.encode("utf-8")  # a valid text frame
    assert "\\ud800" in frame
    assert json.loads(frame)["result"] == {"echo": ["a\ud800"], "\udfff": 1}


def test_a_connection_that_never_connects_is_closed_at_its_deadline():
    conn = make(connect_deadline=10.0)
    assert conn.tick(9.9) == []
    assert conn.tick(10.0) == [Close("connect timeout", 1008)]
    assert conn.state is State.CLOSED
    late = make(connect_deadline=10.0)  # connected in time: the deadline no longer applies
    late.receive(CONNECT, 1.0)
    assert late.tick(11.0) == []
    assert late.state is State.CONNECTED


def strict_json(frame: str) -> dict:
    """A server frame parsed as JavaScript would: NaN and Infinity tokens are errors."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in a frame sent to the client: {frame}")

    return json.loads(frame, parse_constant=refuse)


def test_nan_and_infinity_in_method_arguments():
    """Issue 19 (kept): EJSON's $InfNaN reaches the method as float NaN/±inf; the JSON
    tokens NaN/Infinity (Python parses them, JSON.parse does not) are a "Bad request"
    without echoing them; every reply is strict JSON and the connection goes on."""
    import math

    conn = connected()
    infnan = '[{"$InfNaN":0},{"$InfNaN":1},{"$InfNaN":-1},1e400]'
    [call] = conn.receive(f'{{"msg":"method","id":"1","method":"addBook","params":{infnan}}}')
    assert math.isnan(call.params[0]) and call.params[1:] == [math.inf, -math.inf, math.inf]
    conn.method_result("1", call.params)
    assert strict_json(conn.data_to_send()[0])["result"] == [
        {"$InfNaN": 0},
        {"$InfNaN": 1},
        {"$InfNaN": -1},
        {"$InfNaN": 1},
    ]
    for token in ("NaN", "Infinity", "-Infinity"):
        for frame in (
            f'{{"msg":"method","id":"2","method":"addBook","params":[{token}]}}',
            f'{{"msg":"method","id":{token},"method":"addBook"}}',
            f'{{"msg":"ping","id":"x","extra":{token}}}',
        ):
            assert conn.receive(frame) == [], frame
            assert [strict_json(f) for f in conn.data_to_send()] == [
                {"msg": "error", "reason": "Bad request"}
            ]
    # a number too big for a double is +Infinity (as JSON.parse), echoed as null
    conn.receive('{"msg":"method","id":"3","method":"addBook","randomSeed":-1e400}')
    [reply] = [strict_json(f) for f in conn.data_to_send()]
    assert reply["reason"] == "Malformed method invocation"
    assert reply["offendingMessage"]["randomSeed"] is None
    conn.receive('{"msg":"ping","id":"alive"}')
    assert sent(conn) == [{"msg": "pong", "id": "alive"}]
