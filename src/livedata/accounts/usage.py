"""Whether the project uses Meteor's accounts, so that their warnings (the digest hasher,
``SITE_URL`` for reset links) reach projects that need them and no others.

Meteor's account methods are served by default (``LIVEDATA["ACCOUNTS"]``), so being
served says nothing. They are in use when any of these holds:

- a setting says so: ``LIVEDATA`` names ``ACCOUNTS`` (true) or any ``ACCOUNTS_*`` key;
- a publication reads ``self.user`` in ``get_queries`` (read from its source, as
  livedata notices the read at run time), or needs a login or a permission;
- a method of the project (not one of livedata's own) needs a login or a permission, reads
  ``call.user`` or logs the connection in (``call.set_user``).

Code whose source cannot be read is taken to use them (a warning too many rather than
logins that fail).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

#: where livedata's own methods and publications are defined (they do not count): Meteor's
#: accounts, and the operators' dashboard (staff logged in by Django's session cookie)
OWN = ("livedata.accounts", "livedata.dashboard")


def accounts_in_use() -> str | None:
    """Why the project uses Meteor's accounts (one phrase), or None when it does not."""
    from django.conf import settings

    given = getattr(settings, "LIVEDATA", None) or {}
    named = sorted(k for k in given if k == "ACCOUNTS" or k.startswith("ACCOUNTS_"))
    if named:
        return f"LIVEDATA sets {', '.join(named)}"
    return _publication_user() or _method_user()


def _publication_user() -> str | None:
    from livedata.publish.publication import API, Publication

    for name, pub in API.publications.items():
        if pub.__module__.startswith(OWN):
            continue
        if pub.login_required or pub.permission_required:
            return f"publication {name!r} needs a login"
        if type.__getattribute__(pub, "get_queries") is Publication.get_queries:
            continue
        func = getattr(pub, "_function", None) or pub.get_queries
        if reads_attribute(func, ("user",)):
            return f"publication {name!r} reads self.user"
    return None


def _method_user(names: Iterable[str] | None = None) -> str | None:
    """Why a method (of ``names``, default every registered one) uses the accounts."""
    from livedata.publish.methods import registry

    for name in registry.names() if names is None else names:
        entry = registry.get(name)
        if entry is None or getattr(entry.func, "__module__", "").startswith(OWN):
            continue
        if entry.login_required or entry.permission_required:
            return f"method {name!r} needs a login"
        if reads_attribute(entry.func, ("user", "set_user")):
            return f"method {name!r} reads call.user"
    return None


def reads_attribute(func: Callable[..., Any], names: tuple[str, ...]) -> bool:
    """Whether ``func`` reads one of ``names`` on its first parameter (``self.user``,
    ``call.user``); True when its source cannot be read."""
    func = inspect.unwrap(func)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return True
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return True
    params = [*node.args.posonlyargs, *node.args.args]
    if not params:
        return False
    first = params[0].arg
    return any(
        isinstance(n, ast.Attribute)
        and n.attr in names
        and isinstance(n.value, ast.Name)
        and n.value.id == first
        for n in ast.walk(node)
    )
