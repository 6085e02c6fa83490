"""The values a filter lookup accepts, checked before Django sees them.

Webhook subscriptions (JSON) and the pull feed (query strings) both take Django lookups
from services (checked by ``livedata.exposure.filters``), and Django is lenient in ways
that turn a mistake into a filter that silently selects the wrong rows:
``title__in={"a": 1}`` iterates the dict's keys, ``author=1.9`` is truncated to 1,
``title=None`` becomes ``isnull``, an empty ``in`` never matches. ``check_value``
refuses each of these with a message that says what the lookup needs, per lookup:

- ``isnull``: a boolean;
- ``in``: a non-empty list of scalars, each a valid value of the field;
- ``range``: a list of two such scalars (low, high);
- every other lookup: one scalar that the field's ``to_python`` accepts (a string, a
  number, a boolean for boolean fields; integers for integer fields, not 1.5 or true);
  text lookups (``iexact``, ``contains``, ``startswith``...) a string.

A JSON column compared with ``exact`` takes any JSON value (that is its meaning).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from livedata.exposure.collection import ExposureError

#: Lookups whose value is text matched against text.
TEXT_LOOKUPS = frozenset(
    {"iexact", "contains", "icontains", "startswith", "istartswith", "endswith", "iendswith"}
)


class LookupValueError(ExposureError):
    """A lookup's value that does not fit it; ``message`` says what it needs."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__("filter", key, f"filter {key!r}: {message}")


def check_value(field: models.Field, lookup: str, value: Any, key: str) -> None:
    """Raise ``LookupValueError`` unless ``value`` fits ``field__lookup`` (see above)."""
    lookup = lookup or "exact"
    if lookup == "isnull":
        if not isinstance(value, bool):
            raise LookupValueError(key, f"__isnull needs true or false, not {_shown(value)}")
        return
    if isinstance(field, models.JSONField) and lookup == "exact":
        return
    if lookup in ("in", "range"):
        if not isinstance(value, list | tuple):
            example = "[1, 2]" if lookup == "in" else "[low, high]"
            raise LookupValueError(
                key, f"__{lookup} needs a list of values like {example}, not {_shown(value)}"
            )
        if lookup == "in" and not value:
            raise LookupValueError(key, "__in needs at least one value (it would match nothing)")
        if lookup == "range" and len(value) != 2:
            raise LookupValueError(key, f"__range needs two values, low and high, not {len(value)}")
        for item in value:
            _scalar(field, lookup, item, key)
        return
    _scalar(field, lookup, value, key)


def _scalar(field: models.Field, lookup: str, value: Any, key: str) -> None:
    name = field.name
    if value is None:
        hint = f" (use {name}__isnull)" if lookup in ("exact", "in") else ""
        raise LookupValueError(key, f"null is not a value to compare with{hint}")
    if not isinstance(value, str | int | float | bool):
        raise LookupValueError(
            key, f"needs a single value (a string or a number), not {_shown(value)}"
        )
    if lookup in TEXT_LOOKUPS and not isinstance(value, str):
        raise LookupValueError(key, f"__{lookup} needs a string, not {_shown(value)}")
    target = field.target_field if isinstance(field, models.ForeignKey) else field
    if isinstance(value, bool) and not isinstance(target, models.BooleanField):
        raise LookupValueError(key, f"{name} is not a boolean field: true/false is not its value")
    integer = isinstance(target, models.IntegerField)
    if integer and isinstance(value, float) and not value.is_integer():
        raise LookupValueError(key, f"{name} holds integers, not {value!r}")
    if lookup in TEXT_LOOKUPS:
        return  # any text may be looked for in the column's text
    try:
        target.to_python(value)
    except ValidationError as exc:
        raise LookupValueError(
            key, f"{_shown(value)} is not a valid {name}: {_text(exc)}"
        ) from None
    except (TypeError, ValueError) as exc:
        raise LookupValueError(key, f"{_shown(value)} is not a valid {name}: {exc}") from None


def _shown(value: Any) -> str:
    kind = {dict: "an object", list: "a list", tuple: "a list", type(None): "null"}.get(type(value))
    if kind is not None:
        return kind
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(exc: ValidationError) -> str:
    return "; ".join(exc.messages)
