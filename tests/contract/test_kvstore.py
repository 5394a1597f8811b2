"""One contract, two stores: every behaviour here holds on real etcd and on memory.

The memory store exists so route and ACL tests can run in milliseconds; this
suite is what makes that honest. Each test runs once per backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from vaultkey.envelope import MAX_ENVELOPE_BYTES
from vaultkey.errors import Conflict, InvalidPath, Unavailable, ValueTooLarge
from vaultkey.proxy.store.base import KVStore, WatchCompacted
from vaultkey.proxy.store.etcd import EtcdKV, EtcdStore
from vaultkey.proxy.store.memory import MemoryKV


@dataclass
class Backend:
    """A store plus the two things only a test does: plant a raw key, compact."""

    kv: KVStore
    put_raw: Callable[[bytes, bytes], None]
    compact: Callable[[int], None]


@pytest.fixture(params=["etcd", "memory"])
def backend(request, etcd_conn, namespace) -> Iterator[Backend]:
    if request.param == "memory":
        mem = MemoryKV()
        yield Backend(mem, lambda raw, value: mem.put_raw(raw, value) and None, mem.compact)
        return
    client = etcd_conn.client()
    yield Backend(EtcdKV(EtcdStore(etcd_conn, namespace)),
                  lambda raw, value: client.put(namespace.encode() + raw, value),
                  lambda rev: client.compact(rev, physical=True))


def run(coro: Awaitable[object]) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_put_get_revisions_and_versions(backend):
    async def go() -> None:
        kv = backend.kv
        assert await kv.get("/a/x") is None
        r1 = await kv.put("/a/x", b"one")
        r2 = await kv.put("/a/x", b"two")
        assert r2 > r1
        entry = await kv.get("/a/x")
        assert entry is not None
        assert (entry.value, entry.mod_revision, entry.create_revision, entry.version) == (
            b"two", r2, r1, 2)
        assert await kv.ping() >= r2

    run(go())


def test_compare_and_swap_conflicts_keep_the_value(backend):
    async def go() -> None:
        kv = backend.kv
        with pytest.raises(Conflict, match="no longer at revision 999"):
            await kv.put("/c/x", b"v", if_revision=999)
        rev = await kv.put("/c/x", b"v", if_revision=0)  # 0: only if it does not exist
        with pytest.raises(Conflict, match="already exists"):
            await kv.put("/c/x", b"w", create_only=True)
        with pytest.raises(Conflict):
            await kv.put("/c/x", b"w", if_revision=0)
        assert await kv.put("/c/x", b"w", if_revision=rev) > rev
        with pytest.raises(Conflict):
            await kv.put("/c/x", b"stale", if_revision=rev)
        with pytest.raises(Conflict):
            await kv.delete("/c/x", if_revision=rev)
        entry = await kv.get("/c/x")
        assert entry is not None and entry.value == b"w"

    run(go())


def test_delete_reports_existence_and_a_missing_delete_changes_nothing(backend):
    async def go() -> None:
        kv = backend.kv
        rev = await kv.put("/d/x", b"v")
        deleted = await kv.delete("/d/x", if_revision=rev)
        assert deleted > rev and deleted == await kv.ping()  # the delete's own revision
        assert await kv.get("/d/x") is None
        before = await kv.ping()
        assert await kv.delete("/d/x") == 0
        assert await kv.ping() == before
        again = await kv.put("/d/x", b"new")
        entry = await kv.get("/d/x")
        assert entry is not None and (entry.create_revision, entry.version) == (again, 1)

    run(go())


def test_list_keys_pages_at_one_revision_without_values(backend):
    async def go() -> None:
        kv = backend.kv
        for name in ("b", "a", "c", "d"):
            await kv.put(f"/l/{name}", b"v")
        await kv.put("/l2/x", b"sibling")  # a sibling prefix is never listed
        fetched = kv.counters.values_fetched
        first = await kv.list_keys("/l/", limit=3)
        assert first.paths == ["/l/a", "/l/b", "/l/c"] and first.after is not None
        await kv.put("/l/bb", b"newer than the listing")
        await kv.delete("/l/d")
        rest = await kv.list_keys("/l/", revision=first.revision, after=first.after)
        assert rest.paths == ["/l/d"] and rest.after is None  # as of the first page
        assert (await kv.list_keys("/l/bb", exact=True)).paths == ["/l/bb"]
        assert (await kv.list_keys("/l/zz", exact=True)).paths == []
        assert kv.counters.values_fetched == fetched

    run(go())


def test_load_run_and_range_read_values(backend):
    async def go() -> None:
        kv = backend.kv
        for i in range(4):
            await kv.put(f"/r/{i}", f"v{i}".encode())
        revision = (await kv.list_keys("/r/")).revision
        await kv.put("/r/1", b"changed later")
        got = await kv.load_run("/r/1", "/r/2", 2, revision)
        assert [(e.path, e.value) for e in got] == [("/r/1", b"v1"), ("/r/2", b"v2")]
        entries, _rev = await kv.range("/r/")
        assert [e.value for e in entries] == [b"v0", b"changed later", b"v2", b"v3"]

    run(go())


def test_keys_vaultkey_did_not_write_are_none_in_listings_and_skipped(backend):
    async def go() -> None:
        kv = backend.kv
        await kv.put("/f/ok", b"v")
        for raw in (b"/f/\xff", b"/f/a//b", b"/f/ctl\x01"):
            backend.put_raw(raw, b"junk")
        page = await kv.list_keys("/f/")
        assert page.paths.count(None) == 3 and "/f/ok" in page.paths
        entries, _ = await kv.range("/f/")
        assert [e.path for e in entries] == ["/f/ok"]
        assert kv.counters.invalid_keys >= 3

    run(go())


def test_limits_paths_and_compaction(backend):
    async def go() -> None:
        kv = backend.kv
        assert await kv.put("/s/big", b"x" * MAX_ENVELOPE_BYTES) > 0
        with pytest.raises(ValueTooLarge):
            await kv.put("/s/huge", b"x" * (2 * 1024 * 1024))
        for bad in ("/s/../x", "s/x", "/s//x", "/s/x/"):
            with pytest.raises(InvalidPath):
                await kv.put(bad, b"v")
        old = await kv.put("/s/k", b"1")
        newer = await kv.put("/s/k", b"2")
        backend.compact(newer)
        with pytest.raises(Unavailable, match="compacted"):
            await kv.list_keys("/s/", revision=old)

    run(go())


def test_watch_delivers_every_change_in_order_from_a_start_revision(backend):
    async def go() -> None:
        kv = backend.kv
        first = await kv.put("/w/a", b"1")
        await kv.put("/w/b", b"2")
        await kv.delete("/w/a")
        seen: list[tuple[str, str | None, bytes]] = []
        stream = kv.watch(first)
        async with asyncio.timeout(10):
            async for batch in stream:
                seen += [(e.kind, e.path, e.value) for e in batch.events]
                if len(seen) == 3:
                    await kv.put("/w/c", b"live")
                if len(seen) == 4:
                    break
        await stream.aclose()
        assert seen == [("put", "/w/a", b"1"), ("put", "/w/b", b"2"), ("delete", "/w/a", b""),
                        ("put", "/w/c", b"live")]

    run(go())


def test_a_fence_is_reported_after_every_earlier_change_and_is_no_key(backend):
    async def go() -> None:
        kv = backend.kv
        first = await kv.put("/f/a", b"1")
        await kv.delete("/f/a")
        fence = await kv.fence()
        assert fence == await kv.ping() and fence > first
        seen: list[tuple[str, str | None]] = []
        stream = kv.watch(first)
        async with asyncio.timeout(10):
            async for batch in stream:
                seen += [(e.kind, e.path) for e in batch.events]
                if batch.fence:
                    assert batch.fence == fence
                    break
        await stream.aclose()
        assert seen == [("put", "/f/a"), ("delete", "/f/a")]  # all before it; no key for it
        assert (await kv.list_keys("/")).paths.count(None) == 0
        assert kv.counters.invalid_keys == 0

    run(go())


def test_a_watch_reports_that_it_is_up_before_any_change(backend):
    async def go() -> None:
        kv = backend.kv
        now = await kv.ping()
        stream = kv.watch(now + 1)
        async with asyncio.timeout(10):
            first = await anext(stream)
        await stream.aclose()
        assert first.events == () and first.revision >= now

    run(go())


def test_watch_from_a_compacted_revision_says_so(backend):
    async def go() -> None:
        kv = backend.kv
        old = await kv.put("/wc/a", b"1")
        newer = await kv.put("/wc/a", b"2")
        backend.compact(newer)
        with pytest.raises(WatchCompacted):
            async with asyncio.timeout(10):
                async for _batch in kv.watch(old):
                    pass

    run(go())


def test_leases_attach_renew_and_delete_their_keys(backend):
    async def go() -> None:
        kv = backend.kv
        lease = await kv.grant_lease(30)
        await kv.put("/t/a", b"v", lease=lease)
        await kv.put("/t/b", b"v")
        assert await kv.keepalive(lease) > 0
        assert 28 <= await kv.time_to_live(lease) <= 30  # read without renewing
        a, b = await kv.get("/t/a"), await kv.get("/t/b")
        assert a is not None and a.lease == lease and b is not None and b.lease == 0
        page = await kv.list_keys("/t/")
        assert [e.lease for e in await kv.load_run("/t/a", "/t/b", 2, page.revision)] == [
            lease, 0]
        await kv.revoke_lease(lease)
        assert await kv.get("/t/a") is None and await kv.get("/t/b") is not None
        assert await kv.keepalive(lease) == 0
        assert await kv.time_to_live(lease) == 0
        await kv.revoke_lease(lease)  # twice: nothing to do, no error

    run(go())


def test_keep_lease_rewrites_a_key_under_the_lease_it_has(backend):
    """What rewrap and rotate rely on: a re-encrypted registration keeps its TTL lease."""
    async def go() -> None:
        kv = backend.kv
        lease = await kv.grant_lease(30)
        first = await kv.put("/k/a", b"v1", lease=lease)
        await kv.put("/k/a", b"v2", if_revision=first, keep_lease=True)
        plain = await kv.put("/k/b", b"v1")
        await kv.put("/k/b", b"v2", if_revision=plain, keep_lease=True)
        with pytest.raises(Conflict):
            await kv.put("/k/a", b"v3", if_revision=first, keep_lease=True)
        await kv.revoke_lease(lease)
        assert await kv.get("/k/a") is None  # went with its lease
        entry = await kv.get("/k/b")
        assert entry is not None and entry.value == b"v2"  # had none, still has none

    run(go())


def test_a_lease_that_is_not_kept_alive_expires_with_its_keys(backend):
    async def go() -> None:
        kv = backend.kv
        lease = await kv.grant_lease(2)  # etcd's minimum TTL
        await kv.put("/e/a", b"v", lease=lease)
        deadline = asyncio.get_running_loop().time() + 6
        while await kv.get("/e/a") is not None:
            assert asyncio.get_running_loop().time() < deadline, "lease did not expire"
            await asyncio.sleep(0.1)

    run(go())
