"""Deprecated alias: the old name of ``livedata.publish.publication``.

It was one of four modules called "api"; the declarations now live in
``publish.publication`` and projects import them from ``livedata.api``. Importing this
module still gives the same objects, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings

from livedata.publish.publication import API, SECRET_FIELDS, Collection, Publication, publish

__all__ = ["API", "SECRET_FIELDS", "Collection", "Publication", "publish"]

warnings.warn(
    "livedata.publish.api is deprecated: import from livedata.api "
    "(or livedata.publish.publication)",
    DeprecationWarning,
    stacklevel=2,
)
