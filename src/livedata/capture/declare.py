"""Which models are captured, and the triggers that capture them.

A model opts in next to its definition::

    @livedata.track
    class Book(models.Model): ...

or in settings: ``LIVEDATA = {"TRACK": ["bookstore.Book"]}``. Either way the triggers are
django-pgtrigger triggers: ``makemigrations`` writes them into the app's migrations,
``migrate`` installs them, and removing the declaration then migrating removes them.
``livedata triggers ls`` lists them and flags drift; ``livedata triggers prune`` drops orphans.

Trigger design (measured in ``bench/write_overhead.py``): statement-level triggers with
transition tables write a whole statement's rows with one ``INSERT ... SELECT``; one
trigger per operation because PostgreSQL allows transition tables on single-event
triggers only, plus one for TRUNCATE. Each fires ``pg_notify(channel, '')`` once per
statement; PostgreSQL folds identical notifications of a transaction into one.
Updates that change nothing (same binary row image) are not recorded. An update that
changes the primary key is recorded as a delete of the old key and an insert of the new.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pgtrigger
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from pgtrigger import compiler

from livedata.conf import livedata_settings

M = TypeVar("M", bound=type[models.Model])

#: Every capture trigger's name starts with this (in PostgreSQL: ``pgtrigger_<name>_<hash>``).
PREFIX = "livedata_"
LOG_TABLE = "livedata_change"
CONTEXT_SQL = "NULLIF(current_setting('livedata.context', true), '')::jsonb"


class CaptureTriggerSql(compiler.UpsertTriggerSql):
    """pgtrigger's install SQL without its per-row ``pgtrigger.ignore`` check.

    That check runs a PL/pgSQL exception block (a subtransaction) on every firing, which
    costs more than the capture itself; capture must never be skipped anyway.
    Version 1 of this template: migrations reference it, so never change it in place.
    """

    def get_template(self) -> str:
        return """
            CREATE OR REPLACE FUNCTION {pgid}()
            RETURNS TRIGGER AS $$
                {declare}
                BEGIN
                    {func}
                END;
            $$ LANGUAGE plpgsql;

            DROP TRIGGER IF EXISTS {pgid} ON {table};
            CREATE {constraint} TRIGGER {pgid}
                {when} {operation} ON {table}
                {timing}
                {referencing}
                FOR EACH {level} {condition}
                EXECUTE PROCEDURE {execute};

            COMMENT ON TRIGGER {pgid} ON {table} IS '{hash}';
        """


class CompiledCaptureTrigger(compiler.Trigger):
    """A compiled capture trigger whose uninstall also drops its function."""

    @property
    def uninstall_sql(self) -> str:
        return f"{super().uninstall_sql} DROP FUNCTION IF EXISTS {self.sql.pgid}();"


class _CaptureTrigger(pgtrigger.Trigger):
    """Base of the four capture triggers; ``body`` renders the SQL for one model."""

    when = pgtrigger.After

    def compile(self, model: Any) -> compiler.Trigger:
        compiled = super().compile(model)
        return CompiledCaptureTrigger(
            name=compiled.name, sql=CaptureTriggerSql(**compiled.sql.kwargs)
        )

    def get_func(self, model: Any) -> str:
        opts = model._meta
        pk = opts.pk
        if pk is None or not getattr(pk, "column", None):
            raise ImproperlyConfigured(f"{opts.label} needs a single-column primary key")
        body = self.body(
            label=_sql_literal(opts.label_lower),
            table=_sql_literal(opts.db_table),
            pk=_quote_ident(pk.column),
        )
        channel = _sql_literal(livedata_settings().NOTIFY_CHANNEL)
        return f"{body}\nIF FOUND THEN PERFORM pg_notify({channel}, ''); END IF;\nRETURN NULL;"

    def body(self, *, label: str, table: str, pk: str) -> str:
        raise NotImplementedError


_COLUMNS = f"INSERT INTO {LOG_TABLE} (model, table_name, op, pk, old, new, changed, context)"


class _CaptureRows(_CaptureTrigger):
    """INSERT or DELETE: each row of the one transition table becomes one log row."""

    level = pgtrigger.Statement
    op = ""

    def body(self, *, label: str, table: str, pk: str) -> str:
        if self.op == "insert":
            alias, rows, old, new = "n", "livedata_new", "NULL", "to_jsonb(n)"
        else:
            alias, rows, old, new = "o", "livedata_old", "to_jsonb(o)", "NULL"
        return f"""{_COLUMNS}
SELECT {label}, {table}, '{self.op}', {alias}.{pk}::text, {old}, {new}, NULL, {CONTEXT_SQL}
FROM {rows} {alias};"""


class CaptureInsert(_CaptureRows):
    name = "livedata_insert"
    op = "insert"
    operation = pgtrigger.Insert
    referencing = pgtrigger.Referencing(new="livedata_new")


class CaptureDelete(_CaptureRows):
    name = "livedata_delete"
    op = "delete"
    operation = pgtrigger.Delete
    referencing = pgtrigger.Referencing(old="livedata_old")


class CaptureUpdate(_CaptureTrigger):
    name = "livedata_update"
    level = pgtrigger.Statement
    operation = pgtrigger.Update
    referencing = pgtrigger.Referencing(old="livedata_old", new="livedata_new")

    def body(self, *, label: str, table: str, pk: str) -> str:
        # Rows pair by primary key; `*=` compares binary row images, so it works for
        # every column type (json, point, ...) and treats NULL as equal to NULL.
        return f"""{_COLUMNS}
SELECT {label}, {table}, c.op, c.pk, c.old, c.new, c.changed, {CONTEXT_SQL}
FROM (
    SELECT 1 AS step, 'update' AS op, n.{pk}::text AS pk, j.oj AS old, j.nj AS new,
           ARRAY(SELECT e.key FROM jsonb_each(j.nj) e WHERE e.value IS DISTINCT FROM j.oj -> e.key)
               AS changed
    FROM livedata_new n JOIN livedata_old o ON o.{pk} = n.{pk}
    CROSS JOIN LATERAL (SELECT to_jsonb(o) AS oj, to_jsonb(n) AS nj) j
    WHERE NOT (o *= n)
    UNION ALL
    SELECT 2, 'delete', o.{pk}::text, to_jsonb(o), NULL, NULL FROM livedata_old o
    WHERE NOT EXISTS (SELECT 1 FROM livedata_new n WHERE n.{pk} = o.{pk})
    UNION ALL
    SELECT 3, 'insert', n.{pk}::text, NULL, to_jsonb(n), NULL FROM livedata_new n
    WHERE NOT EXISTS (SELECT 1 FROM livedata_old o WHERE o.{pk} = n.{pk})
) c ORDER BY c.step;"""


class CaptureTruncate(_CaptureTrigger):
    name = "livedata_truncate"
    level = pgtrigger.Statement
    operation = pgtrigger.Truncate

    def body(self, *, label: str, table: str, pk: str) -> str:
        return f"""{_COLUMNS}
VALUES ({label}, {table}, 'truncate', NULL, NULL, NULL, NULL, {CONTEXT_SQL});"""


CAPTURE_TRIGGERS: tuple[pgtrigger.Trigger, ...] = (
    CaptureInsert(),
    CaptureUpdate(),
    CaptureDelete(),
    CaptureTruncate(),
)


def track(model: M) -> M:
    """Class decorator: record every committed change of this model in the change log."""
    if model._meta.abstract or model._meta.proxy:
        raise ImproperlyConfigured(f"{model.__name__}: only concrete models can be captured")
    return pgtrigger.register(*CAPTURE_TRIGGERS)(model)


def is_captured(model: type[models.Model]) -> bool:
    return any(
        getattr(t, "name", "").startswith(PREFIX) for t in getattr(model._meta, "triggers", [])
    )


def captured_models() -> list[type[models.Model]]:
    """Every model whose capture is declared (``@livedata.track`` or ``LIVEDATA["TRACK"]``)."""
    return [m for m in apps.get_models() if is_captured(m)]


def register_from_settings() -> None:
    """Declare capture for the models named in ``LIVEDATA["TRACK"]`` (at app ready)."""
    for label in livedata_settings().TRACK:
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"LIVEDATA['TRACK'] names {label!r}, which is not an installed model "
                "(use 'app_label.ModelName')."
            ) from exc
        if not is_captured(model):
            track(model)


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'
