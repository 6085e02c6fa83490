"""Whether each captured model's triggers are really there, and the commands that fix it.

A model is captured by declaring it (``@livedata.track``, ``LIVEDATA["TRACK"]``, or
registering its ``Collection``), but its changes reach the log only once the triggers
are written into a migration (``makemigrations``) and that migration is applied
(``migrate``). Between the two nothing fails: a Collection serves its first data, then
never a live change. So each step is checked where it can be known:

- ``missing_from_migrations``: without a database, from the migration files on disk
  (the state ``makemigrations`` compares the models with): the capture triggers no
  migration declares, or declares differently (a field added since);
- ``not_installed``: in the database (pgtrigger's status of each trigger), with why:
  the app's migrations that add them are not applied (run ``migrate``), or they are
  recorded as applied but the trigger is absent (dropped by hand, a restored dump).

System checks, ``livedata serve``/``demo`` at start-up and ``livedata triggers ls``
all use these, so they give the same commands.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections, models

from livedata.capture.declare import PREFIX, captured_models

MAKEMIGRATIONS = "makemigrations"
MIGRATE = "migrate"
REINSTALL = "reinstall"


def manage() -> str:
    """How the user runs Django's commands here: ``livedata`` when that is the running
    command, ``django-admin`` likewise, else ``python manage.py``."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if prog == "livedata" or (prog == "__main__.py" and "livedata" in sys.argv[0]):
        return "livedata"
    if prog == "django-admin":
        return "django-admin"
    return "python manage.py"


@dataclass(frozen=True)
class Missing:
    """A captured model whose capture does not work, why, and what to run."""

    model: type[models.Model]
    #: MAKEMIGRATIONS (no migration declares its triggers as the code does), MIGRATE (the
    #: migration is not applied) or REINSTALL (applied, but the trigger is not there)
    step: str
    #: the triggers at fault (pgtrigger names, ``livedata_insert``...)
    triggers: tuple[str, ...]
    #: MIGRATE: the app's unapplied migrations
    unapplied: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.model._meta.label

    def problem(self) -> str:
        what = f"{self.label}'s changes are not captured"
        if self.step == MAKEMIGRATIONS:
            return f"{what}: no migration declares its capture triggers as the code does"
        if self.step == MIGRATE:
            return f"{what}: its capture triggers are in migration(s) not applied yet " + (
                f"({', '.join(self.unapplied)})"
            )
        return (
            f"{what}: its migrations are applied but the trigger(s) "
            f"{', '.join(self.triggers)} are missing or outdated in the database"
        )

    def commands(self) -> str:
        """The exact commands that fix it, as one shell line."""
        app = self.model._meta.app_label
        run = manage()
        if self.step == MAKEMIGRATIONS:
            return f"{run} makemigrations {app} && {run} migrate {app}"
        if self.step == MIGRATE:
            return f"{run} migrate {app}"
        return f"{run} pgtrigger install"

    def message(self) -> str:
        return f"{self.problem()}; run `{self.commands()}`"


def _capture_triggers(model: type[models.Model]) -> list:
    return [t for t in getattr(model._meta, "triggers", []) if t.name.startswith(PREFIX)]


def missing_from_migrations(
    models_: list[type[models.Model]] | None = None,
) -> list[Missing]:
    """Captured models whose capture triggers the migration files lack or have
    differently (no database needed: the files on disk, as ``makemigrations`` reads them)."""
    from django.db.migrations.loader import MigrationLoader

    wanted = captured_models() if models_ is None else models_
    if not wanted:
        return []
    state = MigrationLoader(None, ignore_no_migrations=True).project_state()
    out = []
    for model in wanted:
        opts = model._meta
        found = state.models.get((opts.app_label, opts.model_name))
        declared = found.options.get("triggers", []) if found is not None else []
        lacking = tuple(
            t.name for t in _capture_triggers(model) if t.compile(model) not in declared
        )
        if lacking:
            out.append(Missing(model, MAKEMIGRATIONS, lacking))
    return out


def not_installed(
    database: str | None = None, models_: list[type[models.Model]] | None = None
) -> list[Missing]:
    """Captured models whose capture does not work in ``database``, each with the step
    that fixes it (``MAKEMIGRATIONS`` first: a migration that is not written cannot be
    applied). A model whose triggers are installed as the code declares them is not
    listed, even if no migration has them. Queries the database."""
    from django.db.migrations.loader import MigrationLoader
    from pgtrigger import core

    wanted = captured_models() if models_ is None else models_
    if not wanted:
        return []
    alias = database or DEFAULT_DB_ALIAS
    unwritten = {m.model: m for m in missing_from_migrations(wanted)}
    loader = MigrationLoader(connections[alias], ignore_no_migrations=True)
    out = []
    for model in wanted:
        absent = tuple(
            t.name
            for t in _capture_triggers(model)
            if t.get_installation_status(model, database=alias)[0]
            not in (core.INSTALLED, core.UNALLOWED)
        )
        if not absent:
            continue  # installed as the code declares, whatever the files say
        if model in unwritten:
            out.append(unwritten[model])
            continue
        app = model._meta.app_label
        unapplied = tuple(
            f"{a}.{name}"
            for (a, name) in sorted(loader.disk_migrations)
            if a == app and (a, name) not in loader.applied_migrations
        )
        out.append(Missing(model, MIGRATE if unapplied else REINSTALL, absent, unapplied))
    return out
