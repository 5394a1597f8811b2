"""``/v1/leases/<id>``: keep a group's lease alive, or revoke it (its keys go at once)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vaultkey.errors import NotFound
from vaultkey.proxy import leases
from vaultkey.proxy.deps import GroupCtx

router = APIRouter(prefix="/v1/leases", tags=["leases"])


@router.post("/{lease_id}/keepalive", summary="Renew a lease of this group")
async def keepalive(lease_id: str, ctx: GroupCtx) -> dict[str, Any]:
    ctx.audit.op, ctx.audit.path = "lease.keepalive", f"lease:{lease_id[:16]}"
    lease = leases.parse_lease(lease_id)
    await leases.require_owner(ctx.state, ctx.group, lease)
    ctx.audit.decision = "allow"
    ttl = await ctx.state.kv.keepalive(lease)
    if ttl <= 0:
        raise NotFound(f"no lease {lease_id}")
    return {"lease": lease_id, "ttl": ttl}


@router.delete("/{lease_id}", summary="Revoke a lease of this group (deletes its keys)")
async def revoke(lease_id: str, ctx: GroupCtx) -> dict[str, Any]:
    ctx.audit.op, ctx.audit.path = "lease.revoke", f"lease:{lease_id[:16]}"
    lease = leases.parse_lease(lease_id)
    await leases.require_owner(ctx.state, ctx.group, lease)
    ctx.audit.decision = "allow"
    await ctx.state.kv.revoke_lease(lease)
    return {"lease": lease_id, "revoked": True}
