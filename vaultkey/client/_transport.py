"""The SDK's one HTTP boundary: everything between an operation's Request and its Response.

* the connection: TLS context, token header and address rules (:func:`connection_kwargs`),
  over httpx, or over :mod:`http.client` for the CLI (:mod:`vaultkey.client._lite`);
* the retry plan of each request (:class:`Attempts`), and which of several proxy
  addresses each attempt goes to (:mod:`vaultkey.client._failover`);
* status checks, and the mapping of transport errors and of JSON error bodies to
  the vaultkey exception tree (:func:`error_from_response`), raised ``from`` the cause;
* streamed answers (a watch's Server-Sent Events): ``stream(request)`` opens one and
  gives its body's chunks as they arrive, with the same checks and error mapping.

:class:`Transport` (blocking) and :class:`AsyncTransport` send a :class:`Request`
and return a :class:`Response`; the operations in :mod:`vaultkey.client._core`
never see anything else::

    >>> error_from_response(403, {"error": {"code": "permission_denied", "message": "no"}})
    PermissionDenied('no')
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vaultkey.client._failover import Failover, Round, parse_addrs
from vaultkey.errors import (
    Conflict,
    MalformedEnvelope,
    NoSpace,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    SignatureRequired,
    StoreError,
    Unauthenticated,
    Unavailable,
    UsageError,
    ValueTooLarge,
    VaultkeyError,
)

if TYPE_CHECKING:
    import ssl

    from vaultkey.client.settings import ClientSettings


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    content: bytes | None = None
    json: Any = None

    @property
    def idempotent(self) -> bool:
        return self.method == "GET"


@dataclass(frozen=True)
class Response:
    """A vaultkey proxy's answer that passed the checks: HTTP 200 and a JSON object."""

    status: int
    body: Any


# -- the connection -------------------------------------------------------------------

_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


def connection_kwargs(s: ClientSettings, addrs: Sequence[str]) -> list[dict[str, Any]]:
    """``base_url``, ``verify``, ``headers`` and ``timeout`` for httpx or LiteConnection,
    for each of *addrs* (one TLS context and one token for all)."""
    headers = {"User-Agent": "vaultkey-sdk"}
    if s.token:
        if not _TOKEN_CHARS.fullmatch(s.token):
            # Never echo it: a token with a stray newline would end up in the message.
            raise UsageError("the token contains spaces or control characters",
                             hint="check VAULTKEY_TOKEN / the token file")
        headers["Authorization"] = f"Bearer {s.token}"
    shared = {"verify": _tls_context(s), "headers": headers, "timeout": s.timeout}
    return [{"base_url": addr.rstrip("/"), **shared} for addr in addrs]


def _tls_context(s: ClientSettings) -> ssl.SSLContext:
    import ssl

    for what, path in (("CA certificate", s.cacert), ("client certificate", s.client_cert),
                       ("client key", s.client_key)):
        if path and not os.path.isfile(path):
            raise UsageError(f"{what} {path}: no such file")
    if bool(s.client_cert) != bool(s.client_key):
        raise UsageError("a client certificate and its key go together")
    if s.cacert:
        context = ssl.create_default_context(cafile=s.cacert)
    else:  # the same public CA bundle httpx uses by default
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    if s.client_cert and s.client_key:
        context.load_cert_chain(s.client_cert, s.client_key)
    return context


def env_proxies_allowed(addr: str) -> bool:
    """May requests to *addr* go through a forward proxy from HTTP(S)_PROXY / ALL_PROXY?

    Only for ``https://``: a proxy then just tunnels (CONNECT) TLS it cannot read. Why
    never for ``http://`` (loopback only, ``serve --insecure``): a forward proxy receives
    a plain-HTTP request whole, Authorization header included, so HTTP_PROXY would hand
    the token to the proxy (and whoever is on the way to it) in clear text.
    """
    return urlsplit(addr).scheme == "https"


def proxy_configured(addr: str) -> bool:
    """True if the environment names a forward proxy that requests to *addr* would take.

    The CLI then uses httpx, which honours HTTPS_PROXY / ALL_PROXY / NO_PROXY and
    tunnels TLS with CONNECT, so CLI and SDK take the same path. Always False for
    ``http://`` (see :func:`env_proxies_allowed`): LiteConnection never uses a proxy.
    """
    return env_proxies_allowed(addr) and any(
        os.environ.get(n) or os.environ.get(n.upper()) for n in ("https_proxy", "all_proxy"))


def _httpx_kwargs(kwargs: dict[str, Any], mounted: Any) -> dict[str, Any]:
    return {**kwargs, "transport": mounted, "trust_env": env_proxies_allowed(kwargs["base_url"])}


# A watch stream carries a bookmark at least every 5 s: three missed ones mean the peer is gone.
STREAM_IDLE_TIMEOUT = 15.0


def _stream_kwargs(req: Request, settings: ClientSettings) -> dict[str, Any]:
    import httpx

    return {"params": req.params, "headers": req.headers,
            "timeout": httpx.Timeout(settings.timeout,
                                     read=max(settings.timeout, STREAM_IDLE_TIMEOUT))}


class Transport:
    """Blocking: one keep-alive connection per proxy address; each request sent with its
    retry plan, to the current address (:mod:`vaultkey.client._failover`).

    *mounted* is an httpx transport given by the caller (a MockTransport, a proxy
    mount); *lite* asks for :mod:`http.client` instead of httpx where no forward proxy
    is configured (the CLI's short-lived processes, see :mod:`vaultkey.client._lite`).
    """

    def __init__(self, settings: ClientSettings, mounted: Any = None, *,
                 lite: bool = False) -> None:
        self.settings = settings
        self.failover = Failover(parse_addrs(settings.addr))
        self._kwargs = connection_kwargs(settings, self.failover.addrs)
        self.errors: tuple[type[Exception], ...]
        if lite and mounted is None and not any(map(proxy_configured, self.failover.addrs)):
            from vaultkey.client._lite import LiteConnection, LiteTransportError

            self.connections: list[Any] = [LiteConnection(**kw) for kw in self._kwargs]
            self.errors = (LiteTransportError,)
            self._streams: list[Any] | None = None
        else:
            import httpx

            self.connections = self._streams = [httpx.Client(**_httpx_kwargs(kw, mounted))
                                                for kw in self._kwargs]
            self.errors = (httpx.TransportError,)

    @property
    def http(self) -> Any:
        """The connection (pool) to the current address."""
        return self.connections[self.failover.current]

    def send(self, req: Request) -> Response:
        plan = Attempts(req, self.settings)
        for attempt in plan:
            try:
                return self._attempt(req, plan)
            except Unavailable as exc:
                time.sleep(plan.delay(attempt, exc))
        raise AssertionError("unreachable")

    def _attempt(self, req: Request, plan: Attempts) -> Response:
        attempt = Round(self.failover, req.idempotent)
        while (index := attempt.next()) is not None:
            outcome = self._try(index, req, plan)
            if (done := attempt.settle(index, outcome, plan.check)) is not None:
                return done
        raise attempt.exhausted()

    def _try(self, index: int, req: Request, plan: Attempts) -> Any:  # the answer, or the error
        try:
            return self.connections[index].request(req.method, req.url, **plan.send_kwargs)
        except self.errors as exc:
            return exc

    @contextlib.contextmanager
    def stream(self, req: Request) -> Iterator[Iterator[bytes]]:
        """A streamed GET to the current address: its body's chunks as they arrive. Never
        retried here: an error (a non-200 answer, a lost connection, 15 s of silence) is
        raised as for send(), and moves the current address to the next one."""
        import httpx

        if self._streams is None:  # the CLI's http.client cannot stream: httpx for this
            self._streams = [httpx.Client(**_httpx_kwargs(kw, None)) for kw in self._kwargs]
        index = self.failover.current
        try:
            with self._streams[index].stream(req.method, req.url,
                                             **_stream_kwargs(req, self.settings)) as raw:
                if raw.status_code != 200:
                    raw.read()
                    self.failover.answered(index, raw.status_code)
                check_stream(raw, self.failover.addrs[index])
                yield raw.iter_bytes()
        except httpx.TransportError as exc:
            raise self.failover.lost(index, exc) from exc

    def close(self) -> None:
        for http in self.connections:
            http.close()
        if self._streams is not None and self._streams is not self.connections:
            for http in self._streams:
                http.close()


class AsyncTransport:
    """asyncio: the same as :class:`Transport`, over ``httpx.AsyncClient``."""

    def __init__(self, settings: ClientSettings, mounted: Any = None) -> None:
        import httpx

        self.settings = settings
        self.failover = Failover(parse_addrs(settings.addr))
        self.connections = [httpx.AsyncClient(**_httpx_kwargs(kw, mounted))
                            for kw in connection_kwargs(settings, self.failover.addrs)]
        self.errors = (httpx.TransportError,)

    async def send(self, req: Request) -> Response:
        import asyncio

        plan = Attempts(req, self.settings)
        for attempt in plan:
            try:
                return await self._attempt(req, plan)
            except Unavailable as exc:
                await asyncio.sleep(plan.delay(attempt, exc))
        raise AssertionError("unreachable")

    async def _attempt(self, req: Request, plan: Attempts) -> Response:
        attempt = Round(self.failover, req.idempotent)
        while (index := attempt.next()) is not None:
            outcome = await self._try(index, req, plan)
            if (done := attempt.settle(index, outcome, plan.check)) is not None:
                return done
        raise attempt.exhausted()

    async def _try(self, index: int, req: Request, plan: Attempts) -> Any:
        try:
            http = self.connections[index]
            return await http.request(req.method, req.url, **plan.send_kwargs)
        except self.errors as exc:
            return exc

    @contextlib.asynccontextmanager
    async def stream(self, req: Request) -> AsyncIterator[AsyncIterator[bytes]]:
        """asyncio: the same as :meth:`Transport.stream`."""
        index = self.failover.current
        try:
            async with self.connections[index].stream(
                    req.method, req.url, **_stream_kwargs(req, self.settings)) as raw:
                if raw.status_code != 200:
                    await raw.aread()
                    self.failover.answered(index, raw.status_code)
                check_stream(raw, self.failover.addrs[index])
                yield raw.aiter_bytes()
        except self.errors as exc:
            raise self.failover.lost(index, exc) from exc

    async def aclose(self) -> None:
        for http in self.connections:
            await http.aclose()


# -- retries and answers ----------------------------------------------------------------

class Attempts:
    """The retry plan of one request: reads are retried on 503 and connection errors
    with jittered exponential backoff (honouring Retry-After up to 2 s); writes never
    are, since a write that timed out may still have been applied. Each attempt goes to
    the current proxy address (:class:`~vaultkey.client._failover.Round`)."""

    def __init__(self, req: Request, settings: ClientSettings) -> None:
        self.total = settings.retries + 1 if req.idempotent else 1
        self.send_kwargs = {"params": req.params, "headers": req.headers,
                            "content": req.content, "json": req.json}

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.total))

    @staticmethod
    def check(raw: Any, addr: str) -> Response:
        """*raw* (an httpx or lite response from *addr*) as a Response, or its error raised."""
        body = _json_body(raw)
        if raw.status_code >= 400:
            raise _http_error(raw, body, addr)
        if raw.status_code != 200 or not isinstance(body, dict):
            raise _not_a_proxy(raw, addr)
        return Response(raw.status_code, body)

    def delay(self, attempt: int, error: Unavailable) -> float:
        """Seconds to wait before the next attempt; re-raises *error* after the last."""
        if attempt + 1 >= self.total or not error.retryable:
            raise error
        return max(backoff(attempt, 2.0), min(error.retry_after or 0.0, 2.0))


def backoff(failures: int, cap: float) -> float:
    """Seconds to wait after *failures* failures in a row: 0.1 s doubling up to *cap*,
    times a random 0.5 to 1.5 (so that clients cut off together do not return together)."""
    return min(cap, 0.1 * 2.0 ** min(failures, 32)) * (0.5 + random.random())  # noqa: S311


def check_stream(raw: Any, addr: str) -> None:
    """Raise the error of a streamed answer that is not ``200 text/event-stream`` (its
    body read already if it is not 200)."""
    if raw.status_code >= 400:
        raise _http_error(raw, _json_body(raw), addr)
    if raw.status_code != 200 or not raw.headers.get("content-type", "").startswith(
            "text/event-stream"):
        raise _not_a_proxy(raw, addr)


def _json_body(raw: Any) -> Any:
    try:
        return raw.json()
    except ValueError:
        return None


def _http_error(raw: Any, body: Any, addr: str) -> VaultkeyError:
    error = error_from_response(raw.status_code, body, addr)
    retry_after = raw.headers.get("retry-after", "")
    if isinstance(error, Unavailable) and retry_after.isdigit():
        error.retry_after = float(retry_after)
    return error


def _not_a_proxy(raw: Any, addr: str) -> ProtocolError:
    return ProtocolError(
        f"{addr} did not answer like a vaultkey proxy (HTTP {raw.status_code}, "
        f"{raw.headers.get('content-type', 'no content type')})",
        hint="check --addr / VAULTKEY_ADDR")


# The errors a proxy answers with, each found by the http_status and code it declares.
_WIRE: tuple[type[VaultkeyError], ...] = (
    Unauthenticated, PermissionDenied, NotFound, Conflict, ValueTooLarge, MalformedEnvelope,
    SignatureRequired, UsageError, RequestTimeout, StoreError, Unavailable, RateLimited,
    NoSpace, OutcomeUnknown,
)
_UNAUTHENTICATED_HINT = ("check VAULTKEY_TOKEN / --token-file; group tokens come from "
                         "`vaultkey token create`")


def error_from_response(status: int, body: Any, addr: str = "the proxy") -> VaultkeyError:
    """Map an error response to the vaultkey exception tree."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        # Not a vaultkey error body: a gateway, a load balancer, or the wrong address.
        if status in (502, 503, 504):
            return Unavailable(f"HTTP {status} from {addr}, not from a vaultkey proxy",
                               hint="a gateway in front of the proxy could not reach it")
        return ProtocolError(f"{addr} answered HTTP {status}, which is not a vaultkey answer",
                             hint="check --addr / VAULTKEY_ADDR")
    message = str(error.get("message") or f"HTTP {status}")
    hint = error.get("hint")
    by_status = [cls for cls in _WIRE if cls.http_status == status]
    if not by_status:
        return ProtocolError(f"unexpected HTTP {status} from {addr}: {message}")
    exact = [cls for cls in by_status if cls.code == error.get("code")]
    cls = (exact or by_status)[-1]
    if cls is Unauthenticated:
        hint = _UNAUTHENTICATED_HINT
    return cls(message, hint=hint if isinstance(hint, str) else None)
