"""The dashboard page in the Django admin: ``/admin/livedata/dashboard/``.

The admin's changelist of the unmanaged ``Dashboard`` model is replaced by the page;
who may open it is the admin's rule (staff) and ``livedata.view_dashboard``
(``access.may_view``, the same the publication checks). The page holds no data: it
connects to this site's DDP endpoint (``/websocket``, logged in by the admin's session
cookie) and subscribes to ``livedata.dashboard``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from livedata.capture.admin import ReadOnlyAdmin
from livedata.dashboard.access import may_view
from livedata.dashboard.models import Dashboard


@admin.register(Dashboard)
class DashboardAdmin(ReadOnlyAdmin):
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return may_view(request.user)

    def get_urls(self) -> list[Any]:
        from django.urls import path

        view = self.admin_site.admin_view(self.dashboard_view)
        return [path("", view, name="livedata_dashboard_changelist")]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not may_view(request.user):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "livedata dashboard",
            "opts": self.model._meta,
            "changes_url": reverse("admin:livedata_change_changelist"),
            "subscriptions_url": reverse("admin:livedata_subscription_changelist"),
            "deliveries_url": reverse("admin:livedata_delivery_changelist"),
            "can_change_webhooks": request.user.has_perm("livedata.change_subscription"),
        }
        return TemplateResponse(request, "admin/livedata/dashboard.html", context)
