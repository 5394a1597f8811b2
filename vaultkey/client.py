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

import base64
import builtins
import os
import random
import re
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from vaultkey import config as _config
from vaultkey._http import error_from_response
from vaultkey.errors import Unavailable, UsageError, VaultkeyError
from vaultkey.keys import PublicKey
from vaultkey.paths import validate_key, validate_prefix

if TYPE_CHECKING:
    import httpx

    from vaultkey.crypto import SecretKey
    from vaultkey.trust import TrustStore

T = TypeVar("T")


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
    status: int
    body: Any


@dataclass(frozen=True)
class Item:
    """One decrypted value and its metadata."""

    path: str
    value: bytes = field(repr=False)
    revision: int
    create_revision: int
    version: int
    recipients: tuple[str, ...]  # key ids of the stanzas


Op = Generator[Request, Response, T]


def _kv_url(path: str) -> str:
    return "/v1/kv" + quote(path, safe="/")


class _Ops:
    """Request building, response checking and local crypto: no I/O of its own."""

    def __init__(self, settings: _config.ClientSettings,
                 key: SecretKey | str | os.PathLike[str] | None = None,
                 trust: TrustStore | str | os.PathLike[str] | None = None) -> None:
        self.settings = settings
        self._key_source: Any = key if key is not None else settings.key
        self._trust_source: Any = trust if trust is not None else settings.trust
        self._key: SecretKey | None = None
        self._trust: TrustStore | None = None

    def secret_key(self) -> SecretKey:
        if self._key is None:
            from vaultkey.crypto import SecretKey

            src = self._key_source
            if src is None:
                raise UsageError("no secret key configured",
                                 hint="pass key=, --key FILE or set VAULTKEY_KEY")
            self._key = src if isinstance(src, SecretKey) else SecretKey.load(src)
        return self._key

    def trust_store(self) -> TrustStore:
        if self._trust is None:
            from vaultkey.trust import TrustStore

            src = self._trust_source
            if src is None:
                raise UsageError(
                    "no trust store configured, so the recipients named by the proxy "
                    "cannot be checked",
                    hint="set VAULTKEY_TRUST (a directory of trusted .pub files) or pass "
                    "explicit recipients",
                )
            self._trust = src if isinstance(src, TrustStore) else TrustStore.load(src)
        return self._trust

    def _decrypt(self, path: str, entry: dict[str, Any]) -> Item:
        from vaultkey.crypto import decrypt
        from vaultkey.envelope import Envelope
        from vaultkey.errors import DecryptionError
        from vaultkey.keys import format_key_id

        try:
            blob = base64.b64decode(entry["envelope"], validate=True)
        except (KeyError, ValueError, TypeError):
            raise DecryptionError(f"{path}: the proxy returned no valid envelope") from None
        value = decrypt(blob, path, self.secret_key())
        kids = tuple(format_key_id(k) for k in Envelope.parse(blob).recipient_kids)
        return Item(path, value, int(entry["revision"]), int(entry["create_revision"]),
                    int(entry["version"]), kids)

    def recipients_from(self, body: Any) -> list[PublicKey]:
        try:
            entries = [r for g in body["groups"] for r in g["recipients"]] + list(body["escrow"])
            keys = [PublicKey.from_text(r["public_key"], "recipient from proxy") for r in entries]
        except (KeyError, TypeError) as exc:
            raise UsageError("malformed recipients answer from the proxy") from exc
        if not keys:
            raise UsageError("no group may read this path, so nobody could decrypt it",
                             hint="add a read rule for this path to a policy first")
        # Why: the key id is recomputed from the key itself, never taken from the proxy.
        return self.trust_store().check(list({k.kid: k for k in keys}.values()))

    # Each operation: yields Requests, receives Responses, returns the result.

    def op_read(self, path: str) -> Op[Item]:
        key = validate_key(path)
        resp = yield Request("GET", _kv_url(key))
        return self._decrypt(key, resp.body)

    def op_get_many(self, prefix: str) -> Op[dict[str, bytes]]:
        pfx = validate_prefix(prefix)
        resp = yield Request("GET", _kv_url(pfx), params={"recursive": "true"})
        return {e["path"]: self._decrypt(e["path"], e).value for e in resp.body["entries"]}

    def op_list(self, prefix: str) -> Op[list[str]]:
        pfx = validate_prefix(prefix)
        resp = yield Request("GET", _kv_url(pfx), params={"list": "true"})
        return list(resp.body["keys"])

    def op_recipients(self, path: str) -> Op[list[PublicKey]]:
        key = validate_key(path)
        resp = yield Request("GET", "/v1/recipients" + quote(key, safe="/"))
        return self.recipients_from(resp.body)

    def op_set(self, path: str, value: bytes, recipients: Sequence[PublicKey] | None,
               if_revision: int | None, create_only: bool) -> Op[int]:
        from vaultkey.crypto import encrypt

        key = validate_key(path)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise UsageError("value must be bytes (encode text first)")
        if recipients is None:
            recipients = yield from self.op_recipients(key)
        headers = {"Content-Type": "application/octet-stream"}
        if if_revision is not None:
            headers["If-Match"] = str(int(if_revision))
        if create_only:
            headers["If-None-Match"] = "*"
        blob = encrypt(bytes(value), key, list(recipients))
        resp = yield Request("PUT", _kv_url(key), headers=headers, content=blob)
        return int(resp.body["revision"])

    def op_delete(self, path: str, if_revision: int | None) -> Op[None]:
        key = validate_key(path)
        headers = {} if if_revision is None else {"If-Match": str(int(if_revision))}
        yield Request("DELETE", _kv_url(key), headers=headers)

    def op_simple(self, method: str, url: str, json: Any = None) -> Op[Any]:
        resp = yield Request(method, url, json=json)
        return resp.body

    def backoff(self, attempt: int, error: Unavailable) -> float:
        base = min(2.0, 0.1 * 2**attempt) * (0.5 + random.random())  # noqa: S311 - jitter
        return float(max(base, min(error.retry_after or 0.0, 2.0)))

    def client_kwargs(self) -> dict[str, Any]:
        import ssl

        s = self.settings
        _check_addr(s.addr)
        for what, path in (("CA certificate", s.cacert), ("client certificate", s.client_cert),
                           ("client key", s.client_key)):
            if path and not os.path.isfile(path):
                raise UsageError(f"{what} {path}: no such file")
        if bool(s.client_cert) != bool(s.client_key):
            raise UsageError("a client certificate and its key go together")
        if s.cacert:
            verify = ssl.create_default_context(cafile=s.cacert)
        else:  # the same public CA bundle httpx uses by default
            import certifi

            verify = ssl.create_default_context(cafile=certifi.where())
        if s.client_cert and s.client_key:
            verify.load_cert_chain(s.client_cert, s.client_key)
        headers = {"User-Agent": "vaultkey-sdk"}
        if s.token:
            if not _TOKEN_CHARS.fullmatch(s.token):
                # Never echo it: a token with a stray newline would end up in the message.
                raise UsageError("the token contains spaces or control characters",
                                 hint="check VAULTKEY_TOKEN / the token file")
            headers["Authorization"] = f"Bearer {s.token}"
        return {"base_url": s.addr.rstrip("/"), "verify": verify, "headers": headers,
                "timeout": s.timeout}


_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


def _check_addr(addr: str) -> None:
    """TLS everywhere except loopback: a token must not cross a network in clear text."""
    parts = urlsplit(addr)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"bad proxy address {addr!r}: use https://HOST:PORT")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise UsageError(f"refusing to send a token over plain HTTP to {parts.hostname}",
                         hint="use an https:// address")


def _response(resp: httpx.Response) -> Response:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code >= 400:
        error = error_from_response(resp.status_code, body)
        retry_after = resp.headers.get("retry-after", "")
        if isinstance(error, Unavailable) and retry_after.isdigit():
            error.retry_after = float(retry_after)
        raise error
    return Response(resp.status_code, body)


def _unreachable(addr: str, exc: Exception) -> Unavailable:
    import httpx

    # A local protocol error quotes the offending header, which may hold the token.
    detail = type(exc).__name__ if isinstance(exc, httpx.LocalProtocolError) else str(exc)
    return Unavailable(f"cannot reach the vaultkey proxy at {addr}: {detail}",
                       hint="check --addr / VAULTKEY_ADDR and that the proxy is running")


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
        """Settings from explicit values > ``VAULTKEY_*`` environment > config profile."""
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
        import httpx

        self._http = httpx.Client(transport=self._transport, **self._ops.client_kwargs())

    def _send(self, req: Request) -> Response:
        import httpx

        attempts = self.settings.retries + 1 if req.idempotent else 1
        for attempt in range(attempts):
            try:
                try:
                    raw = self._http.request(req.method, req.url, params=req.params,
                                             headers=req.headers, content=req.content,
                                             json=req.json)
                except httpx.TransportError as exc:
                    raise _unreachable(self.settings.addr, exc) from exc
                return _response(raw)
            except Unavailable as exc:
                if attempt + 1 >= attempts:
                    raise
                time.sleep(self._ops.backoff(attempt, exc))
        raise AssertionError("unreachable")

    def _run(self, op: Op[T]) -> T:
        try:
            req = next(op)
            while True:
                req = op.send(self._send(req))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

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


class AsyncClient(_Base):
    """asyncio client; the same operations as :class:`Client`, awaited."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import httpx

        self._http = httpx.AsyncClient(transport=self._transport, **self._ops.client_kwargs())

    async def _send(self, req: Request) -> Response:
        import asyncio

        import httpx

        attempts = self.settings.retries + 1 if req.idempotent else 1
        for attempt in range(attempts):
            try:
                try:
                    raw = await self._http.request(req.method, req.url, params=req.params,
                                                   headers=req.headers, content=req.content,
                                                   json=req.json)
                except httpx.TransportError as exc:
                    raise _unreachable(self.settings.addr, exc) from exc
                return _response(raw)
            except Unavailable as exc:
                if attempt + 1 >= attempts:
                    raise
                await asyncio.sleep(self._ops.backoff(attempt, exc))
        raise AssertionError("unreachable")

    async def _run(self, op: Op[T]) -> T:
        try:
            req = next(op)
            while True:
                req = op.send(await self._send(req))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

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
