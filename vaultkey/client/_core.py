"""The SDK's sans-I/O core: every operation as a generator of HTTP requests.

An operation (``_Ops.op_*``) yields :class:`Request` objects, receives
:class:`Response` objects and returns its result; it builds URLs, checks
answers, encrypts and decrypts locally, but never touches a socket. The
blocking and asyncio clients in :mod:`vaultkey.client` only differ in how
they send the requests, so both behave identically by construction.
"""

from __future__ import annotations

import base64
import os
import random
import re
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from vaultkey.client import settings as _config
from vaultkey.client._errors import error_from_response
from vaultkey.errors import ProtocolError, Unavailable, UsageError
from vaultkey.keys import PublicKey
from vaultkey.paths import validate_key, validate_prefix

if TYPE_CHECKING:
    import httpx

    from vaultkey.client.trust import TrustStore
    from vaultkey.crypto import SecretKey

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
            from vaultkey.client.trust import TrustStore

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
        from vaultkey.crypto import open_envelope, parse_for_decryption
        from vaultkey.errors import DecryptionError
        from vaultkey.keys import format_key_id

        try:
            blob = base64.b64decode(entry["envelope"], validate=True)
        except (KeyError, ValueError, TypeError):
            raise DecryptionError(f"{path}: the proxy returned no valid envelope") from None
        try:
            env = parse_for_decryption(blob)
            value = open_envelope(env, path, self.secret_key())
        except DecryptionError as exc:  # name the key: get_many decrypts many
            raise DecryptionError(f"{path}: {exc.message}", hint=exc.hint) from None
        kids = tuple(format_key_id(k) for k in env.recipient_kids)
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
        entries = resp.body["entries"]
        stray = [e["path"] for e in entries if not str(e["path"]).startswith(pfx)]
        if stray:
            raise ProtocolError(f"the proxy returned keys outside {pfx}: {stray[:3]}")
        return {e["path"]: self._decrypt(e["path"], e).value for e in entries}

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

    def attempts(self, req: Request) -> Attempts:
        return Attempts(req, self.settings)

    def httpx_kwargs(self) -> dict[str, Any]:
        """:meth:`client_kwargs` for an httpx client: environment proxies only for https."""
        return {**self.client_kwargs(), "trust_env": env_proxies_allowed(self.settings.addr)}

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


def env_proxies_allowed(addr: str) -> bool:
    """May requests to *addr* go through a forward proxy from HTTP(S)_PROXY / ALL_PROXY?

    Only for ``https://``: a proxy then just tunnels (CONNECT) TLS it cannot read. Why
    never for ``http://`` (loopback only, ``serve --insecure``): a forward proxy receives
    a plain-HTTP request whole, Authorization header included, so HTTP_PROXY would hand
    the token to the proxy (and whoever is on the way to it) in clear text.
    """
    return urlsplit(addr).scheme == "https"


def _check_addr(addr: str) -> None:
    """TLS everywhere except loopback: a token must not cross a network in clear text."""
    parts = urlsplit(addr)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"bad proxy address {addr!r}: use https://HOST:PORT")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise UsageError(f"refusing to send a token over plain HTTP to {parts.hostname}",
                         hint="use an https:// address")


class Attempts:
    """The retry plan of one request: reads are retried on 503 and connection errors
    with jittered exponential backoff (honouring Retry-After up to 2 s); writes never
    are, since a write that timed out may still have been applied."""

    def __init__(self, req: Request, settings: _config.ClientSettings) -> None:
        self.total = settings.retries + 1 if req.idempotent else 1
        self.addr = settings.addr

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.total))

    def check(self, raw: httpx.Response) -> Response:
        return _response(raw, self.addr)

    def unreachable(self, exc: Exception) -> Unavailable:
        return _unreachable(self.addr, exc)

    def delay(self, attempt: int, error: Unavailable) -> float:
        """Seconds to wait before the next attempt; re-raises *error* after the last."""
        if attempt + 1 >= self.total or not error.retryable:
            raise error
        base = min(2.0, 0.1 * 2**attempt) * (0.5 + random.random())  # noqa: S311 - jitter
        return float(max(base, min(error.retry_after or 0.0, 2.0)))


def send_kwargs(req: Request) -> dict[str, Any]:
    return {"params": req.params, "headers": req.headers, "content": req.content,
            "json": req.json}


def _response(resp: httpx.Response, addr: str) -> Response:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code >= 400:
        error = error_from_response(resp.status_code, body, addr)
        retry_after = resp.headers.get("retry-after", "")
        if isinstance(error, Unavailable) and retry_after.isdigit():
            error.retry_after = float(retry_after)
        raise error
    if resp.status_code != 200 or not isinstance(body, dict):
        raise ProtocolError(
            f"{addr} did not answer like a vaultkey proxy (HTTP {resp.status_code}, "
            f"{resp.headers.get('content-type', 'no content type')})",
            hint="check --addr / VAULTKEY_ADDR")
    return Response(resp.status_code, body)


def advance(op: Op[T], response: Response | None) -> tuple[bool, Any]:
    """Feed *response* to *op* (None starts it): ``(False, next request)`` or ``(True, result)``.

    A malformed answer surfaces inside an operation as KeyError/TypeError/ValueError
    (vaultkey's own errors are none of those); it is reported as one ProtocolError.
    """
    try:
        request = next(op) if response is None else op.send(response)
    except StopIteration as done:
        return True, done.value
    except (KeyError, TypeError, ValueError) as exc:
        op.close()
        raise ProtocolError(f"unexpected answer from the proxy ({type(exc).__name__}: {exc})",
                            hint="is --addr a vaultkey proxy of a compatible version?") from exc
    return False, request


def _unreachable(addr: str, exc: Exception) -> Unavailable:
    # A local protocol error quotes the offending header, which may hold the token.
    detail = type(exc).__name__ if type(exc).__name__ == "LocalProtocolError" else str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in detail or "certificate verify failed" in detail:
        # Retrying will not help: the proxy's certificate is not signed by the CA we trust.
        return Unavailable(f"TLS verification of {addr} failed: {detail}", retryable=False,
                           hint="check --cacert / VAULTKEY_CACERT (the CA that signed the "
                           "proxy's certificate) and that the certificate has not expired")
    return Unavailable(f"cannot reach the vaultkey proxy at {addr}: {detail}",
                       hint="check --addr / VAULTKEY_ADDR and that the proxy is running")
