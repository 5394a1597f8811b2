"""``/v1/whoami``: who the presented token is."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vaultkey.proxy.deps import AnyCtx

router = APIRouter(tags=["identity"])


@router.get("/v1/whoami", summary="Who this token is")
async def whoami(ctx: AnyCtx) -> dict[str, Any]:
    ctx.audit.op, ctx.audit.decision = "whoami", "allow"
    caller = ctx.caller
    return {"kind": caller.kind, "token_id": caller.token_id, "group": caller.group,
            "name": caller.name, "expires": caller.expires}
