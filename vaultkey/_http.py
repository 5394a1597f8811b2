"""HTTP plumbing shared by the CLI and the SDK: settings, one pooled httpx client,
and the HTTP -> vaultkey exception boundary.

    conn = Connection(ConnectionSettings(addr="https://127.0.0.1:8443", token=..., cacert="ca.pem"))
    conn.request("GET", "/v1/whoami")       # -> dict, or raises a VaultkeyError

httpx is imported lazily so that importing vaultkey stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    import httpx

DEFAULT_ADDR = "https://127.0.0.1:8443"

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


@dataclass(frozen=True)
class ConnectionSettings:
    addr: str = DEFAULT_ADDR
    token: str | None = field(default=None, repr=False)
    cacert: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_env(cls, **overrides: Any) -> ConnectionSettings:
        token = os.environ.get("VAULTKEY_TOKEN")
        token_file = os.environ.get("VAULTKEY_TOKEN_FILE")
        if not token and token_file:
            token = read_token_file(token_file)
        values: dict[str, Any] = {
            "addr": os.environ.get("VAULTKEY_ADDR", DEFAULT_ADDR),
            "token": token,
            "cacert": os.environ.get("VAULTKEY_CACERT"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def read_token_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"cannot read token file {path}: {exc.strerror}") from exc


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


class Connection:
    """One keep-alive connection pool to a proxy (TLS verified by default)."""

    def __init__(self, settings: ConnectionSettings) -> None:
        import httpx

        self.settings = settings
        verify: Any = True
        if settings.cacert:
            import ssl

            if not Path(settings.cacert).is_file():
                raise UsageError(f"--cacert {settings.cacert}: no such file")
            verify = ssl.create_default_context(cafile=settings.cacert)
        headers = {"User-Agent": "vaultkey"}
        if settings.token:
            headers["Authorization"] = f"Bearer {settings.token}"
        self._client = httpx.Client(base_url=settings.addr.rstrip("/"), verify=verify,
                                    headers=headers, timeout=settings.timeout)

    def raw(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            return self._client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(
                f"cannot reach the vaultkey proxy at {self.settings.addr}: {exc}",
                hint="check --addr / VAULTKEY_ADDR and that `vaultkey serve` is running",
            ) from exc

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self.raw(method, url, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            raise error_from_response(response.status_code, body)
        return body

    def close(self) -> None:
        self._client.close()
