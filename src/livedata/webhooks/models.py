"""Webhook subscriptions (with their durable position) and the delivery log."""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models
from django.utils import timezone

from livedata.capture.position import START, Position

#: What the subscriptions' triggers NOTIFY when a dispatcher must look at them again (one
#: was added, removed, enabled, disabled, replaced or had its position set): dispatchers
#: with nothing to deliver wait for it instead of polling (``webhooks.dispatcher``).
NOTIFY_CHANNEL = "livedata_webhooks"
_NOTIFY = f"PERFORM pg_notify('{NOTIFY_CHANNEL}', ''); RETURN NULL;"


class Subscription(models.Model):
    """A service's standing request: PUT every committed change it asked for to ``url``.

    ``position`` (a log position in its text form, ``livedata.capture.position``) is
    durable: every change it has received was acknowledged by the receiver (2xx) or did
    not match. Workers advance it only after an acknowledgement, in short transactions,
    and never move it backwards.
    ``generation`` changes when the position is set through the API, so a worker that was
    delivering from the old position cannot write over the new one; ``epoch`` changes
    only then too and is part of ``webhook-id``, so a deliberate replay gets new ids.
    """

    class State(models.TextChoices):
        ACTIVE = "active"
        DISABLED = "disabled"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="livedata_subscriptions"
    )
    name = models.CharField(max_length=100)
    url = models.CharField(max_length=2000)
    model_labels = models.JSONField(help_text='Model labels, e.g. ["bookstore.book"]')
    operations = models.JSONField(help_text="insert, update, delete, truncate")
    filter = models.JSONField(default=dict, blank=True, help_text="Django lookups")
    fields = models.JSONField(null=True, blank=True, help_text="Only these published fields")
    batch = models.PositiveIntegerField(default=1, help_text="Changes per request, at most")
    secret = models.CharField(max_length=200, help_text="whsec_ + base64 (signing key)")
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    disabled_reason = models.TextField(blank=True)
    position = models.TextField(default=str(START), help_text="Log position (a snapshot)")
    generation = models.PositiveIntegerField(default=1)
    epoch = models.PositiveIntegerField(default=1)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Failed attempts at the change after the position"
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered = models.BigIntegerField(default=0, help_text="Changes acknowledged")
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "livedata_webhook_subscription"
        verbose_name = "webhook subscription"
        ordering = ["owner_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="livedata_webhook_owner_name")
        ]
        indexes = [models.Index(fields=["state"], name="livedata_webhook_state")]
        triggers = [
            pgtrigger.Trigger(
                name="webhooks_notify",
                when=pgtrigger.After,
                operation=pgtrigger.Insert | pgtrigger.Delete | pgtrigger.Truncate,
                level=pgtrigger.Statement,
                func=_NOTIFY,
            ),
            # not on the workers' own flushes (positions, retry state, counters)
            pgtrigger.Trigger(
                name="webhooks_notify_update",
                when=pgtrigger.After,
                operation=pgtrigger.Update,
                condition=pgtrigger.AnyChange("state", "generation", "updated"),
                func=_NOTIFY,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner_id}) → {self.url}"

    @property
    def log_position(self) -> Position:
        return Position.parse(str(self.position))

    @log_position.setter
    def log_position(self, value: Position) -> None:
        self.position = str(value)


class Delivery(models.Model):
    """One attempt at delivering a change (or a batch) to a subscription's URL."""

    class Outcome(models.TextChoices):
        DELIVERED = "delivered"  # 2xx
        FAILED = "failed"  # other status: retried
        ERROR = "error"  # no answer: connection refused, timeout, refused address
        GONE = "gone"  # 410: the subscription was disabled

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    webhook_id = models.CharField(max_length=100)
    position = models.TextField(
        blank=True, help_text="The subscription's position once this delivery is acknowledged"
    )
    changes = models.PositiveIntegerField(default=1)
    attempt = models.PositiveIntegerField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "livedata_webhook_delivery"
        verbose_name_plural = "webhook deliveries"
        verbose_name = "webhook delivery"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["subscription", "-id"], name="livedata_delivery_sub"),
            models.Index(fields=["at"], name="livedata_delivery_at"),
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id} attempt {self.attempt}: {self.outcome}"
