"""FastAPI dependencies, as Annotated aliases so route signatures read plainly.

Every dependency is ``async def``: FastAPI runs plain ``def`` dependencies in a
thread pool, which cost a thread hop each on every request. Each route takes a
single context dependency (:class:`Ctx`), since resolving a dependency graph
costs per node on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import Depends, Request
from starlette.convertors import Convertor, register_url_convertor

from vaultkey.errors import InvalidPath, PermissionDenied
from vaultkey.proxy.state import ProxyState
from vaultkey.proxy.tokens import Caller, parse_token_id


@dataclass(frozen=True)
class Ctx:
    """Everything a route needs: the proxy state, who is calling, the audit record."""

    state: ProxyState
    caller: Caller
    audit: dict[str, Any]

    @property
    def group(self) -> str:
        return self.caller.group or ""


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-vaultkey-token") or None


async def _context(request: Request) -> Ctx:
    """Check the raw path, authenticate the token and start the audit record."""
    raw_path_guard(request)
    state: ProxyState = request.app.state.vaultkey
    record: dict[str, Any] = request.scope.setdefault("vaultkey.audit", {})
    token = _presented_token(request)
    # The token id is public: recording the *claimed* id even when authentication fails
    # lets operators find who still uses a revoked or expired token. It is only a claim:
    # token_id is set once the token is verified.
    record["claimed_token_id"] = parse_token_id(token) if token else None
    # A cached token is checked on the event loop; only a cache miss reads etcd (in the pool).
    caller = state.tokens.authenticate(token, cached_only=True)
    if caller is None:
        caller = await state.blocking.run(state.tokens.authenticate, token)
    assert caller is not None
    record["token_id"] = caller.token_id
    record["group"] = caller.group
    record.pop("claimed_token_id", None)
    return Ctx(state, caller, record)


async def any_context(request: Request) -> Ctx:
    return await _context(request)


async def group_context(request: Request) -> Ctx:
    ctx = await _context(request)
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
