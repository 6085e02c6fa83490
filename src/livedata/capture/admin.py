"""A read-only Django admin for the change log (the audit trail).

Filter in the sidebar by model and operation, search by primary key, username or request
id, or link straight to a slice: ``?model=bookstore.book&object_pk=7``,
``?context__username=admin``, ``?context__request_id=...``, ``?context__user_id=1``.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from livedata.capture.models import Change

_URL_LOOKUPS = {
    "model",
    "object_pk",
    "op",
    "context__username",
    "context__user_id",
    "context__request_id",
}


class ReadOnlyAdmin(admin.ModelAdmin):
    """An admin that shows and never writes (the change log; the dashboard's page)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Change)
class ChangeAdmin(ReadOnlyAdmin):
    list_display = ["id", "at", "op", "model", "object_pk", "who", "request"]
    list_filter = ["op", "model"]
    search_fields = ["=object_pk", "context__username", "=context__request_id"]
    show_full_result_count = False
    list_per_page = 100
    ordering = ["-txid", "-id"]
    fields = [
        "txid",
        "at",
        "model",
        "table",
        "op",
        "object_pk",
        "changed",
        "pretty_old",
        "pretty_new",
        "pretty_context",
    ]
    readonly_fields = fields

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup in _URL_LOOKUPS or super().lookup_allowed(lookup, value, request)

    @admin.display(description="user")
    def who(self, obj: Change) -> str:
        return (obj.context or {}).get("username", "")

    @admin.display(description="request")
    def request(self, obj: Change) -> str:
        ctx = obj.context or {}
        return " ".join(str(ctx[k]) for k in ("method", "path") if ctx.get(k))

    def _pretty(self, value: Any) -> str:
        if value is None:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))

    @admin.display(description="old")
    def pretty_old(self, obj: Change) -> str:
        return self._pretty(obj.old)

    @admin.display(description="new")
    def pretty_new(self, obj: Change) -> str:
        return self._pretty(obj.new)

    @admin.display(description="context")
    def pretty_context(self, obj: Change) -> str:
        return self._pretty(obj.context)
