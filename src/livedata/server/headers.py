"""The one parser of ASGI request headers, for every transport (WebSocket, SockJS, the
DDP host check).

ASGI gives headers as a list of ``(name, value)`` byte pairs, repeats included. Readers
want one value per name: :func:`headers_of` joins repeats as HTTP says a recipient may
(RFC 9110 §5.3: with ``", "``), except ``Cookie``, whose pairs are joined with ``"; "``
(RFC 9113 §8.2.3, which splits it into one field per cookie over HTTP/2, and RFC 6265:
``, `` is not a cookie separator, so joining with it would glue two cookies into one
value). Dropping all but one repeat (as a plain dict comprehension does) would lose
a browser's session cookie when a proxy or client sends cookies in several fields.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

#: Headers whose repeats are joined with "; " instead of ", ".
_SEPARATORS = {"cookie": "; "}


class Headers(Mapping[str, str]):
    """Request headers: case-insensitive names, each repeat kept (:meth:`getall`);
    ``headers[name]`` is the repeats joined as the module docstring says."""

    __slots__ = ("_values",)

    def __init__(self, pairs: Any = ()) -> None:
        self._values: dict[str, list[str]] = {}
        for key, value in pairs:
            name = (key.decode("latin-1") if isinstance(key, bytes) else key).lower()
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            self._values.setdefault(name, []).append(text)

    def __getitem__(self, name: str) -> str:
        values = self._values[name.lower()]
        return _SEPARATORS.get(name.lower(), ", ").join(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def getall(self, name: str) -> list[str]:
        """Every value sent for ``name``, in order (empty when absent)."""
        return list(self._values.get(name.lower(), ()))

    def __repr__(self) -> str:
        return f"Headers({self._values!r})"


def headers_of(scope: Mapping[str, Any]) -> Headers:
    """The request headers of an ASGI ``scope`` (http or websocket)."""
    return Headers(scope.get("headers", ()))


__all__ = ["Headers", "headers_of"]
