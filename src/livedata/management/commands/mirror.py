"""``livedata mirror``: keep a local model equal to a remote livedata pull feed."""

from __future__ import annotations

import os
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from livedata.pull.client import PullClient, PullError
from livedata.pull.mirror import Mirror, MirrorError
from livedata.pull.models import MirrorPosition


class Command(BaseCommand):
    help = (
        "Copy a remote model's rows into a local model, then keep it in sync with its "
        "changes (resumes where it stopped)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "base_url", help="where livedata.urls is mounted, e.g. https://host/livedata/"
        )
        parser.add_argument("model", metavar="APP.MODEL", help="the remote model")
        parser.add_argument("--into", required=True, metavar="APP.MODEL", help="the local model")
        parser.add_argument("--fields", help="comma-separated published fields (default: all)")
        parser.add_argument(
            "--filter",
            action="append",
            default=[],
            metavar="LOOKUP=VALUE",
            help="a filter the remote allows, e.g. country=NZ (repeatable)",
        )
        parser.add_argument(
            "--token", help="API token (livedata token USER); default: $LIVEDATA_TOKEN"
        )
        parser.add_argument(
            "--name", help="name of the saved position (default: from the arguments)"
        )
        parser.add_argument("--limit", type=int, help="rows per request")
        parser.add_argument("--sse", action="store_true", help="server-sent events, not long-polls")
        parser.add_argument("--once", action="store_true", help="stop once up to date")
        parser.add_argument("--reset", action="store_true", help="forget the saved position first")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            target = apps.get_model(options["into"])
        except (LookupError, ValueError):
            raise CommandError(f"no local model {options['into']!r}") from None
        filters = {}
        for item in options["filter"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--filter {item!r}: give LOOKUP=VALUE")
            filters[key] = value
        fields = [f.strip() for f in options["fields"].split(",")] if options["fields"] else None
        name = (
            options["name"]
            or (
                f"{options['model'].lower()} -> {target._meta.label_lower} @ {options['base_url']}"
            )[:255]
        )
        if options["reset"]:
            MirrorPosition.objects.filter(name=name).delete()
        client = PullClient(
            options["base_url"],
            options["model"].lower(),
            token=options["token"] or os.environ.get("LIVEDATA_TOKEN"),
            fields=fields,
            filters=filters,
            limit=options["limit"],
            live=not options["once"],
            sse=options["sse"],
        )
        mirror = Mirror(client, target, name, out=self.stdout._out)
        self.stdout.write(
            f"mirroring {client.url} into {target._meta.label} "
            f"(position {name!r}: {mirror.position.offset})"
        )
        try:
            mirror.run()
        except PullError as exc:
            raise CommandError(f"the feed refused: {exc}") from None
        except MirrorError as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            self.stdout.write("\nstopped")
