"""etcd's KV RPCs on ``grpc.aio``: reads and writes without a thread per call.

The blocking python-etcd3 client runs each call in a thread pool; at 32
concurrent writes that hop, and the GIL contention between the threads, held
the proxy to ~1,600 puts/s where ``grpc.aio`` in the same process reached
~6,900 (measured by the issue-10 evaluation, see docs/BENCHMARKS.md). This
module speaks etcd's own protobufs (shipped with python3-etcd3) over
``grpc.aio`` with the same settings as :class:`EtcdConnection`: TLS and client
certificates, user/password auth (a token renewed once when etcd says it
expired), endpoint failover in order, and the same error boundary
(:func:`vaultkey.proxy.store.etcdconn.map_rpc_error`)::

    aio = AioEtcd(connection)
    response = await aio.call(lambda kv, md: kv.Range(request, metadata=md, timeout=5))

Channels belong to the event loop they were made on; a new loop (a test, a
restart) gets new channels. Watches run here too (one stream per namespace, read on the
event loop: no thread, no GIL hand-off per event); leases stay on the blocking client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

from vaultkey.errors import StoreError, Unavailable
from vaultkey.proxy.store.etcdconn import (
    _GRPC_OPTIONS,
    REQUIRE_LEADER,
    EtcdConnection,
    map_rpc_error,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]


class _Endpoint:
    def __init__(self, channel: grpc.aio.Channel, label: str) -> None:
        self.channel = channel
        self.label = label
        self.kv = rpc_pb2_grpc.KVStub(channel)
        self.auth = rpc_pb2_grpc.AuthStub(channel)
        self.token: str | None = None


class AioEtcd:
    """``grpc.aio`` channels to the endpoints of an :class:`EtcdConnection`."""

    def __init__(self, conn: EtcdConnection) -> None:
        self.conn = conn
        self.settings = conn.settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoints: list[_Endpoint] = []
        self._current = 0

    def _channels(self) -> list[_Endpoint]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._current = loop, 0
            self._endpoints = []
            for host, port, tls in self.conn.endpoints:
                target = f"{host}:{port}"
                channel = (grpc.aio.secure_channel(target, self.conn.credentials(),
                                                   options=_GRPC_OPTIONS) if tls
                           else grpc.aio.insecure_channel(target, options=_GRPC_OPTIONS))
                self._endpoints.append(_Endpoint(channel, target))
        return self._endpoints

    async def _metadata(self, endpoint: _Endpoint) -> Metadata:
        if not self.settings.user:
            return REQUIRE_LEADER
        if endpoint.token is None:
            request = rpc_pb2.AuthenticateRequest(name=self.settings.user,
                                                  password=self.settings.password or "")
            response = await endpoint.auth.Authenticate(request, timeout=self.settings.timeout)
            endpoint.token = str(response.token)
        return (("token", endpoint.token), *REQUIRE_LEADER)

    async def call(self, fn: Callable[[Any, Metadata], Awaitable[T]], *,
                   idempotent: bool = True) -> T:
        """Run *fn(kv_stub, metadata)* with failover, as :meth:`EtcdConnection.call`."""
        endpoints = self._channels()
        attempts = len(endpoints)
        reauthenticated = False
        while True:
            endpoint = endpoints[self._current % len(endpoints)]
            try:
                try:
                    return await fn(endpoint.kv, await self._metadata(endpoint))
                except grpc.RpcError as exc:
                    raise map_rpc_error(exc) from exc
            except Unavailable as exc:
                # Move on from a failing endpoint whatever happens next: the caller may
                # read back a write whose answer was lost (.outcome), and should not wait
                # on the endpoint that just failed.
                self._current += 1
                attempts -= 1
                if attempts <= 0 or not (idempotent or exc.retryable):
                    raise
                log.warning("etcd endpoint %s failed (%s); trying the next one",
                            endpoint.label, exc.__cause__ or exc.message)
            except StoreError as exc:
                if "auth token" not in exc.message or reauthenticated:
                    raise
                reauthenticated, endpoint.token = True, None

    def timeout(self) -> float:
        return self.settings.timeout

    async def watch(self, key: bytes, range_end: bytes,
                    start_revision: int) -> AsyncGenerator[Any, None]:
        """etcd's WatchResponses for [key, range_end) from *start_revision*, on this loop.

        Any failure (the endpoint went away, etcd closed the stream) raises
        Unavailable, and the next attempt starts on the next endpoint: the caller (the
        watch hub) resumes from the revision after the last event it saw."""
        endpoints = self._channels()
        endpoint = endpoints[self._current % len(endpoints)]
        create = rpc_pb2.WatchCreateRequest(key=key, range_end=range_end,
                                            start_revision=start_revision)
        done = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield rpc_pb2.WatchRequest(create_request=create)
            await done.wait()  # the stream stays open until the caller stops reading

        try:
            call = rpc_pb2_grpc.WatchStub(endpoint.channel).Watch(
                requests(), metadata=await self._metadata(endpoint))
            async for response in call:
                yield response
        except grpc.RpcError as exc:
            self._current += 1
            raise map_rpc_error(exc) from exc
        finally:
            done.set()
        self._current += 1
        raise Unavailable("the etcd watch stream ended", retry_after=1.0)


__all__ = ["AioEtcd"]
