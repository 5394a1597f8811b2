"""An in-memory :class:`~vaultkey.proxy.store.base.KVStore` with etcd's semantics.

For route and ACL tests only (fast and deterministic); never a production
option. It keeps every version of every key, like etcd's MVCC, so reads at an
older revision and compaction behave as they do on etcd; tests/contract/
proves the two stores agree::

    store = MemoryKV()
    rev = await store.put("/a/b", b"v")
    assert (await store.get("/a/b")).mod_revision == rev
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from vaultkey.envelope import ETCD_MAX_REQUEST_BYTES
from vaultkey.errors import Conflict, StoreError, ValueTooLarge
from vaultkey.paths import validate_key, validate_prefix
from vaultkey.proxy.store.base import (
    Entry,
    KeyPage,
    RevisionCompacted,
    StoreCounters,
    WatchBatch,
    WatchCompacted,
    WatchEvent,
    conflict_message,
)


@dataclass(frozen=True)
class _Version:
    value: bytes | None  # None: deleted at mod_revision
    mod_revision: int
    create_revision: int
    version: int
    lease: int = 0


@dataclass
class _Lease:
    ttl: int
    expires: float
    keys: set[bytes] = field(default_factory=set)


class MemoryKV:
    """Every key's versions in revision order, in one process."""

    def __init__(self) -> None:
        self.counters = StoreCounters()
        self.revision = 1  # etcd starts at revision 1
        self.compacted = 0
        self._keys: list[bytes] = []  # sorted raw keys ever written
        self._history: dict[bytes, list[_Version]] = {}
        self._log: list[WatchEvent] = []  # every change, for watches from a past revision
        self._watchers: list[asyncio.Queue[WatchEvent]] = []
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(0x7E57_0000_0001)
        self._fences: set[int] = set()  # revisions of fence markers
        self.paused = False  # tests: while True, watches deliver nothing (a stalled stream)

    # -- reading -------------------------------------------------------------
    def _at(self, raw: bytes, revision: int) -> _Version | None:
        if revision < self.compacted:
            raise RevisionCompacted()
        for version in reversed(self._history.get(raw, [])):
            if version.mod_revision <= revision:
                return version if version.value is not None else None
        return None

    def _entry(self, path: str, v: _Version) -> Entry:
        assert v.value is not None
        return Entry(path, v.value, v.mod_revision, v.create_revision, v.version, v.lease)

    async def get(self, path: str) -> Entry | None:
        self._expire()
        found = self._at(validate_key(path).encode(), self.revision)
        if found is None:
            return None
        self.counters.values_fetched += 1
        return self._entry(path, found)

    def _span(self, target: str, exact: bool, after: bytes | None) -> list[bytes]:
        if exact:
            start = validate_key(target).encode()
            return [start] if start in self._history and (after is None or after < start) else []
        start = validate_prefix(target).encode()
        lo = bisect.bisect_left(self._keys, start if after is None else after + b"\0")
        out = []
        for raw in self._keys[lo:]:
            if not raw.startswith(start):
                break
            out.append(raw)
        return out

    async def list_keys(self, target: str, *, exact: bool = False, revision: int | None = None,
                        after: bytes | None = None, limit: int = 1000) -> KeyPage:
        at = self.revision if revision is None else revision
        live = [raw for raw in self._span(target, exact, after) if self._at(raw, at)]
        page, more = live[:limit], len(live) > limit
        self.counters.keys_listed += len(page)
        return KeyPage([self.counters.path_of(raw, "") for raw in page], at,
                       page[-1] if more else None)

    async def load_run(self, first: str, last: str, count: int, revision: int) -> list[Entry]:
        lo, hi = validate_key(first).encode(), validate_key(last).encode()
        out: list[Entry] = []
        for raw in self._keys[bisect.bisect_left(self._keys, lo):]:
            if raw > hi or len(out) >= count:
                break
            found = self._at(raw, revision)
            path = self.counters.path_of(raw, "") if found else None
            if found is not None and path is not None:
                out.append(self._entry(path, found))
        self.counters.values_fetched += len(out)
        return out

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        out: list[Entry] = []
        for raw in self._span(prefix, False, None):
            found = self._at(raw, self.revision)
            if found is not None and (path := self.counters.path_of(raw, "")) is not None:
                out.append(self._entry(path, found))
        self.counters.values_fetched += len(out)
        return out, self.revision

    # -- writing -------------------------------------------------------------
    async def put(self, path: str, value: bytes, *, if_revision: int | None = None,
                  create_only: bool = False, lease: int | None = None,
                  keep_lease: bool = False) -> int:
        self._expire()
        raw = validate_key(path).encode()
        if lease is not None and lease not in self._leases:
            raise StoreError("etcd error: requested lease not found")
        if len(raw) + len(value) > ETCD_MAX_REQUEST_BYTES:
            raise ValueTooLarge("etcd refused the request as too large: request is too large")
        current = self._at(raw, self.revision)
        mod_revision = current.mod_revision if current else 0
        if (create_only and current is not None) or (
                if_revision is not None and mod_revision != if_revision):
            raise Conflict(conflict_message(path, if_revision, create_only))
        if keep_lease:
            if current is None:
                raise StoreError("etcd error: etcdserver: key not found")
            lease = next((n for n, held in self._leases.items() if raw in held.keys), None)
        for held in self._leases.values():
            held.keys.discard(raw)
        if lease is not None:
            self._leases[lease].keys.add(raw)
        return self.put_raw(raw, value, lease or 0)

    def put_raw(self, raw: bytes, value: bytes, lease: int = 0) -> int:
        """Store under a raw key, unchecked (tests plant keys vaultkey did not write)."""
        current = self._at(raw, self.revision)
        self.revision += 1
        create = current.create_revision if current else self.revision
        version = current.version + 1 if current else 1
        self._record(raw, _Version(value, self.revision, create, version, lease))
        self._emit(WatchEvent("put", self.counters.path_of(raw, ""), self.revision, value,
                              create, version, lease))
        return self.revision

    async def delete(self, path: str, *, if_revision: int | None = None) -> int:
        raw = validate_key(path).encode()
        current = self._at(raw, self.revision)
        if if_revision is not None and (current.mod_revision if current else 0) != if_revision:
            raise Conflict(conflict_message(path, if_revision, False))
        if current is None:
            return 0
        self._delete_raw(raw)
        return self.revision

    async def fence(self) -> int:
        self.revision += 1
        self._fences.add(self.revision)
        self._emit(WatchEvent("put", None, self.revision))
        return self.revision

    def _delete_raw(self, raw: bytes) -> None:
        self.revision += 1
        self._record(raw, _Version(None, self.revision, 0, 0))
        self._emit(WatchEvent("delete", self.counters.path_of(raw, ""), self.revision))

    def _emit(self, event: WatchEvent) -> None:
        self._log.append(event)
        for queue in self._watchers:
            queue.put_nowait(event)

    def _record(self, raw: bytes, version: _Version) -> None:
        if raw not in self._history:
            bisect.insort(self._keys, raw)
            self._history[raw] = []
        self._history[raw].append(version)

    async def ping(self) -> int:
        self._expire()
        return self.revision

    async def watch(self, start_revision: int) -> AsyncIterator[WatchBatch]:
        if start_revision <= self.compacted:
            raise WatchCompacted(self.compacted + 1)
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            # The queue is registered before the log is read: a change made while the past
            # is replayed is in the queue, not in this snapshot, so nothing repeats.
            yield WatchBatch(self.revision, ())  # etcd's "created" response: the watch is up
            for past in [e for e in self._log if e.revision >= start_revision]:
                yield self._batch(past)
            while True:
                event = await queue.get()
                while self.paused:
                    await asyncio.sleep(0.01)
                if event.revision >= start_revision:
                    yield self._batch(event)
        finally:
            self._watchers.remove(queue)

    def _batch(self, event: WatchEvent) -> WatchBatch:
        if event.revision in self._fences:
            return WatchBatch(event.revision, (), fence=event.revision)
        return WatchBatch(event.revision, (event,))

    async def grant_lease(self, ttl: int) -> int:
        lease = next(self._lease_ids)
        self._leases[lease] = _Lease(ttl, time.monotonic() + ttl)
        return lease

    async def keepalive(self, lease: int) -> int:
        self._expire()
        held = self._leases.get(lease)
        if held is None:
            return 0
        held.expires = time.monotonic() + held.ttl
        return held.ttl

    async def time_to_live(self, lease: int) -> int:
        self._expire()
        held = self._leases.get(lease)
        return max(0, round(held.expires - time.monotonic())) if held is not None else 0

    async def revoke_lease(self, lease: int) -> None:
        held = self._leases.pop(lease, None)
        for raw in sorted(held.keys if held else ()):
            if self._at(raw, self.revision) is not None:
                self._delete_raw(raw)

    def _expire(self) -> None:
        """Leases expire when the store is next used (etcd does it on a timer)."""
        now = time.monotonic()
        for lease in [k for k, held in self._leases.items() if held.expires <= now]:
            held = self._leases.pop(lease)
            for raw in sorted(held.keys):
                if self._at(raw, self.revision) is not None:
                    self._delete_raw(raw)

    def compact(self, revision: int) -> None:
        """Forget versions older than *revision*, as etcd's compaction does."""
        self.compacted = revision


__all__ = ["MemoryKV"]
