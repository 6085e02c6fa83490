"""The import line django-ddp projects change: ``from livedata.api import API, Collection,
Publication`` (was ``from dddp.api import ...``)."""

from livedata.publish.api import API, Collection, Publication, publish

__all__ = ["API", "Collection", "Publication", "publish"]
