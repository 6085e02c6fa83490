"""What livedata's HTTP APIs (webhook subscriptions, the pull feed) share.

- ``api_view``: a JSON endpoint. It authenticates the caller as a Django user (HTTP
  Basic, ``Authorization: Bearer <login token>``, or the Django session for GET only),
  refuses credentials sent in clear to a non-loopback client, checks the method, and
  turns every error into a JSON answer ``{"error": code, "message": ..., "field"?: ...}``
  with the right status, never a traceback.
- ``ApiError``: raise it in a view for a precise 4xx.
- ``read_json``: the request body as JSON, size-capped.
- ``require_perm``: Django model permissions (``view`` by default).

What may be reached at all is declared in code on a ``Collection`` (``webhooks = True``,
``pull = True``); see ``livedata.exposure.collection``.
"""

from livedata.httpapi.auth import authenticate, require_perm
from livedata.httpapi.errors import ApiError
from livedata.httpapi.views import api_view, read_json

__all__ = ["ApiError", "api_view", "authenticate", "read_json", "require_perm"]
