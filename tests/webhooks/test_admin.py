"""The admin lists subscriptions and the delivery log, and enables/disables."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from livedata.webhooks.models import Delivery, Subscription

pytestmark = pytest.mark.django_db


def test_admin_pages(client: Client) -> None:
    admin = User.objects.create_superuser("root", "r@example.com", "pw")
    client.force_login(admin)
    sub = Subscription.objects.create(
        owner=admin,
        name="books",
        url="http://127.0.0.1:9/hook",
        model_labels=["livedata_demo.book"],
        operations=["insert"],
        secret="whsec_x",
        state="disabled",
    )
    Delivery.objects.create(
        subscription=sub,
        webhook_id="msg_1_1_2_3",
        position="2:2:/3:3:/3",
        attempt=2,
        outcome="failed",
        status_code=500,
        response_excerpt="oops",
        latency_ms=12.5,
    )
    listing = client.get("/admin/livedata/subscription/")
    assert listing.status_code == 200 and b"books" in listing.content
    assert client.get(f"/admin/livedata/subscription/{sub.pk}/change/").status_code == 200
    deliveries = client.get(f"/admin/livedata/delivery/?subscription__id__exact={sub.pk}")
    assert deliveries.status_code == 200 and b"12.5 ms" in deliveries.content
    detail = client.get(f"/admin/livedata/delivery/{Delivery.objects.get().pk}/change/")
    assert detail.status_code == 200 and b"oops" in detail.content
    client.post(
        "/admin/livedata/subscription/",
        {"action": "enable", "_selected_action": [sub.pk]},
    )
    sub.refresh_from_db()
    assert sub.state == "active" and sub.attempts == 0
