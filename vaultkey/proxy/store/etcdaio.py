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
restart) gets new channels. Watches and leases stay on the blocking client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

from vaultkey.errors import StoreError, Unavailable
from vaultkey.proxy.store.etcdconn import _GRPC_OPTIONS, EtcdConnection, map_rpc_error

log = logging.getLogger(__name__)
T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...] | None


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
            return None
        if endpoint.token is None:
            request = rpc_pb2.AuthenticateRequest(name=self.settings.user,
                                                  password=self.settings.password or "")
            response = await endpoint.auth.Authenticate(request, timeout=self.settings.timeout)
            endpoint.token = str(response.token)
        return (("token", endpoint.token),)

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
                attempts -= 1
                if attempts <= 0 or not (idempotent or exc.retryable):
                    raise
                log.warning("etcd endpoint %s failed (%s); trying the next one",
                            endpoint.label, exc.__cause__ or exc.message)
                self._current += 1
            except StoreError as exc:
                if "auth token" not in exc.message or reauthenticated:
                    raise
                reauthenticated, endpoint.token = True, None

    def timeout(self) -> float:
        return self.settings.timeout


__all__ = ["AioEtcd"]
