"""``create_app()``: the proxy's FastAPI application.

Settings are passed in, never read at import time::

    from vaultkey.proxy.app import create_app
    app = create_app(ProxyConfig(...))     # then: uvicorn with TLS (see server.py)

Errors are mapped to HTTP at this one boundary (each error class declares its
``http_status`` and ``code``); nothing a
client sends produces a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vaultkey._version import __version__
from vaultkey.errors import (
    StoreError,
    Unauthenticated,
    Unavailable,
    UsageError,
    VaultkeyError,
)
from vaultkey.proxy.config import ProxyConfig
from vaultkey.proxy.routes import health, kv, tokens
from vaultkey.proxy.state import ProxyState

log = logging.getLogger(__name__)

def error_response(exc: VaultkeyError) -> JSONResponse:
    status, code = exc.http_status, exc.code  # declared on each class in vaultkey.errors
    headers = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="vaultkey"'
    if isinstance(exc, Unavailable):
        headers["Retry-After"] = str(max(1, round(exc.retry_after or 1)))
    message = exc.message
    if isinstance(exc, StoreError):
        # Why: etcd's error details are for operators, not for clients.
        message = "etcd returned an error; see the proxy log"
    body = {"error": {"code": code, "message": message, "hint": exc.hint}}
    return JSONResponse(body, status_code=status, headers=headers)


_last_unavailable_log = [0.0]


def _log_server_side(request: Request, exc: VaultkeyError) -> None:
    """Operators see why clients got 5xx, with the request's context (never a token)."""
    record = request.scope.get("vaultkey.audit", {})
    context = f"{request.method} {record.get('path') or request.url.path} " \
              f"token_id={record.get('token_id')}"
    if isinstance(exc, Unavailable):
        now = time.monotonic()
        if now - _last_unavailable_log[0] < 5.0:  # at most one line per 5 s while etcd is down
            return
        _last_unavailable_log[0] = now
        cause = exc.__cause__ or exc.message
        log.warning("answering 503: %s (%s); %s", exc.message, cause, context)
    else:
        log.error("answering %d: %s; %s", exc.http_status, exc.message, context)


class AuditMiddleware:
    """Pure ASGI: one JSON audit line and metrics per /v1 request. Never logs a value or token."""

    def __init__(self, app: ASGIApp, state: ProxyState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the server runs without WebSocket support
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        writer = self.state.audit if scope["path"].startswith("/v1/") else None
        if writer is not None and not writer.reserve():
            # Why: fail safe. Requests are refused, not served unaudited.
            self.state.metrics.audit_refused.inc()
            await error_response(Unavailable("the audit log is not keeping up; retry shortly",
                                             retry_after=1.0))(scope, receive, send)
            return
        record: dict[str, Any] = scope.setdefault("vaultkey.audit", {})
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if _is_upgrade(scope):
                # Why before routing: no /v1 endpoint speaks another protocol, and an
                # upgrade must not reach a route that might answer it as plain HTTP.
                record.update(op="upgrade", decision="deny")
                await error_response(UsageError(
                    "protocol upgrades (WebSocket, h2c) are not supported"))(
                        scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            op = record.get("op", "other")
            self.state.metrics.requests.labels(op=op, status=str(status[0])).inc()
            self.state.metrics.latency.labels(op=op).observe(elapsed)
            if status[0] == 503:
                self.state.metrics.etcd_unavailable.inc()
            if writer is not None:
                writer.write(self._line(scope, record, status[0], elapsed))

    @staticmethod
    def _line(scope: Scope, record: dict[str, Any], status: int, elapsed: float) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "token_id": record.get("token_id"),
            "claimed_token_id": record.get("claimed_token_id"),
            "group": record.get("group"),
            "op": record.get("op", f"{scope['method']} {scope['path'][:64]}"),
            "path": record.get("path"),
            "decision": record.get("decision"),
            "status": status,
            "revision": record.get("revision"),
            "ms": round(elapsed * 1000, 3),
        }
        # Why ASCII: every non-ASCII character (U+2028 and U+2029 included) is escaped, so
        # any line-oriented reader sees exactly one record per line.
        return json.dumps(line, ensure_ascii=True)


def _is_upgrade(scope: Scope) -> bool:
    return any(name == b"upgrade" for name, _value in scope["headers"])


def _install_signals(state: ProxyState, reload_policies: bool) -> None:
    """SIGHUP reloads policies and reopens the audit log; SIGUSR1 only reopens it
    (for logrotate: rename the file, then signal; no line is lost)."""

    def reopen() -> None:
        if state.audit is not None:
            state.audit.reopen()

    def hup() -> None:
        reopen()
        loop.run_in_executor(None, state.reload_policies)

    try:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, reopen)
        if reload_policies:
            loop.add_signal_handler(signal.SIGHUP, hup)
    except (NotImplementedError, RuntimeError, ValueError):
        log.warning("SIGHUP/SIGUSR1 handling is not available in this process")


def create_app(config: ProxyConfig, *, state: ProxyState | None = None,
               reload_on_sighup: bool = True) -> FastAPI:
    state = state or ProxyState(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _install_signals(state, reload_on_sighup)
        yield
        state.close()  # drains the audit log: a graceful shutdown loses no line

    # Why no /docs and /redoc: FastAPI's pages load their scripts from a CDN, which a
    # secrets proxy must not make browsers fetch. /openapi.json stays.
    # Why redirect_slashes=False: Starlette's redirect echoes the Host header in an
    # absolute Location; _http_error redirects with a relative one instead.
    app = FastAPI(title="vaultkey proxy", version=__version__, lifespan=lifespan,
                  description="Ciphertext-only, ACL-enforcing proxy in front of etcd.",
                  docs_url=None, redoc_url=None, redirect_slashes=False)
    app.state.vaultkey = state
    app.include_router(kv.router)
    app.include_router(health.router)
    app.include_router(tokens.router)

    @app.exception_handler(VaultkeyError)
    async def _vaultkey_error(request: Request, exc: VaultkeyError) -> JSONResponse:
        if isinstance(exc, StoreError | Unavailable):
            _log_server_side(request, exc)
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and (location := _slash_redirect(app, request)):
            return Response(status_code=307, headers={"location": location})
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail), "hint": None}},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(UsageError(msgs))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Why: a bug must never show a client a traceback; operators get it in the log.
        log.error("answering 500 for %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(VaultkeyError("internal error; see the proxy log"))

    app.add_middleware(AuditMiddleware, state=state)
    return app


def _slash_redirect(app: FastAPI, request: Request) -> str | None:
    """A relative Location for the same path with or without its trailing slash, if
    that one names a route (never built from the Host header)."""
    path = request.url.path
    if not path.startswith("/") or path.startswith("//") or path == "/":
        return None
    other = path[:-1] if path.endswith("/") else path + "/"
    scope = {**request.scope, "path": other}
    if not any(route.matches(scope)[0] == Match.FULL for route in app.router.routes):
        return None
    query = request.url.query
    return quote(other) + (f"?{query}" if query else "")
