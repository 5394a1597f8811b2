"""The etcd store adapter: the only module that speaks gRPC to etcd.

It maps every gRPC / python-etcd3 error to the vaultkey tree at this one
boundary (``Unavailable``, ``Conflict``, ``ValueTooLarge``, ``StoreError``)
and validates paths before anything touches etcd::

    conn = EtcdConnection(EtcdSettings(endpoints=["http://127.0.0.1:2379"]))
    store = EtcdStore(conn, "/vaultkey/kv")
    rev = store.put("/app/db", envelope_bytes, create_only=True)
    entry = store.get("/app/db")              # Entry | None
    entries, rev = store.range("/app/")        # one round trip
    store.put("/app/db", new_bytes, if_revision=entry.mod_revision)   # CAS
    store.delete("/app/db")

A store is a *namespace view* on a shared :class:`EtcdConnection`, so the
proxy's values (``<root>/kv``) and internal state (``<root>/sys``) use one
set of gRPC channels. All methods are blocking and thread-safe; async callers
run them in a thread pool.
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
from etcd3 import transactions as tx
from etcd3.utils import prefix_range_end

from vaultkey.envelope import MAX_ENVELOPE_BYTES
from vaultkey.errors import (
    Conflict,
    InvalidPath,
    StoreError,
    Unavailable,
    UsageError,
    ValueTooLarge,
)
from vaultkey.paths import validate_key, validate_prefix

log = logging.getLogger(__name__)
T = TypeVar("T")

_UNAVAILABLE_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}
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


@dataclass(frozen=True)
class Entry:
    """One stored value and its etcd metadata."""

    path: str
    value: bytes = field(repr=False)
    mod_revision: int
    create_revision: int
    version: int


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
        code = exc.code() if hasattr(exc, "code") else None
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        if code in _UNAVAILABLE_CODES:
            raise Unavailable("etcd is unavailable", retry_after=1.0,
                              retryable=code == grpc.StatusCode.UNAVAILABLE) from exc
        if "required revision has been compacted" in str(detail):
            # A listing read at a revision that etcd compacted meanwhile: retrying is safe.
            raise Unavailable("etcd compacted the revision being read; retry",
                              retry_after=1.0) from exc
        if "space exceeded" in str(detail):
            raise StoreError("etcd is out of space (NOSPACE alarm): compact, defragment and "
                             "disarm the alarm") from exc
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED or "too large" in str(detail):
            raise ValueTooLarge(f"etcd refused the request as too large: {detail}") from exc
        raise StoreError(f"etcd error {code}: {detail}") from exc
    except etcd3.exceptions.Etcd3Exception as exc:
        raise StoreError(f"etcd error: {type(exc).__name__}") from exc
    except OSError as exc:
        raise StoreError(f"cannot set up the etcd connection: {exc}") from exc
    except (ValueError, TypeError) as exc:  # e.g. protobuf range checks
        raise StoreError(f"invalid etcd request: {exc}") from exc


def _entry(kv: Any, path: str) -> Entry:
    return Entry(path=path, value=kv.value, mod_revision=kv.mod_revision,
                 create_revision=kv.create_revision, version=kv.version)


@dataclass(frozen=True)
class KeyPage:
    """One page of a keys-only listing, read at ``revision``.

    ``paths`` holds every key of the page in key order; a key that is not
    valid UTF-8 or breaks the path rules (it was not written by vaultkey) is
    ``None`` there, so callers can tell that something lies between two keys.
    ``after`` is where the next page starts, or None on the last page.
    """

    paths: list[str | None]
    revision: int
    after: bytes | None


class StoreCounters:
    """What the store read from etcd (exposed as metrics; tests count with them)."""

    def __init__(self) -> None:
        self.values_fetched = 0
        self.keys_listed = 0
        self.invalid_keys = 0
        self._logged: set[bytes] = set()

    def invalid(self, raw: bytes, namespace: str) -> None:
        self.invalid_keys += 1
        if raw not in self._logged and len(self._logged) < 1000:  # log each key once
            self._logged.add(raw)
            # Why escaped: the bytes came from whoever wrote to etcd, not from vaultkey.
            log.warning("ignoring etcd key %s%r: not a valid vaultkey path (not written by "
                        "vaultkey?); it is left out of every listing", namespace, raw)


class EtcdStore:
    """Key/value operations on one namespace (an etcd key prefix) of a connection."""

    def __init__(self, conn: EtcdConnection, namespace: str) -> None:
        if not namespace.startswith("/") or namespace.endswith("/"):
            raise UsageError(f"namespace {namespace!r} must start and not end with '/'")
        self.conn = conn
        self.namespace = namespace
        self._ns = namespace.encode("utf-8")
        self.counters = StoreCounters()

    def _key(self, path: str) -> bytes:
        return self._ns + validate_key(path).encode("utf-8")

    def _path(self, raw_key: bytes) -> str | None:
        """The vaultkey path of an etcd key, or None (counted, logged) if it is not one."""
        raw = raw_key[len(self._ns):]
        try:
            return validate_key(raw.decode("utf-8"))
        except (UnicodeDecodeError, InvalidPath):
            self.counters.invalid(raw, self.namespace)
            return None

    def _entries(self, kvs: Any) -> list[Entry]:
        entries = [_entry(kv, path) for kv in kvs if (path := self._path(kv.key)) is not None]
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
        """All entries under *prefix* in key order, read at one revision (for small,
        internal prefixes such as the token records; listings use :meth:`list_keys`)."""
        start = self._ns + validate_prefix(prefix).encode("utf-8")
        resp = self.conn.call(lambda c: c.get_range_response(
            start, prefix_range_end(start), sort_order="ascend"))
        return self._entries(resp.kvs), int(resp.header.revision)

    def list_keys(self, target: str, *, exact: bool = False, revision: int | None = None,
                  after: bytes | None = None, limit: int = 1000) -> KeyPage:
        """One page of the keys (no values) under the prefix *target*, or the key itself
        with ``exact``, at *revision* (None: the latest), starting after *after*."""
        if exact:
            start = self._key(target)
            end = start + b"\0"
        else:
            start = self._ns + validate_prefix(target).encode("utf-8")
            end = prefix_range_end(start)
        if after is not None:
            start = self._ns + after + b"\0"
        resp = self.conn.call(lambda c: c.get_range_response(
            start, end, sort_order="ascend", keys_only=True, limit=limit,
            revision=revision or 0))
        paths = [self._path(kv.key) for kv in resp.kvs]
        self.counters.keys_listed += len(paths)
        more = bool(resp.more) and bool(resp.kvs)
        return KeyPage(paths, int(resp.header.revision) if revision is None else revision,
                       resp.kvs[-1].key[len(self._ns):] if more else None)

    def load_run(self, first: str, last: str, count: int, revision: int) -> list[Entry]:
        """The values of the *count* consecutive keys from *first* to *last* (inclusive)
        at *revision*. Callers pass only runs of keys they listed at that revision, so
        no other key lies between them."""
        start, end = self._key(first), self._key(last) + b"\0"
        resp = self.conn.call(lambda c: c.get_range_response(
            start, end, sort_order="ascend", limit=count, revision=revision))
        return self._entries(resp.kvs)

    def put(
        self,
        path: str,
        value: bytes,
        *,
        if_revision: int | None = None,
        create_only: bool = False,
        lease: int | None = None,
    ) -> int:
        """Store *value*; returns the new revision. Raises Conflict if a condition fails.

        ``if_revision=N`` succeeds only if the key's mod revision is N (0 means
        "does not exist"); ``create_only`` only if the key does not exist.
        """
        key = self._key(path)
        if len(value) > MAX_ENVELOPE_BYTES:
            raise ValueTooLarge(
                f"value is {len(value)} bytes; the maximum is {MAX_ENVELOPE_BYTES} bytes"
            )
        compare = []
        if create_only:
            compare.append(tx.Create(key) == 0)
        if if_revision is not None:
            compare.append(tx.Mod(key) == int(if_revision))
        op = tx.Put(key, value, lease=lease)
        ok, responses = self.conn.call(lambda c: c.transaction(compare, [op], []),
                                       idempotent=False)
        if not ok:
            raise Conflict(self._conflict_message(path, if_revision, create_only))
        return int(responses[0].response_put.header.revision)

    def delete(self, path: str, *, if_revision: int | None = None) -> bool:
        """Delete *path*; returns whether it existed. Raises Conflict if the CAS fails."""
        key = self._key(path)
        compare = [] if if_revision is None else [tx.Mod(key) == int(if_revision)]
        ok, responses = self.conn.call(lambda c: c.transaction(compare, [tx.Delete(key)], []),
                                       idempotent=False)
        if not ok:
            raise Conflict(self._conflict_message(path, if_revision, False))
        return int(responses[0].response_delete_range.deleted) > 0

    def ping(self) -> int:
        """Raise Unavailable unless etcd answers; returns the current revision."""
        resp = self.conn.call(lambda c: c.get_response(self._ns + b"/"))
        return int(resp.header.revision)

    @staticmethod
    def _conflict_message(path: str, if_revision: int | None, create_only: bool) -> str:
        if create_only and if_revision is None:
            return f"{path} already exists (create-only write refused)"
        return (f"{path} is no longer at revision {if_revision} (changed or deleted since); "
                "compare-and-swap refused")


__all__ = ["Entry", "EtcdConnection", "EtcdSettings", "EtcdStore", "KeyPage", "StoreCounters",
           "parse_endpoint"]
