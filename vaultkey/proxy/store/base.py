"""The proxy's storage contract: an async key/value store with revisions and CAS.

Routes, listings and the token registry depend on :class:`KVStore`, never on
etcd. Two implementations keep the same contract, proven by one test suite
(tests/contract/): :mod:`.etcd` for production and :mod:`.memory` for fast,
deterministic route tests (never a production option)::

    store: KVStore = MemoryKV()          # or EtcdKV(EtcdStore(conn, "/vaultkey/kv"))
    rev = await store.put("/app/db", envelope, create_only=True)
    entry = await store.get("/app/db")                     # Entry | None
    page = await store.list_keys("/app/")                  # keys only, paged
    await store.put("/app/db", new, if_revision=entry.mod_revision)   # CAS

Watches (``watch``) and TTL leases (``grant_lease``, ``keepalive``,
``revoke_lease``, ``put(lease=)``) are part of the contract too.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from vaultkey.envelope import ETCD_MAX_REQUEST_BYTES
from vaultkey.errors import InvalidPath, Unavailable
from vaultkey.paths import validate_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One stored value and its metadata, as etcd keeps it: ``mod_revision`` (the
    revision of its last write, used for compare-and-swap), ``create_revision`` and
    ``version`` (writes since it was created)."""

    path: str
    value: bytes = field(repr=False)
    mod_revision: int
    create_revision: int
    version: int
    lease: int = 0  # the etcd lease the key is attached to (0: none)


@dataclass(frozen=True)
class KeyPage:
    """One page of a keys-only listing, read at ``revision``.

    ``paths`` holds every key of the page in key order; a key that is not
    valid UTF-8 or breaks the path rules (it was not written by vaultkey) is
    ``None`` there, so callers can tell that something lies between two keys.
    ``after`` is where the next page starts, or None on the last page.
    """

    paths: list[str | None]
    revision: int
    after: bytes | None


class StoreCounters:
    """What a store read (exposed as metrics; tests count with them)."""

    def __init__(self) -> None:
        self.values_fetched = 0
        self.keys_listed = 0
        self.invalid_keys = 0
        self._logged: set[bytes] = set()

    def path_of(self, raw: bytes, namespace: str) -> str | None:
        """The vaultkey path of a stored key, or None (counted, logged once) if it is
        not one: keys vaultkey did not write never reach a route."""
        try:
            return validate_key(raw.decode("utf-8"))
        except (UnicodeDecodeError, InvalidPath):
            pass
        self.invalid_keys += 1
        if raw not in self._logged and len(self._logged) < 1000:
            self._logged.add(raw)
            # Why escaped: the bytes came from whoever wrote to etcd, not from vaultkey.
            log.warning("ignoring etcd key %s%r: not a valid vaultkey path (not written by "
                        "vaultkey?); it is left out of every listing", namespace, raw)
        return None


@dataclass(frozen=True)
class WatchEvent:
    """One change: a put (with the new value) or a delete, at ``revision``.

    ``path`` is None for a key vaultkey did not write (it is never delivered).
    """

    kind: Literal["put", "delete"]
    path: str | None
    revision: int
    value: bytes = field(default=b"", repr=False)
    create_revision: int = 0
    version: int = 0
    lease: int = 0
    last: bool = True  # the last event of its revision (only those are resume points)


@dataclass(frozen=True)
class WatchBatch:
    """The events of one watch response and the revision it reports.

    ``fence`` is the revision of a :meth:`KVStore.fence` marker this response
    carried (0: none): every change up to it has been delivered by this watch.
    """

    revision: int
    events: tuple[WatchEvent, ...]
    fence: int = 0


class RevisionCompacted(Unavailable):
    """A read at a revision that compaction removed (a listing that raced a compaction
    can simply retry)."""

    def __init__(self, message: str = "etcd compacted the revision being read; retry") -> None:
        super().__init__(message, retry_after=1.0)


class WatchCompacted(RevisionCompacted):
    """The watch's start revision was compacted away: the watcher must resync."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted (oldest available: {compact_revision})")
        self.compact_revision = compact_revision


def conflict_message(path: str, if_revision: int | None, create_only: bool) -> str:
    if create_only and if_revision is None:
        return f"{path} already exists (create-only write refused)"
    return (f"{path} is no longer at revision {if_revision} (changed or deleted since); "
            "compare-and-swap refused")


class KVStore(Protocol):
    """Async key/value operations on one namespace. Paths are validated key paths."""

    counters: StoreCounters

    async def get(self, path: str) -> Entry | None:
        """The latest value of *path*, or None."""

    async def list_keys(self, target: str, *, exact: bool = False, revision: int | None = None,
                        after: bytes | None = None, limit: int = 1000) -> KeyPage:
        """One page of keys (no values) under the prefix *target* (or the key itself with
        *exact*) at *revision* (None: latest), starting after the raw key *after*."""

    async def load_run(self, first: str, last: str, count: int, revision: int) -> list[Entry]:
        """The values of at most *count* keys from *first* to *last* inclusive, at
        *revision*; callers pass runs of adjacent keys they listed at that revision."""

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        """Every entry under a small internal prefix, and the revision read at."""

    async def put(self, path: str, value: bytes, *, if_revision: int | None = None,
                  create_only: bool = False, lease: int | None = None,
                  keep_lease: bool = False) -> int:
        """Store *value* (attached to *lease*, if given; with *keep_lease*, to the lease
        the key already has, as etcd's ``ignore_lease``); returns the new revision.
        ``if_revision=N`` succeeds only if the key's mod revision is N (0: does not
        exist); raises Conflict otherwise, and
        ValueTooLarge for a request over etcd's limit (:data:`ETCD_MAX_REQUEST_BYTES`)."""

    async def delete(self, path: str, *, if_revision: int | None = None) -> int:
        """Delete *path*; returns the revision of the delete, or 0 if nothing existed.
        Raises Conflict if the CAS fails."""

    async def fence(self) -> int:
        """Write the namespace's fence marker (outside every key path) and return its
        revision. A watch of the namespace reports it (``WatchBatch.fence``) after every
        earlier change: seeing it proves the watch has caught up to that revision."""

    async def ping(self) -> int:
        """The current revision; raises Unavailable if the store cannot answer."""

    def watch(self, start_revision: int) -> AsyncIterator[WatchBatch]:
        """Every change in the namespace from *start_revision* (inclusive), in order.
        Raises WatchCompacted if that revision is gone, Unavailable if the store is."""

    async def grant_lease(self, ttl: int) -> int:
        """A new lease of *ttl* seconds; returns its id."""

    async def keepalive(self, lease: int) -> int:
        """Renew *lease*; returns its TTL in seconds, or 0 if it no longer exists."""

    async def revoke_lease(self, lease: int) -> None:
        """End *lease* now: every key attached to it is deleted."""

    async def time_to_live(self, lease: int) -> int:
        """Seconds *lease* has left (without renewing it); 0 if it no longer exists."""


__all__ = [
    "ETCD_MAX_REQUEST_BYTES",
    "Entry",
    "KVStore",
    "KeyPage",
    "StoreCounters",
    "WatchBatch",
    "WatchCompacted",
    "WatchEvent",
    "conflict_message",
]
