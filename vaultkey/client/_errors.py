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
    ProtocolError,
    RequestTimeout,
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
    UsageError, RequestTimeout, StoreError, Unavailable,
)


_UNAUTHENTICATED_HINT = ("check VAULTKEY_TOKEN / --token-file; group tokens come from "
                         "`vaultkey token create`")


def error_from_response(status: int, body: Any, addr: str = "the proxy") -> VaultkeyError:
    """Map an error response to the vaultkey exception tree."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        # Not a vaultkey error body: a gateway, a load balancer, or the wrong address.
        if status in (502, 503, 504):
            return Unavailable(f"HTTP {status} from {addr}, not from a vaultkey proxy",
                               hint="a gateway in front of the proxy could not reach it")
        return ProtocolError(f"{addr} answered HTTP {status}, which is not a vaultkey answer",
                             hint="check --addr / VAULTKEY_ADDR")
    message = str(error.get("message") or f"HTTP {status}")
    hint = error.get("hint")
    by_status = [cls for cls in _WIRE if cls.http_status == status]
    if not by_status:
        return ProtocolError(f"unexpected HTTP {status} from {addr}: {message}")
    exact = [cls for cls in by_status if cls.code == error.get("code")]
    cls = (exact or by_status)[-1]
    if cls is Unauthenticated:
        hint = _UNAUTHENTICATED_HINT
    return cls(message, hint=hint if isinstance(hint, str) else None)
