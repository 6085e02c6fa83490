"""Who may subscribe to a publication or call a method: Django's users and permissions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from livedata.ddp.errors import DDPError


def as_perms(perms: str | Iterable[str]) -> tuple[str, ...]:
    return (perms,) if isinstance(perms, str) else tuple(perms)


def require_access(user: Any, *, login_required: bool, perms: tuple[str, ...]) -> None:
    """403 "You must be logged in" / "Permission denied" unless ``user`` may (``has_perms``
    may query the database: call it in a worker thread)."""
    from django.core.exceptions import PermissionDenied

    if (login_required or perms) and not getattr(user, "is_authenticated", False):
        raise DDPError(403, "You must be logged in")
    if perms and not user.has_perms(perms):
        raise PermissionDenied("Permission denied")
