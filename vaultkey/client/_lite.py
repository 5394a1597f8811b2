"""A minimal HTTP/1.1 client on the standard library, for the CLI's short-lived processes.

``httpx`` costs ~40 ms to import, a third of a whole ``vaultkey get``. The CLI
makes one or two requests per process, so it sends them with ``http.client``
over one keep-alive connection instead; the long-lived SDK clients keep httpx.
It never uses a forward proxy: where one is configured for an ``https://``
address, the CLI takes httpx too (:func:`vaultkey.client._transport.proxy_configured`).
Same interface as the part of ``httpx.Client`` the SDK uses::

    conn = LiteConnection(base_url="https://127.0.0.1:8443", verify=ssl_context,
                          headers={"Authorization": "Bearer ..."}, timeout=10)
    response = conn.request("GET", "/v1/whoami")   # .status_code, .headers, .json()
"""

from __future__ import annotations

import http.client
import json as _json
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class LiteTransportError(Exception):
    """The request could not be sent or its answer not read (connection, TLS, protocol)."""


class LiteResponse:
    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return _json.loads(self.content)


class LiteConnection:
    def __init__(self, *, base_url: str, verify: ssl.SSLContext, headers: dict[str, str],
                 timeout: float) -> None:
        parts = urlsplit(base_url)
        self._base_path = parts.path.rstrip("/")  # like httpx's base_url
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        self._context = verify
        self._headers = headers
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._used = False  # has the current connection answered a request already?
        self._was_reused = False

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._tls:
                self._conn = http.client.HTTPSConnection(self._host, self._port,
                                                         timeout=self._timeout,
                                                         context=self._context)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port,
                                                        timeout=self._timeout)
        return self._conn

    def request(self, method: str, url: str, *, params: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, content: bytes | None = None,
                json: Any = None) -> LiteResponse:
        target = self._base_path + url + ("?" + urlencode(params) if params else "")
        all_headers = {**self._headers, **(headers or {})}
        body = content
        if json is not None:
            body = _json.dumps(json).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            return self._exchange(method, target, body, all_headers)
        except _STALE as exc:
            # A kept-alive connection the server closed while idle fails before the server
            # read anything, so sending again on a fresh connection is safe (as httpx does).
            if not self._was_reused:
                self.close()
                raise LiteTransportError(str(exc) or type(exc).__name__) from exc
            self.close()
        try:
            return self._exchange(method, target, body, all_headers)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise LiteTransportError(str(exc) or type(exc).__name__) from exc

    def _exchange(self, method: str, target: str, body: bytes | None,
                  headers: dict[str, str]) -> LiteResponse:
        self._was_reused = self._used
        try:
            conn = self._connection()
            conn.request(method, target, body=body, headers=headers)
            raw = conn.getresponse()
            data = raw.read()
        except _STALE:
            raise
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise LiteTransportError(str(exc) or type(exc).__name__) from exc
        self._used = True
        return LiteResponse(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._used = False

