"""EJSON: JSON plus dates, binary, NaN/Infinity, escaped objects and custom types.

``to_json_value`` turns Python values (including Django's: datetime, date, Decimal, UUID,
bytes) into JSON-compatible values; ``from_json_value`` turns EJSON back into Python.
``dumps``/``loads`` do the same to and from text. The rules follow Meteor's ejson package:

- ``datetime`` → ``{"$date": ms since epoch}`` (naive datetimes are taken as UTC);
  ``date`` → midnight UTC of that day. Decoded dates are aware UTC datetimes.
- ``bytes``/``bytearray``/``memoryview`` → ``{"$binary": base64}``; decoded as ``bytes``.
- NaN/±Infinity → ``{"$InfNaN": 0|1|-1}``.
- ``Decimal`` → string (exact; JSON numbers would round), ``UUID`` → string,
  tuples/sets → arrays.
- A dict that would be mistaken for one of these (``{"$date": 5}``) → ``{"$escape": {...}}``.
- ``{"$type": name, "$value": v}`` custom types, registered with ``register_type``;
  an unknown ``$type`` raises ``EJSONError`` (the server answers "Parse error").
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EJSONError(ValueError):
    """EJSON that cannot be decoded (unknown custom type, bad base64, bad date...)."""


_custom_types: dict[str, tuple[type, Callable[[Any], Any], Callable[[Any], Any]]] = {}


def register_type(
    name: str, cls: type, to_json: Callable[[Any], Any], from_json: Callable[[Any], Any]
) -> None:
    """Register a custom EJSON type: ``{"$type": name, "$value": to_json(obj)}``."""
    _custom_types[name] = (cls, to_json, from_json)


def _is_special(obj: dict[str, Any]) -> bool:
    """Would ``obj`` decode as a special EJSON value? (Meteor's matchJSONValue)."""
    n = len(obj)
    if n == 1:
        return next(iter(obj)) in ("$date", "$InfNaN", "$binary", "$escape")
    if n == 2:
        return "$type" in obj and "$value" in obj
    return False


def _millis(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    ms = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds / 1000
    return int(ms) if ms == int(ms) else ms


def to_json_value(value: Any) -> Any:
    """A JSON-compatible value for ``value`` (recursively)."""
    if value is None or value is True or value is False or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$InfNaN": 0 if math.isnan(value) else (1 if value > 0 else -1)}
    if isinstance(value, dict):
        out = {str(k): to_json_value(v) for k, v in value.items()}
        return {"$escape": out} if _is_special(value) else out
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_value(v) for v in value]
    if isinstance(value, datetime):
        return {"$date": _millis(value)}
    if isinstance(value, date):
        return {"$date": _millis(datetime.combine(value, time(), tzinfo=UTC))}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$binary": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Decimal):
        if value.is_finite():
            return str(value)
        return {"$InfNaN": 0 if value.is_nan() else (1 if value > 0 else -1)}
    if isinstance(value, uuid.UUID):
        return str(value)
    for name, (cls, to_json, _) in _custom_types.items():
        if isinstance(value, cls):
            return {"$type": name, "$value": to_json_value(to_json(value))}
    if isinstance(value, time):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as EJSON")


def from_json_value(value: Any) -> Any:
    """The Python value of EJSON ``value`` (recursively). Raises ``EJSONError``."""
    if isinstance(value, dict):
        # Meteor decodes only objects of at most two keys, all starting with "$"
        if len(value) <= 2 and all(k[:1] == "$" for k in value) and _is_special(value):
            return _decode_special(value)
        return {k: from_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json_value(v) for v in value]
    return value


def _decode_special(obj: dict[str, Any]) -> Any:
    if "$date" in obj:
        ms = obj["$date"]
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms):
            raise EJSONError("$date must be a number of milliseconds")
        try:
            return _EPOCH + timedelta(milliseconds=ms)
        except OverflowError as exc:
            raise EJSONError("$date out of range") from exc
    if "$InfNaN" in obj:
        sign = obj["$InfNaN"]
        if sign == 0:
            return math.nan
        if sign in (1, -1):
            return math.inf * sign
        raise EJSONError("$InfNaN must be 0, 1 or -1")
    if "$binary" in obj:
        data = obj["$binary"]
        if not isinstance(data, str):
            raise EJSONError("$binary must be a base64 string")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EJSONError("$binary is not valid base64") from exc
    if "$escape" in obj:
        inner = obj["$escape"]
        if not isinstance(inner, dict):
            raise EJSONError("$escape must hold an object")
        return {k: from_json_value(v) for k, v in inner.items()}
    name = obj["$type"]
    entry = _custom_types.get(name) if isinstance(name, str) else None
    if entry is None:
        raise EJSONError(f"Custom EJSON type {name} is not defined")
    return entry[2](from_json_value(obj["$value"]))


def dumps(value: Any) -> str:
    """EJSON text of ``value`` (compact, as Meteor's JSON.stringify)."""
    return json.dumps(to_json_value(value), separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """The Python value of EJSON ``text``. Raises ``ValueError`` (incl. ``EJSONError``)."""
    return from_json_value(json.loads(text))
