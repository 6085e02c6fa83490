"""Who a DDP session's client is, apart from the login methods themselves (``accounts``).

- ``user_from_cookie``: a same-origin browser logged in to the Django site (its Django
  session cookie) is logged in on its DDP session too, when the transport is that
  client's alone;
- ``universal_documents``: the logged-in user's own document, published in collection
  ``users`` without a subscription, as Meteor does;
- ``moves_off_token``: whether the method running now takes the connection off a login
  token, so that the token's deletion (``tokens.TokenWatch``) does not close it.

The DDP session (``ddp_session.DDPSession.set_user``) applies a change of user: every
subscription re-runs as the new user and the client gets only the difference.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from livedata.publish.methods import MethodCall
    from livedata.runtime import Runtime

logger = logging.getLogger("livedata.server")

#: The mergebox key of documents published without a subscription (the user's own).
UNIVERSAL = ("universal",)


async def user_from_cookie(
    runtime: Runtime, headers: Mapping[str, str], site_origin: str, *, exclusive: bool
) -> Any | None:
    """The Django user of the browser's session cookie in ``headers``, or None: none,
    off (``DDP_SESSION_LOGIN``), a transport another client could drive (not
    ``exclusive``), another site's page, or the lookup failed."""
    from livedata.accounts.sessions import cookie_user
    from livedata.dbthreads import with_connection
    from livedata.server.origin import cookie_login_origin

    if not runtime.settings.DDP_SESSION_LOGIN or "cookie" not in headers:
        return None
    if not exclusive:
        return None  # another client could drive this session: never with this cookie
    if not cookie_login_origin(headers, site_origin):
        return None  # another site's page must not act with this browser's cookie
    try:
        return await asyncio.get_running_loop().run_in_executor(
            runtime.executor, with_connection, cookie_user, headers["cookie"]
        )
    except Exception:
        logger.warning("livedata: reading the Django session of a DDP client failed")
        return None


def universal_documents(user: Any) -> list[tuple[Any, str, str, dict[str, Any]]]:
    """Documents published without a subscription: the logged-in user's own."""
    if not user.is_authenticated:
        return []
    from livedata.accounts.adapter import get_adapter

    return [(UNIVERSAL, "users", str(user.pk), get_adapter().user_document(user))]


def moves_off_token(call: MethodCall | None, hashed: str) -> bool:
    """Whether method ``call`` (the one running now, if any) moves its connection off
    token ``hashed`` (logout, resetPassword...): its deletion must not close the
    connection, which the listener may report before the login change is applied."""
    return call is not None and "user" in call.pending and call.pending["user"][1] != hashed
