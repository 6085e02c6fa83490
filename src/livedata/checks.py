"""System checks of livedata's own settings (the accounts have theirs): valid values, and
deprecated names still in use (``livedata.conf.DEPRECATED``)."""

from __future__ import annotations

import contextlib
from typing import Any

from django.core import checks


@checks.register()
def database_wait_valid(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``DDP_DATABASE_WAIT`` is how long DDP work waits for the database: a number >= 0."""
    from livedata.conf import livedata_settings

    wait = livedata_settings().DDP_DATABASE_WAIT
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
        return [
            checks.Error(
                f"LIVEDATA['DDP_DATABASE_WAIT'] = {wait!r} is not a number of seconds.",
                hint="Seconds (>= 0) that methods, logins and new subscriptions wait for "
                "the database to come back, e.g. 5; 0 answers 503 at once.",
                id="livedata.E002",
            )
        ]
    return []


@checks.register()
def deprecated_names(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Each deprecated name in ``settings.LIVEDATA`` is a warning: it works, renamed."""
    from django.conf import settings

    from livedata.conf import DEPRECATED

    given = getattr(settings, "LIVEDATA", None) or {}
    return [
        checks.Warning(
            f"LIVEDATA[{old!r}] is a deprecated name of LIVEDATA[{new!r}].",
            hint=f"Rename it {new!r}; the old name is applied to the new one for now.",
            id="livedata.W004",
        )
        for old, new in DEPRECATED.items()
        if old in given
    ]


@checks.register()
def broker_url_valid(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``LISTENER_BROKER_URL`` is empty (no broker) or a Redis URL the listener can use."""
    from livedata.capture.broker import check_url
    from livedata.conf import livedata_settings

    url = livedata_settings().LISTENER_BROKER_URL
    if url == "":
        return []
    try:
        check_url(url)
    except ValueError as exc:
        return [
            checks.Error(
                f"LIVEDATA['LISTENER_BROKER_URL'] is not usable: {exc}.",
                hint="A Redis URL such as 'redis://127.0.0.1:6379/0' (rediss:// for TLS, "
                "unix:///path/redis.sock), or '' to have each process read PostgreSQL.",
                id="livedata.E006",
            )
        ]
    return []


def _running(command: str) -> bool:
    """Whether this process is ``manage.py COMMAND`` (or ``livedata COMMAND``): the first
    argument that is not an option (``--settings=...`` may come before it)."""
    import sys

    given = [a for a in sys.argv[1:] if not a.startswith("-")]
    return bool(given) and given[0] == command


@checks.register()
def capture_in_migrations(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A captured model whose capture triggers no migration declares (``makemigrations``
    never run since it was tracked or its Collection registered) captures nothing, and
    nothing else fails: its first data is served, then never a live change.

    A warning, not an error: Django's errors stop every command that runs the checks, and
    ``makemigrations`` and ``migrate`` are the ones that fix this (Django itself reports
    pending migrations as a notice, not an error). ``livedata serve`` and ``demo`` refuse
    to start on it instead. Read from the migration files alone (no database), so it runs
    on every command; silent in ``makemigrations``, which is writing the fix."""
    from livedata.capture.readiness import missing_from_migrations

    if _running("makemigrations"):
        return []
    return [
        checks.Warning(
            m.problem() + " (makemigrations was not run since it was captured).",
            hint=f"Run `{m.commands()}`.",
            obj=m.model,
            id="livedata.W005",
        )
        for m in missing_from_migrations()
    ]


@checks.register(checks.Tags.database)
def capture_installed(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """The capture triggers the migrations declare are installed in each database checked
    (``check --database default``; Django runs database checks only when asked). A
    warning for the reason ``capture_in_migrations`` gives; the models that check already
    reports are left to it; silent in ``migrate``, which is installing them."""
    from django.db import DatabaseError

    from livedata.capture.readiness import MAKEMIGRATIONS, not_installed

    if not databases or _running("migrate"):
        return []
    out: list[checks.CheckMessage] = []
    for alias in databases:
        try:
            missing = not_installed(alias)
        except DatabaseError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            out.append(
                checks.Warning(
                    f"Could not read the capture triggers of database {alias!r}: {first}",
                    id="livedata.W006",
                )
            )
            continue
        out += [
            checks.Warning(
                f"{m.problem()} (database {alias!r}).",
                hint=f"Run `{m.commands()}`.",
                obj=m.model,
                id="livedata.W006",
            )
            for m in missing
            if m.step != MAKEMIGRATIONS
        ]
    return out


@checks.register()
def publications_have_collections(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """A publication's static ``queries`` on a model with no registered Collection can
    never be subscribed (each subscription would fail): an error, found before any client
    tries. ``get_queries`` is only known when it runs: then the client's ``nosub`` says why."""
    from livedata.publish.publication import API

    out: list[checks.CheckMessage] = []
    for name, pub in API.publications.items():
        for qs in getattr(pub, "queries", None) or ():
            label = getattr(getattr(qs, "model", None), "_meta", None)
            if label is None or label.label_lower in API.collections:
                continue
            out.append(
                checks.Error(
                    f"Publication {name!r} publishes {label.label} rows, but no Collection "
                    f"of {label.label} is registered: every subscription would fail.",
                    hint=f"Register one in ddp.py: `class {label.object_name}(Collection): "
                    f"model = {label.object_name}` and "
                    f"`API.register([{label.object_name}, ...])`.",
                    obj=pub,
                    id="livedata.E007",
                )
            )
    return out


MIDDLEWARE_PATH = "livedata.capture.context.ContextMiddleware"


@checks.register()
def context_middleware_installed(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Without ``ContextMiddleware`` every change made by a request is logged with no
    context (no user, path or request id), and nothing says so."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    from livedata.capture.context import ContextMiddleware
    from livedata.capture.declare import captured_models

    for path in getattr(settings, "MIDDLEWARE", None) or ():
        try:
            if issubclass(import_string(path), ContextMiddleware):
                return []
        except (ImportError, TypeError):
            continue  # Django's own checks and start-up report a broken path
    if not captured_models():
        return []
    return [
        checks.Warning(
            f"{MIDDLEWARE_PATH} is not in MIDDLEWARE: changes made while handling requests "
            "are logged without their audit context (user, path, address, request id).",
            hint=f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE, after "
            "'django.contrib.auth.middleware.AuthenticationMiddleware'.",
            id="livedata.W007",
        )
    ]


@checks.register()
def settings_look_alikes(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """livedata reads only ``settings.LIVEDATA``; a misspelt dict (``LIVE_DATA``,
    ``LIVEDATA_SETTINGS``, ``LiveData``) or one of its keys set at the top level
    (``DDP_ALLOWED_ORIGINS = ...``) is ignored, silently. Warned about: a name that
    spells LIVEDATA in another way or contains it, or that starts with one of our
    prefixes (``DDP_``, ``LISTENER_``, ``WEBHOOK_``, ``PULL_``, ``HTTP_API_``) or
    equals one of our keys. Unknown keys inside ``LIVEDATA`` are already an error when
    the settings are read (``livedata.conf``)."""
    import importlib

    from django.conf import settings

    from livedata.conf import look_alike

    names = {n for n in dir(settings._wrapped) if n.isupper()} if settings.configured else set()
    module = getattr(settings, "SETTINGS_MODULE", None)
    if module:  # Django keeps only upper-case names: read the module for ``LiveData``
        with contextlib.suppress(ImportError):
            names |= {n for n in vars(importlib.import_module(module)) if not n.startswith("_")}
    out: list[checks.CheckMessage] = []
    for name in sorted(names):
        why = look_alike(name)
        if why is not None:
            out.append(
                checks.Warning(
                    f"settings.{name} is not read by livedata: {why[0]}",
                    hint=why[1],
                    id="livedata.W008",
                )
            )
    return out


@checks.register()
def collections_name_fields(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A Collection's ``fields``, ``exclude``, ``filters`` or ``rename`` naming no field
    of its model would be ignored: an ``exclude`` typo publishes the column it meant to
    hide. A foreign key may be named either way (``author`` or ``author_id``)."""
    from livedata.exposure.collection import declared_names
    from livedata.exposure.registry import COLLECTIONS

    return [
        checks.Error(message, obj=collection, id="livedata.E008")
        for collection in COLLECTIONS.values()
        for message in declared_names(collection)
    ]
