"""Django app config for livedata (app label ``livedata``)."""

from __future__ import annotations

from django.apps import AppConfig


class LivedataConfig(AppConfig):
    name = "livedata"
    verbose_name = "livedata"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from livedata.capture import context, declare

        declare.register_from_settings()
        context.install()
