"""Issuing, checking and revoking login tokens.

Secrets are Meteor's ``Random.secret()``: 43 characters of the URL-safe base64 alphabet
(256 bits). Lookups go by the SHA-256 hash, so the secret itself is never compared and
never stored.

Every token has one kind and is good for that one purpose only: a resume token logs a
DDP connection in, an API token authenticates the HTTP APIs, a reset token sets a
password once (``consume``). Callers always name the kind they accept, so a token that
leaks from one place (a reset link in a mailbox, a browser's resume token in
localStorage) opens nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
from datetime import timedelta
from typing import Any

from django.utils import timezone

from livedata.accounts.models import LoginToken

_ALPHABET = string.ascii_letters + string.digits + "-_"
SECRET_LENGTH = 43


def new_secret() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def hash_token(secret: str) -> str:
    """Meteor's ``Accounts._hashLoginToken``: base64 of the SHA-256 of the secret."""
    return base64.b64encode(hashlib.sha256(secret.encode()).digest()).decode()


def issue(
    user: Any,
    *,
    kind: str = LoginToken.Kind.RESUME,
    lifetime: timedelta | None = None,
    name: str = "",
) -> tuple[str, LoginToken]:
    """A new token for ``user``: returns the secret (shown once) and its row."""
    secret = new_secret()
    expires = timezone.now() + lifetime if lifetime is not None else None
    token = LoginToken.objects.create(
        user=user, hashed_token=hash_token(secret), kind=kind, expires=expires, name=name[:200]
    )
    return secret, token


def find(secret: Any, *, kind: str | None = None) -> LoginToken | None:
    """The token with this secret, expired or not (None: no such token, or its user is
    inactive)."""
    if not isinstance(secret, str) or not 0 < len(secret) <= 200:
        return None
    found = (
        LoginToken.objects.select_related("user").filter(hashed_token=hash_token(secret)).first()
    )
    if found is None or (kind is not None and found.kind != kind):
        return None
    if not getattr(found.user, "is_active", True):
        return None
    return found


def expired(token: LoginToken) -> bool:
    return token.expires is not None and token.expires <= timezone.now()


def lookup(secret: Any, *, kind: str | None = None) -> LoginToken | None:
    """The live token with this secret (not expired, user active), or None."""
    found = find(secret, kind=kind)
    return None if found is None or expired(found) else found


def consume(secret: Any, *, kind: str) -> LoginToken | None:
    """Delete the live token of ``kind`` with this secret and return it: single use.

    The delete is the claim, so of two calls racing with one token only the one whose
    delete removed the row gets it (the other's waits for the first to commit, then finds
    nothing). Use inside the transaction that does what the token allows.
    """
    found = lookup(secret, kind=kind)
    if found is None:
        return None
    if LoginToken.objects.filter(pk=found.pk, kind=kind).delete()[0] != 1:
        return None
    return found


def revoke(user: Any, *, kinds: tuple[str, ...], keep: str | None = None) -> int:
    """Delete ``user``'s tokens of ``kinds`` (but the one hashed ``keep``).

    Connections logged in with them are closed once the deletion reaches the listener.
    """
    doomed = LoginToken.objects.filter(user=user, kind__in=kinds)
    if keep is not None:
        doomed = doomed.exclude(hashed_token=keep)
    return doomed.delete()[0]


def prune_expired() -> int:
    """Delete expired tokens of every kind (``livedata prune``)."""
    return LoginToken.objects.filter(expires__lte=timezone.now()).delete()[0]


def touch(token: LoginToken) -> None:
    """Record use, at most once a minute per token (no write per request)."""
    now = timezone.now()
    if token.last_used is None or now - token.last_used > timedelta(minutes=1):
        LoginToken.objects.filter(pk=token.pk).update(last_used=now)
        token.last_used = now
