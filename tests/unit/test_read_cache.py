"""The read cache on the memory store (proven like etcd by tests/contract/).

Each consistency guarantee of vaultkey/proxy/cache.py is shown here with a hub
feeding the cache, and again against real etcd and two proxies in
tests/e2e/test_read_cache.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from vaultkey.errors import Unavailable
from vaultkey.proxy.cache import ReadCache
from vaultkey.proxy.cachedkv import CachedKV
from vaultkey.proxy.hub import Hub
from vaultkey.proxy.store.memory import MemoryKV


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def _run(body: Callable[[MemoryKV, ReadCache, CachedKV, Hub], Awaitable[None]], *,
         max_bytes: int = 1 << 20, fence_interval: float = 10.0, fence_timeout: float = 3.0,
         before: Callable[[MemoryKV], Awaitable[None]] | None = None) -> None:
    async def go() -> None:
        store = MemoryKV()
        if before is not None:
            await before(store)
        cache = ReadCache(store, max_bytes, fence_interval=fence_interval,
                          fence_timeout=fence_timeout)
        hub = Hub(store, MemoryKV(), cache=cache)
        await hub.start()
        try:
            await _until(cache.usable_now)
            await body(store, cache, CachedKV(store, cache), hub)
        finally:
            await hub.stop()
    asyncio.run(go())


def test_it_loads_the_keyspace_and_answers_reads_without_the_store():
    async def before(store: MemoryKV) -> None:
        for i in range(2500):  # more than one load page
            await store.put(f"/app/{i:04d}", b"v%d" % i)

    async def body(store: MemoryKV, cache: ReadCache, kv: CachedKV, hub: Hub) -> None:
        fetched = store.counters.values_fetched
        entry = await kv.get("/app/0042")
        assert entry is not None and entry.value == b"v42"
        page = await kv.list_keys("/app/", limit=1000)
        assert len(page.paths) == 1000 and page.after == b"/app/0999"
        second = await kv.list_keys("/app/", revision=page.revision, after=page.after)
        assert second.paths[0] == "/app/1000"
        got = await kv.load_run("/app/0010", "/app/0019", 10, page.revision)
        assert [e.path for e in got] == [f"/app/{i:04d}" for i in range(10, 20)]
        assert store.counters.values_fetched == fetched  # all from memory
        assert len(cache.entries) == 2500 and cache.stats.loads == 1

    _run(body, before=before)


def test_read_your_writes_through_this_replica():
    async def body(store: MemoryKV, cache: ReadCache, kv: CachedKV, hub: Hub) -> None:
        for i in range(50):
            await kv.put("/ryw/k", b"%d" % i)
            entry = await kv.get("/ryw/k")
            assert entry is not None and entry.value == b"%d" % i
            assert (await kv.list_keys("/ryw/")).paths == ["/ryw/k"]
        await kv.delete("/ryw/k")
        assert await kv.get("/ryw/k") is None
        assert (await kv.list_keys("/ryw/")).paths == []
        assert cache.stats.hits > 0

    _run(body)


def test_no_reads_from_the_cache_while_the_watch_is_down():
    async def body(store: MemoryKV, cache: ReadCache, kv: CachedKV, hub: Hub) -> None:
        await kv.put("/down/k", b"old")
        await _until(lambda: cache.revision >= store.revision)
        for task in hub._tasks:  # the watch drops (etcd unreachable, a network cut)
            task.cancel()
        await _until(lambda: not cache.live)
        await store.put("/down/k", b"new")  # written through another replica
        entry = await kv.get("/down/k")
        assert entry is not None and entry.value == b"new"
        assert cache.stats.misses >= 1

    _run(body)


def test_a_stalled_watch_is_noticed_by_its_fence_and_reads_go_to_the_store():
    async def body(store: MemoryKV, cache: ReadCache, kv: CachedKV, hub: Hub) -> None:
        await store.put("/stall/k", b"old")
        await _until(lambda: cache.revision >= store.revision)
        store.paused = True  # the stream stays open but delivers nothing
        await store.put("/stall/k", b"new")
        async with asyncio.timeout(5):
            while cache.stats.stalls < 1:  # reads ask for fences; the lost one is noticed
                await kv.get("/stall/k")
                await asyncio.sleep(0.02)
        entry = await kv.get("/stall/k")
        assert entry is not None and entry.value == b"new"
        store.paused = False
        await _until(cache.usable_now)
        entry = await kv.get("/stall/k")
        assert entry is not None and entry.value == b"new"

    _run(body, fence_interval=0.3, fence_timeout=0.1)


def test_a_fence_that_cannot_be_written_stops_reads_from_memory_at_once():
    """A member cut off from the others keeps its watch open but can write nothing: the
    failed fence, not a timeout, sends reads to the store (which refuses them there)."""

    class Partitioned(MemoryKV):
        cut = False

        async def fence(self) -> int:
            if self.cut:
                raise Unavailable("etcd has no leader")
            return await super().fence()

    async def go() -> None:
        store = Partitioned()
        cache = ReadCache(store, 1 << 20, fence_interval=0.05, fence_timeout=1.0)
        hub = Hub(store, MemoryKV(), cache=cache)
        await hub.start()
        try:
            await _until(cache.usable_now)
            store.cut = True
            async with asyncio.timeout(5):
                while cache.usable_now():
                    await cache.usable()  # a read: it asks for the next fence
                    await asyncio.sleep(0.01)
            assert not cache.synced
            store.cut = False
            await cache.usable()
            await _until(cache.usable_now)
        finally:
            await hub.stop()

    asyncio.run(go())


def test_a_proof_older_than_max_lag_is_not_trusted_and_an_idle_cache_writes_no_fences():
    async def go() -> None:
        store = MemoryKV()
        cache = ReadCache(store, 1 << 20, fence_interval=0.05, fence_timeout=1.0,
                          max_lag=0.3)
        hub = Hub(store, MemoryKV(), cache=cache)
        await hub.start()
        try:
            await _until(cache.usable_now)
            await asyncio.sleep(0.2)  # no reads: the fencer is idle
            fences = len(store._fences)
            await asyncio.sleep(0.4)
            assert len(store._fences) == fences
            assert not cache.usable_now()  # the last proof is older than max_lag
            # A read wakes the fencer: proven again within the read-your-writes wait.
            assert await cache.usable()
            assert len(store._fences) == fences + 1
        finally:
            await hub.stop()

    asyncio.run(go())


def test_a_reconnect_is_not_trusted_until_its_fence_arrives():
    async def body(store: MemoryKV, cache: ReadCache, kv: CachedKV, hub: Hub) -> None:
        cache.down()
        store.paused = True
        cache.up()  # connected again, but what it missed has not arrived yet
        await store.put("/re/k", b"v")
        assert not cache.usable_now()
        assert (await kv.get("/re/k")) is not None
        store.paused = False
        await _until(cache.usable_now)

    _run(body)


def test_past_its_memory_bound_the_cache_empties_and_reads_go_to_the_store():
    async def body(store: MemoryKV, cache: ReadCache, kv: CachedKV, hub: Hub) -> None:
        for i in range(40):
            await kv.put(f"/big/{i}", b"x" * 1000)
        await _until(lambda: cache.state == "over_budget")
        assert cache.entries == {} and cache.bytes == 0
        assert len((await kv.list_keys("/big/")).paths) == 40
        entry = await kv.get("/big/39")
        assert entry is not None and cache.stats.misses >= 2

    _run(body, max_bytes=20_000)


def test_a_listing_started_on_the_store_stays_at_its_revision():
    async def body(store: MemoryKV, cache: ReadCache, kv: CachedKV, hub: Hub) -> None:
        for i in range(3):
            await kv.put(f"/rev/{i}", b"1")
        old = store.revision
        await kv.put("/rev/0", b"2")
        await kv.delete("/rev/1")
        page = await kv.list_keys("/rev/", revision=old)  # an older revision: the store
        assert page.paths == ["/rev/0", "/rev/1", "/rev/2"]
        got = await kv.load_run("/rev/0", "/rev/2", 3, old)
        assert [(e.path, e.value) for e in got] == [("/rev/0", b"1"), ("/rev/1", b"1"),
                                                    ("/rev/2", b"1")]

    _run(body)


def test_a_fence_reported_before_its_write_returns_still_counts():
    """The watch may deliver the fence before the fence write's own answer arrives (they
    come back on different paths): the cache must not wait for the next fence."""

    class SlowAnswers(MemoryKV):
        async def fence(self) -> int:
            revision = await super().fence()
            await asyncio.sleep(0.2)  # the answer is late; the watch has reported it
            return revision

    async def go() -> None:
        store = SlowAnswers()
        cache = ReadCache(store, 1 << 20, fence_interval=60.0, fence_timeout=30.0)
        hub = Hub(store, MemoryKV(), cache=cache)
        await hub.start()
        try:
            await _until(cache.usable_now, timeout=2.0)  # not 60 s: the next fence
        finally:
            await hub.stop()

    asyncio.run(go())


def test_a_revision_outside_the_kv_namespace_is_reached_with_one_fence_not_a_timeout():
    """A client may have read at a revision made by a token or lease write, which the kv
    watch never reports: the cache catches up with a fence instead of sending reads to
    the store (and instead of waiting for the next periodic fence)."""
    from vaultkey.proxy.cache import MIN_REVISION

    async def body(store: MemoryKV, cache: ReadCache, kv: CachedKV, hub: Hub) -> None:
        await kv.put("/x/k", b"v")
        await _until(lambda: cache.revision >= store.revision)
        store.revision += 3  # writes elsewhere in etcd: revisions with no kv event
        cache.observe(store.revision)  # e.g. the header of a listing read from etcd
        MIN_REVISION.set(store.revision)
        fences = len(store._fences)
        assert await cache.usable()  # within the read-your-writes wait, not after it
        assert cache.stats.misses == 0 and len(store._fences) == fences + 1

    _run(body)


def test_a_revision_from_the_future_goes_to_the_store_at_once_and_writes_nothing():
    from vaultkey.proxy.cache import MIN_REVISION

    async def body(store: MemoryKV, cache: ReadCache, kv: CachedKV, hub: Hub) -> None:
        fences = len(store._fences)
        waits = cache.stats.waits
        MIN_REVISION.set(store.revision + 10**9)
        assert not await cache.usable()
        assert cache.stats.waits == waits  # no wait at all
        assert len(store._fences) == fences and cache.stats.misses == 1

    _run(body)
