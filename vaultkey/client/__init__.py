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

Each operation is written once, as a generator that yields HTTP requests and
receives responses (:class:`_Ops`); the sync and async clients only differ in
how they send them. Reads are retried on 503 and connection errors with
backoff; writes never are.
"""


from __future__ import annotations

import builtins
import os
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from vaultkey.client import settings as _config
from vaultkey.client._core import Item, Op, Request, Response, _Ops, advance, send_kwargs
from vaultkey.errors import Unavailable, VaultkeyError
from vaultkey.keys import PublicKey

if TYPE_CHECKING:
    from vaultkey.client.trust import TrustStore
    from vaultkey.crypto import SecretKey

T = TypeVar("T")


class _Base:
    def __init__(self, addr: str | None = None, token: str | None = None, *,
                 key: SecretKey | str | os.PathLike[str] | None = None,
                 cacert: str | None = None,
                 client_cert: str | None = None, client_key: str | None = None,
                 trust: TrustStore | str | os.PathLike[str] | None = None,
                 timeout: float | None = None, retries: int | None = None,
                 settings: _config.ClientSettings | None = None,
                 transport: Any = None) -> None:
        base = settings or _config.ClientSettings()
        overrides = {"addr": addr, "token": token, "cacert": cacert, "timeout": timeout,
                     "retries": retries, "client_cert": client_cert, "client_key": client_key}
        merged = {**base.__dict__, **{k: v for k, v in overrides.items() if v is not None}}
        self._ops = _Ops(_config.ClientSettings(**merged), key, trust)
        # An httpx transport (e.g. for an HTTP proxy or mounting); None = default.
        self._transport = transport

    @classmethod
    def from_env(cls: type[T], *, profile: str | None = None, **explicit: Any) -> T:
        """Settings as the CLI resolves them (see :func:`vaultkey.client.settings.resolve`)."""
        names = {"addr", "token", "token_file", "cacert", "client_cert", "client_key", "key",
                 "trust", "timeout"}
        settings = _config.resolve({k: v for k, v in explicit.items() if k in names},
                                   profile=profile)
        rest = {k: v for k, v in explicit.items() if k not in names}
        return cls(settings=settings, **rest)  # type: ignore[call-arg]

    @property
    def settings(self) -> _config.ClientSettings:
        return self._ops.settings


class Client(_Base):
    """Blocking client with one keep-alive connection pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http: Any = self._connect()

    def _connect(self) -> Any:
        import httpx

        self._transport_errors: tuple[type[Exception], ...] = (httpx.TransportError,)
        return httpx.Client(transport=self._transport, **self._ops.httpx_kwargs())

    def _send(self, req: Request) -> Response:
        plan = self._ops.attempts(req)
        for attempt in plan:
            try:
                try:
                    raw = self._http.request(req.method, req.url, **send_kwargs(req))
                except self._transport_errors as exc:
                    raise plan.unreachable(exc) from exc
                return plan.check(raw)
            except Unavailable as exc:
                time.sleep(plan.delay(attempt, exc))
        raise AssertionError("unreachable")

    def _run(self, op: Op[T]) -> T:
        done, step = advance(op, None)
        while not done:
            done, step = advance(op, self._send(step))
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
            if_revision: int | None = None, create_only: bool = False) -> int:
        return self._run(self._ops.op_set(path, value, recipients, if_revision, create_only))

    def delete(self, path: str, *, if_revision: int | None = None) -> None:
        self._run(self._ops.op_delete(path, if_revision))

    def whoami(self) -> dict[str, Any]:
        me: dict[str, Any] = self._run(self._ops.op_simple("GET", "/v1/whoami"))
        return me

    def request(self, method: str, url: str, json: Any = None) -> Any:
        """A raw API call (used by admin commands); errors are mapped as usual."""
        return self._run(self._ops.op_simple(method, url, json))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class CliClient(Client):
    """The CLI's client: one process, one or two requests, so no httpx to import
    (see :mod:`vaultkey.client._lite`). Behaves exactly like :class:`Client`."""

    def _connect(self) -> Any:
        from vaultkey.client._lite import LiteConnection, LiteTransportError, proxy_configured

        if proxy_configured(self.settings.addr) or self._transport is not None:
            return super()._connect()
        self._transport_errors = (LiteTransportError,)
        return LiteConnection(**self._ops.client_kwargs())


class AsyncClient(_Base):
    """asyncio client; the same operations as :class:`Client`, awaited."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import httpx

        self._http = httpx.AsyncClient(transport=self._transport, **self._ops.httpx_kwargs())

    async def _send(self, req: Request) -> Response:
        import asyncio

        import httpx

        plan = self._ops.attempts(req)
        for attempt in plan:
            try:
                try:
                    raw = await self._http.request(req.method, req.url, **send_kwargs(req))
                except httpx.TransportError as exc:
                    raise plan.unreachable(exc) from exc
                return plan.check(raw)
            except Unavailable as exc:
                await asyncio.sleep(plan.delay(attempt, exc))
        raise AssertionError("unreachable")

    async def _run(self, op: Op[T]) -> T:
        done, step = advance(op, None)
        while not done:
            done, step = advance(op, await self._send(step))
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
                  if_revision: int | None = None, create_only: bool = False) -> int:
        return await self._run(self._ops.op_set(path, value, recipients, if_revision,
                                                create_only))

    async def delete(self, path: str, *, if_revision: int | None = None) -> None:
        await self._run(self._ops.op_delete(path, if_revision))

    async def whoami(self) -> dict[str, Any]:
        me: dict[str, Any] = await self._run(self._ops.op_simple("GET", "/v1/whoami"))
        return me

    async def request(self, method: str, url: str, json: Any = None) -> Any:
        return await self._run(self._ops.op_simple(method, url, json))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


__all__ = ["AsyncClient", "Client", "Item", "VaultkeyError"]
