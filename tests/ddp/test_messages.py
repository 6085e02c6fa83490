"""``messages.serialize``: orjson's text is the json module's (the way it falls back to)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from livedata.ddp import messages
from livedata.ddp.messages import UNDEFINED, serialize

texts = st.text(max_size=8)  # any code point, lone surrogates included
scalars = st.none() | st.booleans() | st.integers() | texts
values = st.recursive(
    scalars | st.datetimes(timezones=st.just(UTC)) | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)


class _Refusing:
    """An orjson that refuses everything: ``serialize`` goes the json way."""

    JSONEncodeError = messages.orjson.JSONEncodeError

    def dumps(self, *args, **kwargs):
        raise self.JSONEncodeError("refused")


def the_json_way(message: dict) -> str:
    real = messages.orjson
    messages.orjson = _Refusing()
    try:
        return serialize(message)
    finally:
        messages.orjson = real


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(texts, values | st.just(UNDEFINED), max_size=4),
    values,
    st.dictionaries(texts, scalars | st.floats(), max_size=3),
)
def test_serialize_gives_the_json_ways_text(fields, result, offending):
    for message in (
        {"msg": "added", "collection": "c", "id": "1", "fields": fields},
        {"msg": "result", "id": "1", "result": result},
        {"msg": "error", "reason": "Bad request", "offendingMessage": offending},
    ):
        fast, slow = serialize(message), the_json_way(message)
        if any(isinstance(v, float) for v in offending.values()):  # 1e16 or 1e+16
            assert json.loads(fast) == json.loads(slow)
        else:
            assert fast == slow


def test_what_orjson_refuses_goes_the_json_way():
    message = {
        "msg": "error",
        "offendingMessage": {"big": 2**70, "lone": "\ud800", "inf": 1e400, 1: 2},
    }
    assert serialize(message) == the_json_way(message)
    assert serialize(message) == (
        '{"msg":"error","offendingMessage":'
        '{"big":1180591620717411303424,"lone":"\\ud800","inf":null,"1":2}}'
    )
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert serialize({"msg": "result", "id": "1", "result": [when, float("nan")]}) == (
        '{"msg":"result","id":"1","result":[{"$date":1767225600000},{"$InfNaN":0}]}'
    )
