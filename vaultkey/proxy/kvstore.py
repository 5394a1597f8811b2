"""The proxy's asynchronous view of the store.

Routes only ever ``await`` these methods. Today they run the blocking
:class:`~vaultkey.proxy.store.etcd.EtcdStore` in a bounded thread pool; this is the seam
where a native asyncio etcd client or a watch-fed read cache can replace it
without touching a route.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from vaultkey.proxy.store.etcd import Entry, EtcdStore, KeyPage

T = TypeVar("T")


class Blocking:
    """Runs blocking calls (etcd, files) in one bounded pool shared by the proxy."""

    def __init__(self, threads: int = 64) -> None:
        self._threads = threads
        self._limiter: CapacityLimiter | None = None

    async def run(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        if self._limiter is None:  # created lazily: it must belong to the running event loop
            self._limiter = CapacityLimiter(self._threads)
        call = functools.partial(fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)


class AsyncKV:
    def __init__(self, store: EtcdStore, blocking: Blocking) -> None:
        self.store = store
        self._blocking = blocking

    async def get(self, path: str) -> Entry | None:
        return await self._blocking.run(self.store.get, path)

    async def list_keys(self, target: str, *, exact: bool = False, revision: int | None = None,
                        after: bytes | None = None, limit: int = 1000) -> KeyPage:
        return await self._blocking.run(self.store.list_keys, target, exact=exact,
                                        revision=revision, after=after, limit=limit)

    async def load_run(self, first: str, last: str, count: int, revision: int) -> list[Entry]:
        return await self._blocking.run(self.store.load_run, first, last, count, revision)

    async def put(self, path: str, value: bytes, *, if_revision: int | None = None,
                  create_only: bool = False) -> int:
        return await self._blocking.run(self.store.put, path, value, if_revision=if_revision,
                                        create_only=create_only)

    async def delete(self, path: str, *, if_revision: int | None = None) -> bool:
        return await self._blocking.run(self.store.delete, path, if_revision=if_revision)

    async def ping(self) -> int:
        return await self._blocking.run(self.store.ping)
