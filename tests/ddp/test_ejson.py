"""EJSON round trips and Meteor's exact encodings."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from livedata.ddp import ejson
from livedata.ddp.ejson import EJSONError


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (datetime(1970, 1, 1, 0, 0, 32, 491000, tzinfo=UTC), {"$date": 32491}),
        (datetime(2024, 5, 1, 12, 0), {"$date": 1714564800000}),  # naive = UTC
        (date(2024, 5, 1), {"$date": 1714521600000}),
        (b"\x00\xffhi", {"$binary": "AP9oaQ=="}),
        (math.inf, {"$InfNaN": 1}),
        (-math.inf, {"$InfNaN": -1}),
        (Decimal("9.99"), "9.99"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ({"$date": 10000}, {"$escape": {"$date": 10000}}),
        (
            {"$date": datetime(1970, 1, 1, 0, 0, 32, 491000, tzinfo=UTC)},
            {"$escape": {"$date": {"$date": 32491}}},
        ),
        ({"$type": "x", "$value": 1}, {"$escape": {"$type": "x", "$value": 1}}),
        ({"$date": 1, "other": 2}, {"$date": 1, "other": 2}),  # not special: not escaped
        ((1, [2, {"a": None}]), [1, [2, {"a": None}]]),
    ],
)
def test_encode_like_meteor(value, encoded):
    assert ejson.to_json_value(value) == encoded


def test_round_trips():
    value = {
        "when": datetime(2020, 2, 29, 23, 59, 59, 123000, tzinfo=UTC),
        "blob": b"\x01\x02",
        "inf": math.inf,
        "nested": [{"$date": 5}, {"$escape": 1}],
        "plain": {"a": [1, 2.5, "s", None, True]},
    }
    assert ejson.loads(ejson.dumps(value)) == value
    assert math.isnan(ejson.loads('{"$InfNaN": 0}'))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"$type": "nope", "$value": 1}', "Custom EJSON type nope is not defined"),
        ('{"$binary": "not base64!"}', "not valid base64"),
        ('{"$binary": 5}', "base64 string"),
        ('{"$date": "yesterday"}', "milliseconds"),
        ('{"$date": 1e300}', "out of range"),
        ('{"$InfNaN": 2}', "0, 1 or -1"),
        ('{"$escape": 3}', "object"),
    ],
)
def test_bad_ejson_is_an_error(text, message):
    with pytest.raises(EJSONError, match=message):
        ejson.loads(text)


def test_custom_types():
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    ejson.register_type("point", Point, lambda p: [p.x, p.y], lambda v: Point(*v))
    assert ejson.to_json_value(Point(1, 2)) == {"$type": "point", "$value": [1, 2]}
    assert ejson.loads('{"$type": "point", "$value": [3, 4]}') == Point(3, 4)


def test_unknown_python_type_is_a_type_error():
    with pytest.raises(TypeError, match="cannot encode object as EJSON"):
        ejson.to_json_value(object())
