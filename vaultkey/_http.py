"""The HTTP -> vaultkey exception boundary of the SDK.

    >>> error_from_response(403, {"error": {"code": "permission_denied", "message": "no"}})
    PermissionDenied('no')
"""

from __future__ import annotations

from typing import Any

from vaultkey.errors import (
    Conflict,
    MalformedEnvelope,
    NotFound,
    PermissionDenied,
    StoreError,
    Unauthenticated,
    Unavailable,
    UsageError,
    ValueTooLarge,
    VaultkeyError,
)

# The errors a proxy answers with; status and code are declared on each class.
_WIRE: tuple[type[VaultkeyError], ...] = (
    Unauthenticated, PermissionDenied, NotFound, Conflict, ValueTooLarge, MalformedEnvelope,
    UsageError, StoreError, Unavailable,
)


def error_from_response(status: int, body: Any) -> VaultkeyError:
    """Map an error response to the vaultkey exception tree."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    message = error.get("message") or f"HTTP {status}"
    hint = error.get("hint")
    by_status = [cls for cls in _WIRE if cls.http_status == status]
    if not by_status:
        return StoreError(f"proxy answered HTTP {status}: {message}")
    exact = [cls for cls in by_status if cls.code == error.get("code")]
    return (exact or by_status)[-1](message, hint=hint)
