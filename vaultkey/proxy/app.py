"""``create_app()``: the proxy's FastAPI application.

Settings are passed in, never read at import time::

    from vaultkey.proxy.app import create_app
    app = create_app(ProxyConfig(...))     # then: uvicorn with TLS (see server.py)

Errors are mapped to HTTP at this one boundary (each error class declares its
``http_status`` and ``code``, see middleware.py); nothing a client sends
produces a 500, and a bug gives a JSON 500 with its details in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from vaultkey._version import __version__
from vaultkey.errors import StoreError, Unavailable, UsageError, VaultkeyError
from vaultkey.proxy.config import ProxyConfig
from vaultkey.proxy.fastpath import FastKV, is_single_key
from vaultkey.proxy.middleware import AuditMiddleware, ServerSideLog, error_response
from vaultkey.proxy.routes import (
    console,
    coverage,
    health,
    identity,
    kv,
    leases,
    recipients,
    tokens,
    watch,
)
from vaultkey.proxy.state import ProxyState

log = logging.getLogger(__name__)

def _install_signals(state: ProxyState, reload_policies: bool) -> None:
    """SIGHUP reloads policies and the admin token file and reopens the audit log; SIGUSR1
    only reopens it (for logrotate: rename the file, then signal; no line is lost)."""

    def reopen() -> None:
        if state.audit is not None:
            state.audit.reopen()

    def hup() -> None:
        reopen()
        loop.run_in_executor(None, state.reload_policies)
        loop.run_in_executor(None, state.reload_admin_tokens)

    try:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, reopen)
        if reload_policies:
            loop.add_signal_handler(signal.SIGHUP, hup)
    except (NotImplementedError, RuntimeError, ValueError):
        log.warning("SIGHUP/SIGUSR1 handling is not available in this process")


def create_app(config: ProxyConfig, *, state: ProxyState | None = None,
               reload_on_sighup: bool = True,
               on_startup: Callable[[ProxyState], Awaitable[None]] | None = None) -> FastAPI:
    state = state or ProxyState.from_config(config)
    log_server_side = ServerSideLog()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _install_signals(state, reload_on_sighup)
        await state.hub.start()  # one watch on kv/ and one on sys/ for this replica
        if on_startup is not None:
            await on_startup(state)
        yield
        await state.hub.stop()  # open streams end with a "restarted" resync
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
    app.include_router(recipients.router)
    app.include_router(identity.router)
    app.include_router(watch.router)
    app.include_router(leases.router)
    app.include_router(coverage.router)
    app.include_router(console.router)

    @app.exception_handler(VaultkeyError)
    async def _vaultkey_error(request: Request, exc: VaultkeyError) -> JSONResponse:
        if isinstance(exc, StoreError | Unavailable):
            log_server_side(request, exc)
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

    app.add_middleware(AuditMiddleware, state=state,
                       fast_kv=FastKV(state, log_server_side), is_fast=is_single_key)
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
