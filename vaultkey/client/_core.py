"""The SDK's sans-I/O operations: each one a generator of HTTP requests.

An operation (``Operations.op_*``) yields :class:`~vaultkey.client._transport.Request`
objects, receives :class:`~vaultkey.client._transport.Response` objects and returns
its result. It builds URLs, reads answers, encrypts and decrypts locally, but never
touches a socket: the blocking and asyncio clients in :mod:`vaultkey.client` only
differ in how their transport sends the requests, so both behave identically by
construction.

Each operation validates the path it is given once, before the first request names
it; nothing after that (the recipients step, :mod:`vaultkey.crypto`) validates again.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from vaultkey.client._failover import addrs_key
from vaultkey.client._transport import Request, Response
from vaultkey.client.item import Item
from vaultkey.client.marks import MARKS_OFF, Marks
from vaultkey.errors import Conflict, InvalidPath, ProtocolError, UsageError, VaultkeyError
from vaultkey.keys import PublicKey
from vaultkey.paths import validate_key, validate_prefix

if TYPE_CHECKING:
    from vaultkey.client.item import Signer
    from vaultkey.client.settings import ClientSettings
    from vaultkey.client.trust import TrustStore
    from vaultkey.crypto import SecretKey
    from vaultkey.envelope import Envelope
    from vaultkey.signatures import Writers
    from vaultkey.signkey import SigningKey

T = TypeVar("T")


@dataclass(frozen=True)
class Pause:
    """Not a request: the client waits *seconds* (a write's backoff after losing its own
    compare-and-swap to a concurrent writer), then resumes the operation."""

    seconds: float


Op = Generator["Request | Pause", Response, T]
# A secret key, a key file (or several, joined with os.pathsep), or a list of them.
KeySource = Any
_CAS_ATTEMPTS = 10  # a write's own compare-and-swap, lost to a concurrent writer, is retried
_UNKNOWN = object()  # the recipients answer has no "current": the caller may not read


def clock_counter() -> int:
    """The writer's clock in microseconds since the Unix epoch (docs/FORMAT.md section 7)."""
    import time

    return time.time_ns() // 1000


def next_counter(previous: int, floor: int = 0) -> int:
    """The counter of the write after one with counter *previous* (0: none or unknown):
    one more, or the clock if that is higher (so a path deleted and written again, or a
    sequence started by a writer whose clock was slow, lands above every older counter),
    and never below *floor* (this client's own mark + 1). A *previous* more than a day ahead
    of the clock is taken as planted and never continued from."""
    from vaultkey.envelope import COUNTER_LEEWAY_US

    now = clock_counter()
    if previous > now + COUNTER_LEEWAY_US:
        previous = 0
    return max(previous + 1, now, floor)


def advance(op: Op[T], response: Response | VaultkeyError | None) -> tuple[bool, Any]:
    """Feed *response* to *op* (None starts it): ``(False, next request)`` or ``(True, result)``.

    An error answer is thrown into the operation, which may handle it (a lost
    compare-and-swap of its own is retried) or let it propagate. A malformed answer
    surfaces inside an operation as KeyError/TypeError/ValueError (vaultkey's own
    errors are none of those); it is reported as one ProtocolError.
    """
    try:
        if response is None:
            request = next(op)
        elif isinstance(response, VaultkeyError):
            request = op.throw(response)
        else:
            request = op.send(response)
    except StopIteration as done:
        return True, done.value
    except (KeyError, TypeError, ValueError) as exc:
        op.close()
        raise ProtocolError(f"unexpected answer from the proxy ({type(exc).__name__}: {exc})",
                            hint="is --addr a vaultkey proxy of a compatible version?") from exc
    return False, request


def _url(api: str, path: str) -> str:
    return api + quote(path, safe="/")


def lease_params(ttl: int | str | None, lease: str | None) -> dict[str, str] | None:
    """The query of a write with a new lease of *ttl* (``30``, ``"30s"``, ``"5m"``: the proxy
    checks it is 2 s to 24 h) or attached to the existing *lease*; None for neither."""
    if ttl is not None and lease is not None:
        raise UsageError("give ttl or lease, not both")
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | str):
            raise UsageError("ttl is seconds (an int) or a duration such as '30s' or '5m'")
        return {"ttl": str(ttl)}
    return None if lease is None else {"lease": str(lease)}


def _listed(path: Any, prefix: str) -> str:
    """A key path the proxy listed under *prefix*, held to the path rules (once)."""
    try:
        key = validate_key(path)
    except InvalidPath as exc:
        raise ProtocolError(f"the proxy listed an invalid key path: {exc.message}") from None
    if not key.startswith(prefix):
        raise ProtocolError(f"the proxy returned keys outside {prefix}: {key}")
    return key


class Operations:
    """Request building, answer reading and local crypto: no I/O of its own."""

    def __init__(self, settings: ClientSettings,
                 key: KeySource | None = None,
                 trust: TrustStore | str | os.PathLike[str] | None = None) -> None:
        self._key_source: Any = key if key is not None else settings.key
        self._settings_signing: Any = settings.signing_key
        self._trust_source: Any = trust if trust is not None else settings.trust
        self._keys: list[SecretKey] | None = None
        self._trust: TrustStore | None = None
        self._signing: SigningKey | None = None
        marks = settings.marks
        # Keyed by the whole address list: the replicas behind it serve one etcd dataset.
        self.marks = Marks(None if marks in (None, "", MARKS_OFF) else marks,
                           addrs_key(settings.addr))
        # The highest revision this client wrote or read: its reads ask the proxy to reflect
        # at least that much (read your writes and monotonic reads on any replica).
        self.seen_revision = 0

    def _saw(self, revision: Any) -> None:
        self.seen_revision = max(self.seen_revision, int(revision))

    def _read_headers(self) -> dict[str, str] | None:
        return {"X-Vaultkey-Min-Revision": str(self.seen_revision)} if self.seen_revision else None

    def secret_keys(self) -> list[SecretKey]:
        """The caller's keyring: one secret key, or several (``new.key:old.key``, or a list)
        while a group rotates its keys; each value is opened with the key it was sealed to."""
        if self._keys is None:
            from vaultkey.crypto import SecretKey

            src = self._key_source
            if src is None:
                raise UsageError("no secret key configured",
                                 hint="pass key=, --key FILE or set VAULTKEY_KEY")
            keys: list[SecretKey] = []
            for item in src if isinstance(src, list | tuple) else [src]:
                if isinstance(item, SecretKey):
                    keys.append(item)
                    continue
                for part in os.fspath(item).split(os.pathsep):
                    if part:
                        keys.append(SecretKey.load(os.path.expanduser(part)))
            if not keys:
                raise UsageError("no secret key configured", hint="the key setting is empty")
            self._keys = keys
        return self._keys

    def secret_key(self) -> SecretKey:
        """The first key of the keyring (the current one)."""
        return self.secret_keys()[0]

    def key_for(self, env: Any) -> SecretKey:
        """The keyring's key that *env* has a stanza for (else the first, whose error
        then names it)."""
        keys = self.secret_keys()
        return next((k for k in keys if env.stanza_for(k.public.kid) is not None), keys[0])

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

    def signing_key(self) -> SigningKey | None:
        """The writer signing key (``signing_key`` setting), if one is configured."""
        if self._signing is None and self._settings_signing:
            from vaultkey.signkey import SigningKey

            src = self._settings_signing
            self._signing = src if isinstance(src, SigningKey) else SigningKey.load(
                os.path.expanduser(os.fspath(src)))
        return self._signing

    def _trust_or_none(self) -> TrustStore | None:
        return None if self._trust_source is None else self.trust_store()

    def _decrypt(self, key: str, entry: dict[str, Any], *, history: bool = False) -> Item:
        """Open the envelope in *entry*, read from *key* (a validated key path): the
        signature your trust store requires there, then the value, then its counter
        against your rollback mark."""
        from vaultkey.crypto import _open_validated, parse_for_decryption
        from vaultkey.errors import DecryptionError
        from vaultkey.keys import format_key_id

        try:
            blob = base64.b64decode(entry["envelope"], validate=True)
        except (KeyError, ValueError, TypeError):
            raise DecryptionError(f"{key}: the proxy returned no valid envelope") from None
        try:
            env = parse_for_decryption(blob)
            trust = self._trust_or_none()
            writers = None if trust is None else trust.writers_for(key)
            value = _open_validated(env, key.encode("utf-8"), self.key_for(env), writers)
            signer = _signer(env, trust, writers)
            self.marks.check(key, env.counter, revision=int(entry["revision"]),
                             history=history)
        except DecryptionError as exc:  # name the key: get_many decrypts many
            raise type(exc)(f"{key}: {exc.message}", hint=exc.hint) from None
        kids = tuple(format_key_id(k) for k in env.recipient_kids)
        return Item(key, value, int(entry["revision"]), int(entry["create_revision"]),
                    int(entry["version"]), kids, env.counter, signer)

    def _recipients_from(self, body: Any) -> list[PublicKey]:
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
        resp = yield Request("GET", _url("/v1/kv", key), headers=self._read_headers())
        item = self._decrypt(key, resp.body)
        self._saw(item.revision)
        return item

    def op_get_many(self, prefix: str) -> Op[dict[str, bytes]]:
        pfx = validate_prefix(prefix)
        resp = yield Request("GET", _url("/v1/kv", pfx), params={"recursive": "true"},
                             headers=self._read_headers())
        self._saw(resp.body.get("revision") or 0)
        entries = [(_listed(e["path"], pfx), e) for e in resp.body["entries"]]
        with self.marks.batch():
            return {key: self._decrypt(key, e).value for key, e in entries}

    def op_list(self, prefix: str) -> Op[list[str]]:
        pfx = validate_prefix(prefix)
        resp = yield Request("GET", _url("/v1/kv", pfx), params={"list": "true"},
                             headers=self._read_headers())
        self._saw(resp.body.get("revision") or 0)
        return list(resp.body["keys"])

    def op_recipients(self, path: str) -> Op[list[PublicKey]]:
        return self._recipients(validate_key(path))

    def _recipients(self, key: str) -> Op[list[PublicKey]]:
        resp = yield Request("GET", _url("/v1/recipients", key))
        return self._recipients_from(resp.body)

    def op_set(self, path: str, value: bytes, recipients: Sequence[PublicKey] | None,
               if_revision: int | None, create_only: bool,
               params: dict[str, str] | None = None) -> Op[dict[str, Any]]:
        """Encrypt, sign (with a signing key) and write; the answer's body (``revision``,
        and ``lease`` / ``ttl`` when *params* asks for a lease, see :func:`lease_params`).

        The counter is the current value's plus one (never below this client's mark),
        written with compare-and-swap on the revision the proxy named; a swap lost to a
        concurrent writer is retried with fresh numbers, unless the caller gave its own
        condition (*if_revision*, *create_only*), whose loss is the caller's answer.
        """
        from vaultkey.crypto import _encrypt_validated

        key = validate_key(path)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise UsageError("value must be bytes (encode text first)")
        signer = self.signing_key()
        own = if_revision is not None or create_only
        for attempt in range(1, _CAS_ATTEMPTS + 1):
            keys, current = recipients, _UNKNOWN
            if keys is None:
                answer = (yield Request("GET", _url("/v1/recipients", key))).body
                keys = self._recipients_from(answer)
                _check_signer(key, answer.get("signature"), signer)
                current = answer.get("current", _UNKNOWN)
            counter, condition = self._next_write(key, current)
            headers = {"Content-Type": "application/octet-stream"}
            if own:
                condition = {} if if_revision is None else {"If-Match": str(int(if_revision))}
                if create_only:
                    condition["If-None-Match"] = "*"
            blob = _encrypt_validated(bytes(value), key, list(keys), counter=counter,
                                      signer=signer)
            try:
                resp = yield Request("PUT", _url("/v1/kv", key), params=params,
                                     headers=headers | condition, content=blob)
            except Conflict:
                if own or not condition or attempt == _CAS_ATTEMPTS:
                    raise
                from vaultkey.client._transport import backoff

                # Why a jittered pause: two writers racing on one key in lockstep would
                # otherwise keep taking each other's revision.
                yield Pause(backoff(attempt - 1, 0.5) / 10)
                continue
            self._saw(resp.body["revision"])  # a malformed answer fails here: ProtocolError
            self.marks.check(key, counter, revision=int(resp.body["revision"]))
            return dict(resp.body)
        raise AssertionError("unreachable")

    def _next_write(self, key: str, current: Any) -> tuple[int, dict[str, str]]:
        """The counter of the next write to *key* and its compare-and-swap condition, from
        the recipients answer's ``current`` (None: no value; _UNKNOWN: not known)."""
        floor = self.marks.get(key) + 1
        if current is _UNKNOWN:
            return next_counter(0, floor), {}
        if current is None:
            return next_counter(0, floor), {"If-None-Match": "*"}
        return (next_counter(int(current["counter"]), floor),
                {"If-Match": str(int(current["revision"]))})

    def op_delete(self, path: str, if_revision: int | None) -> Op[None]:
        key = validate_key(path)
        headers = {} if if_revision is None else {"If-Match": str(int(if_revision))}
        resp = yield Request("DELETE", _url("/v1/kv", key), headers=headers)
        if isinstance(resp.body, dict) and resp.body.get("revision"):  # readers only
            self._saw(resp.body["revision"])

    def op_simple(self, method: str, url: str, json: Any = None) -> Op[Any]:
        resp = yield Request(method, url, json=json)
        return resp.body


def _signer(env: Envelope, trust: TrustStore | None, writers: Writers | None) -> Signer | None:
    """Who signed *env*: verified against *writers* already if the path requires it,
    else against the trust store if it knows the key (a bad signature is refused)."""
    from vaultkey.client.item import Signer
    from vaultkey.keys import format_signing_key_id

    sig = env.signature
    if sig is None:
        return None
    kid = format_signing_key_id(sig.signer_kid)
    if writers is not None:
        return Signer(kid, writers.name_of(sig.signer_kid), True)
    known = None if trust is None else trust.signer(sig.signer_kid)
    if known is None:
        return Signer(kid, None, False)
    from vaultkey.errors import SignatureError
    from vaultkey.signatures import signature_valid

    if not signature_valid(env, known[1]):
        raise SignatureError("the writer signature does not verify (forged, or altered "
                             "after signing)")
    return Signer(kid, known[0], True)


def _check_signer(key: str, required: Any, signer: SigningKey | None) -> None:
    """Fail before writing if the proxy says *key* needs a signature *signer* cannot give."""
    if not required:
        return
    writers = required["writers"]
    accepted = ", ".join(f"{w['name']} ({w['key_id']})" for w in writers)
    if signer is None:
        raise UsageError(f"{key} requires a writer signature (accepted: {accepted})",
                         hint="set VAULTKEY_SIGNING_KEY or --signing-key to your .sigkey file")
    if signer.key_id not in {w["key_id"] for w in writers}:
        raise UsageError(f"your signing key {signer.key_id} is not accepted for {key} "
                         f"(accepted: {accepted})",
                         hint="ask the path's owners to list your .sigpub in their policy")
