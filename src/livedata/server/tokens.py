"""Login tokens being deleted close the connections logged in with them.

A follower of the runtime's listener on the login-token table: a token deleted (logout
elsewhere, password change, the admin, expiry) closes every DDP session logged in with it,
in every process (as Meteor does), and forgets the HTTP APIs' cached lookup of it.
"""

from __future__ import annotations

from typing import Protocol

from livedata.capture.log import Batch
from livedata.runtime import Runtime

TOKEN_MODEL = "livedata.logintoken"


class LoggedIn(Protocol):
    """A DDP session as the token watch sees it (``ddp_session.DDPSession``)."""

    def leaving_token(self, hashed: str) -> bool: ...

    async def shutdown(self, code: int, reason: str) -> None: ...


class TokenWatch:
    """Which DDP sessions are logged in with which token, and closing them on its
    deletion."""

    def __init__(self, runtime: Runtime) -> None:
        #: login token hash → DDP sessions logged in with it (closed when it is deleted)
        self.ddp_sessions_by_token: dict[str, set[LoggedIn]] = {}
        runtime.follow(self.on_token_changes, name="login tokens", models=[TOKEN_MODEL])

    def track_token(self, session: LoggedIn, old: str | None, new: str | None) -> None:
        if old is not None and old in self.ddp_sessions_by_token:
            self.ddp_sessions_by_token[old].discard(session)
            if not self.ddp_sessions_by_token[old]:
                del self.ddp_sessions_by_token[old]
        if new is not None:
            self.ddp_sessions_by_token.setdefault(new, set()).add(session)

    async def on_token_changes(self, batch: Batch) -> None:
        """A login token was deleted (logout elsewhere, password change, the admin,
        expiry): close the connections logged in with it, in every process (Meteor), and
        forget the HTTP APIs' cached lookup of it."""
        from livedata.httpapi.auth import forget_tokens

        doomed: set[LoggedIn] = set()
        for row in batch.rows:
            if row.model != TOKEN_MODEL:
                continue
            if row.op == "truncate":
                forget_tokens()
                doomed.update(
                    s
                    for hashed, group in self.ddp_sessions_by_token.items()
                    for s in group
                    if not s.leaving_token(hashed)
                )
            elif row.old is not None:  # deleted, or changed (its expiry, say)
                hashed = row.old.get("hashed_token")
                forget_tokens([hashed])
                if row.op == "delete":
                    group = self.ddp_sessions_by_token.get(hashed, ())
                    doomed.update(s for s in group if not s.leaving_token(hashed))
        for session in doomed:
            await session.shutdown(1000, "logged out by the server")
