"""Proxy tokens: creation, hashed storage in etcd, constant-time verification.

A token looks like ``vkt_<16 hex id>.<43 base64url chars>`` (256 random
bits). Only ``SHA-256("vaultkey token v1" || 0x00 || token)`` is stored, under
``<root>/sys/tokens/<id>`` where the KV API can never reach, so every proxy
replica sees the same tokens::

    >>> token, _id = new_token()
    >>> token.startswith("vkt_") and len(token) == 64
    True
    >>> parse_token_id(token) == _id
    True
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from vaultkey.errors import NotFound, StoreError, Unauthenticated, UsageError, VaultkeyError
from vaultkey.proxy.store.base import KVStore, WatchEvent

log = logging.getLogger(__name__)
TOKEN_PREFIX = "vkt_"  # noqa: S105 - a public prefix, not a secret
_TOKEN_RE = re.compile(r"^vkt_([0-9a-f]{16})\.[A-Za-z0-9_-]{43}$")
_HASH_LABEL = b"vaultkey token v1\x00"
# Why a short cache: a revocation through this replica drops the entry at once;
# other replicas see it within CACHE_SECONDS because they re-read etcd.
CACHE_SECONDS = 1.0
# While the watch hub is live, revocations and expiries are pushed (or computed from the
# record), so a cached record stays valid this long; without the hub, CACHE_SECONDS.
LIVE_CACHE_SECONDS = 60.0
# Why a known-id set: a flood of made-up token ids must not cost one etcd read each.
# The ids of all tokens (keys only) are read at most once per KNOWN_IDS_SECONDS; an id
# not among them is refused without a read. A token created on another replica a
# moment ago is refused for at most this long.
KNOWN_IDS_SECONDS = 1.0
# How long a revoked token stays in the token list (as revoked, with the time).
REVOKED_KEPT_SECONDS = 30 * 86400
_TTL_RE = re.compile(r"^([0-9]{1,9})([smhd]?)$", re.ASCII)
MAX_TTL_SECONDS = 10 * 365 * 86400
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DUMMY_HASH = "0" * 64


def hash_token(token: str) -> str:
    return hashlib.sha256(_HASH_LABEL + token.encode("utf-8", "replace")).hexdigest()


def new_token() -> tuple[str, str]:
    token_id = secrets.token_hex(8)
    return f"{TOKEN_PREFIX}{token_id}.{secrets.token_urlsafe(32)}", token_id


def parse_token_id(token: str) -> str | None:
    match = _TOKEN_RE.match(token)
    return match.group(1) if match else None


def parse_ttl(text: str) -> int:
    """``90``, ``90s``, ``30m``, ``24h`` or ``7d`` -> seconds (> 0)."""
    match = _TTL_RE.match(text.strip().lower())
    if not match or int(match.group(1)) <= 0:
        raise UsageError(f"bad TTL {text[:40]!r}: use e.g. 3600, 30m, 24h or 7d")
    seconds = int(match.group(1)) * _TTL_UNITS[match.group(2)]
    if seconds > MAX_TTL_SECONDS:
        raise UsageError("TTL too long: at most 10 years (3650d)")
    return seconds


@dataclass(frozen=True)
class TokenRecord:
    """What is stored for one token. ``hash`` is never returned by the API."""

    id: str
    group: str
    name: str
    created: float
    expires: float | None
    hash: str

    @classmethod
    def from_json(cls, data: bytes) -> TokenRecord:
        """Parse a stored record, ignoring fields a newer replica may have added."""
        try:
            raw = json.loads(data)
            return cls(id=str(raw["id"]), group=str(raw["group"]), name=str(raw.get("name", "")),
                       created=float(raw["created"]),
                       expires=None if raw.get("expires") is None else float(raw["expires"]),
                       hash=str(raw["hash"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"unreadable token record: {type(exc).__name__}") from None

    def public(self) -> dict[str, object]:
        data = asdict(self)
        del data["hash"]
        return data

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


@dataclass(frozen=True)
class Caller:
    """Who made a request: an admin, or a token of one group."""

    kind: Literal["admin", "group"]
    token_id: str
    group: str | None = None
    name: str = ""
    expires: float | None = None


class TokenRegistry:
    """Group tokens kept in the store (as hashes), plus the configured admin token.

    Runs on the event loop: :meth:`check_cached` answers without I/O when it can
    (the admin token, a cached record, an id that is certainly unknown), and
    :meth:`authenticate` reads the store otherwise. The clock is injectable so
    expiry can be tested without sleeping.
    """

    def __init__(self, store: KVStore, admin_token: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.set_admin_tokens(admin_token.splitlines() or [admin_token])
        self._clock = clock
        self._cache: dict[str, tuple[float, TokenRecord]] = {}
        # Ids revoked through this replica: a lookup that raced the revocation must not
        # put the record back into the cache (revocation is immediate here).
        self._revoked: dict[str, float] = {}
        self._known_ids: frozenset[str] = frozenset()
        self._known_at = float("-inf")
        self._refreshing: asyncio.Lock | None = None
        self.etcd_lookups = 0  # token reads from the store (a metric)
        # Set by the watch hub: True while its sys watch is up, so pushes can be trusted.
        self.live: Callable[[], bool] = lambda: False

    def on_sys_event(self, event: WatchEvent) -> None:
        """A change under ``<root>/sys/`` seen by the watch hub (any replica's writes)."""
        if event.path is None or not event.path.startswith("/tokens/"):
            return
        token_id = event.path.rsplit("/", 1)[1]
        self._cache.pop(token_id, None)
        if event.kind == "delete":  # revoked through some replica, or deleted by hand
            now = time.monotonic()
            self._revoked = {k: t for k, t in self._revoked.items() if now - t < 60}
            self._revoked[token_id] = now
            self._known_ids = self._known_ids - {token_id}
        else:
            self._known_ids = self._known_ids | {token_id}

    def on_sys_resync(self) -> None:
        """The sys watch missed events (compaction): trust nothing cached."""
        self._cache.clear()
        self._known_at = float("-inf")

    async def create(self, group: str, *, name: str = "",
                     ttl: int | None = None) -> tuple[str, TokenRecord]:
        token, token_id = new_token()
        now = self._clock()
        record = TokenRecord(token_id, group, name, now, now + ttl if ttl else None,
                             hash_token(token))
        await self._store.put(f"/tokens/{token_id}", json.dumps(asdict(record)).encode(),
                              create_only=True)
        self._known_ids = self._known_ids | {token_id}
        return token, record

    async def list(self) -> list[TokenRecord]:
        entries, _ = await self._store.range("/tokens/")
        records = []
        for entry in entries:
            try:
                records.append(TokenRecord.from_json(entry.value))
            except StoreError:
                log.error("skipping unreadable token record %s", entry.path)
        return records

    async def revoke(self, token_id: str) -> None:
        """Delete the token (it stops working at once), then keep its public record, with
        the time of the revocation, under ``/revoked/`` for :meth:`revoked`."""
        if not re.fullmatch(r"[0-9a-f]{16}", token_id):
            raise NotFound(f"no token with id {token_id!r}")
        entry = await self._store.get(f"/tokens/{token_id}")
        if not await self._store.delete(f"/tokens/{token_id}"):
            raise NotFound(f"no token with id {token_id!r}")
        now = time.monotonic()
        self._revoked = {k: t for k, t in self._revoked.items() if now - t < 60}
        self._revoked[token_id] = now
        self._cache.pop(token_id, None)
        try:
            public = TokenRecord.from_json(entry.value).public() if entry else {"id": token_id}
            await self._store.put(f"/revoked/{token_id}", json.dumps(
                {**public, "revoked": self._clock()}).encode())
        except VaultkeyError as exc:  # the revocation itself is done and stays done
            log.warning("token %s revoked, but its record for the token list was not kept "
                        "(%s)", token_id, exc.message)

    async def revoked(self) -> builtins.list[dict[str, object]]:
        """Tokens revoked in the last REVOKED_KEPT_SECONDS (public fields and ``revoked``,
        the time); older records are dropped as they are found."""
        entries, _ = await self._store.range("/revoked/")
        now, found = self._clock(), []
        for entry in entries:
            try:
                record = json.loads(entry.value)
                when = float(record["revoked"])
            except (ValueError, KeyError, TypeError):
                log.error("skipping unreadable revoked-token record %s", entry.path)
                continue
            if now - when > REVOKED_KEPT_SECONDS:
                with contextlib.suppress(VaultkeyError):
                    await self._store.delete(entry.path, if_revision=entry.mod_revision)
                continue
            found.append(record)
        return found

    def set_admin_tokens(self, tokens: Sequence[str]) -> None:
        """Accept exactly these admin tokens from now on (kept as hashes, like group tokens;
        blank lines and ``#`` comments are skipped)."""
        self._admin_hashes = tuple(hash_token(t.strip()) for t in tokens
                                   if t.strip() and not t.strip().startswith("#"))

    def check_cached(self, token: str | None) -> Caller | None:
        """The caller, if it can be known without I/O; None if the store must be read.
        Raises Unauthenticated for a missing, made-up, revoked or expired token."""
        if not token:
            raise Unauthenticated("missing token", hint="send 'Authorization: Bearer <token>'")
        presented = hash_token(token)
        # Constant-time comparisons only; a token is never compared as plain text.
        admin = None
        for admin_hash in self._admin_hashes:  # every one compared, whichever matches
            if hmac.compare_digest(presented, admin_hash):
                admin = Caller("admin", "admin-" + admin_hash[:8])
        if admin is not None:
            return admin
        token_id = parse_token_id(token)
        if token_id in self._revoked:  # revoked here, or pushed by the watch hub
            raise Unauthenticated("invalid or revoked token")
        hit = self._cache.get(token_id) if token_id else None
        ttl = LIVE_CACHE_SECONDS if self.live() else CACHE_SECONDS
        if hit is not None and time.monotonic() - hit[0] < ttl:
            return self._verify(presented, hit[1])
        if token_id is None or (self._known_fresh() and token_id not in self._known_ids):
            return self._verify(presented, None)
        return None

    async def authenticate(self, token: str | None) -> Caller:
        """Map a presented token to a Caller or raise Unauthenticated."""
        caller = self.check_cached(token)
        if caller is not None:
            return caller
        assert token is not None
        token_id = parse_token_id(token)
        assert token_id is not None
        if not self._known_fresh():
            await self._refresh_known_ids()
        record = await self._record(token_id) if token_id in self._known_ids else None
        return self._verify(hash_token(token), record)

    def _verify(self, presented: str, record: TokenRecord | None) -> Caller:
        stored = record.hash if record else _DUMMY_HASH
        if not hmac.compare_digest(presented, stored) or record is None:
            raise Unauthenticated("invalid or revoked token")
        if record.expired(self._clock()):
            raise Unauthenticated("token expired", hint="ask an admin for a new token")
        return Caller("group", record.id, record.group, record.name, record.expires)

    def _known_fresh(self) -> bool:
        return time.monotonic() - self._known_at < KNOWN_IDS_SECONDS

    async def _refresh_known_ids(self) -> None:
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:  # one refresh at a time; the others use its result
            if self._known_fresh():
                return
            started = time.monotonic()
            ids: set[str] = set()
            after: bytes | None = None
            revision: int | None = None
            while True:
                page = await self._store.list_keys("/tokens/", revision=revision, after=after)
                revision = page.revision
                ids.update(p.rsplit("/", 1)[1] for p in page.paths if p is not None)
                if page.after is None:
                    break
                after = page.after
            self.etcd_lookups += 1
            self._known_ids, self._known_at = frozenset(ids), started

    async def _record(self, token_id: str) -> TokenRecord | None:
        now = time.monotonic()
        self.etcd_lookups += 1
        entry = await self._store.get(f"/tokens/{token_id}")
        record = TokenRecord.from_json(entry.value) if entry else None
        if token_id in self._revoked:  # revoked while this read was in flight
            return None
        if record is not None:
            self._cache[token_id] = (now, record)
        else:
            self._cache.pop(token_id, None)
        return record
