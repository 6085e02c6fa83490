"""``livedata demo``: migrate, seed, and serve the bookstore demo."""

from __future__ import annotations

import os
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from livedata.conf import livedata_settings
from livedata.demo.bookstore.seed import USERS, seed, seed_subscription


class Command(BaseCommand):
    help = "Set up the bookstore demo (migrate, seed) and serve it."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-input", action="store_false", dest="interactive", help="never prompt"
        )
        parser.add_argument("--setup-only", action="store_true", help="migrate and seed, then exit")

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        from django.db import connection

        call_command("migrate", interactive=False, verbosity=0)
        seed()
        local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        seed_subscription(f"http://{local}:{port}/example-receiver/")
        base = f"http://{host}:{port}"
        ddp_at = f"ws://{host}:{port}{livedata_settings().DDP_PATH_PREFIX.rstrip('/')}/websocket"
        lines = [
            "",
            "livedata demo: the bookstore",
            f"  database      {_where(connection)}",
            f"  site          {base}/",
            f"  admin         {base}/admin/",
            f"  change log    {base}/admin/livedata/change/",
            f"  DDP           {ddp_at}  (methods: {', '.join(_methods())})",
            f"  webhooks      {base}/livedata/subscriptions/  (demo's 'example-receiver' PUTs "
            f"to {base}/example-receiver/)",
            "  credentials   " + "   ".join(f"{u} / {p}" for u, _, p, _ in USERS),
            "  watch changes `livedata tail` in another terminal",
            "",
        ]
        self.stdout.write("\n".join(lines))
        if options["setup_only"]:
            return
        from django.conf import settings

        from livedata.management.commands.serve import serve

        if host in ("0.0.0.0", "::"):
            self.stdout.write(
                f"  other names   only {', '.join(settings.ALLOWED_HOSTS)} are served: set "
                "LIVEDATA_ALLOWED_HOSTS=name,... to reach the demo by another name\n"
            )
        elif host not in settings.ALLOWED_HOSTS:
            settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, host]
        if "LIVEDATA_SITE_URL" not in os.environ:  # reset links point where the demo serves
            settings.LIVEDATA = {
                **(getattr(settings, "LIVEDATA", None) or {}),
                "SITE_URL": f"http://{local}:{port}",
            }
            livedata_settings.cache_clear()  # assigned directly: no setting_changed
        serve(host, port)


def _methods() -> list[str]:
    from livedata.publish.methods import registry

    return registry.names()


def _where(connection: Any) -> str:
    settings = connection.settings_dict
    if settings["ENGINE"] == "livedata.embedded":
        from livedata.embedded.server import default_data_dir

        return f"embedded PostgreSQL, data in {default_data_dir()} (DATABASE_URL unset)"
    host = settings.get("HOST") or "localhost"
    return f"{settings['NAME']} on {host}:{settings.get('PORT') or 5432} (DATABASE_URL)"
