"""``livedata.server.asgi:application``: the project's Django site plus livedata's DDP.

Uses ``DJANGO_SETTINGS_MODULE`` (the ``livedata`` command defaults it to the demo)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livedata.demo.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application

from livedata.server.app import LivedataApp

django_app: object = get_asgi_application()
if settings.DEBUG and "django.contrib.staticfiles" in settings.INSTALLED_APPS:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_app = ASGIStaticFilesHandler(django_app)

application = LivedataApp(django_app)
