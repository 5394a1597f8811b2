"""``/v1/kv/{path}``: read, list, load, write and delete envelopes under the ACL.

A denial is decided before etcd is read, so the answer is the same whether or
not the key exists; 404 is only ever given to callers allowed to read. GET has
three modes (one key, ``?list=true``, ``?recursive=true``), one handler each.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from vaultkey.envelope import MAX_ENVELOPE_BYTES
from vaultkey.errors import InvalidPath, NotFound, UsageError, VaultkeyError
from vaultkey.paths import validate_key, validate_prefix
from vaultkey.policy.engine import Capability
from vaultkey.proxy import leases
from vaultkey.proxy.authz import check_envelope
from vaultkey.proxy.body import read_body
from vaultkey.proxy.deps import Ctx, GroupCtx
from vaultkey.proxy.listing import Listing, load_values, readable_keys
from vaultkey.proxy.store.base import Entry, KVStore
from vaultkey.proxy.tokens import parse_ttl

router = APIRouter(prefix="/v1/kv", tags=["kv"])


def _entry_json(entry: Entry) -> Any:
    return {
        "path": entry.path,
        "envelope": base64.b64encode(entry.value).decode("ascii"),
        "revision": entry.mod_revision,
        "create_revision": entry.create_revision,
        "version": entry.version,
    }


_REVISION_RE = re.compile(r"[0-9]{1,19}")
_MAX_REVISION = 2**63 - 1  # etcd revisions are int64


def _revision_header(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    text = value.strip().strip('"')
    # Why fullmatch on ASCII digits: str.isdigit() accepts '²' and friends, which int() refuses.
    if not _REVISION_RE.fullmatch(text) or int(text) > _MAX_REVISION:
        raise UsageError(f"{name} must be a revision number (or '*' for If-None-Match)")
    return int(text)


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}
_QUERY_DOC = {"parameters": [
    {"name": name, "in": "query", "required": False, "schema": {"type": "boolean"},
     "description": text}
    for name, text in (("list", "list the key names under the prefix (needs `list`)"),
                       ("recursive", "list and return every envelope under the prefix"),
                       ("consistent", "a linearizable read from etcd, never from the "
                        "proxy's read cache"))] + [
        {"name": "revision", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1},
         "description": "read as of this etcd revision (one snapshot across requests)"}]}


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise UsageError(f"query parameter {name!r} must be true or false")


@router.get("/{path:anypath}", summary="Read one envelope, or list / load a prefix",
            openapi_extra=_QUERY_DOC)
async def kv_get(path: str, request: Request, ctx: GroupCtx) -> JSONResponse:
    recursive, listing = _flag(request, "recursive"), _flag(request, "list")  # both checked
    at = _revision_header(request.query_params.get("revision"), "revision")
    kv = ctx.state.store if _flag(request, "consistent") or at else ctx.state.kv
    if at and at > await kv.ping():
        raise UsageError(f"revision {at} is newer than etcd's current revision")
    if recursive:
        return await _load_prefix(path, ctx, kv, at)
    if listing:
        return await _list_prefix(path, ctx, kv, at)
    return await read_key(path, ctx, kv, at)


async def read_key(path: str, ctx: Ctx, kv: KVStore, at: int | None = None) -> JSONResponse:
    """One envelope (also the proxy's fast path for plain GETs: vaultkey/proxy/fastpath.py);
    with *at*, as it was at that etcd revision (the reads of one snapshot)."""
    if path.endswith("/") or path == "":
        raise InvalidPath(f"/{path} names a prefix; add ?list=true or ?recursive=true")
    key = validate_key("/" + path)
    ctx.audit.op, ctx.audit.path = "kv.read", key
    ctx.authz.require(Capability.READ, key)
    if at:
        found = await kv.load_run(key, key, 1, at)
        entry = found[0] if found and found[0].path == key else None
    else:
        entry = await kv.get(key)
    if entry is None:
        raise NotFound(f"{key} not found")
    ctx.audit.revision = entry.mod_revision
    return JSONResponse(_entry_json(entry))


async def _readable(path: str, ctx: Ctx, op: str, kv: KVStore,
                    at: int | None) -> tuple[str, Listing]:
    prefix = validate_prefix("/" + path)
    ctx.audit.op, ctx.audit.path = op, prefix
    ctx.authz.require(Capability.LIST, prefix, is_prefix=True)
    listing = await readable_keys(kv, ctx.authz, prefix, at)
    ctx.audit.revision = listing.revision
    return prefix, listing


async def _list_prefix(path: str, ctx: Ctx, kv: KVStore, at: int | None) -> JSONResponse:
    prefix, listing = await _readable(path, ctx, "kv.list", kv, at)
    return JSONResponse({"prefix": prefix, "revision": listing.revision, "keys": listing.keys})


async def _load_prefix(path: str, ctx: Ctx, kv: KVStore, at: int | None) -> JSONResponse:
    prefix, listing = await _readable(path, ctx, "kv.load", kv, at)
    entries = await load_values(kv, listing, prefix)
    return JSONResponse({"prefix": prefix, "revision": listing.revision,
                         "entries": [_entry_json(e) for e in entries]})


def _write_prologue(path: str, request: Request, ctx: Ctx, op: str,
                    cap: Capability) -> tuple[str, int | None]:
    """Validate the key, record it, require *cap*, and parse If-Match (which needs read)."""
    key = validate_key("/" + path)
    ctx.audit.op, ctx.audit.path = op, key
    ctx.authz.require(cap, key)
    if_match = _revision_header(request.headers.get("if-match"), "If-Match")
    if if_match is not None:
        ctx.authz.require_conditional(key)
    return key, if_match


@router.put("/{path:anypath}", summary="Store an envelope (body: raw envelope bytes)")
async def kv_put(path: str, request: Request, ctx: GroupCtx) -> JSONResponse:
    key, if_match = _write_prologue(path, request, ctx, "kv.write", Capability.WRITE)
    none_match = request.headers.get("if-none-match")
    if none_match is not None:
        if none_match.strip() != "*":
            raise UsageError("only 'If-None-Match: *' (create-only) is supported")
        ctx.authz.require_conditional(key)
    body = await read_body(request, limit=MAX_ENVELOPE_BYTES,
                           timeout=ctx.state.config.body_timeout, what="envelope")
    check_envelope(body, ctx.authz.recipients_for(key), time.time_ns() // 1000)
    keep_lease = _flag(request, "keep_lease")
    if keep_lease and (not if_match or {"ttl", "lease"} & set(request.query_params)):
        # Why If-Match: etcd keeps the lease of a key that exists; a rewrap names the
        # revision it re-encrypted, so a concurrent write is never overwritten either.
        raise UsageError("keep_lease=true needs If-Match on an existing revision, and no ttl "
                         "or lease")
    lease, ttl = await _lease_for(request, ctx)
    try:
        revision = await ctx.state.kv.put(key, body, if_revision=if_match,
                                          create_only=none_match is not None, lease=lease,
                                          keep_lease=keep_lease)
    except VaultkeyError:
        if ttl is not None and lease is not None:  # a lease granted for this write only
            await ctx.state.kv.revoke_lease(lease)
        raise
    ctx.audit.revision = revision
    answer: dict[str, Any] = {"path": key, "revision": revision}
    if lease is not None:
        answer.update(lease=leases.lease_text(lease), ttl=ttl)
    return JSONResponse(answer)


async def _lease_for(request: Request, ctx: Ctx) -> tuple[int | None, int | None]:
    """``?ttl=30s`` grants a new lease of the caller's group; ``?lease=ID`` reuses one."""
    ttl_text, lease_text = request.query_params.get("ttl"), request.query_params.get("lease")
    if ttl_text is not None and lease_text is not None:
        raise UsageError("give ttl or lease, not both")
    if ttl_text is not None:
        ttl = leases.check_ttl(parse_ttl(ttl_text))
        return await leases.grant(ctx.state, ctx.group, ttl), ttl
    if lease_text is not None:
        lease = leases.parse_lease(lease_text)
        await leases.require_owner(ctx.state, ctx.group, lease)
        return lease, None
    return None, None


@router.delete("/{path:anypath}", summary="Delete one key")
async def kv_delete(path: str, request: Request, ctx: GroupCtx) -> JSONResponse:
    key, if_match = _write_prologue(path, request, ctx, "kv.delete", Capability.DELETE)
    revision = await ctx.state.kv.delete(key, if_revision=if_match)
    if not ctx.authz.may_read(key):
        # Why: a caller who may delete but not read must not learn whether the key existed.
        return JSONResponse({"path": key})
    if not revision:
        raise NotFound(f"{key} not found")
    ctx.audit.revision = revision
    return JSONResponse({"path": key, "deleted": True, "revision": revision})
