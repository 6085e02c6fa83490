"""A service's filter: which lookups it may use, and checking it before it is kept.

Webhook subscriptions and the pull feed take the same filters (Django lookups on the
model's own columns, ``author__in``, ``title__startswith``...) and refuse the same
mistakes with the same text, here, each naming the lookup at fault:

- a field the Collection's ``filters`` does not name (``NotAFilter``), or a secret;
- a join or a transform (``author__name``, ``created__year``);
- a value that does not fit its lookup (``livedata.exposure.lookups``);
- a value Django cannot put in SQL, or one that can match no row (a number past its
  column's range);
- a filter that cannot be followed live: the in-memory matcher
  (``livedata.exposure.matching``) must decide every logged row, as webhooks and the
  pull feed both follow changes from the log alone.

Channels decode their own input first (pull: query-string text into lists and
booleans) and turn ``ExposureError`` into their own error reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import EmptyResultSet, FieldDoesNotExist, FieldError, ValidationError
from django.db import models

from livedata.exposure.collection import SECRET_FIELDS, Collection, ExposureError
from livedata.exposure.lookups import check_value
from livedata.exposure.matching import Matcher, compile_matcher

#: The lookups ``compile_matcher`` can follow, as told to a service.
FOLLOWED_LIVE = (
    "exact, iexact, in, range, isnull, gt/gte/lt/lte on non-text, "
    "contains/startswith/endswith and their i- forms"
)


class NotAFilter(ExposureError):
    """A key that names no field the Collection lets filters use."""

    def __init__(self, collection: type[Collection], key: str, allowed: set[str]) -> None:
        self.label = collection.name()
        self.allowed = ", ".join(sorted(allowed)) or "none"
        super().__init__(
            "filter",
            key,
            f"{key!r} is not an allowed filter of {self.label} (filters allowed on: "
            f"{self.allowed})",
        )


def filterable(collection: type[Collection]) -> set[str]:
    """Field names (and FK attnames) the Collection lets filters use; never a secret."""
    wanted = set(collection.filters)
    names: set[str] = set()
    for field in collection.model._meta.concrete_fields:
        if field.name in SECRET_FIELDS or field.attname in SECRET_FIELDS:
            continue
        if field.name in wanted or field.attname in wanted:
            names.update({field.name, field.attname})
    return names


def check_lookup(collection: type[Collection], key: Any, value: Any) -> None:
    """``ExposureError`` unless ``key=value`` is an allowed lookup with a fitting value."""
    if not isinstance(key, str) or not key:
        raise ExposureError("filter", None, "filter keys are Django lookups like 'author_id__in'")
    model = collection.model
    name, _, lookup = key.partition("__")
    if name == "pk":
        name = model._meta.pk.name
    allowed = filterable(collection)
    if name not in allowed:
        raise NotAFilter(collection, key, allowed)
    field = model._meta.get_field(name)
    if "__" in lookup or (lookup and not _is_lookup(field, lookup)):
        raise ExposureError(
            "filter",
            key,
            f"filter {key!r}: only lookups on the model's own columns "
            "(author=7, title__startswith=A, id__in=1,2)",
        )
    check_value(field, lookup, value, key)


def compile_filter(collection: type[Collection], lookups: Mapping[str, Any]) -> Matcher | None:
    """The in-memory matcher of a checked filter (None: no filter, every row).

    Raises ``ExposureError`` for the first mistake, its ``key`` the lookup at fault, or
    None when the mistake is the filter as a whole."""
    if not lookups:
        return None
    for key, value in lookups.items():
        check_lookup(collection, key, value)
    manager = collection.model._base_manager
    for key, value in lookups.items():  # each alone, for a precise error
        try:
            # compiled too: a number past its column's range makes Django give up on the
            # query (EmptyResultSet): a filter that can never match, or a 500 on a read
            manager.filter(**{key: value}).query.sql_with_params()
        except EmptyResultSet:
            raise ExposureError(
                "filter",
                key,
                f"filter {key!r} can match no row (an empty list, or a number out of the "
                "column's range)",
            ) from None
        except FieldError as exc:
            raise ExposureError("filter", key, f"filter {key!r}: {exc}") from None
        except (FieldDoesNotExist, ValidationError, ValueError, TypeError) as exc:
            raise ExposureError("filter", key, f"filter {key!r}: {_message(exc)}") from None
    try:
        matcher = compile_matcher(manager.filter(**lookups))
    except (ValidationError, ValueError, TypeError) as exc:
        raise ExposureError("filter", None, f"invalid filter value: {_message(exc)}") from None
    if matcher is None:
        raise ExposureError(
            "filter",
            None,
            "these filters cannot be followed live: use lookups on the model's own columns "
            f"({FOLLOWED_LIVE})",
        )
    return matcher


def _is_lookup(field: models.Field, lookup: str) -> bool:
    """A lookup of the column (a foreign key's: its target's, ``author__range``), not a
    transform nor a join (``author__name``)."""
    if field.get_lookup(lookup) is not None:
        return True
    return (
        isinstance(field, models.ForeignKey) and field.target_field.get_lookup(lookup) is not None
    )


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return str(exc)
