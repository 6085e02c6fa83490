"""``livedata.server.asgi:application``: the project's Django site plus livedata's DDP,
for an ASGI server started by hand on a project with no ``asgi.py`` of its own that
mounts livedata (``uvicorn``, gunicorn's uvicorn worker, ``daphne``), and what
``livedata serve`` runs when the settings name no ``ASGI_APPLICATION``.

The settings are the project's: ``DJANGO_SETTINGS_MODULE``. Without it this module
refuses to load, with one line on stderr, rather than serve settings the project never
named (the bundled demo has its own application, ``livedata.demo.asgi``). It exits with
3, which both uvicorn's and gunicorn's supervisors take as "failed to start": they stop
instead of restarting the worker for ever.
"""

import os
import sys

from django.conf import settings

if not os.environ.get("DJANGO_SETTINGS_MODULE") and not settings.configured:
    sys.stderr.write(
        "livedata.server.asgi: DJANGO_SETTINGS_MODULE is not set: set it to your project's "
        "settings (e.g. DJANGO_SETTINGS_MODULE=myproject.settings); `livedata demo` serves "
        "the demo\n"
    )
    raise SystemExit(3)

from django.core.asgi import get_asgi_application

from livedata.server.app import LivedataApp

django_app: object = get_asgi_application()
if settings.DEBUG and "django.contrib.staticfiles" in settings.INSTALLED_APPS:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_app = ASGIStaticFilesHandler(django_app)

application = LivedataApp(django_app)
