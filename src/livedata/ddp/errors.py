"""Errors as Meteor clients expect them (Meteor.Error), and what other exceptions become.

On the wire an error is ``{"isClientSafe": true, "error": E, "reason": R, "details": D,
"message": "R [E]", "errorType": "Meteor.Error"}`` (``reason``/``details`` omitted when
absent). Only ``DDPError`` and the mapped Django exceptions reach clients as themselves;
anything else becomes 500 "Internal server error" and its traceback is only logged.
"""

from __future__ import annotations

from typing import Any


class DDPError(Exception):
    """Raise from a method or publication to send the client a Meteor.Error.

    ``error`` is a number (HTTP-like: 400, 403, 404...) or a string code
    (``"too-many-requests"``); ``reason`` a human sentence; ``details`` any EJSON value.
    """

    def __init__(self, error: int | str, reason: str | None = None, details: Any = None) -> None:
        self.error = error
        self.reason = reason
        self.details = details
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.reason} [{self.error}]" if self.reason else f"[{self.error}]"

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"isClientSafe": True, "error": self.error}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.details is not None:
            out["details"] = self.details
        out["message"] = self.message
        out["errorType"] = "Meteor.Error"
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DDPError) and (self.error, self.reason, self.details) == (
            other.error,
            other.reason,
            other.details,
        )

    def __hash__(self) -> int:
        return hash((self.error, self.reason))

    def __repr__(self) -> str:
        return f"DDPError({self.error!r}, {self.reason!r}, {self.details!r})"


INTERNAL = DDPError(500, "Internal server error")


def not_found_method(name: str) -> DDPError:
    return DDPError(404, f"Method '{name}' not found")


def not_found_subscription(name: str) -> DDPError:
    return DDPError(404, f"Subscription '{name}' not found")


def client_error(exc: BaseException) -> tuple[DDPError, bool]:
    """The error a client may see for ``exc``, and whether it was unexpected (log it).

    ``DDPError`` passes through; Django's ``ValidationError`` → 400 with the messages as
    details, ``PermissionDenied`` → 403, ``ObjectDoesNotExist`` → 404; anything else →
    500 "Internal server error" (never the exception's text: it may hold secrets).
    """
    if isinstance(exc, DDPError):
        return exc, False
    try:
        from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
    except ImportError:  # pragma: no cover - Django is a dependency
        return INTERNAL, True
    if isinstance(exc, ValidationError):
        details = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return DDPError(400, "Validation failed", details), False
    if isinstance(exc, PermissionDenied):
        return DDPError(403, str(exc) or "Permission denied"), False
    if isinstance(exc, ObjectDoesNotExist):
        return DDPError(404, str(exc) or "Not found"), False
    return INTERNAL, True
