"""The dashboard's model: no table, only an admin URL and a permission.

Django's admin lists models, and permissions belong to models: this unmanaged model
gives the page ``/admin/livedata/dashboard/`` and ``livedata.view_dashboard`` (granted
like any other permission, to users or groups) without a table of its own.
"""

from __future__ import annotations

from django.db import models


class Dashboard(models.Model):
    class Meta:
        managed = False
        app_label = "livedata"
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return "dashboard"
