"""The DDP sessions' figures: connections by transport and the messages sent to them.

A source of the runtime's board (``livedata.runtime.figures``), registered by
``app.DDPService``. It counts the runtime's live sessions when read; what closed
sessions had sent is carried on the board by ``DDPSession`` as it leaves, so the totals
only grow while the process lives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from livedata.runtime.figures import Figure, Labels

if TYPE_CHECKING:
    from livedata.runtime import Runtime

TRANSPORTS = ("websocket", "sockjs")


def session_figures(runtime: Runtime) -> list[Figure]:
    connections = dict.fromkeys(TRANSPORTS, 0)
    frames = dict.fromkeys(TRANSPORTS, 0)
    chars = dict.fromkeys(TRANSPORTS, 0)
    for session in list(runtime.sessions):
        transport = session.transport
        connections[transport] = connections.get(transport, 0) + 1
        frames[transport] = frames.get(transport, 0) + session.outbox.sent
        chars[transport] = chars.get(transport, 0) + session.outbox.sent_bytes
    board = runtime.figures

    def values(counts: dict[str, int], carried: str | None = None) -> list[tuple[Labels, float]]:
        out: list[tuple[Labels, float]] = []
        for transport, n in counts.items():
            labels = (("transport", transport),)
            out.append((labels, n + (board.carried(carried, labels) if carried else 0)))
        return out

    return [
        Figure("connections", "gauge", "DDP sessions open, by transport", values(connections)),
        Figure(
            "messages_out_total",
            "counter",
            "DDP messages queued for clients (sent unless the connection closed first)",
            values(frames, "messages_out_total"),
        ),
        Figure(
            "bytes_out_total",
            "counter",
            "characters of those messages (UTF-8 bytes for ASCII text)",
            values(chars, "bytes_out_total"),
        ),
    ]
