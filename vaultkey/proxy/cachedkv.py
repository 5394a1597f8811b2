"""The :class:`KVStore` the routes use when the read cache is on: reads from the cache of
:mod:`vaultkey.proxy.cache` when it may answer them (see its doc for when), everything else
from etcd::

    kv = CachedKV(etcd_kv, ReadCache(etcd_kv, max_bytes=256 << 20))
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from vaultkey.proxy.cache import ReadCache
from vaultkey.proxy.store.base import Entry, KeyPage, KVStore, WatchBatch


class CachedKV:
    """A :class:`KVStore` that answers reads from a :class:`ReadCache` when it may."""

    def __init__(self, direct: KVStore, cache: ReadCache) -> None:
        self.direct = direct
        self.cache = cache
        self.counters = direct.counters

    async def get(self, path: str) -> Entry | None:
        if await self.cache.usable():
            self.cache.stats.hits += 1
            entry = self.cache.entries.get(path)
            self.cache.stats.values_read += entry is not None
            return entry
        entry = await self.direct.get(path)
        if entry is not None:
            self.cache.observe(entry.mod_revision)
        return entry

    async def list_keys(self, target: str, *, exact: bool = False, revision: int | None = None,
                        after: bytes | None = None, limit: int = 1000) -> KeyPage:
        # A later page of a listing must be at the first page's revision.
        if (revision is None and await self.cache.usable()) or (
                revision == self.cache.revision and self.cache.usable_now()):
            self.cache.stats.hits += 1
            return self.cache.page(target, exact, after, limit)
        page = await self.direct.list_keys(target, exact=exact, revision=revision, after=after,
                                           limit=limit)
        self.cache.observe(page.revision)
        return page

    async def load_run(self, first: str, last: str, count: int, revision: int) -> list[Entry]:
        if revision == self.cache.revision and self.cache.usable_now():
            self.cache.stats.hits += 1
            return self.cache.run(first, last, count)
        return await self.direct.load_run(first, last, count, revision)

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        return await self.direct.range(prefix)

    async def put(self, path: str, value: bytes, *, if_revision: int | None = None,
                  create_only: bool = False, lease: int | None = None,
                  keep_lease: bool = False) -> int:
        revision = await self.direct.put(path, value, if_revision=if_revision,
                                         create_only=create_only, lease=lease,
                                         keep_lease=keep_lease)
        self.cache.wrote(revision)
        return revision

    async def delete(self, path: str, *, if_revision: int | None = None) -> int:
        revision = await self.direct.delete(path, if_revision=if_revision)
        self.cache.wrote(revision)
        return revision

    async def fence(self) -> int:
        return await self.direct.fence()

    async def ping(self) -> int:
        return await self.direct.ping()

    def watch(self, start_revision: int) -> AsyncIterator[WatchBatch]:
        return self.direct.watch(start_revision)

    async def grant_lease(self, ttl: int) -> int:
        return await self.direct.grant_lease(ttl)

    async def keepalive(self, lease: int) -> int:
        return await self.direct.keepalive(lease)

    async def time_to_live(self, lease: int) -> int:
        return await self.direct.time_to_live(lease)

    async def revoke_lease(self, lease: int) -> None:
        # Its keys' deletions arrive through the watch; reads here must reflect them.
        await self.direct.revoke_lease(lease)
        self.cache.wrote(await self.direct.ping())  # past it at once: _catch_up fences


__all__ = ["CachedKV"]
