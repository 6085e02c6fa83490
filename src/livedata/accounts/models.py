"""Login tokens: a random secret given to the client once, stored only as its hash.

Their changes are captured like any tracked model's: when a token is deleted (logout
elsewhere, a password change, the admin, ``livedata prune`` of expired ones) every
process's listener sees it and closes the DDP connections logged in with it, as Meteor.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

import livedata


@livedata.track
class LoginToken(models.Model):
    """A resume token (DDP login), API token (HTTP ``Authorization: Bearer``) or
    password-reset token (``forgotPassword``, used once by ``resetPassword``).

    Only ``hashed_token`` (base64 SHA-256 of the secret, as Meteor's
    ``Accounts._hashLoginToken``) is stored: a leaked table does not leak tokens.
    """

    class Kind(models.TextChoices):
        RESUME = "resume", "DDP login (resume token)"
        API = "api", "HTTP API token"
        RESET = "reset", "password reset"
        METRICS = "metrics", "metrics scrape (/livedata/metrics only)"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="livedata_tokens"
    )
    hashed_token = models.CharField(max_length=44, unique=True, editable=False)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.RESUME)
    #: free text to recognise the token in the admin ("billing service", a user agent)
    name = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires")
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "livedata_login_token"
        verbose_name = "login token"
        indexes = [models.Index(fields=["user", "kind"], name="livedata_token_user_kind")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.user} ({self.created:%Y-%m-%d})"
