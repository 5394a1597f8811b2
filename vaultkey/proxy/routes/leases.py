"""``/v1/leases/<id>``: keep a group's lease alive, or revoke it (its keys go at once)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vaultkey.errors import NotFound
from vaultkey.proxy import leases
from vaultkey.proxy.deps import Ctx, GroupCtx

router = APIRouter(prefix="/v1/leases", tags=["leases"])


async def _owned(lease_id: str, ctx: Ctx, op: str) -> int:
    """The lease, if it belongs to the caller's group (else the same 404 as a missing one)."""
    ctx.audit.op, ctx.audit.path = op, f"lease:{lease_id[:16]}"
    lease = leases.parse_lease(lease_id)
    await leases.require_owner(ctx.state, ctx.group, lease)
    ctx.audit.decision = "allow"
    return lease


@router.post("/{lease_id}/keepalive", summary="Renew a lease of this group")
async def keepalive(lease_id: str, ctx: GroupCtx) -> dict[str, Any]:
    ttl = await ctx.state.kv.keepalive(await _owned(lease_id, ctx, "lease.keepalive"))
    if ttl <= 0:
        raise NotFound(f"no lease {lease_id}")
    return {"lease": lease_id, "ttl": ttl}


@router.delete("/{lease_id}", summary="Revoke a lease of this group (deletes its keys)")
async def revoke(lease_id: str, ctx: GroupCtx) -> dict[str, Any]:
    await ctx.state.kv.revoke_lease(await _owned(lease_id, ctx, "lease.revoke"))
    return {"lease": lease_id, "revoked": True}
