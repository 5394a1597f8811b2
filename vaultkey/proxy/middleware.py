"""The HTTP edge of the app: error bodies, and one audit line per ``/v1`` request.

Errors are mapped to HTTP here (each error class declares its ``http_status``
and ``code``); :class:`AuditMiddleware` writes the request's
:class:`~vaultkey.proxy.audit.AuditRecord` when it ends, and refuses requests
it could not audit::

    app.add_middleware(AuditMiddleware, state=state)
    return error_response(PermissionDenied("no"))    # the API's JSON error body
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vaultkey.errors import StoreError, Unauthenticated, Unavailable, UsageError, VaultkeyError
from vaultkey.proxy.audit import SCOPE_KEY, AuditRecord
from vaultkey.proxy.state import ProxyState

log = logging.getLogger(__name__)


def error_response(exc: VaultkeyError) -> JSONResponse:
    headers = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="vaultkey"'
    if isinstance(exc, Unavailable):
        headers["Retry-After"] = str(max(1, round(exc.retry_after or 1)))
    message = exc.message
    if isinstance(exc, StoreError):
        # Why: etcd's error details are for operators, not for clients.
        message = "etcd returned an error; see the proxy log"
    body = {"error": {"code": exc.code, "message": message, "hint": exc.hint}}
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


class ServerSideLog:
    """Operators see why clients got 5xx, with the request's context (never a token);
    while etcd is down, at most one line per ``quiet`` seconds."""

    def __init__(self, quiet: float = 5.0) -> None:
        self.quiet = quiet
        self._last_unavailable = float("-inf")

    def __call__(self, request: Request, exc: VaultkeyError) -> None:
        record = request.scope.get(SCOPE_KEY) or AuditRecord()
        context = (f"{request.method} {record.path or request.url.path} "
                   f"token_id={record.token_id}")
        if not isinstance(exc, Unavailable):
            log.error("answering %d: %s; %s", exc.http_status, exc.message, context)
            return
        now = time.monotonic()
        if now - self._last_unavailable >= self.quiet:
            self._last_unavailable = now
            log.warning("answering 503: %s (%s); %s", exc.message,
                        exc.__cause__ or exc.message, context)


def is_upgrade(scope: Scope) -> bool:
    return any(name == b"upgrade" for name, _value in scope["headers"])


class AuditMiddleware:
    """Pure ASGI: one JSON audit line and metrics per /v1 request. Never logs a value or token."""

    def __init__(self, app: ASGIApp, state: ProxyState, fast_kv: ASGIApp | None = None,
                 is_fast: Callable[[Scope], bool] = lambda _scope: False) -> None:
        self.app = app
        self.state = state
        self.fast_kv = fast_kv or app  # plain GETs of one key (proxy/fastpath.py)
        self.is_fast = is_fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the server runs without WebSocket support
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        writer = self.state.audit if path == "/v1" or path.startswith("/v1/") else None
        if writer is not None and not writer.reserve():
            # Why: fail safe. Requests are refused, not served unaudited.
            self.state.metrics.audit_refused.inc()
            await error_response(Unavailable("the audit log is not keeping up; retry shortly",
                                             retry_after=1.0))(scope, receive, send)
            return
        record = scope[SCOPE_KEY] = AuditRecord()
        started = time.perf_counter()
        status = 500

        opened = False  # a stream's opening line is written when its answer starts

        async def send_wrapper(message: Message) -> None:
            nonlocal status, opened
            if message["type"] == "http.response.start":
                status = message["status"]
                if writer is not None and record.op == "watch" and status == 200:
                    opened = True
                    writer.write(record.line(scope["method"], scope["path"], status,
                                             time.perf_counter() - started, suffix="open"))
            await send(message)

        try:
            if is_upgrade(scope):
                # Why before routing: no /v1 endpoint speaks another protocol, and an
                # upgrade must not reach a route that might answer it as plain HTTP.
                record.op, record.decision = "upgrade", "deny"
                refusal = UsageError("protocol upgrades (WebSocket, h2c) are not supported")
                await error_response(refusal)(scope, receive, send_wrapper)
            elif self.is_fast(scope):
                await self.fast_kv(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            self._count(record.op or "other", status, elapsed)
            if writer is not None and opened:
                writer.write_extra(record.line(scope["method"], scope["path"], status, elapsed,
                                               suffix="close"))
            elif writer is not None:
                writer.write(record.line(scope["method"], scope["path"], status, elapsed))

    def _count(self, op: str, status: int, elapsed: float) -> None:
        metrics = self.state.metrics
        metrics.requests.labels(op=op, status=str(status)).inc()
        metrics.latency.labels(op=op).observe(elapsed)
        if status == 503:
            metrics.etcd_unavailable.inc()


__all__ = ["AuditMiddleware", "ServerSideLog", "error_response", "is_upgrade"]
