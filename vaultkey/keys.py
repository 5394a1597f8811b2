"""Public keys: text form, key ids and public key files. No secret material here.

This module is safe for the proxy to import: it only parses and fingerprints
X25519 *public* keys (secret keys live in :mod:`vaultkey.crypto`)::

    >>> from vaultkey.keys import PublicKey
    >>> pk = PublicKey(bytes(32))
    >>> pk.key_id
    'vk1_a1ccbbd7ef85dbe90d9bbe4ff51b3b65'
    >>> PublicKey.from_text(pk.to_text()) == pk
    True

Text form of a key: ``<tag>_<base64url(raw key || checksum)>`` without padding
(exactly 48 characters from ``A-Z a-z 0-9 - _``, nothing else),
where ``tag`` is ``vkpub1`` (public) or ``vksec1`` (secret) and ``checksum`` is
the first 4 bytes of ``SHA-256("vaultkey key text v1" || 0x00 || tag || raw)``.
A truncated, mistyped or wrong-type key is therefore a clear error, never a
silently different key.

Key id: ``vk1_`` + hex of the first 16 bytes of
``SHA-256("vaultkey key id v1" || 0x00 || public key)``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from vaultkey.errors import KeyFileError

KEY_BYTES = 32
KID_BYTES = 16
PUBLIC_TAG = "vkpub1"
SECRET_TAG = "vksec1"  # noqa: S105 - a type tag, not a secret
SIGNING_PUBLIC_TAG = "vksigpub1"
SIGNING_SECRET_TAG = "vksigsec1"  # noqa: S105 - a type tag, not a secret
SIGNATURE_BYTES = 64
_CHECKSUM_BYTES = 4
_TEXT_LABEL = b"vaultkey key text v1\x00"
_KID_LABEL = b"vaultkey key id v1\x00"
_SIGNING_KID_LABEL = b"vaultkey signing key id v1\x00"
_TAG_NAMES = {PUBLIC_TAG: "public key", SECRET_TAG: "secret key",
              SIGNING_PUBLIC_TAG: "public signing key", SIGNING_SECRET_TAG: "secret signing key"}
_BODY_CHARS = 48  # base64url of 32-byte key + 4-byte checksum, no padding needed
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_LINE_BLANKS = " \t\r"  # the only characters trimmed from a key file line


def key_id_bytes(public: bytes) -> bytes:
    """The 16-byte key id of a raw X25519 public key."""
    return hashlib.sha256(_KID_LABEL + public).digest()[:KID_BYTES]


def format_key_id(kid: bytes) -> str:
    """Display form of a 16-byte key id: ``vk1_`` + 32 hex digits."""
    return "vk1_" + kid.hex()


def signing_key_id_bytes(public: bytes) -> bytes:
    """The 16-byte key id of a raw Ed25519 public key (a label of its own, so an
    encryption key and a signing key never share an id)."""
    return hashlib.sha256(_SIGNING_KID_LABEL + public).digest()[:KID_BYTES]


def format_signing_key_id(kid: bytes) -> str:
    """Display form of a signing key id: ``vks1_`` + 32 hex digits."""
    return "vks1_" + kid.hex()


def _checksum(tag: str, raw: bytes) -> bytes:
    return hashlib.sha256(_TEXT_LABEL + tag.encode() + raw).digest()[:_CHECKSUM_BYTES]


def encode_key_text(tag: str, raw: bytes) -> str:
    """Encode a raw 32-byte key as checksummed text with a type prefix."""
    body = base64.urlsafe_b64encode(raw + _checksum(tag, raw)).rstrip(b"=").decode()
    return f"{tag}_{body}"


def decode_key_text(text: str, expected_tag: str, source: str = "key") -> bytes:
    """Decode key text, checking its type prefix, alphabet, length and checksum.

    The text must be exactly ``<tag>_<body>``: nothing is trimmed here (a key
    file's line whitespace is handled by :func:`key_line`). The checks run in the
    order docs/FORMAT.md section 2 gives, and the first failure is reported.
    """
    tag, sep, body = text.partition("_")
    if not sep or tag not in _TAG_NAMES:
        raise KeyFileError(
            f"{source}: not a vaultkey key (expected text starting with '{expected_tag}_')"
        )
    if tag != expected_tag:
        raise KeyFileError(
            f"{source}: this is a {_TAG_NAMES[tag]}, but a {_TAG_NAMES[expected_tag]} is needed"
        )
    _check_alphabet(body, len(tag) + 1, source)
    # Why: 36 bytes are exactly 48 base64url characters with no spare bits, so
    # checking the length of the text makes every accepted body canonical: one
    # key has exactly one text form.
    if len(body) != _BODY_CHARS:
        raise KeyFileError(f"{source}: key text has the wrong length (truncated or corrupted)")
    blob = base64.urlsafe_b64decode(body)
    raw, check = blob[:KEY_BYTES], blob[KEY_BYTES:]
    if _checksum(tag, raw) != check:
        raise KeyFileError(
            f"{source}: key checksum mismatch (the key text is corrupted or mistyped)"
        )
    return raw


def _check_alphabet(body: str, offset: int, source: str) -> None:
    """Refuse anything but base64url characters without padding.

    Why: a lenient decoder (Python's drops unknown characters, accepts '+', '/'
    and padding) would let two different texts name one key and let junk pass
    unnoticed; the format has one spelling per key. Errors name the character
    and its column, never the key text (it may be a secret key).
    """
    for i, ch in enumerate(body):
        if ch in _B64URL:
            continue
        if ch == "=":
            raise KeyFileError(
                f"{source}: key text is corrupted: '=' padding is not allowed "
                "(key text is base64url without padding)"
            )
        hint = None
        if ch in "+/":
            hint = "key text uses base64url: '-' and '_' where standard base64 has '+' and '/'"
        shown = f"{ch!r} (U+{ord(ch):04X})" if ch.isprintable() else f"U+{ord(ch):04X}"
        raise KeyFileError(
            f"{source}: key text is corrupted: {shown} at column {offset + i + 1} "
            "is not a base64url character (A-Z a-z 0-9 - _)",
            hint=hint,
        )


def key_line(text: str, source: str) -> str:
    """The single key line of a key file (comments and blank lines are ignored).

    Lines end at LF only; each line loses leading and trailing spaces, tabs and
    carriage returns (so CRLF files and indented keys work) and nothing else:
    Unicode spaces, form feeds or a byte-order mark stay and make the key text
    invalid. docs/FORMAT.md section 2 states the same rule.
    """
    lines = [ln.strip(_LINE_BLANKS) for ln in text.split("\n")]
    keys = [ln for ln in lines if ln and not ln.startswith("#")]
    if not keys:
        raise KeyFileError(f"{source}: no key found in the file")
    if len(keys) > 1:
        raise KeyFileError(f"{source}: more than one key line in the file")
    return keys[0]


K = TypeVar("K", bound="_PublicKeyText")
P = TypeVar("P", bound="_PublicKeyText")


class HasPublicKey(Generic[P]):
    """A secret key's public half and its id (the secret key classes live elsewhere)."""

    __slots__ = ()
    _public: P

    @property
    def public(self) -> P:
        return self._public

    @property
    def key_id(self) -> str:
        return self._public.key_id


@dataclass(frozen=True)
class _PublicKeyText:
    """A 32-byte public key with a typed text form and a key file (shared by both kinds)."""

    raw: bytes
    # Each kind: its text tag, its name in messages, its key file's title, its key id
    # (the 16-byte id, and how people see it).
    _SPEC: ClassVar[tuple[str, str, str, Callable[[bytes], bytes], Callable[[bytes], str]]]

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != KEY_BYTES:
            raise KeyFileError(f"a {self._SPEC[1]} is exactly 32 bytes")

    @property
    def kid(self) -> bytes:
        return self._SPEC[3](self.raw)

    @property
    def key_id(self) -> str:
        return self._SPEC[4](self.kid)

    def to_text(self) -> str:
        return encode_key_text(self._SPEC[0], self.raw)

    def to_file_text(self, comment: str = "") -> str:
        head = f"# {self._SPEC[2]}\n"
        if comment:
            head += f"# {comment}\n"
        return f"{head}# key id: {self.key_id}\n{self.to_text()}\n"

    @classmethod
    def from_text(cls: type[K], text: str, source: str | None = None) -> K:
        where = source or cls._SPEC[1]
        return cls(decode_key_text(key_line(text, where), cls._SPEC[0], where))

    @classmethod
    def load(cls: type[K], path: str | os.PathLike[str]) -> K:
        """Load a public key file (public keys may be world-readable)."""
        from pathlib import Path  # not at import: `vaultkey get` never reads a .pub file

        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"{p}: cannot read {cls._SPEC[1]} file: {exc}") from exc
        return cls.from_text(text, str(p))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key_id})"


@dataclass(frozen=True, repr=False)
class PublicKey(_PublicKeyText):
    """An X25519 public key that values can be encrypted to."""

    _SPEC = (PUBLIC_TAG, "public key", "vaultkey public key (X25519)", key_id_bytes,
             format_key_id)


@functools.lru_cache(maxsize=256)
def _ed25519(raw: bytes) -> Any:
    """The parsed key, once per key (parsing costs as much as a verification)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, repr=False)
class SigningPublicKey(_PublicKeyText):
    """A writer's Ed25519 public key: what policies and trust stores list to verify
    writer signatures (docs/FORMAT.md section 7). No secret material."""

    _SPEC = (SIGNING_PUBLIC_TAG, "public signing key", "vaultkey public signing key (Ed25519)",
             signing_key_id_bytes, format_signing_key_id)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether *signature* is this key's Ed25519 signature of *message*."""
        # Why `cryptography` here and libsodium for signing: the proxy verifies too, and it
        # must not import nacl (the private-key library). Both follow RFC 8032.
        from cryptography.exceptions import InvalidSignature

        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            _ed25519(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


__all__ = ["KEY_BYTES", "KID_BYTES", "HasPublicKey", "PublicKey", "SigningPublicKey",
           "format_key_id", "format_signing_key_id", "key_id_bytes", "signing_key_id_bytes"]
