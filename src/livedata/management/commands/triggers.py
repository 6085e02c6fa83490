"""``livedata triggers ls|prune``: the capture triggers in the database versus the code."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from pgtrigger import core, installation, registry

from livedata.capture.declare import PREFIX


class Command(BaseCommand):
    help = "List livedata's capture triggers and their state, or prune orphaned ones."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        ls = sub.add_parser("ls", help="list capture triggers; flags drift from the code")
        ls.add_argument("-d", "--database", default=None)
        prune = sub.add_parser("prune", help="drop capture triggers no model declares")
        prune.add_argument("-d", "--database", default=None)

    def handle(self, *args: Any, action: str, database: str | None, **options: Any) -> None:
        if action == "ls":
            self.ls(database)
        else:
            self.prune(database)

    def ls(self, database: str | None) -> None:
        """One line per trigger: STATE, model:trigger, and what to do when it is not right.

        INSTALLED matches the code; OUTDATED differs from the code; UNINSTALLED is
        declared but not in the database; ORPHAN is in the database but no model declares
        it (run `livedata triggers prune`). The note of OUTDATED and UNINSTALLED names
        the step missing (``livedata.capture.readiness``): ``makemigrations`` when no
        migration has the trigger as the code declares it, ``migrate`` when one has but
        is not applied, ``pgtrigger install`` when it is applied and the trigger is gone.
        """
        from livedata.capture.readiness import not_installed

        rows: list[tuple[str, str, str]] = []
        state = {
            core.OUTDATED: "differs from the code",
            core.UNINSTALLED: "not installed",
            core.UNALLOWED: "not allowed on this database by the router",
        }
        fixes = {
            (m.model, name): m.commands() for m in not_installed(database) for name in m.triggers
        }
        for model, trigger in registry.registered():
            if not trigger.name.startswith(PREFIX):
                continue
            status, enabled = trigger.get_installation_status(model, database=database)
            note = state.get(status, "")
            fix = fixes.get((model, trigger.name))
            if fix and status in (core.OUTDATED, core.UNINSTALLED):
                note += f": run `{fix}`"
            if status in (core.INSTALLED, core.OUTDATED) and enabled is False:
                note = (note + "; " if note else "") + "disabled"
            rows.append((status, f"{model._meta.label}:{trigger.name}", note))
        for table, pgid, _enabled, _db in installation.prunable(database=database):
            if pgid.startswith(f"pgtrigger_{PREFIX}"):
                rows.append(("ORPHAN", f"{table}:{pgid}", "run `livedata triggers prune`"))
        if not rows:
            self.stdout.write("no capture triggers declared or installed")
            return
        width = max(len(r[0]) for r in rows)
        for status, name, note in rows:
            self.stdout.write(f"{status:<{width}}  {name}" + (f"  ({note})" if note else ""))

    def prune(self, database: str | None) -> None:
        from django.db import DEFAULT_DB_ALIAS, connections
        from pgtrigger import utils

        pruned = 0
        for table, pgid, _enabled, db in installation.prunable(database=database):
            if not pgid.startswith(f"pgtrigger_{PREFIX}"):
                continue
            with connections[db or DEFAULT_DB_ALIAS].cursor() as cursor:
                cursor.execute(utils.render_uninstall(table, pgid))
                cursor.execute(f"DROP FUNCTION IF EXISTS {pgid}()")
            self.stdout.write(f"pruned {table}:{pgid}")
            pruned += 1
        self.stdout.write(f"{pruned} orphaned capture trigger(s) pruned")
