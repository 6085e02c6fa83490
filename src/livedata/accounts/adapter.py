"""How Meteor's account notions map onto Django's user model; override for your own.

``LIVEDATA["ACCOUNTS_ADAPTER"]`` names a subclass of ``Adapter``. The default works with
``django.contrib.auth``'s ``User`` and any custom user model with a username field and
an email field (``get_email_field_name()``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.module_loading import import_string

from livedata.accounts import usernames
from livedata.conf import livedata_settings


class Adapter:
    @property
    def model(self) -> Any:
        return get_user_model()

    def find_user(self, selector: dict[str, str]) -> Any | None:
        """The active user ``selector`` names: ``{"username"}``, ``{"email"}`` or ``{"id"}``.

        As Meteor: an exact match first, else a case-insensitive match when it is unique.
        """
        ((kind, value),) = selector.items()
        User = self.model
        manager = User._default_manager
        if kind == "id":
            try:
                found = manager.filter(pk=User._meta.pk.to_python(value)).first()
            except Exception:  # not a valid primary key for this model
                return None
            return found if found is not None and found.is_active else None
        field = User.USERNAME_FIELD if kind == "username" else User.get_email_field_name()
        found = manager.filter(**{field: value}).first()
        if found is None:
            candidates = list(manager.filter(**{f"{field}__iexact": value})[:2])
            found = candidates[0] if len(candidates) == 1 else None
        return found if found is not None and found.is_active else None

    def user_document(self, user: Any) -> dict[str, Any]:
        """The fields of the user's document in collection ``users`` (``_id`` aside).

        Meteor's default publishes ``username``, ``emails`` and ``profile``; never the
        password or tokens.
        """
        doc: dict[str, Any] = {"username": user.get_username()}
        email = getattr(user, user.get_email_field_name(), "")
        if email:
            doc["emails"] = [{"address": email, "verified": False}]
        name = user.get_full_name() if hasattr(user, "get_full_name") else ""
        doc["profile"] = {"name": name} if name else {}
        return doc

    def clean_username(self, username: str) -> str:
        """The username to store for one chosen over DDP, or ``ValidationError``: no
        invisible characters, the user model's normalisation and validators, one script
        (see ``livedata.accounts.usernames``)."""
        return usernames.clean(self.model, username)

    def create_user(
        self, *, username: str | None, email: str | None, password: str, profile: Any
    ) -> Any:
        """Create a user whose stored password hash is ``password`` (already hashed).

        The username goes through ``clean_username`` (``ValidationError`` if refused).
        Raises ``ValueError("username")``/``ValueError("email")`` when taken, a username
        counting as taken when an existing one equals it, or the Latin name it is drawn
        like, case-insensitively. Without a username (Meteor allows email-only users)
        the email is the username.
        """
        User = self.model
        manager = User._default_manager
        username = self.clean_username(username or email or "")
        email_field = User.get_email_field_name()
        taken = Q()
        for name in usernames.variants(username):
            taken |= Q(**{f"{User.USERNAME_FIELD}__iexact": name})
        if manager.filter(taken).exists():
            raise ValueError("username")
        if email and manager.filter(**{f"{email_field}__iexact": email}).exists():
            raise ValueError("email")
        fields: dict[str, Any] = {User.USERNAME_FIELD: username}
        if email:
            fields[email_field] = email
        if isinstance(profile, dict) and isinstance(profile.get("name"), str):
            first, _, last = profile["name"].strip().partition(" ")
            if hasattr(User, "first_name"):
                fields.update(first_name=first[:150], last_name=last[:150])
        user = User(**fields)
        user.password = password
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:
            raise ValueError("username") from None
        return user

    def send_password_reset(self, user: Any, url: str) -> None:
        """Mail the reset link (Django's email backend)."""
        email = getattr(user, user.get_email_field_name(), "")
        send_mail(
            "Reset your password",
            f"Hello {user.get_username()},\n\nTo reset your password, follow this link:\n\n"
            f"{url}\n\nIf you did not ask for this, ignore this email.\n",
            None,
            [email],
        )


@cache
def _adapter(path: str) -> Adapter:
    return import_string(path)()


def get_adapter() -> Adapter:
    return _adapter(livedata_settings().ACCOUNTS_ADAPTER)
