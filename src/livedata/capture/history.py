"""An object's history from the change log (the audit trail)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import QuerySet

from livedata.capture.models import Change


def history(obj: models.Model | type[models.Model], pk: Any = None) -> QuerySet[Change]:
    """Every recorded change of ``obj`` (an instance, or a model class and ``pk``), oldest first.

    TRUNCATE events are table-wide and not included (``Change.objects.filter(model=...,
    op="truncate")`` lists them). Django clears ``pk`` on delete: for a deleted instance
    call ``history(Model, pk)``.

    >>> [(c.op, c.changed, c.context.get("username")) for c in livedata.history(book)]
    """
    if isinstance(obj, models.Model):
        model, pk = type(obj), obj.pk
        if pk is None:
            raise ValueError(
                f"this {model.__name__} has no primary key (deleted instances lose it): "
                "use history(Model, pk)"
            )
    else:
        model = obj
        if pk is None:
            raise TypeError("history(Model, pk): pk is required with a model class")
    label = model._meta.label_lower
    return Change.objects.filter(model=label, object_pk=str(pk)).order_by("txid", "id")
