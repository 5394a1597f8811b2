"""``/v1/watch/<prefix>``: a Server-Sent Events stream of the changes a caller may read.

Each event is filtered by the caller's *current* rights (the same check as a
listing: read on the key and list on its parent), through the watch hub's one
etcd watch. ``id:`` is the revision, so ``Last-Event-ID`` (or ``?since=``)
resumes exactly after it. A bookmark every few seconds doubles as heartbeat;
the token is re-checked about twice a second, so a revoked token's stream ends
within a second with a ``revoked`` event.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from vaultkey.errors import Unauthenticated, Unavailable, UsageError
from vaultkey.paths import validate_prefix
from vaultkey.policy.engine import Capability
from vaultkey.proxy.authz import Authz
from vaultkey.proxy.deps import Ctx, GroupCtx
from vaultkey.proxy.hub import End, Subscriber
from vaultkey.proxy.store.base import WatchEvent

router = APIRouter(tags=["watch"])
HEARTBEAT_SECONDS = 5.0
TOKEN_CHECK_SECONDS = 0.5


def sse(event: str, data: dict[str, Any], revision: int | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {revision}\n" if revision is not None else "")
    return (head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n").encode()


@functools.lru_cache(maxsize=256)
def _change(event: WatchEvent) -> bytes:
    """The SSE bytes of one change: encoded once, however many streams send it. Only the
    last change of a revision carries ``id:``, so a client that resumes from the last id
    it saw never skips the rest of a revision that changed several keys."""
    resume = event.revision if event.last else None
    if event.kind == "delete":
        return sse("delete", {"type": "delete", "path": event.path,
                              "revision": event.revision}, resume)
    return sse("put", {
        "type": "put", "path": event.path, "revision": event.revision,
        "envelope": base64.b64encode(event.value).decode("ascii"),
        "create_revision": event.create_revision, "version": event.version,
        "lease": f"{event.lease:016x}" if event.lease else None}, resume)


def _since(request: Request) -> int | None:
    text = request.query_params.get("since") or request.headers.get("last-event-id")
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise UsageError("since / Last-Event-ID must be a revision number")
    return int(text)


@router.get("/v1/watch/{path:anypath}", summary="Stream changes under a prefix (SSE)",
            response_class=StreamingResponse)
async def watch(path: str, request: Request, ctx: GroupCtx) -> StreamingResponse:
    prefix = validate_prefix("/" + path)
    ctx.audit.op, ctx.audit.path = "watch", prefix
    ctx.authz.require(Capability.WATCH, prefix, is_prefix=True)
    since = _since(request)
    state = ctx.state
    await state.hub.start()

    def visible(key: str) -> bool:  # the caller's rights now, not when it subscribed
        return Authz(state.policies, state.escrow, ctx.group, ctx.audit).may_list_key(key)

    sub = await state.hub.subscribe(prefix, visible, since)
    return StreamingResponse(_stream(ctx, sub), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


async def _stream(ctx: Ctx, sub: Subscriber) -> AsyncIterator[bytes]:
    hub = ctx.state.hub
    try:
        if not sub.ended:  # a subscription that must resync at once gets no resume point
            yield sse("bookmark", {"type": "bookmark", "revision": sub.start}, sub.start)
        beat = checked = time.monotonic()
        while True:
            item = await sub.next(TOKEN_CHECK_SECONDS)
            # Why before every event, not only when idle: a revocation pushed by the hub
            # makes the cached check fail at once, and a busy stream must stop too. Only a
            # check that needs etcd is limited to one every TOKEN_CHECK_SECONDS.
            full = time.monotonic() - checked >= TOKEN_CHECK_SECONDS * 0.9  # timer jitter
            try:
                valid = await _still_valid(ctx, full=full)
            except Unavailable:
                return  # the token cannot be checked: end cleanly; the client resumes later
            if not valid:
                yield sse("revoked", {"type": "revoked"})
                return
            checked = time.monotonic() if full else checked
            if isinstance(item, End):
                yield sse("resync", {"type": "resync", "reason": item.reason,
                                     "revision": item.revision})
                return
            if item is not None:
                sub.delivered += 1
                yield _change(item)
            if time.monotonic() - beat >= HEARTBEAT_SECONDS and sub.queue.empty():
                beat = time.monotonic()
                revision = max(hub.revision, sub.start)
                yield sse("bookmark", {"type": "bookmark", "revision": revision}, revision)
    finally:
        ctx.audit.events = sub.delivered
        hub.unsubscribe(sub)


async def _still_valid(ctx: Ctx, *, full: bool) -> bool:
    """Whether the stream's token is still good: from the cache (no I/O), and when that
    cannot tell and *full* is set, from etcd."""
    tokens = ctx.state.tokens
    try:
        if tokens.check_cached(ctx.token) is None and full:
            await tokens.authenticate(ctx.token)
    except Unauthenticated:
        return False
    return True
