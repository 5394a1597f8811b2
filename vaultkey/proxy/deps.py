"""FastAPI dependencies, as Annotated aliases so route signatures read plainly.

Every dependency is ``async def``: FastAPI runs plain ``def`` dependencies in a
thread pool, which cost a thread hop each on every request. Each route takes a
single context dependency (:class:`Ctx`), since resolving a dependency graph
costs per node on every request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated
from urllib.parse import unquote_to_bytes

from fastapi import Depends, Request
from starlette.convertors import Convertor, register_url_convertor

from vaultkey.errors import (
    InvalidPath,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    UsageError,
)
from vaultkey.proxy.audit import SCOPE_KEY, AuditRecord
from vaultkey.proxy.authz import Authz
from vaultkey.proxy.cache import MIN_REVISION
from vaultkey.proxy.ratelimit import Buckets
from vaultkey.proxy.state import ProxyState
from vaultkey.proxy.tokens import Caller, parse_token_id


@dataclass(frozen=True)
class Ctx:
    """Everything a route needs: the proxy state, who is calling, the audit record, and
    the authorisation questions for that caller (``ctx.authz.require(...)``)."""

    state: ProxyState
    caller: Caller
    audit: AuditRecord
    token: str = field(default="", repr=False)  # re-checked while a stream is open

    @property
    def group(self) -> str:
        return self.caller.group or ""

    @cached_property
    def authz(self) -> Authz:
        # The policy snapshot is read once here: a reload never changes a request midway.
        return Authz(self.state.policies, self.state.escrow, self.group, self.audit)


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-vaultkey-token") or None


async def _context(request: Request) -> Ctx:
    return await context_for(request.app.state.vaultkey, request)


async def context_for(state: ProxyState, request: Request) -> Ctx:
    """Check the raw path, authenticate the token and start the audit record."""
    raw_path_guard(request)
    record = request.scope.get(SCOPE_KEY)
    if record is None:  # outside the audit middleware (e.g. a non-/v1 route)
        record = request.scope[SCOPE_KEY] = AuditRecord()
    token = _presented_token(request)
    # The token id is public: recording the *claimed* id even when authentication fails
    # lets operators find who still uses a revoked or expired token. It is only a claim:
    # token_id is set once the token is verified.
    record.claimed_token_id = parse_token_id(token) if token else None
    limits = state.limits
    address = request.client.host if request.client else ""
    if limits.active:
        _limit(state, "address", limits.address, address)
        _limit(state, "auth", limits.auth_failures, address, dry=True)
    # A cached token is checked on the event loop without I/O; only a miss reads etcd.
    try:
        caller = state.tokens.check_cached(token) or await state.tokens.authenticate(token)
    except Unauthenticated:
        if limits.auth_failures is not None:
            limits.auth_failures.take(address)  # guessing tokens costs the address
        raise
    if limits.token is not None and caller.token_id:
        _limit(state, "token", limits.token, caller.token_id)
    record.token_id, record.group, record.claimed_token_id = (
        caller.token_id, caller.group, None)
    minimum = request.headers.get("x-vaultkey-min-revision")
    if minimum is not None:
        MIN_REVISION.set(_min_revision(minimum))
    return Ctx(state, caller, record, token or "")


def _limit(state: ProxyState, kind: str, buckets: Buckets | None, key: str, *,
           dry: bool = False) -> None:
    """429 if *key* has used up its *kind* rate limit (docs/OPERATIONS.md, "Rate limits")."""
    if buckets is None:
        return
    wait = buckets.take(key, dry=dry)
    if wait:
        state.metrics.rate_limited.labels(kind).inc()
        what = {"address": "requests from your address", "token": "requests with this token",
                "auth": "failed authentications from your address"}[kind]
        raise RateLimited(f"too many {what}; retry in {wait:.1f} s", retry_after=wait)


def _min_revision(text: str) -> int:
    value = text.strip()
    # Why fullmatch on ASCII digits: str.isdigit() accepts '²' and friends, which int() refuses.
    if not re.fullmatch(r"[0-9]{1,19}", value) or int(value) > 2**63 - 1:
        raise UsageError("X-Vaultkey-Min-Revision must be a revision number")
    return int(value)


async def any_context(request: Request) -> Ctx:
    return await _context(request)


async def group_context(request: Request) -> Ctx:
    return require_group(await _context(request))


def require_group(ctx: Ctx) -> Ctx:
    if ctx.caller.kind != "group":
        raise PermissionDenied("admin tokens manage tokens only; use a group token for data")
    return ctx


async def admin_context(request: Request) -> Ctx:
    ctx = await _context(request)
    if ctx.caller.kind != "admin":
        raise PermissionDenied("this endpoint needs the admin token; group tokens are refused")
    return ctx


async def get_state(request: Request) -> ProxyState:
    state: ProxyState = request.app.state.vaultkey
    return state


class AnyPathConvertor(Convertor[str]):
    """Like Starlette's ``path`` but also matching newlines and other control
    characters, so such paths reach validation (422) instead of falling
    through to a router 404."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", AnyPathConvertor())


def raw_path_guard(request: Request) -> None:
    """Refuse percent-encoded '/' or '%': they would change how the path splits."""
    raw = request.scope.get("raw_path", b"")
    lowered = raw.lower()
    if b"%2f" in lowered or b"%25" in lowered or b"%5c" in lowered:
        raise InvalidPath("percent-encoded '/', '\\' or '%' in the request path")
    try:
        # The server decodes invalid UTF-8 to U+FFFD; refuse it instead of storing that.
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPath("the request path is not valid UTF-8") from None


# One dependency per route (FastAPI's dependency resolution costs per node, per request).
StateDep = Annotated[ProxyState, Depends(get_state)]
AnyCtx = Annotated[Ctx, Depends(any_context)]
GroupCtx = Annotated[Ctx, Depends(group_context)]
AdminCtx = Annotated[Ctx, Depends(admin_context)]
