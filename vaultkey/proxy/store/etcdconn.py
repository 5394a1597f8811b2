"""The connection to etcd: settings, endpoint failover and the gRPC error boundary.

Every gRPC / python-etcd3 error is mapped to the vaultkey tree here, at one
boundary (``Unavailable``, ``Conflict``, ``ValueTooLarge``, ``StoreError``)::

    conn = EtcdConnection(EtcdSettings(endpoints=["https://etcd1:2379", "https://etcd2:2379"],
                                       ca_cert="ca.pem"))
    revision = conn.call(lambda client: client.get_response(b"/x")).header.revision

Stores (:mod:`vaultkey.proxy.store.etcd`) are namespace views that share one
connection, so values and internal state use one set of gRPC channels.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import etcd3
import etcd3.exceptions
import grpc

from vaultkey.errors import (
    NoSpace,
    StoreError,
    Unavailable,
    UsageError,
    ValueTooLarge,
)
from vaultkey.proxy.store.base import RevisionCompacted

log = logging.getLogger(__name__)
T = TypeVar("T")

_UNAVAILABLE_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}
# etcd's answer to a request with ``hasleader`` metadata on a member that lost its leader
# (partitioned, or quorum lost): refused before anything was proposed.
_NO_LEADER = "no leader"
# gRPC's words for a call that failed before it was sent (no connection to the endpoint).
_NOT_SENT = ("failed to connect", "Connection refused", "connection refused",
             "Failed to connect", "DNS resolution failed", "No route to host",
             "empty address list")
# Sent with every request: a member without a leader answers "no leader" at once instead
# of serving a possibly stale read, queueing a proposal it cannot commit, or keeping a
# watch open that will never see another change (clientv3's WithRequireLeader).
REQUIRE_LEADER = (("hasleader", "true"),)
_UNAVAILABLE_ERRORS = (
    etcd3.exceptions.ConnectionFailedError,
    etcd3.exceptions.ConnectionTimeoutError,
    etcd3.exceptions.NoServerAvailableError,
)


@dataclass(frozen=True)
class EtcdSettings:
    """How to reach etcd: endpoints (failover in order), TLS and user/password."""

    endpoints: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 5.0
    # After a failure, an endpoint is skipped for this long before it is retried.
    retry_endpoint_after: float = 1.0


# Why: gRPC's default reconnect backoff grows to 120 s, so a proxy would stay
# unavailable long after etcd came back. Cap it at 2 s.
_GRPC_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def parse_endpoint(url: str) -> tuple[str, int, bool]:
    """``http(s)://host:port`` or ``host:port`` -> (host, port, tls)."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"bad etcd endpoint {url!r}: use http(s)://HOST:PORT")
    if parts.username or parts.password:
        # Why: credentials in a URL end up in logs; they have their own settings.
        raise UsageError("put no credentials in an etcd endpoint URL",
                         hint="use --etcd-user and --etcd-password-file")
    try:
        port = parts.port or 2379
    except ValueError:
        raise UsageError(f"bad etcd endpoint {url!r}: invalid port") from None
    return parts.hostname, port, parts.scheme == "https"


class EtcdConnection:
    """A lazily (re)connected python-etcd3 client with failover across endpoints."""

    def __init__(self, settings: EtcdSettings) -> None:
        if not settings.endpoints:
            raise UsageError("at least one etcd endpoint is needed")
        self.settings = settings
        self._endpoints = [parse_endpoint(u) for u in settings.endpoints]
        if (settings.user or settings.password) and not all(tls for *_, tls in self._endpoints):
            # Why: the password and etcd's auth token would cross the network in clear text
            # (and gRPC refuses call credentials on plain channels anyway).
            raise UsageError("etcd user/password needs https:// endpoints",
                             hint="serve etcd with TLS and pass --etcd-cacert")
        if bool(settings.user) != bool(settings.password):
            raise UsageError("etcd user and password go together")
        self._lock = threading.Lock()
        self._client: Any = None

    @property
    def endpoints(self) -> list[tuple[str, int, bool]]:
        """(host, port, tls) of each endpoint, in failover order."""
        return list(self._endpoints)

    def credentials(self) -> grpc.ChannelCredentials:
        return self._credentials()

    def _credentials(self) -> grpc.ChannelCredentials:
        s = self.settings

        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as fh:
                return fh.read()

        return grpc.ssl_channel_credentials(
            read(s.ca_cert), read(s.client_key), read(s.client_cert)
        )

    def _connect(self) -> Any:
        s = self.settings
        endpoints = [
            etcd3.Endpoint(
                host, port, secure=tls, creds=self._credentials() if tls else None,
                time_retry=s.retry_endpoint_after, opts=_GRPC_OPTIONS,
            )
            for host, port, tls in self._endpoints
        ]
        return etcd3.MultiEndpointEtcd3Client(
            endpoints=endpoints, timeout=s.timeout, user=s.user, password=s.password,
            failover=True,
        )

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _mapped(self._connect)
            return self._client

    def reset(self) -> None:
        """Drop the client (e.g. after an expired etcd auth token); the next call reconnects."""
        with self._lock:
            old, self._client = self._client, None
        if old is not None:
            old.close()

    def call(self, fn: Callable[[Any], T], *, idempotent: bool = True) -> T:
        """Run *fn(client)*, mapping errors.

        With several endpoints, a failed endpoint is skipped and the call is
        retried on the next one (at most once per endpoint). Writes are retried
        only when the request cannot have reached etcd (connection refused), never
        after a timeout, when it may have been applied. An expired etcd auth
        token is renewed by reconnecting once.
        """
        attempts = len(self._endpoints)
        reauthenticated = False
        while True:
            try:
                return _mapped(lambda: fn(self.client()))
            except Unavailable as exc:
                attempts -= 1
                if attempts <= 0 or not (idempotent or exc.retryable):
                    raise
                log.warning("etcd endpoint %s failed (%s); trying the next one",
                            self._current_endpoint(), exc.__cause__ or exc.message)
            except StoreError as exc:
                if "auth token" not in exc.message or reauthenticated:
                    raise
                reauthenticated = True
                self.reset()

    def _current_endpoint(self) -> str:
        client = self._client
        return str(getattr(client, "_current_endpoint_label", "?")) if client else "?"

    def close(self) -> None:
        self.reset()


def _mapped(fn: Callable[[], T]) -> T:
    """The gRPC -> vaultkey error boundary."""
    try:
        return fn()
    except etcd3.exceptions.ConnectionTimeoutError as exc:
        # The request may have been applied: callers must not blindly retry a write.
        raise Unavailable("etcd did not answer in time", retry_after=1.0,
                          retryable=False) from exc
    except _UNAVAILABLE_ERRORS as exc:
        raise Unavailable("etcd is unavailable", retry_after=1.0) from exc
    except grpc.RpcError as exc:
        raise map_rpc_error(exc) from exc
    except etcd3.exceptions.Etcd3Exception as exc:
        raise StoreError(f"etcd error: {type(exc).__name__}") from exc
    except OSError as exc:
        raise StoreError(f"cannot set up the etcd connection: {exc}") from exc
    except (ValueError, TypeError) as exc:  # e.g. protobuf range checks
        raise StoreError(f"invalid etcd request: {exc}") from exc




def map_rpc_error(exc: grpc.RpcError) -> StoreError | Unavailable | ValueTooLarge:
    """A gRPC error (blocking or ``grpc.aio``) as a vaultkey error; raise it ``from exc``."""
    code = exc.code() if hasattr(exc, "code") else None
    detail = str(exc.details() if hasattr(exc, "details") else exc)
    if code in _UNAVAILABLE_CODES:
        if _NO_LEADER in detail:
            return Unavailable("etcd has no leader (the member this proxy reached cannot see "
                               "a quorum): nothing was applied", retry_after=1.0)
        # retryable means "surely not applied": only a request that never left (no
        # connection) may go to the next endpoint. Anything else (a reset, a timeout,
        # "request timed out", "leader changed") may have been applied.
        return Unavailable("etcd is unavailable", retry_after=1.0,
                           retryable=code == grpc.StatusCode.UNAVAILABLE
                           and any(s in detail for s in _NOT_SENT))
    if "required revision has been compacted" in detail:
        # A listing read at a revision that etcd compacted meanwhile: retrying is safe.
        return RevisionCompacted()
    if "space exceeded" in detail:
        # Why its own answer (507, with the reason): the client can do nothing about it, and
        # retrying will not help until an operator acts (docs/OPERATIONS.md runbook).
        return NoSpace("etcd is out of space (NOSPACE alarm): writes are refused until an "
                       "operator compacts, defragments and disarms the alarm; reads still work",
                       retryable=False)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED or "too large" in detail:
        return ValueTooLarge(f"etcd refused the request as too large: {detail}")
    return StoreError(f"etcd error {code}: {detail}")


__all__ = ["REQUIRE_LEADER", "EtcdConnection", "EtcdSettings", "map_rpc_error",
           "parse_endpoint"]
