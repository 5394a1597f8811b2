"""The watch hub: one etcd watch per namespace per replica, fanned out in memory.

Each proxy replica follows ``<root>/kv/`` and ``<root>/sys/`` with exactly one
watch each, whatever the number of clients watching. Changes under ``kv`` go
to subscribers (each with a bounded queue, filtered by its own visibility
check); changes under ``sys`` go to the token registry, so a revocation made
on any replica reaches this one as soon as etcd reports it::

    hub = Hub(state.kv, state.sys, on_sys=state.tokens.on_sys_event)
    await hub.start()
    sub = hub.subscribe("/app/", visible=lambda path: True, since=None)
    change = await sub.next()          # a WatchEvent, or an End with a reason

After a disconnect the hub resumes from the revision after the last event it
saw, so no event is lost. A subscriber that asks to resume from before what the
hub still holds, or from a compacted revision, gets an ``End("too_old")`` or
``End("compacted")``: it must reload and resume from the reload's revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vaultkey.errors import Unavailable
from vaultkey.proxy.cache import ReadCache
from vaultkey.proxy.store.base import KVStore, RevisionCompacted, WatchCompacted, WatchEvent

log = logging.getLogger(__name__)
HISTORY = 4096  # recent kv events kept for resuming subscribers
QUEUE = 1024  # events a subscriber may have waiting before it is dropped as lagging


@dataclass(frozen=True)
class End:
    """The end of a subscription: the subscriber must resync (reload, then resume)."""

    reason: str  # "compacted" | "too_old" | "lagging" | "restarted"
    revision: int


class Subscriber:
    """One client's view: the changes under *prefix* it may see, in order."""

    def __init__(self, prefix: str, visible: Callable[[str], bool], start: int,
                 limit: int = QUEUE) -> None:
        self.prefix = prefix
        self.limit = limit
        self.visible = visible
        self.start = start  # every visible change up to here was delivered or is queued
        self.queue: asyncio.Queue[WatchEvent | End] = asyncio.Queue(limit + 1)
        self.ended = False
        self.delivered = 0

    def offer(self, event: WatchEvent) -> bool:
        """Queue *event* if it is for this subscriber; False if it had to be dropped."""
        if (self.ended or event.revision <= self.start or event.path is None
                or not event.path.startswith(self.prefix)):
            return True
        if not self.visible(event.path):
            return True
        if self.queue.qsize() >= self.limit:
            self.end(End("lagging", event.revision))
            return False
        self.queue.put_nowait(event)
        return True

    def end(self, end: End) -> None:
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(end)

    async def next(self, timeout: float) -> WatchEvent | End | None:
        """The next change, or None after *timeout* seconds without one."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class HubStats:
    def __init__(self) -> None:
        self.events_in = 0
        self.events_out = 0
        self.dropped = 0
        self.streams = 0  # etcd watch streams open now (2 when healthy)


class Hub:
    def __init__(self, kv: KVStore, sys: KVStore, *,
                 on_sys: Callable[[WatchEvent], None] | None = None,
                 on_sys_resync: Callable[[], None] | None = None, queue: int = QUEUE,
                 cache: ReadCache | None = None) -> None:
        self.kv, self.sys = kv, sys
        self.cache = cache  # fed with every kv batch, (re)connect and resync
        self.queue_limit = queue
        self.on_sys = on_sys or (lambda _e: None)
        self.on_sys_resync = on_sys_resync or (lambda: None)
        self.stats = HubStats()
        self.revision = 0  # the last kv revision fully delivered
        self.floor = 0  # history holds every kv event after this revision
        self.history: deque[WatchEvent] = deque(maxlen=HISTORY)
        self.subscribers: set[Subscriber] = set()
        self.live: dict[str, bool] = {"kv": False, "sys": False}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def fresh(self) -> bool:
        """Whether both watches are up, so caches fed by them can be trusted."""
        return all(self.live.values())

    async def start(self) -> None:
        """Start following etcd in the background (it waits for etcd if it is down)."""
        if self._tasks:
            return
        self._tasks = [asyncio.ensure_future(self._main())]

    async def _main(self) -> None:
        start = await self._current()
        self.revision = self.floor = start
        if self.cache is not None:
            self.cache.begin(start)
        await asyncio.gather(self._follow("kv", self.kv, start + 1),
                             self._follow("sys", self.sys, start + 1))

    def end_all(self, reason: str) -> None:
        """End every subscription now (a shutdown: clients resume on another replica)."""
        for sub in list(self.subscribers):
            sub.end(End(reason, self.revision))

    async def stop(self) -> None:
        if self.cache is not None:
            self.cache.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for sub in list(self.subscribers):
            sub.end(End("restarted", self.revision))

    async def _current(self) -> int:
        delay = 0.1
        while True:
            try:
                return await self.kv.ping()
            except Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def subscribe(self, prefix: str, visible: Callable[[str], bool],
                        since: int | None) -> Subscriber:
        if since is not None and since < self.revision and await self._compacted(since):
            sub = Subscriber(prefix, visible, self.revision, self.queue_limit)
            sub.end(End("compacted", self.revision))
        elif since is None or since >= self.revision:
            sub = Subscriber(prefix, visible, max(since or 0, self.revision), self.queue_limit)
        elif since < self.floor:
            sub = Subscriber(prefix, visible, self.revision, self.queue_limit)
            sub.end(End("too_old", self.revision))
        else:
            sub = Subscriber(prefix, visible, since, self.queue_limit)
            for past in self.history:  # replay what it missed, oldest first
                if past.revision > since:
                    sub.offer(past)
        self.subscribers.add(sub)
        return sub

    async def _compacted(self, since: int) -> bool:
        """Whether etcd compacted the revisions after *since*: even if this hub still
        holds them, a resume from there must resync, as etcd would say."""
        try:
            await self.kv.list_keys("/", revision=since + 1, limit=1)
        except RevisionCompacted:
            return True
        return False

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        self.stats.events_out += sub.delivered

    async def _follow(self, name: str, store: KVStore, next_revision: int) -> None:
        """Follow one namespace forever: resume after failures, resync after compaction."""
        delay = 0.1
        while True:
            self.stats.streams += 1
            try:
                async for batch in store.watch(next_revision):
                    delay = 0.1
                    if not self.live[name] and name == "kv" and self.cache is not None:
                        self.cache.up()
                    self.live[name] = True  # the watch is established (etcd said so)
                    for event in batch.events:
                        self._dispatch(name, event)
                        next_revision = event.revision + 1
                    if batch.fence:
                        next_revision = max(next_revision, batch.fence + 1)
                    if name == "kv" and self.cache is not None:
                        self.cache.batch(batch)
            except WatchCompacted as exc:
                log.warning("the %s watch fell behind etcd's compaction (%s); resyncing",
                            name, exc.compact_revision)
                next_revision = await self._resync(name)
            except Unavailable as exc:
                log.warning("the %s watch is down (%s); resuming from revision %d", name,
                            exc.__cause__ or exc.message, next_revision)
            except Exception:  # never let the hub die: log it, and resume like any failure
                log.exception("the %s watch failed; resuming from revision %d", name,
                              next_revision)
            finally:
                self.stats.streams -= 1
                self.live[name] = False
                if name == "kv" and self.cache is not None:
                    self.cache.down()
            await asyncio.sleep(delay * (1 + random.random() / 2))  # noqa: S311 - jitter
            delay = min(delay * 2, 2.0)

    def _dispatch(self, name: str, event: WatchEvent) -> None:
        self.stats.events_in += 1
        if name == "sys":
            self.on_sys(event)
            return
        self.history.append(event)
        if len(self.history) == self.history.maxlen:
            self.floor = self.history[0].revision - 1
        self.revision = event.revision
        for sub in list(self.subscribers):
            if not sub.offer(event):
                self.stats.dropped += 1

    async def _resync(self, name: str) -> int:
        current = await self._current()
        if name == "sys":
            self.on_sys_resync()
        else:
            self.history.clear()
            self.revision = self.floor = current
            if self.cache is not None:
                self.cache.begin(current)
            for sub in list(self.subscribers):
                sub.end(End("compacted", current))
        return current + 1


__all__ = ["End", "Hub", "HubStats", "Subscriber"]
