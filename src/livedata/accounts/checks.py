"""System checks: the accounts need the digest hasher to check Meteor clients' logins, and
the site's URL to mail links. Both warn only in projects that use the accounts
(``livedata.accounts.usage``): a project that never logs a Meteor client in is not told
to change its password hashers on every command."""

from __future__ import annotations

from typing import Any

from django.core import checks


@checks.register(checks.Tags.security)
def digest_hasher_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from livedata.accounts.hashers import digest_hasher, preferred_is_digest
    from livedata.accounts.usage import accounts_in_use
    from livedata.conf import livedata_settings

    if not livedata_settings().ACCOUNTS:
        return []
    why = accounts_in_use()
    if why is None:
        return []
    if digest_hasher() is None:
        return [
            checks.Warning(
                f"Meteor's accounts are in use ({why}) and Meteor clients log in with a "
                "SHA-256 digest of the password, which Django's hashers cannot check: DDP "
                "logins with a digest will fail.",
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


@checks.register(checks.Tags.security)
def site_url_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Reset links are built from SITE_URL only (never from request headers)."""
    from urllib.parse import urlsplit

    from livedata.accounts.methods import needs_site_url
    from livedata.accounts.usage import accounts_in_use
    from livedata.conf import livedata_settings

    conf = livedata_settings()
    if conf.SITE_URL:
        url = urlsplit(conf.SITE_URL)
        if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
            return [
                checks.Error(
                    f"LIVEDATA['SITE_URL'] = {conf.SITE_URL!r} is not the site's URL.",
                    hint="An absolute http(s) URL, e.g. 'https://app.example.com'.",
                    id="livedata.E001",
                )
            ]
        return []
    if (
        conf.ACCOUNTS
        and needs_site_url(conf.ACCOUNTS_PASSWORD_RESET_URL)
        and accounts_in_use() is not None
    ):
        return [
            checks.Warning(
                "LIVEDATA['SITE_URL'] is not set: forgotPassword cannot mail reset links "
                "(it answers an error). Links are never built from a request's Host or Origin.",
                hint="Set LIVEDATA['SITE_URL'] to the site's public URL, e.g. "
                "'https://app.example.com'.",
                id="livedata.W003",
            )
        ]
    return []
