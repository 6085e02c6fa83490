"""``livedata tail``: print committed changes as they happen."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from livedata.capture import log
from livedata.capture.declare import captured_models
from livedata.capture.listener import Listener
from livedata.capture.log import (
    Batch,
    ChangeRow,
    MissingLogTable,
    Position,
    PositionError,
    PositionExpired,
)


def format_line(row: ChangeRow) -> str:
    """One readable line: transaction, time, op, model#pk, changed columns, who."""
    ctx = row.context or {}
    who = ctx.get("username") or ctx.get("user_id")
    req = " ".join(str(ctx[k]) for k in ("method", "path") if ctx.get(k))
    parts = [
        f"tx{row.txid}",
        row.at.strftime("%H:%M:%S.%f")[:-3],
        f"{row.op:<8}",
        f"{row.model}#{row.pk}" if row.pk is not None else row.model,
    ]
    if row.op == "update" and row.changed:
        parts.append("changed=" + ",".join(row.changed))
    if who:
        parts.append(f"by={who}")
    if req:
        parts.append(f"[{req}]")
    return " ".join(parts)


class Command(BaseCommand):
    help = "Print committed changes from the change log as they happen (Ctrl-C to stop)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON object per line")
        parser.add_argument(
            "--model",
            action="append",
            default=[],
            metavar="APP.MODEL",
            help="only this model (repeatable)",
        )
        start = parser.add_mutually_exclusive_group()
        start.add_argument(
            "--since", metavar="POSITION", help="changes after this position (--json prints them)"
        )
        start.add_argument(
            "--from-start", action="store_true", help="every change still in the log"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        models = [self._label(m) for m in options["model"]]
        position: Position | None = None
        if options["since"]:
            try:
                position = Position.parse(options["since"])
            except PositionError as exc:
                raise CommandError(str(exc)) from None
        elif options["from_start"]:
            position = self._oldest()
        as_json = options["json"]
        out = self.stdout

        async def printer(batch: Batch) -> None:
            for i, row in enumerate(batch.rows):
                if as_json:
                    line = row.as_dict(batch.position_after(i))
                    out.write(json.dumps(line, default=str, separators=(",", ":")))
                else:
                    out.write(format_line(row))
            out.flush()

        listener = Listener(position=position, models=models or None)
        try:
            asyncio.run(self._run(listener, printer))
        except PositionExpired as exc:
            raise CommandError(str(exc)) from None
        except MissingLogTable as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            pass

    async def _run(self, listener: Listener, printer: Any) -> None:
        listener.follow(printer, name="tail")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, listener.stop)
        if sys.stderr.isatty():
            self.stderr.write("livedata tail: waiting for changes (Ctrl-C to stop)")
        await listener.run()

    def _oldest(self) -> Position:
        """Where --from-start begins: the pruned horizon (or the very start)."""
        from django.db import connection

        return log.oldest(connection)

    def _label(self, value: str) -> str:
        try:
            model = apps.get_model(value)
        except (LookupError, ValueError):
            known = ", ".join(sorted(m._meta.label for m in captured_models())) or "none"
            raise CommandError(
                f"unknown model {value!r} (use app_label.ModelName). Captured models: {known}"
            ) from None
        return model._meta.label_lower
