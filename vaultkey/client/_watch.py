"""Watching a prefix: decrypted events, reconnects and resumes, resyncs surfaced.

:class:`WatchSession` is the sans-I/O part: the request of each (re)connection,
the SSE bytes in, :class:`WatchEvent` objects out, the resume point and the
backoff. :class:`Watch` (blocking) and :class:`AsyncWatch` (asyncio) only open
the stream over their transport and sleep between attempts::

    with vk.watch("/payments/config/") as changes:
        for change in changes:
            if change.type == "resync":      # events were lost: reload, then go on
                config = vk.get_many("/payments/config/")
            elif change.error is not None:   # a value that does not decrypt
                log.warning("%s: %s", change.path, change.error)
            else:
                apply(change.path, change.value)   # None for a delete

The resume point is the last ``id:`` the stream sent (the proxy puts one on the
last event of each revision and on every bookmark), so a resume never skips the
rest of a revision that was cut; the events of it already delivered are not
delivered twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vaultkey.client._core import _listed, _url
from vaultkey.client._sse import SseMessage, SseParser
from vaultkey.client._transport import Request, backoff
from vaultkey.errors import (
    DecryptionError,
    ProtocolError,
    Unauthenticated,
    Unavailable,
    VaultkeyError,
)
from vaultkey.paths import validate_prefix

if TYPE_CHECKING:
    from vaultkey.client._core import Operations
    from vaultkey.client._transport import AsyncTransport, Transport

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0


@dataclass(frozen=True)
class WatchEvent:
    """One change under a watched prefix, decrypted. Its repr never shows the value.

    ``type`` is ``"put"``, ``"delete"`` or ``"resync"``. A resync means changes were
    lost (the proxy compacted its history, or the watcher fell behind): reload what
    you follow (e.g. with ``get_many``); the watch goes on after ``revision``.
    """

    type: str
    path: str
    """The key; for a resync, the watched prefix."""
    revision: int
    value: bytes | None = field(default=None, repr=False)
    """The plaintext of a put (None for a delete, a resync, a failed decryption, or a
    watch with ``decrypt=False``)."""
    error: VaultkeyError | None = None
    """Why the value of a put could not be decrypted (a DecryptionError); the watch goes on."""
    reason: str | None = None
    """A resync's reason: "compacted", "too_old" or "lagging"."""
    lease: str | None = None
    """The id of the lease a put's key is attached to, if any."""
    version: int | None = None
    create_revision: int | None = None


def _revision(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a revision: {value!r}")
    return value


class WatchSession:
    """The state of one watch across its connections (no I/O)."""

    def __init__(self, ops: Operations, prefix: str, since: int | None, decrypt: bool) -> None:
        self.prefix = validate_prefix(prefix)
        self.revision = None if since is None else _revision(since)
        """The resume point: every change up to it was delivered."""
        # Only a watch asked to replay history (since=) may see a value older than a mark
        # without it being a rollback: a live watch is held to its marks like a read.
        self._replay = since is not None
        self.ended = False
        self._ops, self._decrypt = ops, decrypt
        if decrypt:
            ops.secret_key()  # no key configured: fail now, not at the first put
        self._parser = SseParser()
        self._seen: set[tuple[str, str]] = set()  # delivered events of a revision not yet closed
        self._seen_revision = -1
        self._failures = 0

    def request(self) -> Request:
        """The request of the next connection, resuming after :attr:`revision`."""
        self._parser, self.ended = SseParser(), False
        params = None if self.revision is None else {"since": str(self.revision)}
        return Request("GET", _url("/v1/watch", self.prefix), params=params)

    def feed(self, chunk: bytes) -> Iterator[WatchEvent]:
        """The events that *chunk* completes; stops at the end of the stream."""
        for message in self._parser.feed(chunk):
            if self.ended:
                return
            try:
                event = self._message(message)
            except (KeyError, TypeError, ValueError) as exc:
                raise ProtocolError(f"unexpected watch event from the proxy ({exc})") from None
            if event is not None:
                yield event

    def _message(self, msg: SseMessage) -> WatchEvent | None:
        data = json.loads(msg.data) if msg.data else {}
        if not isinstance(data, dict):
            raise TypeError("an event's data is not a JSON object")
        if msg.event == "resync":
            return self._resync(data)
        if msg.event == "revoked":
            raise Unauthenticated("the token was revoked or has expired; the watch ended",
                                  hint="use a valid token (VAULTKEY_TOKEN / --token-file)")
        event = self._change(msg.event, data) if msg.event in ("put", "delete") else None
        if msg.event in ("put", "delete", "bookmark"):
            self._failures = 0  # a stream that works: the next reconnect starts over
            if msg.id is not None:
                self.revision, self._seen = _revision(int(msg.id)), set()
        return event  # unknown events (of a newer proxy) are skipped

    def _resync(self, data: dict[str, Any]) -> WatchEvent | None:
        self.ended = True
        reason, revision = str(data["reason"]), _revision(data["revision"])
        if reason == "restarted":  # that replica stops: resume exactly where we are
            return None
        self.revision, self._seen = revision, set()
        return WatchEvent("resync", self.prefix, revision, reason=reason)

    def _change(self, kind: str, data: dict[str, Any]) -> WatchEvent | None:
        path, revision = _listed(data["path"], self.prefix), _revision(data["revision"])
        if self.revision is not None and revision <= self.revision:
            return None  # delivered before a reconnect
        if revision != self._seen_revision:
            self._seen, self._seen_revision = set(), revision
        elif (kind, path) in self._seen:
            return None  # the replay of a revision that a reconnect cut
        self._seen.add((kind, path))
        if kind == "delete":
            return WatchEvent("delete", path, revision)
        lease = data.get("lease")
        meta: dict[str, Any] = {"lease": None if lease is None else str(lease),
                                "version": int(data["version"]),
                                "create_revision": int(data["create_revision"])}
        if not self._decrypt:
            return WatchEvent("put", path, revision, **meta)
        try:
            value = self._ops._decrypt(path, data, history=self._replay).value
        except DecryptionError as exc:
            return WatchEvent("put", path, revision, error=exc, **meta)
        return WatchEvent("put", path, revision, value=value, **meta)

    def retry_delay(self, error: Unavailable | None) -> float:
        """Seconds to wait before reconnecting after the stream ended (*error*: how; None:
        the proxy ended it). Raises *error* if retrying cannot help."""
        if error is not None and not error.retryable:
            raise error
        if self.ended and self._failures == 0 and error is None:
            self._failures = 1  # a resync after a working stream: reconnect at once
            return 0.0
        delay = backoff(self._failures, MAX_BACKOFF)
        if error is not None and error.retry_after:
            delay = max(delay, min(error.retry_after, MAX_BACKOFF))
        self._failures += 1
        why = error.message if error is not None else "the proxy ended the stream"
        (log.warning if error is not None else log.info)(
            "vaultkey: watch of %s: %s; resuming in %.1f s", self.prefix, why, delay)
        return delay


class _Following:
    def __init__(self, session: WatchSession) -> None:
        self._session = session

    @property
    def revision(self) -> int | None:
        """Where the watch would resume: every change up to this revision was delivered."""
        return self._session.revision


class Watch(_Following):
    """A blocking iterator of :class:`WatchEvent`; ``close()`` (or leaving ``with``) ends it.

    It reconnects by itself on lost connections and ``503``; :attr:`revision` is where
    it would resume. Other errors (``PermissionDenied``, ``Unauthenticated`` when the
    token is revoked) end it, raised from ``next()``.
    """

    def __init__(self, wire: Transport, session: WatchSession) -> None:
        super().__init__(session)
        self._events = self._follow(wire)

    def _follow(self, wire: Transport) -> Generator[WatchEvent, None, None]:
        session = self._session
        while True:
            try:
                with wire.stream(session.request()) as chunks:
                    for chunk in chunks:
                        yield from session.feed(chunk)
                        if session.ended:
                            break
                error = None
            except Unavailable as exc:
                error = exc
            time.sleep(session.retry_delay(error))

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> WatchEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncWatch(_Following):
    """asyncio: the same as :class:`Watch`, an async iterator; ``await aclose()`` ends it."""

    def __init__(self, wire: AsyncTransport, session: WatchSession) -> None:
        super().__init__(session)
        self._events = self._follow(wire)

    async def _follow(self, wire: AsyncTransport) -> AsyncGenerator[WatchEvent, None]:
        import asyncio

        session = self._session
        while True:
            try:
                async with wire.stream(session.request()) as chunks:
                    async for chunk in chunks:
                        for event in session.feed(chunk):
                            yield event
                        if session.ended:
                            break
                error = None
            except Unavailable as exc:
                error = exc
            await asyncio.sleep(session.retry_delay(error))

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        return await anext(self._events)

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> AsyncWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
