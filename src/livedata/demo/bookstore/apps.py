"""The demo's app. Its label, ``livedata_demo``, names its tables, permissions,
collections and migrations: the module is ``bookstore``, but the label is livedata's own,
so no project's app (``bookstore`` is the README's example) shares them."""

from django.apps import AppConfig


class BookstoreConfig(AppConfig):
    name = "livedata.demo.bookstore"
    label = "livedata_demo"
    default_auto_field = "django.db.models.BigAutoField"
