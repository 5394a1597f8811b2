"""The SDK: :class:`Client` and :class:`AsyncClient`, sharing one implementation.

Values are encrypted and decrypted locally; the proxy only ever sees
envelopes. Recipients come from the proxy's policy, checked against the
local trust store::

    import vaultkey
    with vaultkey.Client.from_env() as vk:          # VAULTKEY_ADDR, _TOKEN, _CACERT, _KEY, _TRUST
        vk.set("/payments/db/password", b"hunter2")
        password = vk.get("/payments/db/password")
        config = vk.get_many("/payments/config/")  # one request, decrypted locally

    async with vaultkey.AsyncClient.from_env() as vk:
        password = await vk.get("/payments/db/password")

    for change in vk.watch("/payments/config/"):   # decrypted; reconnects and resumes
        ...
    with vk.register("/services/web/a", b"10.0.0.7:8080", ttl=10):  # gone when we are
        ...

Each operation is written once, as a generator that yields HTTP requests and
receives responses (:mod:`vaultkey.client._core`); the one HTTP boundary that
sends them, retries reads and maps errors is :mod:`vaultkey.client._transport`.
The two clients only differ in whether they await it.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from vaultkey.client import settings as _settings
from vaultkey.keys import PublicKey

# Why the other modules are imported on first use: the CLI reads the settings table
# (vaultkey.client.settings, so this package) at start-up, and must stay fast for
# commands that never talk to the proxy.
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from vaultkey.client._core import Op
    from vaultkey.client._lifecycle import Progress, Report
    from vaultkey.client._live import AsyncLive, Change, Live
    from vaultkey.client._register import AsyncRegistration, Registration
    from vaultkey.client._snapshot import Snapshot
    from vaultkey.client._transport import Transport
    from vaultkey.client._watch import AsyncWatch, Watch, WatchSession
    from vaultkey.client.item import Item
    from vaultkey.client.trust import TrustStore
    from vaultkey.crypto import SecretKey

T = TypeVar("T")
B = TypeVar("B", bound="_Base")


_LAZY = {"Item": "item", "WatchEvent": "_watch", "Watch": "_watch", "AsyncWatch": "_watch",
         "Registration": "_register", "AsyncRegistration": "_register", "Live": "_live",
         "AsyncLive": "_live", "Change": "_live", "Snapshot": "_snapshot"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"vaultkey.client.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vaultkey.client' has no attribute {name!r}")


class _Base:
    """Settings and operations; the subclasses add a transport.

    *addr*, *token* and ``**options`` are client settings, put over *settings*
    (any field of :class:`~vaultkey.client.settings.ClientSettings`, e.g. ``cacert``,
    ``client_cert``, ``client_key``, ``token_file``, ``timeout``, ``retries``).
    *key* and *trust* may also be a loaded ``SecretKey`` / ``TrustStore``. *key* may name
    several key files (``"new.key:old.key"``, or a list): during a key rotation each value
    is opened with whichever key it was sealed to.
    *addr* may name several proxy replicas (a list, or ``"https://a:8443,https://b:8443"``):
    see :mod:`vaultkey.client._failover` for how requests fail over between them.
    *transport* is an httpx transport (a MockTransport, a proxy mount).
    """

    def __init__(self, addr: str | Sequence[str] | None = None, token: str | None = None, *,
                 key: SecretKey | str | os.PathLike[str]
                 | Sequence[SecretKey | str | os.PathLike[str]] | None = None,
                 trust: TrustStore | str | os.PathLike[str] | None = None,
                 settings: _settings.ClientSettings | None = None,
                 transport: Any = None, **options: Any) -> None:
        from vaultkey.client._core import Operations
        from vaultkey.client._failover import join_addrs

        self._settings = _settings.apply(settings or _settings.ClientSettings(), {
            "addr": None if addr is None else join_addrs(addr), "token": token, **options})
        self._ops = Operations(self._settings, key, trust)
        self._mounted = transport

    @classmethod
    def from_env(cls: type[B], *, profile: str | None = None, **explicit: Any) -> B:
        """Settings as the CLI resolves them (see :func:`vaultkey.client.settings.resolve`):
        *explicit* > a chosen profile > ``VAULTKEY_*`` > the default profile."""
        given = {k: v for k, v in explicit.items()
                 if k in _settings.NAMES and isinstance(v, str | os.PathLike | int | float)}
        rest = {k: v for k, v in explicit.items() if k not in given}
        return cls(settings=_settings.resolve(given, profile=profile), **rest)

    @property
    def settings(self) -> _settings.ClientSettings:
        return self._settings

    def _reencrypt(self, prefix: str, rotate: bool, dry_run: bool, resume: int | None,
                   progress: Progress | None, sign_unverified: bool) -> Op[Report]:
        from vaultkey.client._lifecycle import op_reencrypt

        return op_reencrypt(self._ops, prefix, rotate=rotate, dry_run=dry_run, resume=resume,
                            progress=progress, sign_unverified=sign_unverified)

    def _watch_session(self, prefix: str, since: int | None, decrypt: bool) -> WatchSession:
        from vaultkey.client._watch import WatchSession

        return WatchSession(self._ops, prefix, since, decrypt)


class Client(_Base):
    """Blocking client with one keep-alive connection pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wire = self._open()

    def _open(self) -> Transport:
        from vaultkey.client._transport import Transport

        return Transport(self.settings, self._mounted)

    def _run(self, op: Op[T]) -> T:
        from vaultkey.client._core import Pause, advance
        from vaultkey.errors import VaultkeyError

        done, step = advance(op, None)
        while not done:
            answer: Any = None
            if isinstance(step, Pause):
                import time

                time.sleep(step.seconds)
            else:
                try:
                    answer = self._wire.send(step)
                except VaultkeyError as exc:
                    answer = exc
            done, step = advance(op, answer)
        result: T = step
        return result

    def read(self, path: str) -> Item:
        """The decrypted value at *path* with its revision and recipients."""
        return self._run(self._ops.op_read(path))

    def get(self, path: str) -> bytes:
        return self.read(path).value

    def get_many(self, prefix: str) -> dict[str, bytes]:
        return self._run(self._ops.op_get_many(prefix))

    def list(self, prefix: str) -> builtins.list[str]:
        return self._run(self._ops.op_list(prefix))

    def recipients(self, path: str) -> builtins.list[PublicKey]:
        return self._run(self._ops.op_recipients(path))

    def set(self, path: str, value: bytes, *, recipients: Sequence[PublicKey] | None = None,
            if_revision: int | None = None, create_only: bool = False,
            ttl: int | str | None = None, lease: str | None = None) -> int:
        """Encrypt *value* and store it at *path*; the new revision. With *ttl* (seconds, or
        ``"30s"``, ``"5m"``: 2 s to 24 h) the key is attached to a new lease and disappears
        when it runs out; with *lease*, to an existing lease of the group."""
        from vaultkey.client._core import lease_params

        op = self._ops.op_set(path, value, recipients, if_revision, create_only,
                              lease_params(ttl, lease))
        return int(self._run(op)["revision"])

    def delete(self, path: str, *, if_revision: int | None = None) -> None:
        self._run(self._ops.op_delete(path, if_revision))

    def rewrap(self, prefix: str, *, dry_run: bool = False, resume: int | None = None,
               progress: Progress | None = None, sign_unverified: bool = False) -> Report:
        """Re-wrap every value under *prefix* to its current recipients, keeping each data
        key (for a reader added or a key retired that was not compromised). Each write is
        a compare-and-swap: a value changed meanwhile is read again, never overwritten.
        *resume*: an interrupted run's ``start_revision``. With a signing key, values are
        signed again only if a writer your trust store trusts signed them, unless
        *sign_unverified*. A value that cannot be done is a ``failed`` outcome."""
        return self._run(self._reencrypt(prefix, False, dry_run, resume, progress,
                                         sign_unverified))

    def rotate(self, prefix: str, *, dry_run: bool = False, resume: int | None = None,
               progress: Progress | None = None, sign_unverified: bool = False) -> Report:
        """Re-encrypt every value under *prefix* under a fresh data key (a member removed,
        a key compromised). Old revisions stay readable with old keys until etcd
        compacts them, and a leaked key means the secret itself must change."""
        return self._run(self._reencrypt(prefix, True, dry_run, resume, progress,
                                         sign_unverified))

    def snapshot(self, prefixes: Sequence[str] = (), keys: Sequence[str] = (), *,
                 at: int | None = None) -> Snapshot:
        """Every value under *prefixes* and each of *keys*, decrypted, all as of one etcd
        revision (*at*, or the first read's): what a template rendered from several places
        needs. Absent keys are left out."""
        from vaultkey.client._snapshot import op_snapshot

        return self._run(op_snapshot(self._ops, prefixes, keys, at))

    def live(self, prefix: str, *, defaults: Mapping[str, bytes] | None = None,
             on_change: Callable[[Change], object] | None = None) -> Live:
        """A read-only mapping of the values under *prefix* that stays current: loaded with
        one request at one revision, then kept up to date by the watch stream in a
        background thread (reloaded after a resync or a proxy restart). Reads never touch
        the network. ``with client.live(...) as cfg:`` stops it at the end."""
        from vaultkey.client._live import Live

        return Live(self, prefix, defaults=defaults, on_change=on_change)

    def watch(self, prefix: str, since: int | None = None, *, decrypt: bool = True) -> Watch:
        """The changes under *prefix*, decrypted, as they happen (after revision *since*
        if given, else from now); reconnects and resumes by itself. Each is a
        :class:`~vaultkey.client.WatchEvent`; a ``"resync"`` one asks the caller to
        reload (e.g. with :meth:`get_many`). ``decrypt=False``: no key needed, no values."""
        from vaultkey.client._watch import Watch

        return Watch(self._wire, self._watch_session(prefix, since, decrypt))

    def register(self, path: str, value: bytes, ttl: int | str = 10, *,
                 recipients: Sequence[PublicKey] | None = None,
                 on_lost: Callable[[str], object] | None = None) -> Registration:
        """``with client.register(...)``: *value* at *path* under a lease of *ttl*, kept
        alive until the block ends (then the key is deleted at once). A lease lost
        meanwhile is taken again, logged and passed to ``on_lost(reason)``."""
        from vaultkey.client._register import Registration

        return Registration(self._wire, self._ops, path, value, ttl, recipients=recipients,
                            on_lost=on_lost)

    def whoami(self) -> dict[str, Any]:
        me: dict[str, Any] = self._run(self._ops.op_simple("GET", "/v1/whoami"))
        return me

    def request(self, method: str, url: str, json: Any = None) -> Any:
        """A raw API call (used by admin commands); errors are mapped as usual."""
        return self._run(self._ops.op_simple(method, url, json))

    def close(self) -> None:
        self._wire.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClient(_Base):
    """asyncio client; the same operations as :class:`Client`, awaited."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from vaultkey.client._transport import AsyncTransport

        super().__init__(*args, **kwargs)
        self._wire = AsyncTransport(self.settings, self._mounted)

    async def _run(self, op: Op[T]) -> T:
        from vaultkey.client._core import Pause, advance
        from vaultkey.errors import VaultkeyError

        done, step = advance(op, None)
        while not done:
            answer: Any = None
            if isinstance(step, Pause):
                import asyncio

                await asyncio.sleep(step.seconds)
            else:
                try:
                    answer = await self._wire.send(step)
                except VaultkeyError as exc:
                    answer = exc
            done, step = advance(op, answer)
        result: T = step
        return result

    async def read(self, path: str) -> Item:
        return await self._run(self._ops.op_read(path))

    async def get(self, path: str) -> bytes:
        return (await self.read(path)).value

    async def get_many(self, prefix: str) -> dict[str, bytes]:
        return await self._run(self._ops.op_get_many(prefix))

    async def list(self, prefix: str) -> builtins.list[str]:
        return await self._run(self._ops.op_list(prefix))

    async def recipients(self, path: str) -> builtins.list[PublicKey]:
        return await self._run(self._ops.op_recipients(path))

    async def set(self, path: str, value: bytes, *,
                  recipients: Sequence[PublicKey] | None = None,
                  if_revision: int | None = None, create_only: bool = False,
                  ttl: int | str | None = None, lease: str | None = None) -> int:
        from vaultkey.client._core import lease_params

        body = await self._run(self._ops.op_set(path, value, recipients, if_revision,
                                                create_only, lease_params(ttl, lease)))
        return int(body["revision"])

    async def delete(self, path: str, *, if_revision: int | None = None) -> None:
        await self._run(self._ops.op_delete(path, if_revision))

    async def rewrap(self, prefix: str, *, dry_run: bool = False, resume: int | None = None,
                     progress: Progress | None = None,
                     sign_unverified: bool = False) -> Report:
        """As :meth:`Client.rewrap`."""
        return await self._run(self._reencrypt(prefix, False, dry_run, resume, progress,
                                               sign_unverified))

    async def rotate(self, prefix: str, *, dry_run: bool = False, resume: int | None = None,
                     progress: Progress | None = None,
                     sign_unverified: bool = False) -> Report:
        """As :meth:`Client.rotate`."""
        return await self._run(self._reencrypt(prefix, True, dry_run, resume, progress,
                                               sign_unverified))

    async def snapshot(self, prefixes: Sequence[str] = (), keys: Sequence[str] = (), *,
                       at: int | None = None) -> Snapshot:
        """As :meth:`Client.snapshot`."""
        from vaultkey.client._snapshot import op_snapshot

        return await self._run(op_snapshot(self._ops, prefixes, keys, at))

    async def live(self, prefix: str, *, defaults: Mapping[str, bytes] | None = None,
                   on_change: Callable[[Change], object] | None = None) -> AsyncLive:
        """As :meth:`Client.live`, kept current by a task on the running event loop
        (loaded before this returns)."""
        from vaultkey.client._live import AsyncLive

        live = AsyncLive(self, prefix, defaults=defaults, on_change=on_change)
        await live.start()
        return live

    def watch(self, prefix: str, since: int | None = None, *,
              decrypt: bool = True) -> AsyncWatch:
        """``async for change in aclient.watch(prefix)``: as :meth:`Client.watch`."""
        from vaultkey.client._watch import AsyncWatch

        return AsyncWatch(self._wire, self._watch_session(prefix, since, decrypt))

    def register(self, path: str, value: bytes, ttl: int | str = 10, *,
                 recipients: Sequence[PublicKey] | None = None,
                 on_lost: Callable[[str], object] | None = None) -> AsyncRegistration:
        """``async with aclient.register(...)``: as :meth:`Client.register`."""
        from vaultkey.client._register import AsyncRegistration

        return AsyncRegistration(self._wire, self._ops, path, value, ttl,
                                 recipients=recipients, on_lost=on_lost)

    async def whoami(self) -> dict[str, Any]:
        me: dict[str, Any] = await self._run(self._ops.op_simple("GET", "/v1/whoami"))
        return me

    async def request(self, method: str, url: str, json: Any = None) -> Any:
        return await self._run(self._ops.op_simple(method, url, json))

    async def aclose(self) -> None:
        await self._wire.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


__all__ = ["AsyncClient", "AsyncLive", "AsyncRegistration", "AsyncWatch", "Change", "Client",
           "Item", "Live", "Registration", "Snapshot", "Watch", "WatchEvent"]
