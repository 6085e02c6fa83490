"""Keeping a local model equal to a remote feed (what ``livedata mirror`` runs).

Each batch is applied in one local transaction together with the new position
(``MirrorPosition``), so a crash, a kill or a restart of either database resumes exactly
after the last batch that committed: nothing is applied twice or lost. Within a batch
only each row's last message counts (the feed sends one row's changes in write order),
applied as one upsert and one delete statement. A batch marked ``refetch`` (and the
first page of a mirror without a position) first empties the local table: the mirror
owns it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from django.db import DatabaseError, connection, models, transaction

from livedata.pull.client import Batch, PullClient
from livedata.pull.models import MirrorPosition


class MirrorError(Exception):
    """The local model cannot hold what the feed sends."""


class Mirror:
    def __init__(
        self,
        client: PullClient,
        target: type[models.Model],
        name: str,
        *,
        out: TextIO | None = None,
        progress_interval: float = 1.0,
    ) -> None:
        self.client = client
        self.target = target
        self.name = name
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.progress_interval = progress_interval
        self.fields = {f.name: f for f in target._meta.concrete_fields}
        self.fields.update({f.attname: f for f in target._meta.concrete_fields})
        self.pk = target._meta.pk
        self._checked = False
        self._columns: set[str] = set()
        self._last_print = 0.0
        self._started = time.monotonic()
        self._run_rows = 0
        self._last_change = 0.0
        self.position = self._load()

    def _load(self) -> MirrorPosition:
        position, _ = MirrorPosition.objects.get_or_create(
            name=self.name,
            defaults={"source": self.client.url, "target": self.target._meta.label},
        )
        if position.handle and position.offset != "-1":
            self.client.state.handle = position.handle
            self.client.state.offset = position.offset
        return position

    def run(self, *, stop: Callable[[], bool] | None = None) -> None:
        """Follow the feed until it ends (``live=False``: up to date) or ``stop()``."""
        phase = self.position.phase
        for batch in self.client:
            self._apply_retrying(batch)
            if phase == "snapshot" and batch.phase == "changes":
                self._say_snapshot_done()
            phase = batch.phase
            self._progress(batch)
            if stop is not None and stop():
                return

    def _apply_retrying(self, batch: Batch) -> None:
        delay, reload = 0.1, False
        while True:
            try:
                if reload:  # what the failed transaction may or may not have written
                    self.position = MirrorPosition.objects.get(name=self.name)
                self.apply(batch)
                return
            except DatabaseError as exc:  # the local database went away: same batch again
                self._say(f"local database error ({str(exc).strip()[:120]}); retrying")
                connection.close()
                time.sleep(delay)
                delay, reload = min(delay * 2, 5.0), True

    def apply(self, batch: Batch) -> None:
        """Write one batch and the position after it, in one transaction."""
        self._check(batch)
        fresh = batch.refetch or (
            batch.phase == "snapshot" and (self.position.offset == "-1" or not self.position.handle)
        )
        final: dict[Any, dict[str, Any] | None] = {}
        for message in batch.messages:
            key = self.pk.to_python(message["pk"])
            final[key] = None if message["op"] == "delete" else message["value"]
        rows = [self._instance(key, values) for key, values in final.items() if values is not None]
        gone = [key for key, values in final.items() if values is None]
        position = self.position
        with transaction.atomic():
            if fresh:
                with connection.cursor() as cur:
                    cur.execute(
                        f"DELETE FROM {connection.ops.quote_name(self.target._meta.db_table)}"
                    )
                position.snapshot_rows = 0
                position.changes = 0
                position.estimate = None
            if rows:
                update = [f.name for f in self._written_fields() if not f.primary_key]
                if update:
                    self.target._base_manager.bulk_create(
                        rows,
                        batch_size=1000,
                        update_conflicts=True,
                        unique_fields=[self.pk.name],
                        update_fields=update,
                    )
                else:
                    self.target._base_manager.bulk_create(
                        rows, batch_size=1000, ignore_conflicts=True
                    )
            if gone:
                self.target._base_manager.filter(pk__in=gone).delete()
            position.handle = batch.handle
            position.offset = batch.offset
            if batch.estimate is not None:
                position.estimate = batch.estimate
            if batch.phase == "snapshot":
                position.snapshot_rows += len(batch.messages)
            else:
                position.changes += len(batch.messages)
            position.phase = batch.phase
            position.save()
        self._run_rows += len(batch.messages)
        if batch.messages and batch.phase == "changes":
            self._last_change = time.monotonic()

    def _written_fields(self) -> list[models.Field]:
        return [f for f in self.target._meta.concrete_fields if f.attname in self._columns]

    def _check(self, batch: Batch) -> None:
        """At the first message: every value the feed sends has a local field."""
        if self._checked:
            return
        for message in batch.messages:
            if message["op"] == "delete":
                continue
            missing = [k for k in message["value"] if k not in self.fields]
            if missing:
                raise MirrorError(
                    f"{self.target._meta.label} has no field for {', '.join(missing)}: add "
                    "them, or mirror fewer with --fields"
                )
            self._columns = {self.fields[k].attname for k in message["value"]}
            self._checked = True
            return

    def _instance(self, key: Any, values: dict[str, Any]) -> models.Model:
        kwargs = {}
        for name, value in values.items():
            field = self.fields[name]
            kwargs[field.attname] = _python(field, value)
        kwargs[self.pk.attname] = key
        return self.target(**kwargs)

    # --- progress -------------------------------------------------------------------

    def _say(self, text: str, *, overwrite: bool = False) -> None:
        if self.tty and overwrite:
            self.out.write("\r\033[K" + text)
        else:
            self.out.write(("\n" if self.tty else "") + text + "\n")
        self.out.flush()

    def _progress(self, batch: Batch) -> None:
        now = time.monotonic()
        if batch.phase == "snapshot":
            if now - self._last_print < self.progress_interval:
                return
            self._last_print = now
            done = self.position.snapshot_rows
            rate = self._run_rows / max(now - self._started, 1e-6)
            total = self.position.estimate
            text = f"snapshot: {done:,} rows"
            if total:
                left = max(total - done, 0)
                eta = f"{left / rate:,.0f}s" if rate > 0 else "?"
                text += (
                    f" of ~{total:,} ({min(done / total, 1):.0%}), {rate:,.0f} rows/s, ETA {eta}"
                )
            else:
                text += f", {rate:,.0f} rows/s"
            self._say(text, overwrite=True)
            return
        if not batch.up_to_date or (
            not batch.messages and now - self._last_print < 5 * self.progress_interval
        ):
            return
        if batch.messages and now - self._last_print < self.progress_interval:
            return
        self._last_print = now
        ago = f", last {now - self._last_change:.1f}s ago" if self._last_change else ""
        self._say(
            f"live: up to date at {batch.offset}; {self.position.changes:,} changes applied{ago}",
            overwrite=True,
        )

    def _say_snapshot_done(self) -> None:
        seconds = time.monotonic() - self._started
        rows = self.position.snapshot_rows
        self._say(
            f"snapshot done: {rows:,} rows ({self._run_rows:,} in this run, "
            f"{self._run_rows / max(seconds, 1e-6):,.0f} rows/s)"
        )


def _python(field: models.Field, value: Any) -> Any:
    target = field.target_field if isinstance(field, models.ForeignKey) else field
    if value is None:
        return None
    if isinstance(target, models.JSONField):
        return value
    return target.to_python(value)
