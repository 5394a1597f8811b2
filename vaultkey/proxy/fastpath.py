"""The hot path: ``GET``, ``PUT`` and ``DELETE /v1/kv/<key>`` with no query string,
without FastAPI's router.

Single-key reads and writes are most of a proxy's traffic, and resolving FastAPI's
route, dependencies and exception middleware cost more than a read from the read
cache. This runs the *same* code as the routes: the token check and audit record
of :func:`~vaultkey.proxy.deps.context_for`, the group check, the route handlers
themselves (:func:`~vaultkey.proxy.routes.kv.read_key`, ``kv_put``, ``kv_delete``:
path validation, ACL, envelope checks, the store) and the app's error mapping.
Anything else (a query, another method or path) goes to FastAPI.
tests/routes/test_fastpath.py checks both give identical answers.
"""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from vaultkey.errors import StoreError, Unavailable, VaultkeyError
from vaultkey.proxy.deps import context_for, require_group
from vaultkey.proxy.middleware import ServerSideLog, error_response
from vaultkey.proxy.routes.kv import kv_delete, kv_put, read_key
from vaultkey.proxy.state import ProxyState

log = logging.getLogger(__name__)
PREFIX = "/v1/kv/"


def is_single_key(scope: Scope) -> bool:
    """A GET, PUT or DELETE of one key path with no query."""
    return (scope["method"] in ("GET", "PUT", "DELETE") and not scope["query_string"]
            and scope["path"].startswith(PREFIX))


class FastKV:
    def __init__(self, state: ProxyState, log_server_side: ServerSideLog) -> None:
        self.state = state
        self.log_server_side = log_server_side

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response: Response
        try:
            ctx = require_group(await context_for(self.state, request))
            path, method = scope["path"][len(PREFIX):], scope["method"]
            if method == "GET":
                response = await read_key(path, ctx, self.state.kv)
            elif method == "PUT":
                response = await kv_put(path, request, ctx)
            else:
                response = await kv_delete(path, request, ctx)
        except VaultkeyError as exc:
            if isinstance(exc, StoreError | Unavailable):
                self.log_server_side(request, exc)
            response = error_response(exc)
        except Exception as exc:  # as the app's handler: never a traceback to a client
            log.error("answering 500 for %s %s", scope["method"], scope["path"], exc_info=exc)
            response = error_response(VaultkeyError("internal error; see the proxy log"))
        await response(scope, receive, send)


__all__ = ["FastKV", "is_single_key"]
