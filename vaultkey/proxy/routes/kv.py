"""``/v1/kv/{path}``: read, list, write and delete envelopes under the ACL.

A denial is decided before etcd is read, so the answer is the same whether or
not the key exists; 404 is only ever given to callers allowed to read.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from vaultkey.acl import Capability
from vaultkey.envelope import MAX_ENVELOPE_BYTES
from vaultkey.errors import InvalidPath, NotFound, PermissionDenied, UsageError, ValueTooLarge
from vaultkey.paths import validate_key, validate_prefix
from vaultkey.policyload import LoadedPolicies
from vaultkey.proxy.checks import check_envelope
from vaultkey.proxy.deps import AuditDep, GroupCaller, StateDep, raw_path_guard
from vaultkey.proxy.tokens import Caller
from vaultkey.store import Entry

router = APIRouter(prefix="/v1/kv", tags=["kv"], dependencies=[Depends(raw_path_guard)])


def _require(policies: LoadedPolicies, caller: Caller, path: str, cap: Capability,
             audit: dict[str, Any], *, is_prefix: bool = False) -> None:
    assert caller.group is not None
    allowed = policies.policy_set.allowed(caller.group, path, cap, is_prefix=is_prefix)
    audit["decision"] = "allow" if allowed else "deny"
    if not allowed:
        raise PermissionDenied(f"group {caller.group!r} may not {cap} {path}")


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "path": entry.path,
        "envelope": base64.b64encode(entry.value).decode("ascii"),
        "revision": entry.mod_revision,
        "create_revision": entry.create_revision,
        "version": entry.version,
    }


def _revision_header(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    text = value.strip().strip('"')
    if not text.isdigit():
        raise UsageError(f"{name} must be a revision number (or '*' for If-None-Match)")
    return int(text)


async def _read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_ENVELOPE_BYTES:
        raise ValueTooLarge(f"envelope of {length} bytes exceeds {MAX_ENVELOPE_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_ENVELOPE_BYTES:
            raise ValueTooLarge(f"envelope exceeds {MAX_ENVELOPE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("/{path:anypath}", summary="Read one envelope, or list / load a prefix")
async def kv_get(
    path: str, caller: GroupCaller, state: StateDep, audit: AuditDep,
    list_: Annotated[bool, Query(alias="list")] = False, recursive: bool = False,
) -> dict[str, Any]:
    policies = state.policies
    if list_ or recursive:
        prefix = validate_prefix("/" + path)
        audit.update(op="kv.load" if recursive else "kv.list", path=prefix)
        _require(policies, caller, prefix, Capability.LIST, audit, is_prefix=True)
        entries, revision = await run_in_threadpool(state.kv.range, prefix,
                                                     keys_only=not recursive)
        group = caller.group or ""
        readable = [e for e in entries
                    if policies.policy_set.allowed(group, e.path, Capability.READ)]
        audit["revision"] = revision
        if recursive:
            return {"prefix": prefix, "revision": revision,
                    "entries": [_entry_json(e) for e in readable]}
        return {"prefix": prefix, "revision": revision, "keys": [e.path for e in readable]}
    if path.endswith("/") or path == "":
        raise InvalidPath(f"/{path} names a prefix; add ?list=true or ?recursive=true")
    key = validate_key("/" + path)
    audit.update(op="kv.read", path=key)
    _require(policies, caller, key, Capability.READ, audit)
    entry = await run_in_threadpool(state.kv.get, key)
    if entry is None:
        raise NotFound(f"{key} not found")
    audit["revision"] = entry.mod_revision
    return _entry_json(entry)


@router.put("/{path:anypath}", summary="Store an envelope (body: raw envelope bytes)")
async def kv_put(path: str, request: Request, caller: GroupCaller, state: StateDep,
                 audit: AuditDep) -> dict[str, Any]:
    key = validate_key("/" + path)
    audit.update(op="kv.write", path=key)
    policies = state.policies
    _require(policies, caller, key, Capability.WRITE, audit)
    if_match = _revision_header(request.headers.get("if-match"), "If-Match")
    none_match = request.headers.get("if-none-match")
    if none_match is not None and none_match.strip() != "*":
        raise UsageError("only 'If-None-Match: *' (create-only) is supported")
    body = await _read_body(request)
    check_envelope(body, key, policies, state.escrow)
    revision = await run_in_threadpool(
        lambda: state.kv.put(key, body, if_revision=if_match, create_only=none_match is not None)
    )
    audit["revision"] = revision
    return {"path": key, "revision": revision}


@router.delete("/{path:anypath}", summary="Delete one key")
async def kv_delete(path: str, request: Request, caller: GroupCaller, state: StateDep,
                    audit: AuditDep) -> dict[str, Any]:
    key = validate_key("/" + path)
    audit.update(op="kv.delete", path=key)
    _require(state.policies, caller, key, Capability.DELETE, audit)
    if_match = _revision_header(request.headers.get("if-match"), "If-Match")
    existed = await run_in_threadpool(lambda: state.kv.delete(key, if_revision=if_match))
    if not existed:
        raise NotFound(f"{key} not found")
    return {"path": key, "deleted": True}
