"""``/v1/recipients/<key>``: who a value at a key must be encrypted to."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vaultkey.envelope import Envelope
from vaultkey.errors import MalformedEnvelope
from vaultkey.keys import PublicKey
from vaultkey.paths import validate_key
from vaultkey.proxy.deps import Ctx, GroupCtx

router = APIRouter(tags=["recipients"])


def _keys(keys: tuple[PublicKey, ...]) -> list[dict[str, str]]:
    return [{"key_id": k.key_id, "public_key": k.to_text()} for k in keys]


@router.get("/v1/recipients/{path:anypath}",
            summary="Groups that may read a path, and their keys")
async def recipients(path: str, ctx: GroupCtx) -> dict[str, Any]:
    """Reader groups and their keys, escrow keys, the writers whose signature the path
    requires (``signature``), and for callers that may read it the ``current`` revision
    and counter."""
    key = validate_key("/" + path)
    ctx.audit.op, ctx.audit.path = "recipients", key
    ctx.authz.require_read_or_write(key)
    found = ctx.authz.recipients_for(key)
    writers = found.writers
    answer: dict[str, Any] = {"path": key,
            "groups": [{"group": g, "recipients": _keys(keys)} for g, keys in found.groups],
            "escrow": _keys(found.escrow),
            "signature": None if writers is None else {
                "required": True,
                "writers": [{"name": name, "key_id": k.key_id}
                            for name, k in writers.keys.values()]}}
    if ctx.authz.may_read(key):
        # Why only for readers: a caller never makes the proxy load what it may not read.
        answer["current"] = await _current(ctx, key)
    return answer


async def _current(ctx: Ctx, key: str) -> dict[str, int] | None:
    """The revision and rollback counter of the value now at *key* (None: no value): a
    writer's next counter is this one plus one, written with compare-and-swap. Read from
    etcd itself, never the read cache: a writer racing others must see the latest."""
    entry = await ctx.state.store.get(key)
    if entry is None:
        return None
    try:
        counter = Envelope.parse(entry.value).counter
    except MalformedEnvelope:
        counter = 0
    return {"revision": entry.mod_revision, "counter": counter}
