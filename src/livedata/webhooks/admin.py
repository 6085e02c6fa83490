"""Django admin for webhook subscriptions and their delivery log (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from livedata.webhooks import control
from livedata.webhooks.models import Delivery, Subscription


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "name", "owner", "url", "state", "position_display", "delivered", "attempts",
        "last_success_at", "last_error_at", "deliveries_link",
    ]  # fmt: skip
    list_filter = ["state"]
    search_fields = ["name", "url", "owner__username"]
    actions = ["enable", "retry_now", "disable"]
    readonly_fields = [
        "position_display", "generation", "epoch", "attempts", "next_attempt_at", "delivered",
        "last_success_at", "last_error_at", "last_status", "last_error", "created", "updated",
        "deliveries_link",
    ]  # fmt: skip
    fields = [
        "owner", "name", "url", "model_labels", "operations", "filter", "fields", "batch",
        "secret", "state", "disabled_reason", *readonly_fields,
    ]  # fmt: skip

    @admin.display(description="position")
    def position_display(self, obj: Subscription) -> str:
        return str(obj.position)

    @admin.display(description="deliveries")
    def deliveries_link(self, obj: Subscription) -> str:
        url = reverse("admin:livedata_delivery_changelist") + f"?subscription__id__exact={obj.pk}"
        return format_html('<a href="{}">attempts</a>', url)

    def save_model(self, request: HttpRequest, obj: Subscription, form: Any, change: bool) -> None:
        obj.updated = timezone.now()  # workers pick up the change
        super().save_model(request, obj, form, change)

    @admin.action(description="Enable (continue from its position)")
    def enable(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        n = control.enable(queryset)
        self.message_user(request, f"{n} subscription(s) enabled", messages.SUCCESS)

    @admin.action(description="Retry now (the next change, without waiting)")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        n = control.retry_now(queryset)
        self.message_user(request, f"{n} subscription(s) retried now", messages.SUCCESS)

    @admin.action(description="Disable (changes are kept)")
    def disable(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        n = queryset.update(
            state=Subscription.State.DISABLED,
            disabled_reason="disabled in the admin",
            updated=timezone.now(),
        )
        self.message_user(request, f"{n} subscription(s) disabled", messages.SUCCESS)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "at", "subscription", "webhook_id", "attempt", "outcome", "status_code", "latency",
        "changes", "worker",
    ]  # fmt: skip
    list_filter = ["outcome", "status_code"]
    search_fields = ["=webhook_id", "=position", "subscription__name"]
    list_select_related = ["subscription"]
    show_full_result_count = False
    list_per_page = 100
    fields = [
        "subscription", "webhook_id", "position", "changes", "attempt", "outcome", "status_code",
        "latency_ms", "error", "response_excerpt", "worker", "at",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: Delivery) -> str:
        return "-" if obj.latency_ms is None else f"{obj.latency_ms:.1f} ms"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
