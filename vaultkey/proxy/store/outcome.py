"""The outcome of a write whose etcd call failed after it was sent.

A write that never left (no connection, or a member that answered "no leader")
was not applied, and the connection already sent it to the next endpoint. A
write that was sent and then lost its answer (the member died or froze, the
deadline passed, "request timed out", "leader changed") may have been applied,
or may still be, later: etcd can hold the request in a socket buffer or a raft
log. Reporting it as failed would let the client retry a write that happened;
reporting it as done could be a false success. So the key is read back,
linearizably, on another endpoint, and:

* the value there is the write's own bytes (envelopes carry a random nonce, so
  no other write has them): **applied**, answered with its revision;
* a compare-and-swap (``if_revision``, or ``create_only``) finds the key exactly
  as it required: it was **not applied**, and it is sent once more. This is
  safe even if the lost request is applied later: both name the same revision,
  so at most one of them can ever succeed;
* anything else, or no endpoint answers: :class:`~vaultkey.errors.OutcomeUnknown`
  (HTTP 503 ``outcome_unknown``, CLI exit 15), which tells the client to read
  the key before writing again.

Deletes follow the same rules, with "the key is gone" never taken as proof: a
delete by someone else looks the same.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vaultkey.errors import OutcomeUnknown, Unavailable, VaultkeyError

log = logging.getLogger(__name__)


def maybe_applied(exc: VaultkeyError) -> bool:
    """Whether a failed write may have been applied (see the module doc)."""
    # Not its subclasses: NoSpace and RateLimited are refusals, OutcomeUnknown is settled.
    return type(exc) is Unavailable and not exc.retryable


async def settle(path: str, value: bytes | None, if_revision: int | None, create_only: bool,
                 read: Callable[[], Awaitable[Any]], again: Callable[[], Awaitable[int]],
                 cause: Unavailable) -> int:
    """Decide a write that failed with *cause* after it was sent.

    *value* is the put's bytes (None for a delete); *read* reads the key's current kv
    (or None) linearizably; *again* sends the same write once more. Returns the
    revision the write was applied at, or raises (OutcomeUnknown, or what *again*
    raises: Conflict, Unavailable, ...)."""
    try:
        kv = await read()
    except VaultkeyError as exc:
        raise _unknown(path, cause, f"and reading the key back failed too ({exc.message})") \
            from cause
    if value is not None and kv is not None and bytes(kv.value) == value:
        log.info("a write to %s whose answer was lost had been applied", path)
        return int(kv.mod_revision)
    mod = int(kv.mod_revision) if kv is not None else 0
    untouched = ((if_revision is not None and mod == if_revision)
                 or (create_only and if_revision is None and kv is None))
    if not untouched:
        raise _unknown(path, cause, "and the key changed since, so it cannot be told "
                       "whether this write did it")
    log.info("a compare-and-swap on %s whose answer was lost was not applied; sending it "
             "again", path)
    try:
        return await again()
    except Unavailable as exc:
        if maybe_applied(exc):
            raise _unknown(path, exc, "twice") from exc
        raise


def _unknown(path: str, cause: Unavailable, why: str) -> OutcomeUnknown:
    return OutcomeUnknown(
        f"etcd failed while the write to {path} was in flight ({cause.message}), {why}: it "
        "may or may not have been applied")


__all__ = ["maybe_applied", "settle"]
