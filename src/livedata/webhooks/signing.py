"""Standard Webhooks signatures: secrets, signing (sender), verifying (receiver).

The scheme (https://www.standardwebhooks.com/): the secret is ``whsec_`` + base64 of a
random key; ``webhook-signature`` is ``v1,`` + base64 HMAC-SHA256 of
``"{webhook-id}.{webhook-timestamp}.{body}"`` (space-separated when several keys sign, as
during a rotation). The HMAC is computed by ``standardwebhooks``, the specification's
own Python library. Verifying is ours only for what that library does not offer: a
configurable timestamp tolerance, several candidate secrets, and malformed headers
answered with an error instead of a ValueError.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook

PREFIX = "whsec_"
KEY_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def check_secret(value: str) -> str | None:
    """Why ``value`` is not a usable secret, or None."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return "a secret is 'whsec_' followed by base64 (omit it to have one generated)"
    try:
        key = base64.b64decode(value[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return "the part after 'whsec_' is not valid base64"
    if not 24 <= len(key) <= 64:
        return "the key must be 24 to 64 bytes (32 recommended)"
    return None


class Signer:
    """Signs bodies with one subscription's secret (made once per subscription)."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def headers(self, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        signature = self._webhook.sign(
            webhook_id, datetime.fromtimestamp(ts, UTC), body.decode("utf-8")
        )
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signature,
        }


class VerificationError(Exception):
    """A request that is not an authentic, fresh webhook (the message says why)."""


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets_: Iterable[str],
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> str:
    """Check a received webhook; returns its ``webhook-id``.

    ``headers`` is looked up case-insensitively; ``secrets_`` are the candidate secrets
    (several during a rotation). Raises ``VerificationError``. Signatures are compared in
    constant time (``hmac.compare_digest``).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id", "")
    stamp = lower.get("webhook-timestamp", "")
    signatures = lower.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(stamp)
    except ValueError:
        raise VerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise VerificationError(
            f"webhook-timestamp is {current - ts:+.0f} s away from now (tolerance {tolerance:g} s)"
        )
    given: list[bytes] = []
    for part in signatures.split():
        version, _, value = part.partition(",")
        if version != "v1" or not value:
            continue
        try:
            given.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not given:
        raise VerificationError("webhook-signature holds no v1 signature")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationError("the body is not UTF-8") from None
    when = datetime.fromtimestamp(ts, UTC)
    for secret in secrets_:
        expected = base64.b64decode(Webhook(secret).sign(msg_id, when, text).partition(",")[2])
        # check every candidate: the time taken does not depend on which one matched
        if any(hmac.compare_digest(expected, sig) for sig in given):
            return msg_id
    raise VerificationError("no signature matches")
