"""The v1 envelope wire format: parse, validate and serialise. No key material.

An envelope is what etcd stores for one value: the ciphertext, the path it is
bound to, and one stanza per recipient holding the wrapped data key. The
byte layout is specified in docs/FORMAT.md; this module is its reference
parser. It never sees a private key, so the proxy can use it to check writes::

    >>> from vaultkey.envelope import Envelope, Stanza
    >>> env = Envelope(path="/app/db", counter=0,
    ...                stanzas=(Stanza(kid=bytes(16), wrapped=bytes(80)),),
    ...                commitment=bytes(32), nonce=bytes(24), ciphertext=bytes(16))
    >>> Envelope.parse(env.serialize()) == env
    True
    >>> len(env.serialize())
    196

Parsing is strict: wrong magic, unknown version or flag bits, bad lengths, a
stored path that breaks the key path rules, duplicate recipients and trailing
bytes all raise :class:`MalformedEnvelope`. :meth:`Envelope.serialize` checks
the layout only (lengths, counts); the path rules are enforced by
:func:`vaultkey.crypto.encrypt`, which is what writers use.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from vaultkey.errors import InvalidPath, MalformedEnvelope
from vaultkey.paths import MAX_PATH_BYTES, validate_key

MAGIC = b"VKEY"
VERSION = 1
FLAG_SIGNED = 0x01
KNOWN_FLAGS = FLAG_SIGNED
KID_BYTES = 16
WRAPPED_BYTES = 80  # crypto_box_seal of a 32-byte key: 32 (ephemeral pk) + 32 + 16 (MAC)
COMMITMENT_BYTES = 32
NONCE_BYTES = 24
TAG_BYTES = 16
SIGNATURE_BYTES = 64
MAX_STANZAS = 255
# Counters are (at least) the writer's clock in microseconds since the epoch; one more than a
# day ahead of the checker's clock is refused, so that a planted counter (2**64 - 1, say)
# cannot freeze a path for every reader (docs/FORMAT.md section 7).
COUNTER_LEEWAY_US = 86_400 * 1_000_000

# etcd refuses gRPC requests over 1.5 MiB (--max-request-bytes default). The
# request also carries the key (root + path, at most ~1.1 KiB) and, for
# compare-and-swap, a compare clause; 8 KiB of headroom covers all of it.
ETCD_MAX_REQUEST_BYTES = 1536 * 1024
MAX_ENVELOPE_BYTES = ETCD_MAX_REQUEST_BYTES - 8 * 1024

_FIXED = struct.Struct(">4sBBH")  # magic, version, flags, path length
_PATH_LEN = struct.Struct(">H")
_COUNTER = struct.Struct(">QB")  # counter, stanza count
_CT_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class Stanza:
    """The data key wrapped for one recipient, found by its 16-byte key id."""

    kid: bytes
    wrapped: bytes


@dataclass(frozen=True)
class Signature:
    """A writer's Ed25519 signature (docs/FORMAT.md section 7): its signing key id and the
    signature over :meth:`Envelope.signed_bytes`."""

    signer_kid: bytes
    signature: bytes


@dataclass(frozen=True)
class Envelope:
    """One parsed v1 envelope."""

    path: str
    counter: int
    stanzas: tuple[Stanza, ...]
    commitment: bytes
    nonce: bytes
    ciphertext: bytes
    signature: Signature | None = None
    version: int = VERSION

    @property
    def flags(self) -> int:
        return FLAG_SIGNED if self.signature is not None else 0

    @property
    def recipient_kids(self) -> tuple[bytes, ...]:
        return tuple(s.kid for s in self.stanzas)

    def stanza_for(self, kid: bytes) -> Stanza | None:
        for stanza in self.stanzas:
            if stanza.kid == kid:
                return stanza
        return None

    def header(self) -> bytes:
        """The header bytes: everything from the magic to the nonce.

        These are the AEAD associated data, so the version, path, counter,
        every stanza and the commitment are all authenticated.
        """
        path = self.path.encode("utf-8")
        parts = [
            _FIXED.pack(MAGIC, self.version, self.flags, len(path)),
            path,
            _COUNTER.pack(self.counter, len(self.stanzas)),
        ]
        parts.extend(s.kid + s.wrapped for s in self.stanzas)
        parts += [self.commitment, self.nonce]
        return b"".join(parts)

    def signed_bytes(self) -> bytes:
        """What a writer signature covers: the header plus the ciphertext block."""
        return self.header() + _CT_LEN.pack(len(self.ciphertext)) + self.ciphertext

    def serialize(self) -> bytes:
        self._check_fields()
        out = self.signed_bytes()
        if self.signature is not None:
            out += self.signature.signer_kid + self.signature.signature
        return out

    def _check_fields(self) -> None:
        _require(self.version == VERSION, f"unsupported envelope version {self.version}")
        _require(0 <= self.counter < 2**64, "counter out of range")
        _require(1 <= len(self.stanzas) <= MAX_STANZAS, "an envelope has 1 to 255 recipients")
        for s in self.stanzas:
            _require(len(s.kid) == KID_BYTES and len(s.wrapped) == WRAPPED_BYTES, "bad stanza")
        sig = self.signature
        _require(sig is None or (len(sig.signer_kid) == KID_BYTES
                                 and len(sig.signature) == SIGNATURE_BYTES),
                 "bad signature block")
        _require(len(set(self.recipient_kids)) == len(self.stanzas), "duplicate recipient")
        _require(len(self.commitment) == COMMITMENT_BYTES, "bad commitment length")
        _require(len(self.nonce) == NONCE_BYTES, "bad nonce length")
        _require(len(self.ciphertext) >= TAG_BYTES, "ciphertext shorter than its tag")
        _require(len(self.path.encode("utf-8")) <= MAX_PATH_BYTES, "path too long")

    @classmethod
    def parse(cls, data: bytes) -> Envelope:
        """Parse and validate envelope bytes (no cryptography).

        Every field is checked as soon as it is read, in layout order, and the
        first violation is reported (docs/FORMAT.md section 4 lists the rules).
        """
        reader = _Reader(bytes(data))
        version, flags = _read_preamble(reader)
        path = _read_path(reader)
        counter, count = reader.unpack(_COUNTER)
        _require(count >= 1, "an envelope has 1 to 255 recipients")
        stanzas = tuple(
            Stanza(kid=reader.take(KID_BYTES), wrapped=reader.take(WRAPPED_BYTES))
            for _ in range(count)
        )
        _require(len({s.kid for s in stanzas}) == count, "duplicate recipient")
        commitment = reader.take(COMMITMENT_BYTES)
        nonce = reader.take(NONCE_BYTES)
        (ct_len,) = reader.unpack(_CT_LEN)
        _require(ct_len >= TAG_BYTES, "ciphertext shorter than its tag")
        ciphertext = reader.take(ct_len)
        signature = None
        if flags & FLAG_SIGNED:
            signature = Signature(reader.take(KID_BYTES), reader.take(SIGNATURE_BYTES))
        _require(reader.at_end(), "trailing bytes after the envelope")
        env = cls(path, counter, stanzas, commitment, nonce, ciphertext, signature, version)
        env._check_fields()  # defence in depth: parse never returns what serialize refuses
        return env


def _read_preamble(reader: _Reader) -> tuple[int, int]:
    """Magic, version and flags, each checked on whatever bytes there are."""
    # Why: magic and version come first even for short input, so a foreign blob
    # or a future version (b"VKEY\x02", however short) is named as such and is
    # never reported as merely "truncated".
    _require(MAGIC.startswith(reader.peek(len(MAGIC))), "not a vaultkey envelope (bad magic)")
    reader.take(len(MAGIC))
    version = reader.take(1)[0]
    _require(version == VERSION, f"unsupported envelope version {version}")
    flags = reader.take(1)[0]
    _require(flags & ~KNOWN_FLAGS == 0, f"unknown flag bits 0x{flags:02x}")
    return version, flags


def _read_path(reader: _Reader) -> str:
    """The stored path: length, strict UTF-8, then the key path rules."""
    (path_len,) = reader.unpack(_PATH_LEN)
    _require(path_len <= MAX_PATH_BYTES, "path too long")
    try:
        path = reader.take(path_len).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedEnvelope("envelope path is not UTF-8") from None
    try:
        validate_key(path)
    except InvalidPath as exc:
        # Why: the stored path is what the AEAD authenticates and what a reader
        # compares with the path it asked for; holding it to the same rules means
        # no envelope can claim a path that no request could name (dot segments,
        # '//', control characters...), whatever a writer put there.
        raise MalformedEnvelope(f"envelope path is not a valid key path: {exc.message}") from None
    return path


def overhead(path: str, recipients: int, *, signed: bool = False) -> int:
    """Envelope size minus plaintext size, for a path and recipient count (and the 80-byte
    signature block of a signed envelope)."""
    return (
        _FIXED.size + len(path.encode("utf-8")) + _COUNTER.size
        + recipients * (KID_BYTES + WRAPPED_BYTES)
        + COMMITMENT_BYTES + NONCE_BYTES + _CT_LEN.size + TAG_BYTES
        + (KID_BYTES + SIGNATURE_BYTES if signed else 0)
    )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise MalformedEnvelope(message)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def peek(self, n: int) -> bytes:
        return self._data[self._pos : self._pos + n]

    def take(self, n: int) -> bytes:
        end = self._pos + n
        _require(end <= len(self._data), "envelope is truncated")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def unpack(self, fmt: struct.Struct) -> tuple[Any, ...]:
        return fmt.unpack(self.take(fmt.size))

    def at_end(self) -> bool:
        return self._pos == len(self._data)


__all__ = [
    "MAX_ENVELOPE_BYTES",
    "VERSION",
    "Envelope",
    "Signature",
    "Stanza",
    "overhead",
]
