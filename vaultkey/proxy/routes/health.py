"""Health, readiness, metrics, whoami and recipients."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from vaultkey.errors import PermissionDenied
from vaultkey.paths import validate_key
from vaultkey.policy.engine import Capability
from vaultkey.proxy.deps import AnyCtx, GroupCtx, StateDep

router = APIRouter(tags=["sys"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: etcd answers")
async def readyz(state: StateDep) -> dict[str, Any]:
    # Why no revision in the answer: etcd's revision counts every write in the cluster;
    # unauthenticated callers must not be able to watch it move.
    await state.kv.ping()
    return {"status": "ok"}


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/v1/whoami", summary="Who this token is")
async def whoami(ctx: AnyCtx) -> dict[str, Any]:
    ctx.audit.update(op="whoami", decision="allow")
    caller = ctx.caller
    return {"kind": caller.kind, "token_id": caller.token_id, "group": caller.group,
            "name": caller.name, "expires": caller.expires}


@router.get("/v1/recipients/{path:anypath}",
            summary="Groups that may read a path, and their keys")
async def recipients(path: str, ctx: GroupCtx) -> dict[str, Any]:
    key = validate_key("/" + path)
    audit, state, group = ctx.audit, ctx.state, ctx.group
    audit.update(op="recipients", path=key)
    policies = state.policies
    acl = policies.policy_set
    if not (acl.allowed(group, key, Capability.WRITE) or acl.allowed(group, key, Capability.READ)):
        audit["decision"] = "deny"
        raise PermissionDenied(f"group {group!r} may neither read nor write {key}")
    audit["decision"] = "allow"
    groups = [
        {"group": g, "recipients": [{"key_id": k.key_id, "public_key": k.to_text()}
                                    for k in policies.recipients_for(g)]}
        for g in acl.readers(key)
    ]
    escrow = [{"key_id": k.key_id, "public_key": k.to_text()} for k in state.escrow]
    return {"path": key, "groups": groups, "escrow": escrow}
