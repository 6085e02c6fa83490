"""Who may see the dashboard: the same rule for the admin page, the DDP publication and
its methods, so one cannot be reached where the other is refused."""

from __future__ import annotations

from typing import Any

#: The Django permission of the page (the unmanaged model ``Dashboard``'s view permission).
PERMISSION = "livedata.view_dashboard"


def may_view(user: Any) -> bool:
    """Active staff users holding ``livedata.view_dashboard`` (superusers hold every
    permission). May query (permissions): call in a thread."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm(PERMISSION)
    )


def may_view_now(user: Any) -> bool:
    """``may_view`` for the user as the database has it now: a connection's user was
    read when it logged in, and may have lost staff, the permission or its account
    since (queries: call in a thread)."""
    if user is None or not user.is_authenticated:
        return False
    return may_view(type(user)._default_manager.filter(pk=user.pk).first())
