"""Live configuration: a read-only mapping of a prefix that keeps itself current.

``client.live(prefix)`` loads every value under *prefix* with one request at one
revision, then follows the watch stream from that revision::

    with vk.live("/app/config/", defaults={"/app/config/mode": b"safe"}) as config:
        mode = config["/app/config/mode"]     # a dict lookup, never the network

Why snapshots: each batch (one revision's events, or a reload) is a new dict swapped in by one
assignment: a reader never sees half a batch nor waits for a lock, and keys deleted upstream
disappear (viper updates its map in place: races, stale keys).

Errors are never swallowed: a value that does not decrypt keeps its previous value, is logged
(never a value) and counted in ``errors`` (the last in ``error``); a failed watch or reload is
retried with backoff; a revoked token or a lost permission ends the view, which
``wait_for_change()`` then raises. A ``resync`` reloads the prefix with one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, ValuesView
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from vaultkey.client import AsyncClient
from vaultkey.client._core import _listed, _url
from vaultkey.client._transport import Request, backoff
from vaultkey.errors import (
    DecryptionError,
    ProtocolError,
    StoreError,
    Unavailable,
    UsageError,
    VaultkeyError,
)
from vaultkey.paths import validate_key, validate_prefix

if TYPE_CHECKING:
    from vaultkey.client import Client
    from vaultkey.client._core import Op, Operations
    from vaultkey.client._watch import WatchEvent

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0
STOP_TIMEOUT = 5.0  # what stop() waits at most for the thread to close its connection
Loaded = tuple[int, dict[str, bytes], dict[str, DecryptionError]]


@dataclass(frozen=True)
class Change:
    """One applied batch (the events of one revision, or a reload), or all that was
    applied while ``wait_for_change()`` waited. Its repr never shows a value."""

    paths: frozenset[str]
    """The keys whose value, as readers see it, was added, replaced or removed."""
    revision: int  # the revision the new snapshot reflects
    old: Mapping[str, bytes] = field(repr=False)
    new: Mapping[str, bytes] = field(repr=False)
    """The whole snapshots before and after: immutable, safe to keep."""


def changed(old: Mapping[str, bytes], new: Mapping[str, bytes],
            paths: Iterable[str] | None = None) -> frozenset[str]:
    """The keys among *paths* (None: all) whose value differs: a rewrite is no change."""
    keys = old.keys() | new.keys() if paths is None else paths
    return frozenset(k for k in keys if old.get(k) != new.get(k))


def op_load(ops: Operations, prefix: str) -> Op[Loaded]:
    """Every value under *prefix* and the listing's revision (the watch resumes after it).
    A value that does not decrypt is set apart, so that a reload keeps its last value."""
    resp = yield Request("GET", _url("/v1/kv", prefix), params={"recursive": "true"},
                         headers=ops._read_headers())
    revision = int(resp.body["revision"])
    ops._saw(revision)
    entries = [(_listed(e["path"], prefix), e) for e in resp.body["entries"]]
    values, failed = dict[str, bytes](), dict[str, DecryptionError]()
    with ops.marks.batch():
        for key, entry in entries:
            try:
                values[key] = ops._decrypt(key, entry).value
            except DecryptionError as exc:
                failed[key] = exc
    return revision, values, failed


@dataclass(frozen=True)
class _Snapshot:
    stored: Mapping[str, bytes]  # the values in the store, without defaults
    values: Mapping[str, bytes]  # what readers see: stored over defaults
    revision: int


class _View(Mapping[str, bytes]):
    """All of :class:`Live` and :class:`AsyncLive` but where the follower task runs."""

    def __init__(self, client: Client | AsyncClient, prefix: str, *,
                 defaults: Mapping[str, bytes] | None = None,
                 on_change: Callable[[Change], object] | None = None) -> None:
        self._client, self.prefix = client, validate_prefix(prefix)
        self._defaults: dict[str, bytes] = {}
        for path, value in (defaults or {}).items():
            key = validate_key(path)
            if not key.startswith(self.prefix):  # it could never be shadowed: a typo
                raise UsageError(f"the default {key} is not under {self.prefix}")
            if not isinstance(value, bytes | bytearray | memoryview):
                raise UsageError(f"the default of {key} must be bytes (encode text first)")
            self._defaults[key] = bytes(value)
        self._on_change = on_change
        self._state = _Snapshot({}, MappingProxyType(dict(self._defaults)), 0)
        self._batch: list[WatchEvent] = []  # the events of a revision not complete yet
        self._lock = threading.Lock()  # for swaps and waiters; reads never take it
        self._waiters: list[tuple[set[str], threading.Event | asyncio.Event]] = []
        self.running = True
        """False once stopped, or ended by an error (then in :attr:`error`)."""
        self._fatal: BaseException | None = None
        self._task: asyncio.Task[None] | None = None  # the follower
        self.error: BaseException | None = None
        """The last error met: a value that did not decrypt, a failed watch or reload,
        or the one that ended the view. ``errors`` counts them."""
        self.errors = 0

    def __getitem__(self, key: str) -> bytes:
        return self._state.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.values)

    def __len__(self) -> int:
        return len(self._state.values)

    # Why: Mapping's own views look each key up again, maybe in the next snapshot.
    def items(self) -> ItemsView[str, bytes]:
        return self._state.values.items()

    def values(self) -> ValuesView[bytes]:
        return self._state.values.values()

    @property
    def revision(self) -> int:
        """The revision the snapshot reflects."""
        return self._state.revision

    def snapshot(self) -> Mapping[str, bytes]:
        """The current values, immutable: read several keys from one snapshot (also for
        ``dict(...)``, which looks each key up again) to see them as of one revision."""
        return self._state.values

    def __repr__(self) -> str:
        state = ("running" if self.running else "stopped" if self._fatal is None
                 else f"failed: {type(self._fatal).__name__}")
        return (f"<{type(self).__name__} {self.prefix} revision={self.revision} "
                f"keys={len(self)} {state}>")

    def _take(self, event: WatchEvent, resume: int | None) -> bool:
        """Apply *event* once its revision is complete (the watch's *resume* point reached
        it: readers never see part of a revision); True: reload the prefix."""
        if event.type == "resync":
            self._batch.clear()
            return True
        if event.revision <= self._state.revision:
            return False  # a reload read past it already
        if self._batch and self._batch[-1].revision != event.revision:
            self._apply()  # a proxy that marked no end of that revision
        self._batch.append(event)
        if resume is not None and resume >= event.revision:
            self._apply()
        return False

    def _apply(self) -> None:
        batch, self._batch = self._batch, []
        stored, touched = dict(self._state.stored), set()
        for event in batch:
            if event.error is not None:
                self._undecryptable(event.path, event.error)
            elif event.type == "delete":
                stored.pop(event.path, None)
                touched.add(event.path)
            elif event.value is not None:
                stored[event.path] = event.value
                touched.add(event.path)
        self._swap(stored, batch[-1].revision, touched)

    def _loaded(self, loaded: Loaded, *, initial: bool) -> None:
        revision, stored, failed = loaded
        if failed and initial:  # nothing to fall back on: say so now, not later
            raise next(iter(failed.values()))
        for path, exc in failed.items():
            self._undecryptable(path, exc)
            if path in self._state.stored:
                stored[path] = self._state.stored[path]
        self._batch.clear()
        self._swap(stored, revision, None, notify=not initial)

    async def _follow(self, vk: AsyncClient) -> None:
        """Keep the snapshot current until cancelled. The watch reconnects and resumes by
        itself; after an error it cannot fix, a reload and a new watch."""
        try:
            for failures in itertools.count():
                try:
                    async with vk.watch(self.prefix, since=self.revision) as watch:
                        async for event in watch:
                            if self._take(event, watch.revision):
                                await self._reload(vk)
                except VaultkeyError as exc:
                    self._failed(exc, "the watch")
                await asyncio.sleep(backoff(failures, MAX_BACKOFF))
                await self._reload(vk)
        except Exception as exc:  # not CancelledError, a BaseException: that is a stop
            self._end(exc)

    async def _reload(self, vk: AsyncClient) -> None:
        for failures in itertools.count():
            try:
                return self._loaded(await vk._run(op_load(vk._ops, self.prefix)),
                                    initial=False)
            except VaultkeyError as exc:
                self._failed(exc, "reloading")
            await asyncio.sleep(backoff(failures, MAX_BACKOFF))

    def _swap(self, stored: dict[str, bytes], revision: int, touched: set[str] | None, *,
              notify: bool = True) -> None:
        old = self._state
        new = _Snapshot(stored, MappingProxyType({**self._defaults, **stored}), revision)
        paths = changed(old.values, new.values, touched)
        with self._lock:
            if not self.running:
                return
            self._state = new
            for waiting, event in self._waiters if paths else ():
                waiting.update(paths)
                event.set()
        if paths and notify and self._on_change is not None:
            try:
                self._on_change(Change(paths, revision, old.values, new.values))
            except Exception:
                log.exception("vaultkey: live %s: the on_change callback failed", self.prefix)

    def _undecryptable(self, path: str, exc: VaultkeyError) -> None:
        self.error, self.errors = exc, self.errors + 1
        log.warning("vaultkey: live %s: %s does not decrypt (%s); keeping its previous value",
                    self.prefix, path, exc.message)

    def _failed(self, exc: VaultkeyError, what: str) -> None:
        """Note a failed watch or reload, or raise it again (which ends the view) if
        retrying cannot help: a revoked token, a lost permission, TLS, settings."""
        if not (exc.retryable if isinstance(exc, Unavailable)
                else isinstance(exc, StoreError | ProtocolError)):
            raise exc
        self.error, self.errors = exc, self.errors + 1
        log.warning("vaultkey: live %s: %s failed (%s); retrying", self.prefix, what,
                    exc.message)

    def _end(self, error: BaseException | None) -> bool:
        """End the view (stopped, or by *error*); False if it had ended already."""
        with self._lock:
            if not self.running:
                return False
            self.running, self._fatal = False, error
            if error is not None:
                self.error, self.errors = error, self.errors + 1
            for _paths, event in self._waiters:
                event.set()
        if error is not None:
            log.error("vaultkey: live %s ended: %s", self.prefix, error,
                      exc_info=None if isinstance(error, VaultkeyError) else error)
        return True

    def _waiting(self, event: threading.Event | asyncio.Event) -> tuple[_Snapshot, set[str]]:
        paths: set[str] = set()
        with self._lock:
            self._waiters.append((paths, event))
            if not self.running:
                event.set()
            return self._state, paths

    def _waited(self, start: _Snapshot, paths: set[str]) -> Change | None:
        with self._lock:  # *paths* took exactly the steps from *start* to this state
            self._waiters = [w for w in self._waiters if w[0] is not paths]
            end = self._state
        return Change(frozenset(paths), end.revision, start.values, end.values) if paths else None


class Live(_View):
    """A read-only ``Mapping[str, bytes]`` of the values under a prefix (full key paths),
    *defaults* underneath, kept current by a daemon thread (``client.live(prefix)``).

    The load happens in the constructor, so its errors (``PermissionDenied``, a value
    that does not decrypt) are raised there. The thread runs :class:`AsyncLive`'s
    follower on an event loop of its own, so that ``stop()`` (or leaving ``with``) ends
    it at once, wherever it waits; the mapping keeps its last snapshot.
    ``on_change(change)`` runs in that thread, once per applied batch that changed
    something: keep it short (the next update waits); its exceptions are logged.
    The view has a connection of its own: closing the client does not stop it.
    """

    _client: Client

    def __init__(self, client: Client, prefix: str, *,
                 defaults: Mapping[str, bytes] | None = None,
                 on_change: Callable[[Change], object] | None = None) -> None:
        super().__init__(client, prefix, defaults=defaults, on_change=on_change)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loaded(client._run(op_load(client._ops, self.prefix)), initial=True)
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True,
                                        name=f"vaultkey-live {self.prefix}")
        self._thread.start()

    def wait_for_change(self, timeout: float | None = None) -> Change | None:
        """Block until a change is applied after this call (one applied before it is not
        reported: ``on_change`` sees every batch); all that was applied until it wakes, as
        one Change; None after *timeout* seconds, or once stopped. Raises the error that
        ended the view."""
        event = threading.Event()
        start, paths = self._waiting(event)
        try:
            event.wait(timeout)
        finally:
            change = self._waited(start, paths)
        if change is None and self._fatal is not None:  # not in finally: a cancel stays one
            raise self._fatal
        return change

    def stop(self) -> None:
        """Stop following: the watch is closed and the thread ends."""
        # The task is read after _end: a thread that has not set it yet sees running False.
        if self._end(None) and self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: it is over
                self._loop.call_soon_threadsafe(self._task.cancel)
        if threading.current_thread() is not self._thread:  # not from a callback
            self._thread.join(STOP_TIMEOUT)

    def __enter__(self) -> Live:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _main(self) -> None:
        vk = AsyncClient(settings=self._client.settings, transport=self._client._mounted)
        vk._ops = self._client._ops  # the same keys, trust store and rollback marks
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        with contextlib.suppress(asyncio.CancelledError):  # stop(), wherever it lands
            try:
                if self.running:  # else stop() may have found no task to cancel
                    await self._follow(vk)
            finally:
                await vk.aclose()


class AsyncLive(_View):
    """asyncio: the same as :class:`Live`, kept current by a task of the running loop
    (``await aclient.live(prefix)`` loads it), which runs ``on_change``. Reads are plain
    lookups; ``await aclose()`` (or leaving ``async with``) stops it."""

    _client: AsyncClient

    async def start(self) -> AsyncLive:
        """Load the prefix (its errors are raised here), then follow it."""
        if self._task is None:
            self._loaded(await self._client._run(op_load(self._client._ops, self.prefix)),
                         initial=True)
            self._task = asyncio.create_task(self._follow(self._client),
                                             name=f"vaultkey-live {self.prefix}")
        return self

    async def wait_for_change(self, timeout: float | None = None) -> Change | None:
        """As :meth:`Live.wait_for_change`."""
        event = asyncio.Event()
        start, paths = self._waiting(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            change = self._waited(start, paths)
        if change is None and self._fatal is not None:  # not in finally: a cancel stays one
            raise self._fatal
        return change

    async def aclose(self) -> None:
        """Stop following: the task is cancelled, its watch closed."""
        self._end(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> AsyncLive:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
