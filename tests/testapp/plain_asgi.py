"""A project's ``asgi.py`` that does not mount livedata (``livedata serve`` refuses it)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
application = get_asgi_application()
