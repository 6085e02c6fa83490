"""Login tokens in the Django admin: see who holds which, revoke by deleting."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from livedata.accounts.models import LoginToken


@admin.register(LoginToken)
class LoginTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "kind", "name", "created", "expires", "last_used"]
    list_filter = ["kind"]
    search_fields = ["user__username", "user__email", "name"]
    raw_id_fields = ["user"]
    readonly_fields = ["user", "kind", "name", "created", "expires", "last_used"]
    actions = ["delete_selected"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the secret exists only when issued: `livedata token` or DDP login

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
