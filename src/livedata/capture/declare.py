"""Which models are captured, and the triggers that capture them.

A model opts in next to its definition::

    @livedata.track
    class Book(models.Model): ...

or in settings: ``LIVEDATA = {"TRACK": ["bookstore.Book"]}``. Either way the triggers are
django-pgtrigger triggers: ``makemigrations`` writes them into the app's migrations,
``migrate`` installs them, and removing the declaration then migrating removes them.
``livedata triggers ls`` lists them and flags drift; ``livedata triggers prune`` drops orphans.

Trigger design, measured in ``bench/write_overhead.py`` (row- vs statement-level side by
side): INSERT and DELETE are statement-level with transition tables, writing a whole
statement's rows with one ``INSERT ... SELECT`` (bulk inserts ~1.7x faster than
row-level); UPDATE is row-level (see ``CaptureUpdate``); TRUNCATE is one statement-level
event. Each fires ``pg_notify(channel, '')``; PostgreSQL folds identical notifications of
a transaction into one. Updates that change nothing are not recorded. An update that
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
            model,
            label=_sql_literal(opts.label_lower),
            table=_sql_literal(opts.db_table),
            pk=_quote_ident(pk.column),
        )
        channel = _sql_literal(livedata_settings().LISTENER_NOTIFY_CHANNEL)
        return f"{body}\nIF FOUND THEN PERFORM pg_notify({channel}, ''); END IF;\nRETURN NULL;"

    def body(self, model: Any, *, label: str, table: str, pk: str) -> str:
        raise NotImplementedError


_COLUMNS = f"INSERT INTO {LOG_TABLE} (model, table_name, op, pk, old, new, changed, context)"


class _CaptureRows(_CaptureTrigger):
    """INSERT or DELETE: each row of the one transition table becomes one log row."""

    level = pgtrigger.Statement
    op = ""

    def body(self, model: Any, *, label: str, table: str, pk: str) -> str:
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
    """Row-level: measured faster than the statement-level form for single-row updates,
    equal for bulk ones, and immune to the plan trap of joining OLD and NEW transition
    tables (a plan cached for a 1-row update made a later 10,000-row update quadratic).

    ``changed`` compares the model's columns one by one (cheap); if none differ although
    the row image did (a column Django does not know), it falls back to comparing the
    JSON of the whole row, and records nothing when even that finds no difference.
    """

    name = "livedata_update"
    level = pgtrigger.Row
    operation = pgtrigger.Update
    condition = pgtrigger.Condition("NOT (OLD *= NEW)")
    declare = [("_old", "jsonb"), ("_new", "jsonb"), ("_changed", "text[]")]

    def body(self, model: Any, *, label: str, table: str, pk: str) -> str:
        from django.db import connection

        checks = ",\n        ".join(
            f"CASE WHEN {_compare(f.column, f.db_type(connection))} "
            f"THEN {_sql_literal(f.column)} END"
            for f in model._meta.concrete_fields
            if f.column and not f.primary_key  # equal here: a key change is handled above
        )
        return f"""_old := to_jsonb(OLD);
_new := to_jsonb(NEW);
IF OLD.{pk} IS DISTINCT FROM NEW.{pk} THEN
    {_COLUMNS} VALUES
    ({label}, {table}, 'delete', OLD.{pk}::text, _old, NULL, NULL, {CONTEXT_SQL}),
    ({label}, {table}, 'insert', NEW.{pk}::text, NULL, _new, NULL, {CONTEXT_SQL});
ELSE
    _changed := array_remove(ARRAY[
        {checks}
    ], NULL);
    IF cardinality(_changed) = 0 THEN
        _changed := ARRAY(
            SELECT e.key FROM jsonb_each(_new) e WHERE e.value IS DISTINCT FROM _old -> e.key
        );
        IF cardinality(_changed) = 0 THEN RETURN NULL; END IF;
    END IF;
    {_COLUMNS} VALUES
    ({label}, {table}, 'update', NEW.{pk}::text, _old, _new, _changed, {CONTEXT_SQL});
END IF;"""


class CaptureTruncate(_CaptureTrigger):
    name = "livedata_truncate"
    level = pgtrigger.Statement
    operation = pgtrigger.Truncate

    def body(self, model: Any, *, label: str, table: str, pk: str) -> str:
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


# Column types without an equality operator: compare their text form.
_NO_EQUALITY = ("json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle")


def _compare(column: str, db_type: str | None) -> str:
    col = _quote_ident(column)
    if db_type and db_type.split("(")[0].strip().lower() in _NO_EQUALITY:
        return f"OLD.{col}::text IS DISTINCT FROM NEW.{col}::text"
    return f"OLD.{col} IS DISTINCT FROM NEW.{col}"


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'
