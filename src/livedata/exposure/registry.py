"""The registered Collections, and which are exposed on a channel.

``livedata.api.API.register`` puts Collections here (``publish.publication`` keeps
the publications beside them); webhooks and the pull feed only ask ``exposed``, so they
need nothing of DDP's registry.
"""

from __future__ import annotations

from typing import Literal

from django.db import models

from livedata.exposure.collection import Collection

Channel = Literal["webhooks", "pull"]

#: label_lower -> Collection; the one dict (``API.collections`` is this object).
COLLECTIONS: dict[str, type[Collection]] = {}


def register(collection: type[Collection]) -> None:
    """Publish ``collection``'s model, declaring its change capture if not yet."""
    from livedata.capture.declare import is_captured, track

    COLLECTIONS[collection.name()] = collection
    if not is_captured(collection.model):
        track(collection.model)


class NoCollection(LookupError):
    """A publication returned rows of a model with no registered Collection: the
    developer's mistake, in their code, not a failure. Its text is safe to send (it names
    only the model): the client's ``nosub`` 500 carries it as its reason, and the server
    logs it on one line, without a traceback (``system check livedata.E007`` finds it
    before start-up when the publication's queries are static)."""

    def __init__(self, label: str) -> None:
        self.label = label
        super().__init__(
            f"this publication returns {label} rows, but no Collection of {label} is "
            "registered (API.register it in ddp.py)"
        )


def collection_for(model: type[models.Model]) -> type[Collection]:
    name = model._meta.label_lower
    found = COLLECTIONS.get(name)
    if found is None:
        raise NoCollection(name)
    return found


def exposed(label: str, channel: Channel) -> type[Collection] | None:
    """The Collection of model ``label`` if it is exposed on ``channel``, else None."""
    found = COLLECTIONS.get(label.lower())
    if found is None or not getattr(found, channel, False):
        return None
    return found
