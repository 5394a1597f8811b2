"""FastAPI dependencies, as Annotated aliases so route signatures read plainly."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import Depends, Request
from starlette.convertors import Convertor, register_url_convertor

from vaultkey.errors import InvalidPath, PermissionDenied
from vaultkey.proxy.state import ProxyState
from vaultkey.proxy.tokens import Caller, parse_token_id


def get_state(request: Request) -> ProxyState:
    state: ProxyState = request.app.state.vaultkey
    return state


def audit(request: Request) -> dict[str, Any]:
    """The audit record of this request (filled by routes, written by the middleware)."""
    record: dict[str, Any] = request.scope.setdefault("vaultkey.audit", {})
    return record


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-vaultkey-token") or None


async def get_caller(request: Request) -> Caller:
    state = get_state(request)
    token = _presented_token(request)
    record = audit(request)
    # The token id is public: recording it even when authentication fails lets operators
    # find who still uses a revoked or expired token.
    record["token_id"] = parse_token_id(token) if token else None
    # A cached token is checked on the event loop; only a cache miss reads etcd (in the pool).
    caller = state.tokens.authenticate(token, cached_only=True)
    if caller is None:
        caller = await state.blocking.run(state.tokens.authenticate, token)
    assert caller is not None
    record["token_id"] = caller.token_id
    record["group"] = caller.group
    return caller


async def get_group_caller(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    if caller.kind != "group":
        raise PermissionDenied("admin tokens manage tokens only; use a group token for data")
    return caller


async def get_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    if caller.kind != "admin":
        raise PermissionDenied("this endpoint needs the admin token; group tokens are refused")
    return caller


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


StateDep = Annotated[ProxyState, Depends(get_state)]
AuditDep = Annotated[dict[str, Any], Depends(audit)]
CallerDep = Annotated[Caller, Depends(get_caller)]
GroupCaller = Annotated[Caller, Depends(get_group_caller)]
AdminCaller = Annotated[Caller, Depends(get_admin)]
