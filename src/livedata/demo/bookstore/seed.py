"""The demo's data: authors, books and two users. Idempotent: run it as often as you like."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

import livedata
from livedata.demo.bookstore.models import Author, Book

CATALOGUE = {
    ("Janet Evanovich", "janet@evanovich.com"): [
        "One for the Money",
        "Two for the Dough",
        "Three to Get Deadly",
    ],
    ("Terry Pratchett", "terry@discworld.example"): [
        "Guards! Guards!",
        "Small Gods",
    ],
    ("Ursula K. Le Guin", "ursula@earthsea.example"): [
        "A Wizard of Earthsea",
        "The Left Hand of Darkness",
    ],
}

USERS = [
    # (username, email, password, superuser)
    ("admin", "admin@example.com", "admin-password", True),
    ("demo", "demo@example.com", "demo-password", False),
]


@livedata.context(source="livedata demo seed")
def seed() -> None:
    with transaction.atomic():
        for (name, email), titles in CATALOGUE.items():
            author, _ = Author.objects.get_or_create(email=email, defaults={"name": name})
            for title in titles:
                Book.objects.get_or_create(title=title, author=author)
        User = get_user_model()
        for username, email, password, superuser in USERS:
            existing = User.objects.filter(username=username).first()
            if existing is not None:
                # a hash from before the digest hasher: checking the password rewrites it
                # (Django's upgrade-on-login), so DDP clients' digests work for it too
                existing.check_password(password)
                continue
            if superuser:
                User.objects.create_superuser(username, email, password)
            else:
                User.objects.create_user(username, email, password)


def seed_subscription(url: str) -> None:
    """Subscribe the demo user to book and author changes at the example receiver."""
    from django.conf import settings
    from django.contrib.auth.models import Permission
    from django.db import connection
    from django.utils import timezone

    from livedata.capture import log
    from livedata.webhooks.models import Subscription

    labels = ["livedata_demo.book", "livedata_demo.author"]
    user = get_user_model().objects.get(username="demo")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="livedata_demo", codename__in=["view_book", "view_author"]
        )
    )
    sub, created = Subscription.objects.get_or_create(
        owner=user,
        name="example-receiver",
        defaults={
            "url": url,
            "model_labels": labels,
            "operations": ["insert", "update", "delete", "truncate"],
            "secret": settings.DEMO_WEBHOOK_SECRET,
        },
    )
    if created:
        sub.log_position = log.head(connection)
        sub.save()
    elif sub.url != url or sub.state != Subscription.State.ACTIVE or sub.model_labels != labels:
        # (a database of the demo before its app was labelled livedata_demo: bookstore.*)
        sub.url, sub.state, sub.disabled_reason = url, Subscription.State.ACTIVE, ""
        sub.model_labels = labels
        sub.attempts, sub.next_attempt_at, sub.updated = 0, None, timezone.now()
        sub.save()
