"""``livedata token USERNAME``: issue an HTTP API token (``Authorization: Bearer ...``),
or with ``--kind metrics`` a token that opens the metrics endpoint only (a scraper's)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from livedata.accounts import tokens


class Command(BaseCommand):
    help = "Issue an API token for a user (printed once; only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the token is for (admin)")
        parser.add_argument(
            "--days", type=int, default=None, help="expire after N days (default: never)"
        )
        parser.add_argument(
            "--kind",
            choices=["api", "metrics"],
            default="api",
            help="api: the HTTP APIs as the user; metrics: /livedata/metrics and nothing else",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User._default_manager.get_by_natural_key(options["username"])
        except User.DoesNotExist:
            raise CommandError(f"no user {options['username']!r}") from None
        days = options["days"]
        if days is not None and days <= 0:
            raise CommandError("--days must be positive")
        secret, _ = tokens.issue(
            user,
            kind=tokens.LoginToken.Kind(options["kind"]),
            lifetime=timedelta(days=days) if days else None,
            name=options["name"],
        )
        self.stdout.write(secret)
