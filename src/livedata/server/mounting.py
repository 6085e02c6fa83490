"""Which ASGI application ``livedata serve`` runs: the project's ``ASGI_APPLICATION``
(the setting Django's ``runserver`` under daphne and Channels read), else
``livedata.server.asgi``'s. It is imported first and must have made a ``LivedataApp``:
an ``asgi.py`` that does not mount livedata would serve the site with DDP answering
nowhere, and nothing would say why."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

#: ``livedata serve``'s application when the settings name none
DEFAULT = "livedata.server.asgi.application"

MOUNT_HINT = (
    "wrap the project's application in its asgi.py: "
    "application = LivedataApp(get_asgi_application()) "
    "(from livedata.server.app import LivedataApp)"
)


def application_path() -> str:
    """``ASGI_APPLICATION``, or livedata's: a dotted path ("proj.asgi.application")."""
    from django.conf import settings

    return getattr(settings, "ASGI_APPLICATION", None) or DEFAULT


def checked_application() -> str:
    """The application to serve as uvicorn's "module:attribute", after importing it here
    (``ImproperlyConfigured`` when it cannot be imported or mounts no ``LivedataApp``).
    Under ``--workers`` each worker imports it again: the check is made once, up front."""
    from django.utils.module_loading import import_string

    from livedata.server.app import LivedataApp

    path = application_path()
    module, _, name = path.rpartition(".")
    if not module:
        raise ImproperlyConfigured(f"ASGI_APPLICATION {path!r} is not a dotted path to an object")
    try:
        import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"ASGI_APPLICATION {path!r} cannot be imported: {exc}") from exc
    if not LivedataApp.instances:
        raise ImproperlyConfigured(
            f"ASGI_APPLICATION {path!r} does not mount livedata: {MOUNT_HINT}"
        )
    return f"{module}:{name}"
