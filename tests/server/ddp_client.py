"""What the test DDP clients share, whatever their transport: waiting and method calls."""

from __future__ import annotations

from collections.abc import Callable


class DDPCalls:
    """Needs ``send(message)`` and ``recv(timeout)`` from the transport class."""

    def send(self, message: dict | str) -> None:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def recv(self, timeout: float = 10) -> dict:  # pragma: no cover
        raise NotImplementedError

    def until(self, predicate: Callable[[dict], bool], timeout: float = 10) -> list[dict]:
        """Every message up to and including the first that satisfies ``predicate``."""
        seen = []
        while True:
            message = self.recv(timeout)
            seen.append(message)
            if predicate(message):
                return seen

    def call(self, method_id: str, method: str, *params) -> list[dict]:
        """Send a method; return every message up to both its result and updated."""
        self.send({"msg": "method", "id": method_id, "method": method, "params": list(params)})
        got: list[dict] = []
        need = {"result", "updated"}
        while need:
            message = self.recv()
            got.append(message)
            if message["msg"] == "result" and message["id"] == method_id:
                need.discard("result")
            if message["msg"] == "updated" and method_id in message["methods"]:
                need.discard("updated")
        return got
