"""A project's own ``asgi.py`` mounting livedata, as the README shows it (the server tests
run it under uvicorn, gunicorn's uvicorn worker and daphne)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django_asgi_app = get_asgi_application()

from livedata.server.app import LivedataApp  # noqa: E402  (once Django is set up)

application = LivedataApp(django_asgi_app)
