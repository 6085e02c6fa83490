"""What the live-query engine needs of a subscriber (a DDP session satisfies it).

The engine (``engine``, ``observer``, ``limits``) talks to connections only through this
protocol, so it does not know the server, its transports or their outboxes:
``livedata.server.ddp_session.DDPSession`` is the one implementation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from livedata.ddp.mergebox import Mergebox


class Subscriber(Protocol):
    """One client connection holding subscriptions."""

    #: who is asking (``get_queries`` may read it; a per-user observer is keyed on it)
    user: Any
    #: the client's address, for the per-address limits (None: unknown)
    client_address: str | None

    @property
    def connection_id(self) -> str:
        """A stable id of the connection, for the observer-start rate limits."""
        ...

    def publish_added(
        self,
        sub_id: str,
        docs: list[tuple[str, str, dict[str, Any]]],
        frames: list[str] | None = None,
    ) -> None:
        """A subscription's initial documents, to be streamed by ``stream``; ``frames``:
        each one's ``added`` encoded once for every subscriber (``mergebox.message_for``),
        to send where the subscriber's view agrees it is exactly its diff."""

    async def stream(self) -> None:
        """Send the documents queued by ``publish_added``, at the client's pace."""

    def ready(self, sub_id: str) -> None:
        """The subscription's initial documents are out: tell the client."""

    def publish_diffs(self, sub_id: str, diffs: list[list[Any]], frames: list[list[str]]) -> None:
        """Changes of an observer, for one of its subscriptions on this connection:
        ``diffs`` per query, lists of (collection, op, id, fields); ``frames`` the same
        shape, each change encoded once for every subscriber (``mergebox.message_for``),
        to send where the subscriber's view agrees it is exactly its diff."""

    def replace_view(self, box: Mergebox) -> None:
        """Swap in a rebuilt view (the user changed); the client gets the difference."""
