"""``/v1/recipients/<key>``: who a value at a key must be encrypted to."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vaultkey.keys import PublicKey
from vaultkey.paths import validate_key
from vaultkey.proxy.deps import GroupCtx

router = APIRouter(tags=["recipients"])


def _keys(keys: tuple[PublicKey, ...]) -> list[dict[str, str]]:
    return [{"key_id": k.key_id, "public_key": k.to_text()} for k in keys]


@router.get("/v1/recipients/{path:anypath}",
            summary="Groups that may read a path, and their keys")
async def recipients(path: str, ctx: GroupCtx) -> dict[str, Any]:
    key = validate_key("/" + path)
    ctx.audit.op, ctx.audit.path = "recipients", key
    ctx.authz.require_read_or_write(key)
    found = ctx.authz.recipients_for(key)
    return {"path": key,
            "groups": [{"group": g, "recipients": _keys(keys)} for g, keys in found.groups],
            "escrow": _keys(found.escrow)}
