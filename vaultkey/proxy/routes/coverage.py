"""``/v1/coverage/<prefix>`` and ``/v1/access/<path>``: who can decrypt what.

Both read envelope *headers* (public: no key is needed) and compare them with the
policy (:mod:`vaultkey.proxy.coverage`). What a caller sees is decided by the same
code as listings: a group token covers the keys it may read and whose parent it may
list (:func:`vaultkey.proxy.listing.readable_keys`), so it never makes the proxy load
a value it may not read; the admin token covers the whole keyspace and still gets no
value, only headers' metadata. The answers are paged (``limit``, ``after``)::

    GET /v1/coverage/app/?limit=500             # the first 500 keys under /app/
    GET /v1/coverage/app/?after=/app/k0499      # the next page
    GET /v1/coverage/app/db                     # one key
    GET /v1/access/app/                         # the groups x capabilities matrix
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from vaultkey.errors import NotFound, UsageError
from vaultkey.paths import validate_key, validate_prefix
from vaultkey.policy.engine import Capability
from vaultkey.proxy.authz import AdminScope, Scope
from vaultkey.proxy.coverage import VERDICTS, KeyIndex, access_row, assess
from vaultkey.proxy.deps import AnyCtx, Ctx
from vaultkey.proxy.leases import lease_text
from vaultkey.proxy.listing import Listing, load_values, readable_keys
from vaultkey.proxy.store.base import Entry

router = APIRouter(tags=["coverage"])
DEFAULT_PAGE = 1000
MAX_PAGE = 5000
MAX_LEASE_LOOKUPS = 1000  # leases=true: distinct leases asked for their TTL per page


def _scope(ctx: Ctx) -> Scope:
    return AdminScope() if ctx.caller.kind == "admin" else ctx.authz


def _page_size(request: Request) -> int:
    text = request.query_params.get("limit", str(DEFAULT_PAGE))
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise UsageError(f"limit must be a number from 1 to {MAX_PAGE}")
    return int(text)


async def _entries(ctx: Ctx, path: str, request: Request) -> tuple[str, int, list[Entry],
                                                                   str | None]:
    """(prefix or key, revision, the page's entries, the next page's ``after``)."""
    kv = ctx.state.kv
    target = "/" + path
    if path and not path.endswith("/"):
        key = validate_key(target)
        ctx.audit.path = key
        if ctx.caller.kind != "admin":
            ctx.authz.require(Capability.READ, key)  # decided before the store is read
        ctx.audit.decision = "allow"
        entry = await kv.get(key)
        if entry is None:
            raise NotFound(f"{key} not found")
        return key, entry.mod_revision, [entry], None
    prefix = validate_prefix(target)
    ctx.audit.path = prefix
    if ctx.caller.kind != "admin":
        ctx.authz.require(Capability.LIST, prefix, is_prefix=True)
    ctx.audit.decision = "allow"
    listing = await readable_keys(kv, _scope(ctx), prefix)
    limit, after = _page_size(request), request.query_params.get("after")
    keys = [k for k in listing.keys if after is None or k > after]
    page = set(keys[:limit])
    runs = [[k for k in run if k in page] for run in listing.runs]
    sub = Listing(listing.revision, keys[:limit], [r for r in runs if r])
    entries = await load_values(kv, sub, prefix)
    more = len(keys) > limit
    return prefix, listing.revision, entries, keys[limit - 1] if more else None


async def _assessed(ctx: Ctx, op: str, path: str, request: Request) -> tuple[
        str, int, KeyIndex, list[dict[str, Any]], str | None]:
    """(target, revision, the key index, each entry's coverage row, the next ``after``)."""
    ctx.audit.op = op
    target, revision, entries, after = await _entries(ctx, path, request)
    ctx.audit.revision = revision
    index = KeyIndex.of(ctx.state.policies, ctx.state.escrow)
    return target, revision, index, [_row(index, e) for e in entries], after


@router.get("/v1/coverage/{path:anypath}", summary="Who can decrypt each key (headers only)")
async def coverage(path: str, request: Request, ctx: AnyCtx) -> dict[str, Any]:
    target, revision, _index, rows, after = await _assessed(ctx, "coverage", path, request)
    if request.query_params.get("leases") == "true":
        await _add_ttls(ctx, rows)
    summary = {v: 0 for v in VERDICTS}
    for row in rows:
        summary[row["verdict"]] += 1
    return {"prefix": target, "revision": revision, "keys": rows,
            "summary": {v: n for v, n in summary.items() if n}, "next": after}


def _row(index: KeyIndex, entry: Entry) -> dict[str, Any]:
    row = assess(index, entry.path, entry.value)
    row.update(revision=entry.mod_revision, create_revision=entry.create_revision,
               lease=lease_text(entry.lease) if entry.lease else None, ttl=None)
    return row


async def _add_ttls(ctx: Ctx, rows: list[dict[str, Any]]) -> None:
    leases = sorted({r["lease"] for r in rows if r["lease"]})[:MAX_LEASE_LOOKUPS]
    ttls = {text: await ctx.state.kv.time_to_live(int(text, 16)) for text in leases}
    for row in rows:
        row["ttl"] = ttls.get(row["lease"]) if row["lease"] else None


@router.get("/v1/access/{path:anypath}", summary="Groups x capabilities, and who can decrypt")
async def access(path: str, request: Request, ctx: AnyCtx) -> dict[str, Any]:
    target, revision, index, rows, _after = await _assessed(ctx, "access", path, request)
    groups = (sorted(ctx.state.policies.policy_set.groups) if ctx.caller.kind == "admin"
              else [ctx.group])
    is_prefix = target.endswith("/")
    return {"path": target, "revision": revision, "keys": len(rows),
            "groups": [access_row(index, g, target, is_prefix, rows) for g in groups]}


__all__ = ["router"]
