"""Admin-only token management: create, list, revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vaultkey.errors import UsageError
from vaultkey.proxy.deps import AdminCaller, AuditDep, StateDep
from vaultkey.proxy.tokens import parse_ttl

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


class TokenRequest(BaseModel):
    group: str = Field(min_length=1, max_length=63)
    name: str = Field(default="", max_length=200)
    ttl: str | None = Field(default=None, description="e.g. 3600, 30m, 24h, 7d")


@router.post("", summary="Create a token for a group (the token is shown once)")
async def create_token(body: TokenRequest, _admin: AdminCaller, state: StateDep,
                       audit: AuditDep) -> dict[str, Any]:
    audit.update(op="token.create", path=f"group:{body.group}", decision="allow")
    if body.group not in state.policies.policy_set.groups:
        raise UsageError(f"no policy defines group {body.group!r}")
    ttl = parse_ttl(body.ttl) if body.ttl else None
    token, record = await run_in_threadpool(
        lambda: state.tokens.create(body.group, name=body.name, ttl=ttl)
    )
    return {"token": token, **record.public()}


@router.get("", summary="List tokens (never their secrets)")
async def list_tokens(_admin: AdminCaller, state: StateDep, audit: AuditDep) -> dict[str, Any]:
    audit.update(op="token.list", decision="allow")
    records = await run_in_threadpool(state.tokens.list)
    return {"tokens": [r.public() for r in records]}


@router.delete("/{token_id}", summary="Revoke a token by id")
async def revoke_token(token_id: str, _admin: AdminCaller, state: StateDep,
                       audit: AuditDep) -> dict[str, Any]:
    audit.update(op="token.revoke", path=f"token:{token_id}", decision="allow")
    await run_in_threadpool(state.tokens.revoke, token_id)
    return {"id": token_id, "revoked": True}
