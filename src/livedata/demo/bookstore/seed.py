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
