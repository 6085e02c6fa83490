from django.apps import AppConfig


class BookstoreConfig(AppConfig):
    name = "livedata.demo.bookstore"
    label = "bookstore"
    default_auto_field = "django.db.models.BigAutoField"
