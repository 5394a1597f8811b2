"""``/v1/kv/{path}``: read, list, write and delete envelopes under the ACL.

A denial is decided before etcd is read, so the answer is the same whether or
not the key exists; 404 is only ever given to callers allowed to read.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from vaultkey.envelope import MAX_ENVELOPE_BYTES
from vaultkey.errors import InvalidPath, NotFound, PermissionDenied, UsageError
from vaultkey.paths import validate_key, validate_prefix
from vaultkey.policy.engine import Capability
from vaultkey.policy.load import LoadedPolicies
from vaultkey.proxy.body import read_body
from vaultkey.proxy.checks import check_envelope
from vaultkey.proxy.deps import GroupCtx
from vaultkey.proxy.listing import load_values, readable_keys
from vaultkey.proxy.store.etcd import Entry
from vaultkey.proxy.tokens import Caller

router = APIRouter(prefix="/v1/kv", tags=["kv"])


def _require(policies: LoadedPolicies, caller: Caller, path: str, cap: Capability,
             audit: dict[str, Any], *, is_prefix: bool = False) -> None:
    assert caller.group is not None
    allowed = policies.policy_set.allowed(caller.group, path, cap, is_prefix=is_prefix)
    audit["decision"] = "allow" if allowed else "deny"
    if not allowed:
        raise PermissionDenied(f"group {caller.group!r} may not {cap} {path}")


def _may_read(policies: LoadedPolicies, caller: Caller, path: str) -> bool:
    return policies.policy_set.allowed(caller.group or "", path, Capability.READ)


def _require_conditional(policies: LoadedPolicies, caller: Caller, path: str) -> None:
    """Conditional writes answer 409 or not depending on the key's state, so they
    would tell a caller without ``read`` whether the key exists."""
    if not _may_read(policies, caller, path):
        raise PermissionDenied(
            f"conditional requests (If-Match / If-None-Match) on {path} need 'read'"
        )


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
                       ("recursive", "list and return every envelope under the prefix"))]}


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
    policies, audit, caller = ctx.state.policies, ctx.audit, ctx.caller
    recursive = _flag(request, "recursive")
    if _flag(request, "list") or recursive:
        prefix = validate_prefix("/" + path)
        audit.update(op="kv.load" if recursive else "kv.list", path=prefix)
        _require(policies, caller, prefix, Capability.LIST, audit, is_prefix=True)
        acl = policies.policy_set
        listing = await readable_keys(ctx.state.kv, acl, ctx.group, prefix)
        audit["revision"] = listing.revision
        if recursive:
            entries = await load_values(ctx.state.kv, listing, prefix)
            return JSONResponse({"prefix": prefix, "revision": listing.revision,
                                 "entries": [_entry_json(e) for e in entries]})
        return JSONResponse({"prefix": prefix, "revision": listing.revision,
                             "keys": listing.keys})
    if path.endswith("/") or path == "":
        raise InvalidPath(f"/{path} names a prefix; add ?list=true or ?recursive=true")
    key = validate_key("/" + path)
    audit.update(op="kv.read", path=key)
    _require(policies, caller, key, Capability.READ, audit)
    entry = await ctx.state.kv.get(key)
    if entry is None:
        raise NotFound(f"{key} not found")
    audit["revision"] = entry.mod_revision
    return JSONResponse(_entry_json(entry))


@router.put("/{path:anypath}", summary="Store an envelope (body: raw envelope bytes)")
async def kv_put(path: str, request: Request, ctx: GroupCtx) -> JSONResponse:
    key = validate_key("/" + path)
    policies, audit, caller = ctx.state.policies, ctx.audit, ctx.caller
    audit.update(op="kv.write", path=key)
    _require(policies, caller, key, Capability.WRITE, audit)
    if_match = _revision_header(request.headers.get("if-match"), "If-Match")
    none_match = request.headers.get("if-none-match")
    if none_match is not None and none_match.strip() != "*":
        raise UsageError("only 'If-None-Match: *' (create-only) is supported")
    if if_match is not None or none_match is not None:
        _require_conditional(policies, caller, key)
    body = await read_body(request, limit=MAX_ENVELOPE_BYTES,
                           timeout=ctx.state.config.body_timeout, what="envelope")
    check_envelope(body, key, policies, ctx.state.escrow)
    revision = await ctx.state.kv.put(key, body, if_revision=if_match,
                                      create_only=none_match is not None)
    audit["revision"] = revision
    return JSONResponse({"path": key, "revision": revision})


@router.delete("/{path:anypath}", summary="Delete one key")
async def kv_delete(path: str, request: Request, ctx: GroupCtx) -> JSONResponse:
    key = validate_key("/" + path)
    policies, audit, caller = ctx.state.policies, ctx.audit, ctx.caller
    audit.update(op="kv.delete", path=key)
    _require(policies, caller, key, Capability.DELETE, audit)
    if_match = _revision_header(request.headers.get("if-match"), "If-Match")
    if if_match is not None:
        _require_conditional(policies, caller, key)
    existed = await ctx.state.kv.delete(key, if_revision=if_match)
    if not _may_read(policies, caller, key):
        # Why: a caller who may delete but not read must not learn whether the key existed.
        return JSONResponse({"path": key})
    if not existed:
        raise NotFound(f"{key} not found")
    return JSONResponse({"path": key, "deleted": True})
