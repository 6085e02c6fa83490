"""System checks: the accounts need the digest hasher to check Meteor clients' logins."""

from __future__ import annotations

from typing import Any

from django.core import checks


@checks.register(checks.Tags.security)
def digest_hasher_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from livedata.accounts.hashers import digest_hasher, preferred_is_digest
    from livedata.conf import livedata_settings

    if not livedata_settings().ACCOUNTS:
        return []
    if digest_hasher() is None:
        return [
            checks.Warning(
                "Meteor clients log in with a SHA-256 digest of the password, which Django's "
                "hashers cannot check: DDP logins with a digest will fail.",
                hint="Put 'livedata.accounts.hashers.DigestPBKDF2PasswordHasher' first in "
                "PASSWORD_HASHERS (existing hashes upgrade on the next password login).",
                id="livedata.W001",
            )
        ]
    if not preferred_is_digest():
        return [
            checks.Warning(
                "DigestPBKDF2PasswordHasher is not first in PASSWORD_HASHERS: passwords set "
                "in Django will not be checkable from a DDP client's digest.",
                hint="Move it to the front of PASSWORD_HASHERS.",
                id="livedata.W002",
            )
        ]
    return []
