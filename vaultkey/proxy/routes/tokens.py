"""Admin-only token management: create, list, revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError

from vaultkey.errors import UsageError
from vaultkey.proxy.body import read_body
from vaultkey.proxy.deps import AdminCtx
from vaultkey.proxy.state import ProxyState
from vaultkey.proxy.tokens import parse_ttl

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


class TokenRequest(BaseModel):
    group: str = Field(min_length=1, max_length=63)
    name: str = Field(default="", max_length=200)
    ttl: str | None = Field(default=None, description="e.g. 3600, 30m, 24h, 7d")


MAX_BODY = 4096


async def _token_request(request: Request) -> TokenRequest:
    """Read and validate the body only after the admin check (dependencies run first),
    and never more than MAX_BODY bytes, so unauthenticated callers cannot make the
    proxy buffer or parse large bodies."""
    state: ProxyState = request.app.state.vaultkey
    data = await read_body(request, limit=MAX_BODY, timeout=state.config.body_timeout,
                           what="token request")
    try:
        return TokenRequest.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                             for e in exc.errors())
        raise UsageError(f"bad token request: {problems}") from None


@router.post("", summary="Create a token for a group (the token is shown once)",
             openapi_extra={"requestBody": {"content": {"application/json": {
                 "schema": TokenRequest.model_json_schema()}}, "required": True}})
async def create_token(request: Request, ctx: AdminCtx) -> dict[str, Any]:
    state = ctx.state
    body = await _token_request(request)
    ctx.audit.op, ctx.audit.path, ctx.audit.decision = (
        "token.create", f"group:{body.group}", "allow")
    if body.group not in state.policies.policy_set.groups:
        raise UsageError(f"no policy defines group {body.group!r}")
    ttl = parse_ttl(body.ttl) if body.ttl else None
    token, record = await state.tokens.create(body.group, name=body.name, ttl=ttl)
    return {"token": token, **record.public()}


@router.get("", summary="List tokens (never their secrets)")
async def list_tokens(ctx: AdminCtx) -> dict[str, Any]:
    ctx.audit.op, ctx.audit.decision = "token.list", "allow"
    records = await ctx.state.tokens.list()
    return {"tokens": [{**r.public(), "revoked": None} for r in records],
            "revoked": await ctx.state.tokens.revoked()}


@router.delete("/{token_id}", summary="Revoke a token by id")
async def revoke_token(token_id: str, ctx: AdminCtx) -> dict[str, Any]:
    ctx.audit.op, ctx.audit.path, ctx.audit.decision = (
        "token.revoke", f"token:{token_id}", "allow")
    await ctx.state.tokens.revoke(token_id)
    return {"id": token_id, "revoked": True}
