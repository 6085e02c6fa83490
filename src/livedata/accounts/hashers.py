"""A Django password hasher that DDP clients' SHA-256 digests can be checked against.

Meteor clients never send the password: ``Meteor.loginWithPassword`` sends
``{digest: sha256_hex(password), algorithm: "sha-256"}``. Django stores a hash of the
password itself, which a digest cannot be checked against. This hasher stores
PBKDF2(sha256_hex(password)) instead, so both hold:

- Django (admin login, ``check_password``) gets the password, takes its SHA-256 and
  checks that; ``createsuperuser``, the admin and ``set_password`` write this format when
  it is first in ``PASSWORD_HASHERS``;
- livedata's DDP ``login`` checks a client's digest directly (``verify_digest``), and
  users created over DDP (``createUser``, sending only a digest) can log in to the admin.

Hashes written by other hashers (users created before this one was listed first) still
work with a password (Django's admin, or DDP's plaintext form), and Django's
upgrade-on-login rewrites them in this format; a digest alone cannot check them, so such
a user's first digest login fails until that happens once. Put it first::

    PASSWORD_HASHERS = [
        "livedata.accounts.hashers.DigestPBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",  # existing hashes
    ]
"""

from __future__ import annotations

import hashlib
import re

from django.contrib.auth.hashers import (
    PBKDF2PasswordHasher,
    get_hashers,
    identify_hasher,
)
from django.utils.crypto import constant_time_compare

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def sha256_digest(password: str) -> str:
    """What a Meteor client sends for ``password``: lower-case hex SHA-256 of its UTF-8."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def is_digest(value: object) -> bool:
    return isinstance(value, str) and bool(_DIGEST.match(value))


class DigestPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2-HMAC-SHA256 (Django's iterations) of the password's SHA-256 hex digest."""

    algorithm = "livedata_pbkdf2_sha256digest"

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        return self.encode_digest(sha256_digest(password), salt, iterations)

    def encode_digest(self, digest: str, salt: str, iterations: int | None = None) -> str:
        # the parent formats "<algorithm>$<iterations>$<salt>$<hash>" with our name
        return super().encode(digest, salt, iterations)

    def verify_digest(self, digest: str, encoded: str) -> bool:
        decoded = self.decode(encoded)
        again = self.encode_digest(digest, decoded["salt"], decoded["iterations"])
        return constant_time_compare(encoded, again)

    def harden_runtime(self, password: str, encoded: str) -> None:
        decoded = self.decode(encoded)
        extra = self.iterations - decoded["iterations"]
        if extra > 0:
            self.encode(password, decoded["salt"], extra)


def digest_hasher() -> DigestPBKDF2PasswordHasher | None:
    """The configured digest hasher (first of its kind in PASSWORD_HASHERS), or None."""
    for hasher in get_hashers():
        if isinstance(hasher, DigestPBKDF2PasswordHasher):
            return hasher
    return None


def preferred_is_digest() -> bool:
    return isinstance(get_hashers()[0], DigestPBKDF2PasswordHasher)


def check_digest(digest: str, encoded: str | None) -> tuple[bool, bool]:
    """Check a client's digest against a stored hash: (matches, must_update).

    Only the digest hasher's format can be checked from a digest; anything else is a
    plain mismatch (the caller logs why).
    """
    hasher = digest_hasher()
    if hasher is None or not encoded:
        return False, False
    try:
        stored = identify_hasher(encoded)
    except ValueError:
        return False, False
    if not isinstance(stored, DigestPBKDF2PasswordHasher):
        return False, False
    ok = hasher.verify_digest(digest, encoded)
    # only our own format can be rewritten from a digest (new iterations, salt)
    return ok, ok and hasher.must_update(encoded)


def make_digest_password(digest: str) -> str:
    """A stored hash for a password known only by its digest (``createUser``)."""
    hasher = digest_hasher()
    if hasher is None:
        raise RuntimeError(
            "add livedata.accounts.hashers.DigestPBKDF2PasswordHasher to PASSWORD_HASHERS"
        )
    return hasher.encode_digest(digest, hasher.salt())


def dummy_digest_check(digest: str) -> None:
    """Spend the time of a real check (unknown users must not answer faster)."""
    hasher = digest_hasher()
    if hasher is not None:
        hasher.encode_digest(digest, hasher.salt())
