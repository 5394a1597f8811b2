"""A read cache of the kv namespace, kept current by the watch hub.

Reads (one key, listings, recursive loads) are answered from memory, with no
etcd round trip and no thread hop, only while the cache can prove it is
current. Only ciphertext is held, and authorisation is unchanged: routes and
:mod:`vaultkey.proxy.listing` ask :class:`CachedKV` exactly what they would
ask etcd, so what a caller may read is decided by the same code.

When a read is answered from the cache (each a test in tests/):

* **read your writes**: after a write through this replica returns revision
  R, every read here reflects revision >= R. A read waits up to
  ``RYW_WAIT`` seconds for the watch to deliver R; otherwise it goes to etcd.
  A request may name a revision it must reflect (``X-Vaultkey-Min-Revision``;
  the SDK sends the highest it has seen), so a client reads its writes on any
  replica or worker. A revision the kv watch never reports (a token write) is
  reached with one fence; one the replica has never seen etcd reach goes to
  etcd at once;
* **never stale by more than** ``MAX_LAG`` (3 s), **even when partitioned**:
  while the hub's kv watch is down, the cache is loading, or it has not been
  *proven* current within the last ``MAX_LAG`` seconds, reads go to etcd.
  Currency is proven with a *fence*: the cache writes the namespace's marker
  key (a write, so it needs etcd's quorum) and waits until the watch reports
  it (etcd delivers a watch's events in revision order, so everything
  committed before the fence was sent has arrived). A fence is written after
  every (re)connect, and every ``FENCE_INTERVAL`` (1 s) while reads are being
  asked of the cache (an idle replica writes none). A fence that fails (no
  quorum, no leader) or is not seen within ``FENCE_TIMEOUT`` marks the cache
  unproven at once. So a replica whose etcd member is cut off from the others
  (a partition, a frozen member) stops answering from memory within
  ``MAX_LAG`` and its reads go to etcd, which refuses them ("no leader": 503)
  rather than serve old data as current;
* **linearizable on request**: ``?consistent=true`` reads etcd (routes use
  :attr:`CachedKV.direct`);
* **bounded memory**: at most ``max_bytes`` (values, paths and a measured
  per-entry overhead). Past it, the cache empties itself and every read goes
  to etcd until the proxy restarts; it never grows past the bound.

A listing answered from the cache is computed without yielding to the event
loop, so the whole of it is at one revision, as from etcd.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from vaultkey.errors import Unavailable
from vaultkey.proxy.store.base import Entry, KeyPage, KVStore, WatchBatch, WatchEvent

log = logging.getLogger(__name__)

ENTRY_OVERHEAD = 360  # bytes per cached key beyond path and value (measured: see OPERATIONS)
RYW_WAIT = 0.2  # seconds a read waits for this replica's own write to come back
CATCH_UP_AFTER = 0.02  # ... after which it asks for a fence to bring the cache up to date
FENCE_INTERVAL = 1.0  # seconds between fences while the cache is being read
FENCE_TIMEOUT = 3.0  # a fence not seen this long after it was written marks a stall
MAX_LAG = 3.0  # answer from memory only if proven current (a fence) this recently
LOAD_PAGE = 1000
# The revision the current request's reads must reflect (X-Vaultkey-Min-Revision; set per
# request in deps.context_for). A made-up high one only sends that request to etcd.
MIN_REVISION: ContextVar[int] = ContextVar("vaultkey_min_revision", default=0)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0  # reads that went to etcd while the cache was not usable
    waits: int = 0  # reads that waited for this replica's write to arrive
    loads: int = 0
    stalls: int = 0  # fences not seen in time
    values_read: int = 0  # values handed to requests (as values_fetched counts etcd's)
    keys_listed: int = 0  # key names handed to listings (as keys_listed counts etcd's)


def _prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class ReadCache:
    """The keyspace in memory: fed by the hub (:meth:`begin`, :meth:`up`, :meth:`batch`,
    :meth:`down`), read by :class:`CachedKV`."""

    def __init__(self, kv: KVStore, max_bytes: int, *, fence_interval: float = FENCE_INTERVAL,
                 fence_timeout: float = FENCE_TIMEOUT, max_lag: float = MAX_LAG) -> None:
        self.kv = kv
        self.max_bytes = max_bytes
        self.fence_interval, self.fence_timeout = fence_interval, fence_timeout
        self.max_lag = max_lag
        self._fence_sent = 0.0  # when the fence being waited for was written (monotonic)
        self._proven_at = -1e9  # when the last fence seen was written: current as of then
        self._demand = True  # reads were asked of the cache since the last fence
        self._wake = asyncio.Event()  # a read found the proof too old: fence at once
        self.entries: dict[str, Entry] = {}
        self.keys: list[str] = []  # sorted (code point order is etcd's UTF-8 byte order)
        self.bytes = 0
        self.revision = 0  # every kv change up to this revision is applied
        self.state = "off" if max_bytes <= 0 else "loading"  # loading|ready|over_budget|off
        self.live = False  # the hub's kv watch is up
        self.synced = False  # a fence since the last (re)connect was seen, none is overdue
        self.stats = CacheStats()
        self._pending: list[WatchEvent] = []  # events that arrived while loading
        self._needed = 0  # the highest revision acknowledged to a writer here
        self._fence_wanted = 0  # the fence being waited for (0: none)
        self._fence_seen = 0  # the highest fence this watch connection has reported
        self._advanced = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._fencer: asyncio.Task[None] | None = None
        self._catching_up: asyncio.Task[None] | None = None
        self.known = 0  # the highest revision etcd was seen at (writes, fences, listings)

    # -- fed by the hub --------------------------------------------------------
    def begin(self, revision: int) -> None:
        """The hub follows kv from *revision* + 1 (start or resync): (re)load."""
        if self.state in ("off", "over_budget"):
            return
        self.state, self._pending = "loading", []
        self.entries, self.keys, self.bytes = {}, [], 0
        self._spawn(self._load())

    def up(self) -> None:
        """The kv watch is (re)established: usable again once a fence comes back."""
        self.live, self.synced = True, False
        if self.state != "off":
            if self._fencer is not None:
                self._fencer.cancel()
            self._fencer = self._spawn(self._fence())

    def down(self) -> None:
        self.live = self.synced = False
        self._fence_wanted = self._fence_seen = 0

    def batch(self, batch: WatchBatch) -> None:
        for event in batch.events:
            self._apply(event)
        if batch.fence:
            self.revision = max(self.revision, batch.fence)
            self._fence_seen = max(self._fence_seen, batch.fence)
            self._check_fence()
        self._advanced.set()
        self._advanced = asyncio.Event()

    def _check_fence(self) -> None:
        # Why "seen >= wanted" and not "equal": the watch may report the fence before the
        # write's own answer comes back, and any later fence (another replica's) proves more.
        if self._fence_wanted and self._fence_seen >= self._fence_wanted:
            self._fence_wanted = 0
            self.synced = True
            self._proven_at = self._fence_sent

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # -- reads -----------------------------------------------------------------
    def wrote(self, revision: int) -> None:
        """A write through this replica was acknowledged at *revision*."""
        self._needed = max(self._needed, revision)
        self.observe(revision)

    def observe(self, revision: int) -> None:
        """etcd was seen at *revision* (an answer's header): the cache may be asked to reach
        it, e.g. by a client that read there (X-Vaultkey-Min-Revision)."""
        self.known = max(self.known, revision)

    def usable_now(self) -> bool:
        return (self.state == "ready" and self.live and self.synced
                and time.monotonic() - self._proven_at <= self.max_lag
                and self.revision >= max(self._needed, MIN_REVISION.get()))

    async def usable(self) -> bool:
        """Whether a read may be answered from memory (waiting briefly for a write it
        must reflect: this replica's own, or the request's X-Vaultkey-Min-Revision)."""
        self._demand = True
        if self.usable_now():
            return True
        if time.monotonic() - self._proven_at > self.max_lag:
            self._wake.set()  # the proof is old (an idle replica): fence now, not next tick
        needed = max(self._needed, MIN_REVISION.get())
        # Only for a revision etcd is known to have reached: a made-up future one goes to etcd
        # at once (and can never make the replica write fences).
        if self.state == "ready" and self.live and self.synced and needed <= self.known:
            self.stats.waits += 1
            deadline = time.monotonic() + RYW_WAIT
            while not self.usable_now() and (left := deadline - time.monotonic()) > 0:
                if left < RYW_WAIT - CATCH_UP_AFTER:
                    # Still behind: the revision may be a change outside the kv namespace
                    # (tokens, leases), which its watch never reports. A fence (one at a time)
                    # brings the cache past it within a round trip.
                    self._catch_up()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._advanced.wait(), min(left, CATCH_UP_AFTER))
            if self.usable_now():
                return True
        self.stats.misses += 1
        return False

    def _catch_up(self) -> None:
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = self._spawn(self._catch_up_fence())

    async def _catch_up_fence(self) -> None:
        with contextlib.suppress(Unavailable):
            self.observe(await self.kv.fence())

    def page(self, target: str, exact: bool, after: bytes | None, limit: int) -> KeyPage:
        if exact:
            found = target in self.entries and after is None
            self.stats.keys_listed += found
            return KeyPage([target] if found else [], self.revision, None)
        lo = (bisect.bisect_left(self.keys, target) if after is None
              else bisect.bisect_right(self.keys, after.decode("utf-8")))
        hi = bisect.bisect_left(self.keys, _prefix_end(target), lo)
        paths: list[str | None] = list(self.keys[lo:min(hi, lo + limit)])
        more = hi - lo > limit
        self.stats.keys_listed += len(paths)
        last = paths[-1] if more else None
        return KeyPage(paths, self.revision, last.encode("utf-8") if last else None)

    def run(self, first: str, last: str, count: int) -> list[Entry]:
        lo = bisect.bisect_left(self.keys, first)
        hi = bisect.bisect_right(self.keys, last, lo)
        found = [self.entries[k] for k in self.keys[lo:min(hi, lo + count)]]
        self.stats.values_read += len(found)
        return found

    # -- inside ----------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _size(self, entry: Entry) -> int:
        return len(entry.path) + len(entry.value) + ENTRY_OVERHEAD

    def _apply(self, event: WatchEvent) -> None:
        if self.state == "loading":
            self._pending.append(event)
            if len(self._pending) * ENTRY_OVERHEAD + self.bytes > self.max_bytes:
                self._over_budget()
            return
        if self.state != "ready":
            return
        if event.path is not None:
            self._set(event)
        if event.last:
            self.revision = max(self.revision, event.revision)

    def _set(self, event: WatchEvent) -> None:
        path = event.path
        assert path is not None
        old = self.entries.pop(path, None)
        if old is not None:
            self.bytes -= self._size(old)
        if event.kind == "delete":
            if old is not None:
                del self.keys[bisect.bisect_left(self.keys, path)]
            return
        entry = Entry(path, event.value, event.revision, event.create_revision, event.version,
                      event.lease)
        self.entries[path] = entry
        self.bytes += self._size(entry)
        if old is None:
            bisect.insort(self.keys, path)
        if self.bytes > self.max_bytes:
            self._over_budget()

    def _over_budget(self) -> None:
        log.warning("the read cache would exceed its %d bytes; it is off and every read goes "
                    "to etcd (raise --cache-bytes, or keep it off with 0)", self.max_bytes)
        self.state = "over_budget"
        self.entries, self.keys, self.bytes, self._pending = {}, [], 0, []

    async def _load(self) -> None:
        """Copy the namespace at one revision, then apply what arrived meanwhile."""
        delay = 0.1
        while self.state == "loading":
            try:
                await self._load_once()
                return
            except Unavailable as exc:
                log.warning("read cache load failed (%s); retrying", exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _load_once(self) -> None:
        at = await self.kv.ping()
        entries: dict[str, Entry] = {}
        size, after = 0, None
        while True:
            page = await self.kv.list_keys("/", revision=at, after=after, limit=LOAD_PAGE)
            valid = [p for p in page.paths if p is not None]
            if valid:
                for entry in await self.kv.load_run(valid[0], valid[-1], len(page.paths), at):
                    entries[entry.path] = entry
                    size += self._size(entry)
            if size > self.max_bytes:
                self._over_budget()
                return
            if page.after is None:
                break
            after = page.after
        if self.state != "loading":
            return
        self.entries, self.keys, self.bytes = entries, sorted(entries), size
        self.revision, self.state = at, "ready"
        self.stats.loads += 1
        pending, self._pending = self._pending, []
        for event in pending:
            if event.revision > at:
                self._apply(event)
        log.info("read cache loaded: %d keys, %d bytes, revision %d", len(entries), size, at)

    async def _fence(self) -> None:
        """Prove currency now, then again every interval while reads are asked of the
        cache; a failed fence or one not seen in time makes the cache unproven at once."""
        while self.live:
            if self._demand or not self.synced:
                self._demand = False
                await self._prove()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.fence_interval)
            self._wake.clear()

    async def _prove(self) -> None:
        sent = time.monotonic()
        try:
            wanted = await self.kv.fence()
        except Unavailable as exc:
            # No quorum (or no leader) for a write: nothing proves the watch is complete.
            if self.synced:
                log.warning("a fence could not be written (%s); reads go to etcd until one "
                            "is", exc.message)
            self.synced = False
            return
        self.observe(wanted)
        self._fence_sent, self._fence_wanted = sent, wanted
        self._check_fence()
        deadline = sent + self.fence_timeout
        while self._fence_wanted == wanted and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), left)
        if self._fence_wanted == wanted:
            self.synced = False
            self.stats.stalls += 1
            log.warning("the kv watch has not delivered a fence for %.1fs; reads go to "
                        "etcd until it does", self.fence_timeout)


__all__ = ["CacheStats", "ReadCache"]
