"""The public import surface for projects: everything an app's ``ddp.py`` (and its models)
needs, from one module.

    from livedata.api import API, Collection, DDPError, MethodCall, Publication, method

These are re-exports: the names keep living where they are defined
(``publish.publication``, ``publish.methods``, ``exposure.collection``, ``ddp.errors``,
``capture``), and those import paths keep working (``publish.api``, the old name of
``publish.publication``, too, with a ``DeprecationWarning``).
Import this module once Django is set up (in ``ddp.py``, views, commands); in
``models.py`` use ``import livedata`` and ``@livedata.track``, which work before.
``from livedata.api import API, Collection, Publication`` is also the line django-ddp
projects change (was ``from dddp.api import ...``).
"""

from livedata.capture.context import context
from livedata.capture.declare import track
from livedata.capture.history import history
from livedata.ddp.errors import DDPError
from livedata.publish.methods import MethodCall, method
from livedata.publish.publication import API, Collection, Publication, publish

__all__ = [
    "API",
    "Collection",
    "DDPError",
    "MethodCall",
    "Publication",
    "context",
    "history",
    "method",
    "publish",
    "track",
]
