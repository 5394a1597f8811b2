"""The HTTP/1.1 connection layer: uvicorn's httptools protocol with hard limits.

uvicorn's fast parser (httptools) has no cap on the request head and no
timeout for a connection that never finishes one, so without this layer one
client without a token can stall the event loop (a 100 MB header) or hold
file descriptors forever (idle or byte-at-a-time connections). This module
keeps httptools and adds, per connection:

* a cap on the request head (URL + headers): counted on the raw bytes *before*
  they reach the parser, so the cost of a huge head is bounded by the cap;
* a deadline for a complete request head, from the moment the connection is
  ready (after TLS) or the next request's first byte;
* a bound on concurrent connections: past it, the oldest connection that is
  not serving a request is closed to make room, and only when every
  connection is busy does a new one get a fast ``503`` with ``Retry-After``;
* JSON error bodies (API.md) for the errors this layer itself produces.

Use it through :func:`guarded_protocol`, which binds the limits::

    cls = guarded_protocol(ConnectionLimits(max_connections=1000), counters)
    uvicorn.Config(app, http=cls, ...)
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-process connection limits (see docs/OPERATIONS.md, "Connection limits")."""

    max_header_bytes: int = 64 * 1024
    max_headers: int = 256
    head_timeout: float = 10.0  # complete request head, from connect or the first byte
    idle_timeout: float = 5.0  # keep-alive connection with no request
    body_timeout: float = 30.0  # whole request body, once the head is in
    handshake_timeout: float = 10.0  # TLS handshake
    max_connections: int = 1000


class Counters:
    """Event counts the metrics module exposes (plain ints: no lock needed on one loop)."""

    def __init__(self) -> None:
        self.heads_too_large = 0
        self.head_timeouts = 0
        self.evicted = 0
        self.refused = 0
        self.bad_requests = 0


def error_bytes(status: int, code: str, message: str, *,
                extra_headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete ``Connection: close`` HTTP response with the API's JSON error body."""
    body = json.dumps({"error": {"code": code, "message": message, "hint": None}}).encode()
    head = [STATUS_LINE[status].decode("latin-1"),
            "content-type: application/json\r\n",
            f"content-length: {len(body)}\r\n",
            "connection: close\r\n"]
    head += [f"{name}: {value}\r\n" for name, value in extra_headers]
    return "".join(head).encode("latin-1") + b"\r\n" + body


class _Idle:
    """Connections not serving a request, oldest first: the ones closed to make room."""

    def __init__(self) -> None:
        self.order: OrderedDict[GuardedProtocol, None] = OrderedDict()

    def add(self, conn: GuardedProtocol) -> None:
        self.order[conn] = None
        self.order.move_to_end(conn)

    def discard(self, conn: GuardedProtocol) -> None:
        self.order.pop(conn, None)

    def pop_oldest(self, exclude: GuardedProtocol) -> GuardedProtocol | None:
        for conn in self.order:
            if conn is not exclude:
                del self.order[conn]
                return conn
        return None


class _HeapTrimmer:
    """Give freed heap back to the OS after many connections have closed.

    Why: each TLS connection allocates tens of KB in OpenSSL and the event loop.
    glibc keeps freed memory in its arenas, so after a flood of connections the
    RSS stays at its peak (measured: +15 MB per 500 connections, growing with
    each flood under uvloop). ``malloc_trim`` returns it; it runs in a thread,
    at most once a second, and only after at least ``drop`` (32) connections closed.
    """

    drop = 32

    def __init__(self) -> None:
        self.peak = 0
        self.pending = False
        self._trim = _malloc_trim()

    def opened(self, count: int) -> None:
        self.peak = max(self.peak, count)

    def closed(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        if self._trim is None or self.pending or self.peak - count < self.drop:
            return
        self.pending = True
        loop.call_later(1.0, self._run, loop)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pending = False
        self.peak = 0
        if self._trim is not None:
            threading.Thread(target=self._trim, args=(0,), name="vaultkey-trim",
                             daemon=True).start()


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None
    return trim


class GuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with head cap, head deadline and connection bound."""

    limits: ConnectionLimits = ConnectionLimits()
    counters: Counters = Counters()
    idle: _Idle = _Idle()
    trimmer: _HeapTrimmer = _HeapTrimmer()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    # -- connection lifecycle -------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.trimmer.opened(len(self.connections))
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            # Why: every connection is busy with a request; a fast, explicit refusal lets
            # a client (or load balancer) retry elsewhere instead of hanging.
            self.counters.refused += 1
            self._refuse(503, "unavailable", "the proxy is at its connection limit; retry shortly",
                         extra_headers=(("retry-after", "1"),))
            return
        self.idle.add(self)
        self._arm_head_timer()

    def _make_room(self) -> bool:
        victim = self.idle.pop_oldest(exclude=self)
        if victim is None:
            return False
        self.counters.evicted += 1
        victim._cancel_head_timer()
        victim.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.idle.discard(self)
        self._cancel_head_timer()
        super().connection_lost(exc)
        self.trimmer.closed(len(self.connections), self.loop)

    # -- bytes in ------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        while data and not self.transport.is_closing():
            if self._in_head:
                # Why slice: the parser must never see more head bytes than the cap,
                # whatever size the chunks arrive in.
                room = self.limits.max_header_bytes - self._head_bytes
                if room <= 0:
                    self._head_too_large()
                    return
                chunk, data = data[:room], data[room:]
                self._head_bytes += len(chunk)
            else:
                chunk, data = data, b""
            if not self._feed(chunk):
                return

    def _feed(self, chunk: bytes) -> bool:
        try:
            self.parser.feed_data(chunk)
        except httptools.HttpParserUpgrade:
            # The server runs without WebSocket support (ws="none"): the request goes on
            # as plain HTTP, where the audit middleware refuses it, and since the parser
            # will not read past an upgrade, the connection closes after the answer.
            if self.cycle is not None:
                self.cycle.keep_alive = False
            return False
        except httptools.HttpParserError:
            if self._head_bytes > self.limits.max_header_bytes or self._header_count_exceeded():
                self._head_too_large()
            else:
                self.counters.bad_requests += 1
                self._refuse(400, "bad_request", "invalid HTTP request")
            return False
        return True

    def _header_count_exceeded(self) -> bool:
        return self.headers is not None and len(self.headers) > self.limits.max_headers

    def _head_too_large(self) -> None:
        self.counters.heads_too_large += 1
        self._refuse(431, "headers_too_large",
                     f"the request head is over {self.limits.max_header_bytes} bytes "
                     f"or {self.limits.max_headers} headers")

    # -- parser callbacks ----------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.idle.discard(self)
        if self._head_timer is None:
            self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if len(self.headers) > self.limits.max_headers:
            raise _TooManyHeaders  # httptools turns it into HttpParserCallbackError

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            return
        send = cycle.send

        async def send_closing_early(message: Any) -> None:
            if message["type"] == "http.response.start" and cycle.more_body:
                # Answered before the whole body arrived (e.g. 401 for an upload): say
                # "Connection: close" now, since the connection is closed after it.
                cycle.keep_alive = False
            await send(message)

        cycle.send = send_closing_early  # type: ignore[method-assign]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next bytes start the next request's head (counted from here, so bytes
        # of a head that began in an earlier chunk are never forgotten).
        self._in_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            # Why: the client is still sending a body nobody will read (e.g. a 401 for
            # an upload). Keeping the connection would let it trickle bytes forever,
            # since every byte received cancels uvicorn's keep-alive timer.
            self.server_state.total_requests += 1
            self.transport.close()
            return
        super().on_response_complete()
        if not self.transport.is_closing():
            self.idle.add(self)

    # -- helpers ---------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        self.counters.head_timeouts += 1
        if self._head_bytes or not (self.cycle is None or self.cycle.response_complete):
            self._refuse(408, "request_timeout",
                         f"no complete request head within {self.limits.head_timeout:g} s")
        else:
            self.transport.close()  # never sent a byte: nothing to answer

    def _refuse(self, status: int, code: str, message: str, *,
                extra_headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.idle.discard(self)
        self._cancel_head_timer()
        self.transport.write(error_bytes(status, code, message, extra_headers=extra_headers))
        self.transport.close()


class _TooManyHeaders(Exception):
    pass


def guarded_protocol(limits: ConnectionLimits, counters: Counters) -> type[GuardedProtocol]:
    """A protocol class bound to one server's limits, counters and idle list."""
    return type("BoundGuardedProtocol", (GuardedProtocol,),
                {"limits": limits, "counters": counters, "idle": _Idle(),
                 "trimmer": _HeapTrimmer()})


__all__ = ["ConnectionLimits", "Counters", "GuardedProtocol", "error_bytes", "guarded_protocol"]
