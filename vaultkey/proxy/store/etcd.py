"""The etcd implementation of :class:`~vaultkey.proxy.store.base.KVStore`.

:class:`EtcdStore` is a blocking *namespace view* (an etcd key prefix) on a
shared :class:`~vaultkey.proxy.store.etcdconn.EtcdConnection`; :class:`EtcdKV`
is its async face, running each call in one bounded thread pool::

    conn = EtcdConnection(EtcdSettings(endpoints=["http://127.0.0.1:2379"]))
    kv = EtcdKV(EtcdStore(conn, "/vaultkey/kv"))
    rev = await kv.put("/app/db", envelope, create_only=True)
    entry = await kv.get("/app/db")
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from etcd3 import transactions as tx
from etcd3.etcdrpc import rpc_pb2
from etcd3.utils import prefix_range_end

from vaultkey.errors import Conflict, StoreError, Unavailable, UsageError
from vaultkey.paths import validate_key, validate_prefix
from vaultkey.proxy.store.base import (
    Entry,
    KeyPage,
    StoreCounters,
    WatchBatch,
    WatchCompacted,
    WatchEvent,
    conflict_message,
)
from vaultkey.proxy.store.etcdaio import AioEtcd
from vaultkey.proxy.store.etcdconn import EtcdConnection, EtcdSettings, parse_endpoint
from vaultkey.proxy.store.outcome import maybe_applied, settle

T = TypeVar("T")


def _entry(kv: Any, path: str) -> Entry:
    return Entry(path=path, value=kv.value, mod_revision=kv.mod_revision,
                 create_revision=kv.create_revision, version=kv.version, lease=kv.lease)


class EtcdStore:
    """Blocking key/value operations on one namespace of a connection (thread-safe)."""

    def __init__(self, conn: EtcdConnection, namespace: str) -> None:
        if not namespace.startswith("/") or namespace.endswith("/"):
            raise UsageError(f"namespace {namespace!r} must start and not end with '/'")
        self.conn = conn
        self.namespace = namespace
        self._ns = namespace.encode("utf-8")
        self.counters = StoreCounters()

    def _key(self, path: str) -> bytes:
        return self._ns + validate_key(path).encode("utf-8")

    def _entries(self, kvs: Any) -> list[Entry]:
        found = ((kv, self.counters.path_of(kv.key[len(self._ns):], self.namespace))
                 for kv in kvs)
        entries = [_entry(kv, path) for kv, path in found if path is not None]
        self.counters.values_fetched += len(entries)
        return entries

    def get(self, path: str) -> Entry | None:
        key = self._key(path)
        resp = self.conn.call(lambda c: c.get_response(key))
        if not resp.kvs:
            return None
        self.counters.values_fetched += 1
        return _entry(resp.kvs[0], path)

    def range(self, prefix: str) -> tuple[list[Entry], int]:
        start = self._ns + validate_prefix(prefix).encode("utf-8")
        resp = self.conn.call(lambda c: c.get_range_response(
            start, prefix_range_end(start), sort_order="ascend"))
        return self._entries(resp.kvs), int(resp.header.revision)

    def span(self, target: str, exact: bool, after: bytes | None) -> tuple[bytes, bytes]:
        """The etcd key range of a listing page of *target*."""
        if exact:
            start = self._key(target)
            end = start + b"\0"
        else:
            start = self._ns + validate_prefix(target).encode("utf-8")
            end = prefix_range_end(start)
        if after is not None:
            start = self._ns + after + b"\0"
        return start, end

    def list_keys(self, target: str, *, exact: bool = False, revision: int | None = None,
                  after: bytes | None = None, limit: int = 1000) -> KeyPage:
        start, end = self.span(target, exact, after)
        resp = self.conn.call(lambda c: c.get_range_response(
            start, end, sort_order="ascend", keys_only=True, limit=limit,
            revision=revision or 0))
        return self.page(resp, revision)

    def page(self, resp: Any, revision: int | None) -> KeyPage:
        """A keys-only range answer as a :class:`KeyPage`."""
        paths = [self.counters.path_of(kv.key[len(self._ns):], self.namespace)
                 for kv in resp.kvs]
        self.counters.keys_listed += len(paths)
        more = bool(resp.more) and bool(resp.kvs)
        return KeyPage(paths, int(resp.header.revision) if revision is None else revision,
                       resp.kvs[-1].key[len(self._ns):] if more else None)

    def load_run(self, first: str, last: str, count: int, revision: int) -> list[Entry]:
        start, end = self._key(first), self._key(last) + b"\0"
        resp = self.conn.call(lambda c: c.get_range_response(
            start, end, sort_order="ascend", limit=count, revision=revision))
        return self._entries(resp.kvs)

    def put(self, path: str, value: bytes, *, if_revision: int | None = None,
            create_only: bool = False, lease: int | None = None) -> int:
        # No size check here: the proxy bounds request bodies, and etcd's own refusal
        # of a request over its limit is mapped to ValueTooLarge by the connection.
        key = self._key(path)
        compare = []
        if create_only:
            compare.append(tx.Create(key) == 0)
        if if_revision is not None:
            compare.append(tx.Mod(key) == int(if_revision))
        ok, responses = self.conn.call(
            lambda c: c.transaction(compare, [tx.Put(key, value, lease=lease)], []),
            idempotent=False)
        if not ok:
            raise Conflict(conflict_message(path, if_revision, create_only))
        return int(responses[0].response_put.header.revision)

    def delete(self, path: str, *, if_revision: int | None = None) -> int:
        key = self._key(path)
        compare = [] if if_revision is None else [tx.Mod(key) == int(if_revision)]
        ok, responses = self.conn.call(lambda c: c.transaction(compare, [tx.Delete(key)], []),
                                       idempotent=False)
        if not ok:
            raise Conflict(conflict_message(path, if_revision, False))
        deleted = responses[0].response_delete_range
        return int(deleted.header.revision) if int(deleted.deleted) > 0 else 0

    def fence(self) -> int:
        """Put the marker at the namespace's own key (no path maps to it)."""
        resp = self.conn.call(lambda c: c.put(self._ns, b"fence"), idempotent=False)
        return int(resp.header.revision)

    def ping(self) -> int:
        resp = self.conn.call(lambda c: c.get_response(self._ns + b"/"))
        return int(resp.header.revision)

    def grant_lease(self, ttl: int) -> int:
        return int(self.conn.call(lambda c: c.lease(ttl), idempotent=False).id)

    def keepalive(self, lease: int) -> int:
        responses = self.conn.call(lambda c: list(c.refresh_lease(lease)))
        return max(0, int(responses[0].TTL)) if responses else 0

    def time_to_live(self, lease: int) -> int:
        resp = self.conn.call(lambda c: c.get_lease_info(lease))
        return max(0, int(resp.TTL))

    def revoke_lease(self, lease: int) -> None:
        try:
            self.conn.call(lambda c: c.revoke_lease(lease), idempotent=False)
        except StoreError as exc:
            if "not found" not in exc.message:  # already expired or revoked: done
                raise

    def is_fence(self, raw: Any) -> bool:
        return bool(raw.kv.key == self._ns)

    def event(self, raw: Any) -> WatchEvent:
        """A watch event from etcd's protobuf ``mvccpb.Event`` (type 1 is DELETE)."""
        kv = raw.kv
        path = self.counters.path_of(kv.key[len(self._ns):], self.namespace)
        if raw.type == 1:
            return WatchEvent("delete", path, int(kv.mod_revision))
        return WatchEvent("put", path, int(kv.mod_revision), kv.value, int(kv.create_revision),
                          int(kv.version), int(kv.lease))


class Blocking:
    """Runs blocking calls in one bounded thread pool shared by the proxy's stores."""

    def __init__(self, threads: int = 64) -> None:
        self._threads = threads
        self._limiter: CapacityLimiter | None = None

    async def run(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        if self._limiter is None:  # created lazily: it must belong to the running event loop
            self._limiter = CapacityLimiter(self._threads)
        call = functools.partial(fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)


class EtcdKV:
    """The async KVStore over an :class:`EtcdStore`: reads and writes on ``grpc.aio``
    and watches on ``grpc.aio`` (:mod:`.etcdaio`: no thread per call); leases in the
    thread pool."""

    def __init__(self, store: EtcdStore, blocking: Blocking | None = None,
                 aio: AioEtcd | None = None) -> None:
        self.store = store
        self.counters = store.counters
        self._run = (blocking or Blocking()).run
        self._aio = aio or AioEtcd(store.conn)
        self._ns = store.namespace.encode("utf-8")

    async def _range(self, start: bytes, end: bytes | None = None, *, limit: int = 0,
                     revision: int = 0, keys_only: bool = False) -> Any:
        request = rpc_pb2.RangeRequest(
            key=start, range_end=end or b"", limit=limit, revision=revision,
            keys_only=keys_only, sort_order=rpc_pb2.RangeRequest.ASCEND,
            sort_target=rpc_pb2.RangeRequest.KEY)
        timeout = self._aio.timeout()
        return await self._aio.call(lambda kv, md: kv.Range(request, metadata=md,
                                                            timeout=timeout))

    async def _txn(self, compare: list[Any], op: Any) -> Any:
        request = rpc_pb2.TxnRequest(compare=compare, success=[op], failure=[])
        timeout = self._aio.timeout()
        return await self._aio.call(lambda kv, md: kv.Txn(request, metadata=md,
                                                          timeout=timeout), idempotent=False)

    async def get(self, path: str) -> Entry | None:
        resp = await self._range(self.store._key(path))
        if not resp.kvs:
            return None
        self.counters.values_fetched += 1
        return _entry(resp.kvs[0], path)

    async def list_keys(self, target: str, *, exact: bool = False, revision: int | None = None,
                        after: bytes | None = None, limit: int = 1000) -> KeyPage:
        start, end = self.store.span(target, exact, after)
        resp = await self._range(start, end, limit=limit, revision=revision or 0,
                                 keys_only=True)
        return self.store.page(resp, revision)

    async def load_run(self, first: str, last: str, count: int, revision: int) -> list[Entry]:
        resp = await self._range(self.store._key(first), self.store._key(last) + b"\0",
                                 limit=count, revision=revision)
        return self.store._entries(resp.kvs)

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        start = self._ns + validate_prefix(prefix).encode("utf-8")
        resp = await self._range(start, prefix_range_end(start))
        return self.store._entries(resp.kvs), int(resp.header.revision)

    async def put(self, path: str, value: bytes, *, if_revision: int | None = None,
                  create_only: bool = False, lease: int | None = None,
                  keep_lease: bool = False) -> int:
        key = self.store._key(path)
        compare = []
        if create_only:
            compare.append(rpc_pb2.Compare(key=key, target=rpc_pb2.Compare.CREATE,
                                           result=rpc_pb2.Compare.EQUAL, create_revision=0))
        if if_revision is not None:
            compare.append(rpc_pb2.Compare(key=key, target=rpc_pb2.Compare.MOD,
                                           result=rpc_pb2.Compare.EQUAL,
                                           mod_revision=int(if_revision)))
        put = rpc_pb2.PutRequest(key=key, value=value, lease=lease or 0,
                                 ignore_lease=keep_lease)

        async def send() -> int:
            resp = await self._txn(compare, rpc_pb2.RequestOp(request_put=put))
            if not resp.succeeded:
                raise Conflict(conflict_message(path, if_revision, create_only))
            return int(resp.header.revision)

        return await self._write(path, key, value, if_revision, create_only, send)

    async def _write(self, path: str, key: bytes, value: bytes | None,
                     if_revision: int | None, create_only: bool,
                     send: Callable[[], Awaitable[int]]) -> int:
        """*send()*, with a lost answer settled honestly (:mod:`.outcome`)."""
        try:
            return await send()
        except Unavailable as exc:
            if not maybe_applied(exc):
                raise
            cause = exc

        async def read() -> Any:
            resp = await self._range(key)
            return resp.kvs[0] if resp.kvs else None

        return await settle(path, value, if_revision, create_only, read, send, cause)

    async def delete(self, path: str, *, if_revision: int | None = None) -> int:
        key = self.store._key(path)
        compare = [] if if_revision is None else [rpc_pb2.Compare(
            key=key, target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.EQUAL,
            mod_revision=int(if_revision))]

        async def send() -> int:
            resp = await self._txn(compare, rpc_pb2.RequestOp(
                request_delete_range=rpc_pb2.DeleteRangeRequest(key=key)))
            if not resp.succeeded:
                raise Conflict(conflict_message(path, if_revision, False))
            deleted = int(resp.responses[0].response_delete_range.deleted)
            return int(resp.header.revision) if deleted else 0

        return await self._write(path, key, None, if_revision, False, send)

    async def fence(self) -> int:
        put = rpc_pb2.PutRequest(key=self._ns, value=b"fence")
        return int((await self._txn([], rpc_pb2.RequestOp(request_put=put))).header.revision)

    async def ping(self) -> int:
        return int((await self._range(self._ns + b"/", limit=1, keys_only=True)).header.revision)

    async def grant_lease(self, ttl: int) -> int:
        return await self._run(self.store.grant_lease, ttl)

    async def keepalive(self, lease: int) -> int:
        return await self._run(self.store.keepalive, lease)

    async def revoke_lease(self, lease: int) -> None:
        await self._run(self.store.revoke_lease, lease)

    async def time_to_live(self, lease: int) -> int:
        return await self._run(self.store.time_to_live, lease)

    async def watch(self, start_revision: int) -> AsyncIterator[WatchBatch]:
        """One etcd watch on the namespace, from its own key (the fence marker) to the
        end of its prefix, on ``grpc.aio``."""
        store = self.store
        ns = store.namespace.encode()
        stream = self._aio.watch(ns, prefix_range_end(ns + b"/"), start_revision)
        try:
            async for item in stream:
                if item.compact_revision:
                    raise WatchCompacted(int(item.compact_revision))
                if item.canceled:
                    raise Unavailable(f"etcd cancelled the watch: {item.cancel_reason}",
                                      retry_after=1.0)
                fences = [int(e.kv.mod_revision) for e in item.events if store.is_fence(e)]
                yield WatchBatch(int(item.header.revision),  # `created` too: the watch is up
                                 mark_last(store.event(e) for e in item.events
                                           if not store.is_fence(e)),
                                 fence=max(fences, default=0))
        finally:
            await stream.aclose()


def mark_last(events: Iterable[WatchEvent]) -> tuple[WatchEvent, ...]:
    """Mark which events end their revision (one etcd revision can change several keys,
    e.g. a revoked lease): only those carry a resumable id on the wire."""
    found = list(events)
    return tuple(dataclasses.replace(e, last=i + 1 == len(found)
                                     or found[i + 1].revision != e.revision)
                 for i, e in enumerate(found))


def connect(settings: EtcdSettings, root: str) -> tuple[EtcdKV, EtcdKV, EtcdConnection]:
    """The proxy's two stores on one connection: ``<root>/kv`` and ``<root>/sys``."""
    conn = EtcdConnection(settings)
    blocking, aio = Blocking(), AioEtcd(conn)
    return (EtcdKV(EtcdStore(conn, root + "/kv"), blocking, aio),
            EtcdKV(EtcdStore(conn, root + "/sys"), blocking, aio), conn)


__all__ = ["Blocking", "EtcdConnection", "EtcdKV", "EtcdSettings", "EtcdStore", "connect",
           "parse_endpoint"]
