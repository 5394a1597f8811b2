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

_BY_STATUS: dict[int, type[VaultkeyError]] = {
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: ValueTooLarge,
    422: UsageError,
    502: StoreError,
    503: Unavailable,
}


def error_from_response(status: int, body: Any) -> VaultkeyError:
    """Map an error response to the vaultkey exception tree."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    message = error.get("message") or f"HTTP {status}"
    hint = error.get("hint")
    if status == 422 and error.get("code") == "invalid_envelope":
        return MalformedEnvelope(message, hint=hint)
    cls = _BY_STATUS.get(status)
    if cls is None:
        return StoreError(f"proxy answered HTTP {status}: {message}")
    return cls(message, hint=hint)
