"""``livedata deliver``: a webhook delivery worker (run as many as you like, anywhere)."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Deliver webhooks: claim subscriptions (cooperating with other workers and "
        "`livedata serve` through the database) and PUT their changes until stopped."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help="subscriptions delivered at once (default: WEBHOOK_CONCURRENCY)",
        )

    def handle(self, *args: Any, concurrency: int | None, **options: Any) -> None:
        from livedata.webhooks.worker import run_worker

        if concurrency is not None and concurrency < 1:
            from django.core.management.base import CommandError

            raise CommandError("--concurrency must be at least 1")

        def ready() -> None:
            self.stderr.write("livedata deliver: delivering webhooks (Ctrl-C stops)")

        asyncio.run(run_worker(concurrency, ready=ready))
