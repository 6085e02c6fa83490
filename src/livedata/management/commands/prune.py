"""``livedata prune``: delete change-log rows older than the retention setting, and
expired login tokens (their DDP connections are closed, as Meteor's token expiry)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone

from livedata.capture import log
from livedata.conf import livedata_settings


def _duration(value: str) -> timedelta:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    try:
        return timedelta(**{units[value[-1]]: float(value[:-1])})
    except (KeyError, ValueError, IndexError):
        raise ValueError(f"invalid duration {value!r}: use e.g. 90s, 15m, 12h, 30d") from None


class Command(BaseCommand):
    help = (
        "Delete change-log rows of transactions committed before LIVEDATA['RETENTION'] "
        "(or --older-than) ago, judged by the marks earlier runs recorded. Readers whose "
        "position falls behind get an explicit 'refetch' error, never a gap."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", metavar="DURATION", help="e.g. 90s, 15m, 12h, 30d")

    def handle(self, *args: Any, **options: Any) -> None:
        from livedata.accounts.tokens import prune_expired

        self.stdout.write(f"deleted {prune_expired()} expired login token(s)")
        if options["older_than"]:
            try:
                keep = _duration(options["older_than"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        else:
            keep = livedata_settings().RETENTION
            if keep is None:
                self.stdout.write("LIVEDATA['RETENTION'] is None: keeping everything")
                return
        cutoff = timezone.now() - keep
        deleted = log.prune(connection, cutoff if keep else None)
        self.stdout.write(f"pruned {deleted} change(s) committed before {cutoff.isoformat()}")
