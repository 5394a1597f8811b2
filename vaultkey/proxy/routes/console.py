"""The read-only operator console at ``/ui/`` and the endpoints only it needed (issue 14).

* ``GET /ui/`` and ``GET /ui/<asset>``: the console's static files (a fixed
  allow-list, :mod:`vaultkey.proxy.console`), each answer with a strict
  Content-Security-Policy and no-framing headers; no token is needed, since they
  hold no data. ``GET /ui`` redirects to ``/ui/`` (a relative ``Location``).
* ``GET /v1/audit``: the tail of the audit log, filtered (admin token only).
* ``GET /v1/explain``: the policy decision for (group, path, capability) and the
  rule that decides it, with its file and line.
* ``GET /v1/rules``: a group's policy rules with their files and lines (the
  console derives the tree's starting prefixes and the explain view from it).

The admin token may explain any group; a group token only its own (``403``
otherwise, whether or not the other group exists)::

    GET /v1/explain?group=payments&path=/payments/db/password&cap=read
    GET /v1/audit?limit=50&group=payments&decision=deny
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from vaultkey.errors import NotFound, PermissionDenied, UsageError, VaultkeyError
from vaultkey.paths import validate_key, validate_prefix
from vaultkey.policy.engine import Capability, Policy, Rule
from vaultkey.proxy.audit import SCOPE_KEY, AuditRecord
from vaultkey.proxy.console import SECURITY_HEADERS, asset
from vaultkey.proxy.console.audittail import AuditFilter, read_tail
from vaultkey.proxy.deps import AnyCtx, Ctx
from vaultkey.proxy.middleware import error_response

router = APIRouter(tags=["console"])
DEFAULT_AUDIT_LINES = 200
MAX_AUDIT_LINES = 1000
_CAPS = tuple(c.value for c in Capability)
_DIGITS = re.compile(r"[0-9]{1,4}")


# ---- the static console -----------------------------------------------------------------

def _mark(request: Request, op: str) -> None:
    """Name the request in the metrics (``/ui/`` is not audited: it carries no token)."""
    record = request.scope.get(SCOPE_KEY)
    if isinstance(record, AuditRecord):
        record.op = op


@router.get("/ui", include_in_schema=False)
async def ui_redirect(request: Request) -> Response:
    _mark(request, "ui")
    # Why relative: a Location built from the Host header could point anywhere.
    return Response(status_code=307, headers={"Location": "/ui/", **SECURITY_HEADERS})


@router.get("/ui/{name:anypath}", include_in_schema=False)
async def ui_asset(name: str, request: Request) -> Response:
    _mark(request, "ui")
    found = asset(name)
    if found is None:  # only the allow-list is served: no path ever reaches the disk
        refusal = error_response(NotFound(f"no console asset {name[:64]!r}"))
        refusal.headers.update(SECURITY_HEADERS)
        return refusal
    return Response(found.body, media_type=found.media_type, headers=SECURITY_HEADERS)


# ---- GET /v1/audit --------------------------------------------------------------------------

def _require_admin(ctx: Ctx) -> None:
    # Why not AdminCtx: a group token's attempt is then audited with its op and "deny".
    if ctx.caller.kind != "admin":
        ctx.audit.decision = "deny"
        raise PermissionDenied("this endpoint needs the admin token; group tokens are refused")


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_AUDIT_LINES
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_AUDIT_LINES:
        raise UsageError(f"limit must be a number from 1 to {MAX_AUDIT_LINES}")
    return int(text)


def _audit_filter(request: Request) -> AuditFilter:
    q = request.query_params
    group, path, decision = q.get("group") or None, q.get("path") or None, q.get("decision")
    if group is not None and len(group) > 63:
        raise UsageError("group must be at most 63 characters")
    if path is not None and len(path) > 1024:
        raise UsageError("path must be at most 1024 characters")
    if decision not in (None, "", "allow", "deny"):
        raise UsageError("decision must be 'allow' or 'deny'")
    return AuditFilter(group, path, decision or None)


@router.get("/v1/audit", summary="The tail of the audit log, filtered (admin token only)")
async def audit_tail(request: Request, ctx: AnyCtx) -> dict[str, Any]:
    ctx.audit.op = "audit.tail"
    _require_admin(ctx)
    limit, keep = _limit(request.query_params.get("limit")), _audit_filter(request)
    ctx.audit.decision = "allow"
    path = ctx.state.config.audit_log
    if not path:
        raise NotFound("this proxy writes no audit log",
                       hint="start it with --audit-log FILE (see docs/OPERATIONS.md)")
    try:
        # Why a thread: reading a large file must not stall the event loop.
        tail = await asyncio.to_thread(read_tail, path, limit, keep)
    except OSError as exc:
        raise VaultkeyError(f"cannot read the audit log: {exc.strerror}") from exc
    return {"lines": tail.lines, "limit": limit, "complete": tail.complete,
            "scanned_bytes": tail.scanned,
            "filters": {"group": keep.group, "path": keep.path, "decision": keep.decision}}


# ---- GET /v1/explain, GET /v1/rules -----------------------------------------------------------

def _group(ctx: Ctx, asked: str | None, *, required: bool) -> str | None:
    """The group to explain: a group token's own (another: 403, before anything about
    that group is looked up, so a refusal says nothing of whether it exists)."""
    if ctx.caller.kind != "admin":
        if asked not in (None, "", ctx.group):
            ctx.audit.decision = "deny"
            raise PermissionDenied(f"group {ctx.group!r} may only explain its own policy")
        return ctx.group
    if not asked:
        if required:
            raise UsageError("give group=NAME (the admin token may explain any group)")
        return None
    if asked not in ctx.state.policies.policy_set.groups:
        raise UsageError(f"no policy defines group {asked[:63]!r}")
    return asked


def _target(text: str | None) -> tuple[str, bool]:
    """(path, is_prefix): a path ending in '/' is a prefix, else a key."""
    if not text:
        raise UsageError("give path=/some/key or path=/some/prefix/")
    if text.endswith("/"):
        return validate_prefix(text), True
    return validate_key(text), False


def _capability(text: str | None) -> Capability:
    if text not in _CAPS:
        raise UsageError(f"cap must be one of {', '.join(_CAPS)}")
    return Capability(text)


def rule_json(rule: Rule) -> dict[str, Any]:
    return {"where": rule.where, "source": rule.source, "line": rule.line,
            "kind": "prefix" if rule.is_prefix else "key", "path": rule.path,
            "allow": [c for c in _CAPS if c in rule.allow],
            "deny": [c for c in _CAPS if c in rule.deny],
            "require_signature": bool(rule.require_signature), "comment": rule.comment}


@router.get("/v1/explain", summary="The policy decision for (group, path, cap), and why")
async def explain(request: Request, ctx: AnyCtx) -> dict[str, Any]:
    ctx.audit.op = "explain"
    q = request.query_params
    group = _group(ctx, q.get("group"), required=True)
    assert group is not None
    path, is_prefix = _target(q.get("path"))
    ctx.audit.path = path
    cap = _capability(q.get("cap"))
    ctx.audit.decision = "allow"
    decision = ctx.state.policies.policy_set.decide(group, path, cap, is_prefix=is_prefix)
    rule = decision.rule
    return {"group": group, "path": path, "is_prefix": is_prefix, "capability": cap.value,
            "allowed": decision.allowed, "decision": "allow" if decision.allowed else "deny",
            "rule": rule_json(rule) if rule is not None else None,
            "explanation": decision.explain()}


def _policy_json(policy: Policy) -> dict[str, Any]:
    return {"group": policy.group, "source": policy.source, "description": policy.description,
            "rules": [rule_json(r) for r in policy.rules]}


@router.get("/v1/rules", summary="A group's policy rules, with their files and lines")
async def rules(request: Request, ctx: AnyCtx) -> dict[str, Any]:
    ctx.audit.op = "rules"
    group = _group(ctx, request.query_params.get("group"), required=False)
    ctx.audit.path = f"group:{group}" if group else None
    ctx.audit.decision = "allow"
    policies = ctx.state.policies.policy_set.groups
    chosen = [group] if group is not None else sorted(policies)
    return {"groups": [_policy_json(policies[g]) for g in chosen]}


__all__ = ["router", "rule_json"]
