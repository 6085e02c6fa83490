"""Django app config for livedata (app label ``livedata``)."""

from __future__ import annotations

from django.apps import AppConfig


class LivedataConfig(AppConfig):
    name = "livedata"
    verbose_name = "livedata"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from livedata.capture import context, declare

        declare.register_from_settings()
        context.install()
        # every app's ddp.py (collections, publications, methods), like admin.py: what it
        # declares (capture of registered collections) must be known to makemigrations,
        # the HTTP APIs and every command, not only to the DDP server
        autodiscover_modules("ddp")
        from livedata import checks as _checks  # noqa: F401  (registers the system checks)
        from livedata.accounts import checks  # noqa: F401
        from livedata.conf import livedata_settings
        from livedata.httpapi import checks as _api_checks  # noqa: F401  (and these)
        from livedata.server import checks as server_checks  # noqa: F401  (the same)

        if livedata_settings().ACCOUNTS:
            from livedata.accounts import methods, publications  # noqa: F401  (Meteor's)

        from livedata.dashboard import methods as _dashboard  # noqa: F401  (its buttons)
        from livedata.pull.live import runtime_service as pull_service
        from livedata.runtime import Runtime
        from livedata.webhooks.worker import runtime_service

        for factory in (runtime_service, pull_service):  # webhook delivery, the pull feed
            if factory not in Runtime.service_factories:
                Runtime.service_factories.append(factory)
