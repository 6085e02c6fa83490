"""The demo's ASGI application (its settings' ``ASGI_APPLICATION``, which ``livedata
serve`` runs): ``livedata.server.asgi``'s, on the demo's settings unless
``DJANGO_SETTINGS_MODULE`` names others (the test suite's, which extend them)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livedata.demo.settings")

from livedata.server.asgi import application

__all__ = ["application"]
