"""Meteor's account methods over DDP, on Django users (``accounts-password`` clients).

``login`` (password as Meteor's SHA-256 digest or plaintext; user by username, email or
id; or a resume token), ``logout``, ``logoutOtherClients``, ``logoutAllClients``,
``getNewToken``, ``removeOtherTokens``, ``createUser``, ``changePassword``,
``forgotPassword``, ``resetPassword``: their parameters, results and error texts are
Meteor 3's (docs/accounts-wire-reference.md). Where Meteor answers a malformed password
with a 500, we answer 400 "Match failed"; where its ``forgotPassword`` tells an unknown
email apart, we do not (with ambiguous errors on).

They run in their own small thread pool (``ACCOUNTS_THREADS``): hashing is CPU-bound by
design, and a flood of logins must not take the threads other methods need. Unknown
users cost a hash too, so timing does not tell them apart.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import user_logged_in
from django.contrib.auth.hashers import identify_hasher, make_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from livedata.accounts import hashers, tokens
from livedata.accounts.adapter import get_adapter
from livedata.accounts.models import LoginToken
from livedata.conf import livedata_settings
from livedata.ddp.errors import DDPError
from livedata.publish.methods import MethodCall, method

logger = logging.getLogger("livedata.accounts")

RESUME = LoginToken.Kind.RESUME
AMBIGUOUS = "Something went wrong. Please check your credentials."
MATCH_FAILED = DDPError(400, "Match failed")
NOT_LOGGED_IN = DDPError("You are not logged in.")


def accounts_method(name: str) -> Any:
    return method(name=name, pool="accounts")


def credentials_error(specific: str) -> DDPError:
    """Meteor's ``_handleError``: one message for every credential failure by default."""
    return DDPError(403, AMBIGUOUS if livedata_settings().ACCOUNTS_AMBIGUOUS_ERRORS else specific)


# --- parameter shapes -------------------------------------------------------------------


def _selector(value: Any) -> dict[str, str]:
    """``{"username"} | {"email"} | {"id"}``: exactly one, a non-empty string."""
    if not isinstance(value, dict) or len(value) != 1:
        raise MATCH_FAILED
    ((kind, name),) = value.items()
    if kind not in ("username", "email", "id") or not isinstance(name, str) or not name:
        raise MATCH_FAILED
    if len(name) > 254 or "\x00" in name:  # PostgreSQL cannot hold a NUL: no such user
        raise MATCH_FAILED
    return {kind: name}


def _digest(password: Any) -> tuple[str, str | None]:
    """(sha-256 hex digest, plaintext or None) of a password parameter."""
    if isinstance(password, str):
        if not password or len(password) > 256:
            raise MATCH_FAILED
        return hashers.sha256_digest(password), password
    if (
        isinstance(password, dict)
        and set(password) == {"digest", "algorithm"}
        and password["algorithm"] == "sha-256"
        and hashers.is_digest(str(password["digest"]).lower())
    ):
        return str(password["digest"]).lower(), None
    raise MATCH_FAILED


def _stored(digest: str, plaintext: str | None) -> str:
    """The hash to store for a password given as plaintext or only as its digest."""
    return make_password(plaintext) if plaintext else hashers.make_digest_password(digest)


def _verify(user: Any | None, digest: str, plaintext: str | None) -> None:
    """Raise Meteor's credential errors unless ``user`` has this password. Every failure
    costs a hash, so timing does not tell an unknown user from a wrong password."""
    if user is None:
        hashers.dummy_digest_check(digest)
        raise credentials_error("User not found")
    if not user.has_usable_password():
        hashers.dummy_digest_check(digest)
        raise credentials_error("User has no password set")
    if not _check_password(user, digest, plaintext):
        raise credentials_error("Incorrect password")


def _check_password(user: Any, digest: str, plaintext: str | None) -> bool:
    """Check and, when Django says so, upgrade the stored hash."""
    if plaintext is not None:
        return user.check_password(plaintext)  # Django's own: upgrades any stored format
    ok, must_update = hashers.check_digest(digest, user.password)
    if ok and must_update:
        user.password = hashers.make_digest_password(digest)
        user.save(update_fields=["password"])
    if not ok and user.password:
        try:
            stored = identify_hasher(user.password)
        except ValueError:
            stored = None
        if stored is not None and not isinstance(stored, hashers.DigestPBKDF2PasswordHasher):
            logger.info(
                "livedata: user %s has a %s password hash, which a DDP digest cannot be "
                "checked against: one login with the password itself (the Django admin, "
                "or DDP's plaintext form) upgrades it",
                user.pk,
                stored.algorithm,
            )
    return ok


# --- logging in -------------------------------------------------------------------------


def _log_in(call: MethodCall, user: Any, kind: str) -> dict[str, Any]:
    """Issue a resume token, log the connection in, return Meteor's login result."""
    conf = livedata_settings()
    agent = call.connection.http_headers.get("user-agent", "")
    secret, token = tokens.issue(
        user, kind=RESUME, lifetime=conf.ACCOUNTS_LOGIN_TOKEN_LIFETIME, name=agent
    )
    call.set_user(user, token.hashed_token)
    user_logged_in.send(sender=type(user), request=None, user=user)  # last_login
    return {"id": str(user.pk), "token": secret, "tokenExpires": token.expires, "type": kind}


def _password_login(call: MethodCall, options: dict[str, Any]) -> dict[str, Any]:
    if set(options) - {"user", "password", "code"}:
        raise MATCH_FAILED
    selector = _selector(options.get("user"))
    digest, plaintext = _digest(options["password"])
    user = get_adapter().find_user(selector)
    _verify(user, digest, plaintext)
    return _log_in(call, user, "password")


def _resume_login(call: MethodCall, secret: Any) -> dict[str, Any]:
    if not isinstance(secret, str):
        raise MATCH_FAILED
    token = tokens.find(secret, kind=RESUME)
    if token is None:
        raise DDPError(403, "You've been logged out by the server. Please log in again.")
    if tokens.expired(token):
        raise DDPError(403, "Your session has expired. Please log in again.")
    tokens.touch(token)
    call.set_user(token.user, token.hashed_token)
    return {
        "id": str(token.user.pk),
        "token": secret,
        "tokenExpires": token.expires,
        "type": "resume",
    }


@accounts_method("login")
def login(call: MethodCall, options: Any) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise MATCH_FAILED
    if "resume" in options:
        return _resume_login(call, options["resume"])
    if options.get("password"):
        return _password_login(call, options)
    raise DDPError(400, "Unrecognized options for login request")


# --- tokens of the logged-in user -------------------------------------------------------


def _current_token(call: MethodCall) -> LoginToken:
    if not call.user.is_authenticated or call.login_token is None:
        raise NOT_LOGGED_IN
    token = LoginToken.objects.filter(hashed_token=call.login_token, user=call.user).first()
    if token is None:
        raise DDPError("Invalid login token")
    return token


@method(name="logout")
def logout(call: MethodCall) -> None:
    if call.login_token is not None:
        LoginToken.objects.filter(hashed_token=call.login_token).delete()
    call.set_user(None)


@method(name="logoutAllClients")
def logout_all_clients(call: MethodCall) -> None:
    if call.user.is_authenticated:
        tokens.revoke(call.user, kinds=(RESUME,))
    call.set_user(None)


@method(name="getNewToken")
def get_new_token(call: MethodCall) -> dict[str, Any]:
    current = _current_token(call)
    secret, token = tokens.issue(call.user, kind=RESUME, name=current.name)
    token.expires = current.expires  # Meteor keeps the old token's expiry
    token.save(update_fields=["expires"])
    call.set_user(call.user, token.hashed_token)
    return {"id": str(call.user.pk), "token": secret, "tokenExpires": token.expires}


@method(name="removeOtherTokens")
def remove_other_tokens(call: MethodCall) -> None:
    current = _current_token(call)
    tokens.revoke(call.user, kinds=(RESUME,), keep=current.hashed_token)


@method(name="logoutOtherClients")
def logout_other_clients(call: MethodCall) -> dict[str, Any]:
    """Meteor 2's server method (Meteor 3 clients call getNewToken + removeOtherTokens)."""
    result = get_new_token(call)
    tokens.revoke(call.user, kinds=(RESUME,), keep=call.pending["user"][1])
    return {"token": result["token"], "tokenExpires": result["tokenExpires"]}


# --- creating users and changing passwords ----------------------------------------------


def signup_allowed() -> bool:
    from django.conf import settings

    allowed = livedata_settings().ACCOUNTS_ALLOW_SIGNUP
    return settings.DEBUG if allowed is None else allowed


@accounts_method("createUser")
def create_user(call: MethodCall, options: Any) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise MATCH_FAILED
    if not signup_allowed():
        raise DDPError(403, "Signups forbidden")
    username, email = options.get("username"), options.get("email")
    if any(v is not None and not isinstance(v, str) for v in (username, email)):
        raise MATCH_FAILED
    if not username and not email:
        raise DDPError(400, "Need to set a username or email")
    if username is not None and not 0 < len(username) <= 150:
        raise DDPError(400, "Username must be 1 to 150 characters")
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise DDPError(400, "Invalid email") from None
        if "\x00" in email:
            raise DDPError(400, "Invalid email")
    profile = options.get("profile")
    if isinstance(profile, dict) and "\x00" in str(profile.get("name", "")):
        raise DDPError(400, "Invalid profile name")
    adapter = get_adapter()
    try:  # before hashing: a refused name costs nothing
        adapter.clean_username(username or email)
    except ValidationError as exc:
        what = "username" if username else "email as a username"
        raise DDPError(400, f"Invalid {what}: {' '.join(exc.messages)}") from None
    password = options.get("password")
    # no password: an unusable one (the user cannot log in with a password)
    encoded = make_password(None) if password is None else _stored(*_digest(password))
    try:
        user = adapter.create_user(
            username=username or None,
            email=email or None,
            password=encoded,
            profile=profile,
        )
    except ValidationError as exc:  # an adapter with its own rules
        raise DDPError(400, f"Invalid username: {' '.join(exc.messages)}") from None
    except ValueError as exc:
        field = "Email" if str(exc) == "email" else "Username"
        raise credentials_error(f"{field} already exists.") from None
    return _log_in(call, user, "password")


@accounts_method("changePassword")
def change_password(call: MethodCall, old_password: Any, new_password: Any) -> dict[str, Any]:
    if not call.user.is_authenticated:
        raise DDPError(401, "Must be logged in")
    old_digest, old_plain = _digest(old_password)
    new_digest, new_plain = _digest(new_password)
    user = type(call.user)._default_manager.filter(pk=call.user.pk).first()
    _verify(user, old_digest, old_plain)
    user.password = _stored(new_digest, new_plain)
    user.save(update_fields=["password"])
    # every other login of this user ends (their connections are closed); this one stays
    tokens.revoke(user, kinds=(RESUME, LoginToken.Kind.RESET), keep=call.login_token)
    return {"passwordChanged": True}


def needs_site_url(template: str) -> bool:
    return "{site_url}" in template or "{origin}" in template


def _reset_link_template(conf: Any) -> str:
    """The reset link's template with the site filled in: from ``SITE_URL`` only. The
    request's Host and Origin are the client's to choose, and a link built from them
    would mail the victim's token to the attacker's site."""
    template = conf.ACCOUNTS_PASSWORD_RESET_URL
    site = conf.SITE_URL.rstrip("/")
    if needs_site_url(template) and not site:
        logger.error(
            "livedata: forgotPassword cannot mail a link: set LIVEDATA['SITE_URL'] to the "
            "site's public URL (e.g. 'https://app.example.com')"
        )
        raise DDPError(503, "Password reset by email is not configured on this server")
    return template.replace("{site_url}", site).replace("{origin}", site)


@accounts_method("forgotPassword")
def forgot_password(call: MethodCall, options: Any) -> None:
    if not isinstance(options, dict) or set(options) != {"email"}:
        raise MATCH_FAILED
    email = options["email"]
    if not isinstance(email, str) or not email or len(email) > 254 or "\x00" in email:
        raise MATCH_FAILED
    conf = livedata_settings()
    template = _reset_link_template(conf)  # before the lookup: one answer for every address
    user = get_adapter().find_user({"email": email})
    if user is None:
        if conf.ACCOUNTS_AMBIGUOUS_ERRORS:
            return  # the same answer whether or not the address is known
        raise DDPError(403, "User not found")
    secret, _ = tokens.issue(
        user, kind=LoginToken.Kind.RESET, lifetime=conf.ACCOUNTS_PASSWORD_RESET_LIFETIME
    )
    url = template.replace("{token}", secret)
    transaction.on_commit(lambda: get_adapter().send_password_reset(user, url))


@accounts_method("resetPassword")
def reset_password(call: MethodCall, secret: Any, new_password: Any) -> dict[str, Any]:
    if not isinstance(secret, str):
        raise MATCH_FAILED
    digest, plaintext = _digest(new_password)
    token = tokens.consume(secret, kind=LoginToken.Kind.RESET)  # used once, even if raced
    if token is None:
        raise DDPError(403, "Token expired")
    user = token.user
    user.password = _stored(digest, plaintext)
    user.save(update_fields=["password"])
    # Meteor: every session of the user ends; the caller is logged in afresh
    tokens.revoke(user, kinds=(RESUME, LoginToken.Kind.RESET))
    return _log_in(call, user, "password")
