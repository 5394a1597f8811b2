"""The hot path: ``GET /v1/kv/<key>`` with no query string, without FastAPI's router.

Single-key reads are most of a proxy's traffic, and resolving FastAPI's route,
dependencies and exception middleware cost more than the read itself once it
comes from the read cache. This runs the *same* code as the route: the token
check and audit record of :func:`~vaultkey.proxy.deps.context_for`, the group
check, :func:`~vaultkey.proxy.routes.kv.read_key` (path validation, ACL, read)
and the app's error mapping. Anything else (a query, another method) goes to
FastAPI. tests/routes/test_fastpath.py checks both give identical answers.
"""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from vaultkey.errors import StoreError, Unavailable, VaultkeyError
from vaultkey.proxy.deps import context_for, require_group
from vaultkey.proxy.middleware import ServerSideLog, error_response
from vaultkey.proxy.routes.kv import read_key
from vaultkey.proxy.state import ProxyState

log = logging.getLogger(__name__)
PREFIX = "/v1/kv/"


def is_plain_read(scope: Scope) -> bool:
    return (scope["method"] == "GET" and not scope["query_string"]
            and scope["path"].startswith(PREFIX))


class FastRead:
    def __init__(self, state: ProxyState, log_server_side: ServerSideLog) -> None:
        self.state = state
        self.log_server_side = log_server_side

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response: Response
        try:
            ctx = require_group(await context_for(self.state, request))
            response = await read_key(scope["path"][len(PREFIX):], ctx, self.state.kv)
        except VaultkeyError as exc:
            if isinstance(exc, StoreError | Unavailable):
                self.log_server_side(request, exc)
            response = error_response(exc)
        except Exception as exc:  # as the app's handler: never a traceback to a client
            log.error("answering 500 for GET %s", scope["path"], exc_info=exc)
            response = error_response(VaultkeyError("internal error; see the proxy log"))
        await response(scope, receive, send)


__all__ = ["FastRead", "is_plain_read"]
