"""Publications Meteor's accounts clients subscribe to by themselves."""

from __future__ import annotations

from typing import Any

from livedata.publish.publication import API, Publication


class LoginServiceConfiguration(Publication):
    """Meteor's browser client always subscribes to it (OAuth services): none here, so
    it is ready at once and empty, instead of a 404 in the client's console."""

    name = "meteor.loginServiceConfiguration"

    def get_queries(self) -> list[Any]:
        return []


API.register([LoginServiceConfiguration])
