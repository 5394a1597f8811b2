"""Several proxy addresses: one sticky *current* address, and failover that never lies.

``addr`` may name several stateless proxy replicas, comma-separated
(``VAULTKEY_ADDR=https://10.0.0.1:8443,https://10.0.0.2:8443``, ``--addr``, a profile's
``addr``), or be a list given to ``Client(addr=[...])``. Each address is checked with the
rules of a single one (:func:`check_addr`: TLS except to loopback); an empty item or the
same address twice is a UsageError. The same token, CA and client certificate go to all.

The rules (:class:`Round` applies them to each attempt of a request):

* One address is *current*: requests go there. When it fails, the next one in the list
  (round robin) becomes current and stays so until it fails in turn.
* A request that surely never reached a proxy (connection refused, connect timeout,
  unknown host, network unreachable, a TLS handshake cut short) goes to the next address
  at once, a read or a write alike; each address is tried at most once per attempt, and
  the error when none could be reached names every address tried.
* A certificate that does not verify is never routed around: raised, not retried.
* A read (``GET``) whose connection failed after it was sent, or that was answered 503
  (or a gateway's 502/504), moves the current address: the next attempt of its retry
  plan (:class:`vaultkey.client._transport.Attempts`) goes to the next address.
* A write (``PUT``, ``POST``, ``DELETE``) whose connection failed after it may have been
  sent (the answer never came: reset, timeout, closed) raises
  :class:`~vaultkey.errors.OutcomeUnknown` naming the address: it may or may not have
  been applied, so it is never sent again. Why: a write resent to another replica may
  be applied twice, or undo a newer one. A proxy's error answer to a write is raised as
  it is (a 503 moves the current address for the next request, nothing more).
* A watch stream that cannot be opened, or is lost, moves the current address, so the
  watch's reconnection resumes (from its last revision) on the next replica.

With one address, requests behave as before, except that a write whose answer was lost
raises OutcomeUnknown (an Unavailable, as before, but that says what is known)::

    >>> failover = Failover(parse_addrs("https://10.0.0.1:8443, https://10.0.0.2:8443"))
    >>> failover.addrs
    ('https://10.0.0.1:8443', 'https://10.0.0.2:8443')
    >>> failover.failed(0, "connection refused")
    >>> failover.failed(0, "connection refused")  # another request saw it too: no change
    >>> failover.addrs[failover.current]
    'https://10.0.0.2:8443'
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from vaultkey._net import is_loopback
from vaultkey.errors import OutcomeUnknown, Unavailable, UsageError

# What a transport error says about the request it cut short:
# "connect": the connection was never made, nothing was sent: the next address is safe;
# "local": refused here before anything was sent (a bad header, a full pool);
# "sent": the request may have reached a proxy, which may have acted on it.
Sent = Literal["connect", "local", "sent"]
T = TypeVar("T")

_HINT = "check --addr / VAULTKEY_ADDR and that the proxy is running"
_TLS_HINT = ("check --cacert / VAULTKEY_CACERT (the CA that signed the proxy's certificate) "
             "and that the certificate has not expired")
_GATEWAY_OR_UNAVAILABLE = (502, 503, 504)


def check_addr(addr: str) -> None:
    """TLS everywhere except loopback: a token must not cross a network in clear text."""
    try:
        parts = urlsplit(addr)
        scheme, host, _port = parts.scheme, parts.hostname, parts.port  # a bad port raises
    except ValueError:
        scheme, host = "", None
    if not host or scheme not in ("https", "http"):
        raise UsageError(f"bad proxy address {addr!r}: use https://HOST:PORT")
    if scheme == "http" and not is_loopback(host):
        raise UsageError(f"refusing to send a token over plain HTTP to {host}",
                         hint="use an https:// address")


def join_addrs(addr: str | Sequence[str]) -> str:
    """*addr* as the one string of the ``addr`` setting (a list joined with commas)."""
    return addr if isinstance(addr, str) else ",".join(addr)


def addrs_key(addr: str | Sequence[str]) -> str:
    """The address list as one normalised string (spaces around items dropped): what the
    rollback marks file keys its tables by. A single address is kept as it is."""
    text = join_addrs(addr)
    return ",".join(item.strip() for item in text.split(",")) if "," in text else text


def parse_addrs(addr: str | Sequence[str]) -> tuple[str, ...]:
    """The addresses *addr* names, each checked; empty items and duplicates refused."""
    items = [item.strip() for item in join_addrs(addr).split(",")]
    if len(items) == 1:
        check_addr(items[0])
        return (items[0],)
    if not all(items):
        raise UsageError(f"empty item in the proxy address list {join_addrs(addr)!r}",
                         hint="separate addresses with single commas: https://A:8443,"
                         "https://B:8443")
    seen: set[tuple[str, str, str]] = set()
    for item in items:
        check_addr(item)
        parts = urlsplit(item)  # scheme and host in any case, a trailing slash or not: same
        same = (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"))
        if same in seen:
            raise UsageError(f"proxy address {item} is given twice",
                             hint="name each proxy replica once")
        seen.add(same)
    return tuple(items)


def sent_state(exc: Exception) -> Sent:
    """How far the request that *exc* (an httpx or LiteConnection transport error) cut
    short got. Unknown kinds count as "sent": a write is then never sent again."""
    from vaultkey.client._lite import LiteConnectError, LiteRequestError, LiteTransportError

    if isinstance(exc, LiteTransportError):
        if isinstance(exc, LiteConnectError):
            return "connect"
        return "local" if isinstance(exc, LiteRequestError) else "sent"
    import httpx

    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError):
        return "connect"
    if isinstance(exc, httpx.PoolTimeout | httpx.LocalProtocolError | httpx.UnsupportedProtocol):
        return "local"
    return "sent"


def _detail(exc: Exception) -> str:
    # A local protocol error quotes the offending header, which may hold the token.
    name = type(exc).__name__
    return name if name == "LocalProtocolError" else (str(exc) or name)


def tls_failed(exc: Exception) -> bool:
    detail = _detail(exc)
    return "CERTIFICATE_VERIFY_FAILED" in detail or "certificate verify failed" in detail


def unreachable(tried: Sequence[tuple[str, Exception]]) -> Unavailable:
    """The error of a request no address of *tried* (address, error) answered."""
    addr, exc = tried[-1]
    if tls_failed(exc):
        # Retrying will not help: the proxy's certificate is not signed by the CA we trust.
        return Unavailable(f"TLS verification of {addr} failed: {_detail(exc)}",
                           retryable=False, hint=_TLS_HINT)
    if len(tried) == 1:
        return Unavailable(f"cannot reach the vaultkey proxy at {addr}: {_detail(exc)}",
                           hint=_HINT)
    each = "; ".join(f"{a}: {_detail(e)}" for a, e in tried)
    return Unavailable(f"cannot reach the vaultkey proxy at any of {len(tried)} addresses "
                       f"({each})", hint=_HINT)


class Failover:
    """The addresses of one client, and which is current (shared by its threads)."""

    def __init__(self, addrs: tuple[str, ...]) -> None:
        self.addrs = addrs
        self._current = 0
        self._lock = threading.Lock()

    @property
    def current(self) -> int:
        return self._current

    def order(self) -> list[int]:
        """Every address once, the current one first, then round robin."""
        start, n = self._current, len(self.addrs)
        return [(start + i) % n for i in range(n)]

    def failed(self, index: int, why: str) -> None:
        """Address *index* failed: the next one becomes current, unless another request
        moved on already (two failures seen together move it once, not twice)."""
        with self._lock:
            if len(self.addrs) == 1 or self._current != index:
                return
            self._current = (index + 1) % len(self.addrs)
        import logging

        logging.getLogger(__name__).warning(
            "vaultkey: proxy %s failed (%s); using %s from now on", self.addrs[index], why,
            self.addrs[self._current])

    def answered(self, index: int, status: int) -> None:
        """An answer from address *index*: a 503 (or a gateway's 502/504) moves on."""
        if status in _GATEWAY_OR_UNAVAILABLE:
            self.failed(index, f"HTTP {status}")

    def lost(self, index: int, exc: Exception) -> Unavailable:
        """A stream from address *index* could not be opened or was lost: the error to
        raise; the next address becomes current unless the cause is local or TLS."""
        if sent_state(exc) != "local" and not tls_failed(exc):
            self.failed(index, _detail(exc))
        return unreachable([(self.addrs[index], exc)])


class Round:
    """One attempt of one request over the addresses, by the rules of the module doc. The
    transports do the I/O (blocking or asyncio); this decides, sans-I/O::

        attempt = Round(failover, req.idempotent)
        while (index := attempt.next()) is not None:
            outcome = send(index)              # the raw answer, or the transport error
            if (done := attempt.settle(index, outcome, check)) is not None:
                return done                    # check(raw, addr): the Response, or raises
        raise attempt.exhausted()
    """

    def __init__(self, failover: Failover, idempotent: bool) -> None:
        self._failover = failover
        self._idempotent = idempotent
        self._tried: list[tuple[str, Exception]] = []
        self._order = iter(failover.order())

    def next(self) -> int | None:
        """The index of the next address to try, or None when every one was tried."""
        return next(self._order, None)

    def settle(self, index: int, outcome: Any, check: Callable[[Any, str], T]) -> T | None:
        """*outcome* of the request to address *index*: a raw answer (checked: returned or
        raised), or a transport error (None: try the next address; else raised)."""
        if isinstance(outcome, Exception):
            self.lost(index, outcome)
            return None
        self._failover.answered(index, outcome.status_code)
        return check(outcome, self._failover.addrs[index])

    def lost(self, index: int, exc: Exception) -> None:
        """The request to address *index* failed with the transport error *exc*: return
        to try the next address, else raise what the caller gets."""
        addr = self._failover.addrs[index]
        state = sent_state(exc)
        if state == "local" or tls_failed(exc):
            raise unreachable([(addr, exc)]) from exc
        self._failover.failed(index, _detail(exc))
        if state == "connect":
            self._tried.append((addr, exc))
            return
        if not self._idempotent:
            raise OutcomeUnknown(
                f"the connection to the vaultkey proxy at {addr} failed after the write "
                f"was sent ({_detail(exc)}): it may or may not have been applied") from exc
        raise unreachable([*self._tried, (addr, exc)]) from exc

    def exhausted(self) -> Unavailable:
        """The error when no address could be connected to."""
        return unreachable(self._tried)
