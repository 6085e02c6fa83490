"""The change log: one append-only table written only by triggers."""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models.functions import Now


class Xid8Field(models.BigIntegerField):
    """A PostgreSQL ``xid8`` (64-bit transaction id), read as a Python int."""

    description = "PostgreSQL transaction id (xid8)"

    def db_type(self, connection: Any) -> str:
        return "xid8"

    def rel_db_type(self, connection: Any) -> str:
        return "xid8"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> int | None:
        return None if value is None else int(value)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        return None if value is None else str(int(value))


class Op(models.TextChoices):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    TRUNCATE = "truncate"


class Change(models.Model):
    """One committed row change (or a TRUNCATE) of a captured table.

    Readers order by ``(txid, id)`` and only read transactions that can no longer be
    in flight (see ``livedata.capture.log``), so out-of-order commits are never skipped.
    """

    id = models.BigAutoField(primary_key=True)
    txid = Xid8Field(
        db_default=models.Func(function="pg_current_xact_id", output_field=Xid8Field()),
        editable=False,
        help_text="Writing transaction (xid8)",
    )
    model = models.CharField(max_length=200, help_text="Model label, e.g. bookstore.book")
    table = models.CharField(max_length=200, db_column="table_name")
    op = models.CharField(max_length=8, choices=Op.choices)
    object_pk = models.TextField(
        null=True, db_column="pk", help_text="Primary key as text (null for truncate)"
    )
    old = models.JSONField(null=True, help_text="Row before (update, delete)")
    new = models.JSONField(null=True, help_text="Row after (insert, update)")
    changed = ArrayField(models.TextField(), null=True, help_text="Columns an update changed")
    context = models.JSONField(null=True, help_text="Audit context: user, request, ...")
    at = models.DateTimeField(db_default=Now(), help_text="Time of the writing statement")

    class Meta:
        db_table = "livedata_change"
        ordering = ["txid", "id"]
        managed = True
        permissions = [
            # the audit context names users, their addresses and request paths: services
            # given only a model's view permission must not learn them (issue 19)
            ("view_change_context", "Can see who made changes in webhook deliveries"),
        ]
        indexes = [
            # the reader's order and cursor: WHERE (txid, id) > cursor ORDER BY txid, id
            models.Index(fields=["txid", "id"], name="livedata_change_cursor"),
            # one row's history in write order (livedata.history), and the pull feed's
            # per-row order checks: the latest change of a row before a position
            models.Index(
                fields=["model", "object_pk", "id"],
                name="livedata_change_model_pk_id",
                include=["txid"],
            ),
            # for pruning by age: BRIN is tiny and nearly free to maintain on an
            # append-only table whose `at` grows with its physical order
            BrinIndex(fields=["at"], name="livedata_change_at"),
        ]

    def __str__(self) -> str:
        return f"{self.op} {self.model} pk={self.object_pk}"


class SnapshotField(models.TextField):
    """A PostgreSQL ``pg_snapshot``, read as its text form ``xmin:xmax:xip,...``."""

    description = "PostgreSQL snapshot (pg_snapshot)"

    def db_type(self, connection: Any) -> str:
        return "pg_snapshot"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        return None if value is None else str(value)


class LogHorizon(models.Model):
    """The pruning horizon: transactions below ``txid`` may have lost their rows.

    A position that has not received every transaction below it must refetch
    (``livedata.capture.log.PositionExpired``). ``last_id`` is unused since 0.2.
    """

    name = models.CharField(primary_key=True, max_length=20, default="pruned")
    txid = Xid8Field()
    last_id = models.BigIntegerField()
    pruned_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "livedata_log_horizon"

    def __str__(self) -> str:
        return f"{self.name} below {self.txid}"


class LogMark(models.Model):
    """A snapshot and when it was taken: what had committed by then (for pruning).

    ``livedata prune`` records one per run and deletes the transactions that the newest
    mark older than the retention cutoff saw: those committed before the cutoff.
    """

    taken_at = models.DateTimeField(db_default=Now())
    snapshot = SnapshotField(db_default=models.Func(function="pg_current_snapshot"))

    class Meta:
        db_table = "livedata_log_mark"
        indexes = [models.Index(fields=["taken_at"], name="livedata_log_mark_at")]

    def __str__(self) -> str:
        return f"{self.snapshot} at {self.taken_at}"
