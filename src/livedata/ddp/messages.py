"""Client frames in, server messages out, with Meteor's parsing and serialising rules.

Parsing (``parse``) mirrors Meteor's parseDDP: invalid JSON (including the ``NaN`` and
``Infinity`` tokens Python would accept and JavaScript's JSON.parse refuses) or a JSON
scalar is a "Bad request" with no offending message; an object or array without ``msg``
is a "Bad request" that quotes it; EJSON in ``params``/``fields``/``result`` that cannot
be decoded is a "Parse error". Only those three keys are EJSON-decoded.

Serialising (``serialize``) mirrors stringifyDDP: ``fields``/``params``/``result`` are
EJSON-encoded, fields set to ``UNDEFINED`` become ``cleared``, an empty ``fields`` is
dropped, and keys whose value is ``UNDEFINED`` vanish (e.g. a result with no value).
Lone surrogates (a client may send ``"\\ud800"``, which JSON allows and Python decodes to
a string UTF-8 cannot carry) are written as ``\\uXXXX`` escapes, as JavaScript's
``JSON.stringify`` does: the frame stays valid UTF-8 and the client gets its string back.
Every frame is strict JSON: a non-finite number outside those keys (``1e400`` quoted in
an ``offendingMessage``) is sent as ``null``, as JavaScript's JSON.stringify does.

Frames are encoded with orjson (measured against the standard library's ``json`` on
DDP's ``added`` and ``changed``: 0.2-0.3 µs against 2.7-3.3 µs per message, so that
``serialize`` as a whole costs 1.0-2.0 µs instead of 3.8-6.6 µs), with the same text for
the same values; what orjson refuses (lone surrogates, integers past 64 bits, non-string
keys, nesting past 254 levels) goes the ``json`` way as before. Only float spellings may
differ (``1e16`` for ``1e+16``): the same numbers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from livedata.ddp import ejson

#: what ``_plain`` encodes as EJSON, not orjson natively (datetimes as ISO text, ...)
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

EJSON_KEYS = ("fields", "params", "result")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Undefined:
    """JavaScript's ``undefined``: the key is left out of the serialised message."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED = _Undefined()


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that is not a DDP message: answer ``error`` with ``reason``."""

    reason: str
    offending: Any = UNDEFINED


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def parse(text: str | bytes) -> dict[str, Any] | BadFrame:
    """A client message (a dict with a truthy ``msg``), or why it is not one."""
    try:
        value = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return BadFrame("Bad request")
    if not isinstance(value, dict | list):
        return BadFrame("Bad request")
    if isinstance(value, list) or not value.get("msg"):
        return BadFrame("Bad request", value)
    try:
        for key in EJSON_KEYS:
            if key in value:
                value[key] = ejson.from_json_value(value[key])
    except (ValueError, RecursionError):
        return BadFrame("Parse error")
    return value


def serialize(message: dict[str, Any]) -> str:
    """The text frame for a server message (see the module docstring for the rules)."""
    out: dict[str, Any] = {}
    for key, value in message.items():
        if value is UNDEFINED:
            continue
        if key == "fields":
            fields = {}
            cleared = []
            for name, field_value in value.items():
                if field_value is UNDEFINED:
                    cleared.append(name)
                else:
                    fields[name] = ejson.to_json_value(field_value)
            if fields:
                out["fields"] = fields
            if cleared:
                out["cleared"] = cleared
        elif key in ("params", "result"):
            out[key] = ejson.to_json_value(value)
        else:
            out[key] = value
    try:  # non-finite floats become null here, as on the json way below
        return orjson.dumps(out, default=_plain, option=_ORJSON_OPTIONS).decode()
    except (orjson.JSONEncodeError, RecursionError):
        pass  # what orjson refuses (see the module docstring): the json way
    try:
        text = json.dumps(
            out, separators=(",", ":"), ensure_ascii=False, default=_plain, allow_nan=False
        )
    except ValueError:  # a non-finite float outside the EJSON keys (rare: scan only then)
        text = json.dumps(_finite(out), separators=(",", ":"), ensure_ascii=False, default=_plain)
    if text.isascii():  # the common case, checked in C: no scan for surrogates
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON.stringify's null), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    # offendingMessage and error details hold decoded values: send them as plain JSON
    return ejson.to_json_value(value)


def error(reason: str, offending: Any = UNDEFINED) -> dict[str, Any]:
    return {"msg": "error", "reason": reason, "offendingMessage": offending}
