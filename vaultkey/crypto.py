"""Recipes: key generation, secret key files, encrypt and decrypt envelopes.

This module (with :mod:`vaultkey.keyfile` and :mod:`vaultkey.signkey`) is all the code
that touches private keys. The proxy never imports them (a test enforces that)::

    >>> from vaultkey.crypto import SecretKey, encrypt, decrypt
    >>> alice, bob = SecretKey.generate(), SecretKey.generate()
    >>> blob = encrypt(b"s3cret", "/app/db", [alice.public, bob.public])
    >>> decrypt(blob, "/app/db", bob)
    b's3cret'

Construction (docs/FORMAT.md has the byte layout):

* a fresh random 32-byte data key per write;
* ``HKDF-SHA256(ikm=data key, salt="", info="vaultkey v1", L=64)`` gives the
  payload key (first 32 bytes) and the key commitment (last 32 bytes);
* the data key is wrapped per recipient with an X25519 sealed box
  (``crypto_box_seal``); the stanza carries the recipient's key id;
* the payload is XChaCha20-Poly1305-IETF with a random 24-byte nonce and the
  whole envelope header (magic, version, flags, path, counter, stanzas,
  commitment, nonce) as associated data.

Every decryption failure raises :class:`~vaultkey.errors.DecryptionError`.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import nacl.bindings as sodium
import nacl.exceptions

from vaultkey._files import read_private
from vaultkey.envelope import (
    MAX_ENVELOPE_BYTES,
    NONCE_BYTES,
    SIGNATURE_BYTES,
    Envelope,
    Signature,
    Stanza,
    overhead,
)
from vaultkey.errors import (
    DecryptionError,
    InvalidPath,
    KeyFileError,
    MalformedEnvelope,
    SignatureError,
    ValueTooLarge,
)
from vaultkey.keys import (
    KEY_BYTES,
    KID_BYTES,
    SECRET_TAG,
    HasPublicKey,
    PublicKey,
    decode_key_text,
    encode_key_text,
    key_line,
)
from vaultkey.paths import validate_key

if TYPE_CHECKING:

    from vaultkey.signatures import Writers
    from vaultkey.signkey import SigningKey

DATA_KEY_BYTES = 32
_HKDF_INFO = b"vaultkey v1"


class SecretKey(HasPublicKey[PublicKey]):
    """An X25519 secret key. Its repr never shows the key."""

    __slots__ = ("_public", "_raw")

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != KEY_BYTES:
            raise KeyFileError("a secret key is exactly 32 bytes")
        self._raw = raw
        self._public = PublicKey(sodium.crypto_scalarmult_base(raw))

    @classmethod
    def generate(cls) -> SecretKey:
        _pk, sk = sodium.crypto_box_keypair()
        return cls(sk)

    def to_text(self) -> str:
        return encode_key_text(SECRET_TAG, self._raw)

    @classmethod
    def from_text(cls, text: str, source: str = "secret key", *,
                  passphrase: bytes | None = None) -> SecretKey:
        """Read key text; a passphrase-protected one (``vksecp1_``) is opened with
        *passphrase*, else with ``$VAULTKEY_PASSPHRASE_FILE`` or a terminal prompt."""
        line = key_line(text, source)
        from vaultkey.keyfile import is_protected

        if is_protected(line):
            from vaultkey.keyfile import passphrase_for, unprotect

            secret = passphrase if passphrase is not None else passphrase_for(source)
            return cls(unprotect(line, secret, source))
        return cls(decode_key_text(line, SECRET_TAG, source))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *,
             passphrase: bytes | None = None) -> SecretKey:
        """Load a secret key file, refusing one readable by group or others (like ssh),
        a symlink, or anything but a regular file."""
        data = read_private(path, "secret key file", KeyFileError, key_file=True)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFileError(f"{path}: not a vaultkey key file (not UTF-8 text)") from None
        return cls.from_text(text, str(path), passphrase=passphrase)

    @staticmethod
    def is_protected_file(path: str | os.PathLike[str]) -> bool:
        from vaultkey.keyfile import is_protected

        data = read_private(path, "secret key file", KeyFileError, key_file=True)
        return is_protected(key_line(data.decode("utf-8", "replace"), str(path)))

    def to_file_text(self, comment: str = "", *, passphrase: bytes | None = None) -> str:
        """The key file; protected by *passphrase* (Argon2id, docs/FORMAT.md 2.1) if given."""
        head = "# vaultkey secret key (X25519): keep this file private (mode 0600)\n"
        if comment:
            head += f"# {comment}\n"
        if passphrase is None:
            return f"{head}# key id: {self.key_id}\n{self.to_text()}\n"
        from vaultkey.keyfile import protect

        return (f"{head}# protected by a passphrase\n# key id: {self.key_id}\n"
                f"{protect(self._raw, passphrase)}\n")

    def __repr__(self) -> str:
        return f"SecretKey({self.key_id}, <secret hidden>)"

    def _unwrap(self, wrapped: bytes) -> bytes:
        return sodium.crypto_box_seal_open(wrapped, self._public.raw, self._raw)


def _derive(data_key: bytes) -> tuple[bytes, bytes]:
    """HKDF-SHA256 (``cryptography``) of the data key: the payload key and the key commitment.

    Imported here, not at module level: only sealing and opening need it."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"", info=_HKDF_INFO).derive(data_key)
    return okm[:32], okm[32:]


def _check_size(plaintext: bytes, path: str, n_recipients: int, signed: bool) -> None:
    size = len(plaintext) + overhead(path, n_recipients, signed=signed)
    if size > MAX_ENVELOPE_BYTES:
        raise ValueTooLarge(
            f"value of {len(plaintext)} bytes makes a {size}-byte envelope; the maximum "
            f"is {MAX_ENVELOPE_BYTES} bytes (etcd refuses requests over 1.5 MiB)",
            hint="store large blobs elsewhere and keep a reference (and its hash) here",
        )


def _seal(
    plaintext: bytes,
    path: str,
    recipients: Sequence[PublicKey],
    data_key: bytes,
    nonce: bytes,
    wrapped: Sequence[bytes],
    counter: int,
    signer: SigningKey | None = None,
) -> bytes:
    payload_key, commitment = _derive(data_key)
    stanzas = tuple(Stanza(kid=r.kid, wrapped=w) for r, w in zip(recipients, wrapped, strict=True))
    # Why a placeholder signature: flags bit 0 is part of the header, which is the AEAD's
    # associated data, so a signed envelope says so before the payload is sealed.
    placeholder = None if signer is None else _PLACEHOLDER
    draft = Envelope(path, counter, stanzas, commitment, nonce, bytes(16), placeholder)
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, draft.header(), nonce, payload_key
    )
    env = Envelope(path, counter, stanzas, commitment, nonce, ciphertext, placeholder)
    return sign_envelope(env, signer).serialize() if signer is not None else env.serialize()


_PLACEHOLDER = Signature(bytes(KID_BYTES), bytes(SIGNATURE_BYTES))


def sign_envelope(env: Envelope, signer: SigningKey) -> Envelope:
    """*env* with *signer*'s signature over its header and ciphertext block.

    The header says it is signed (flags bit 0) and the AEAD authenticated that header,
    so only an envelope sealed as signed can be signed: signing an unsigned one would
    change its associated data and make it undecryptable.
    """
    if env.signature is None:
        raise ValueError("the envelope was sealed unsigned (flags bit 0 clear)")
    return dataclasses.replace(env, signature=Signature(signer.public.kid,
                                                        signer.sign(env.signed_bytes())))


def _check_recipients(recipients: Sequence[PublicKey]) -> list[PublicKey]:
    unique = list({r.kid: r for r in recipients}.values())
    if not unique:
        raise KeyFileError("at least one recipient public key is needed")
    if len(unique) > 255:
        raise KeyFileError("at most 255 recipients per value")
    return unique


def encrypt(
    plaintext: bytes, path: str, recipients: Sequence[PublicKey], *, counter: int = 0,
    signer: SigningKey | None = None,
) -> bytes:
    """Encrypt *plaintext* for *recipients*, bound to *path*; returns envelope bytes.

    With *signer*, the envelope carries its writer signature (docs/FORMAT.md section 7).
    """
    if not isinstance(plaintext, bytes | bytearray | memoryview):
        raise TypeError("plaintext must be bytes")
    return _encrypt_validated(bytes(plaintext), validate_key(path), recipients,
                              counter=counter, signer=signer)


def _encrypt_validated(
    plaintext: bytes, path: str, recipients: Sequence[PublicKey], *, counter: int = 0,
    signer: SigningKey | None = None, data_key: bytes | None = None,
) -> bytes:
    """:func:`encrypt` for a *path* that has already passed ``validate_key``.

    Why: the SDK validates a path once, before the first request names it, and
    encrypts only after the recipients answer; :func:`encrypt` (public) still
    validates for every other caller. The size is checked here, once.
    *data_key* is given only by :func:`rewrap` (which keeps a value's data key).
    """
    unique = _check_recipients(recipients)
    _check_size(plaintext, path, len(unique), signer is not None)
    if data_key is None:
        data_key = os.urandom(DATA_KEY_BYTES)
    wrapped = [sodium.crypto_box_seal(data_key, r.raw) for r in unique]
    return _seal(plaintext, path, unique, data_key, os.urandom(NONCE_BYTES), wrapped, counter,
                 signer)


def rewrap(blob: bytes, path: str, key: SecretKey | Sequence[SecretKey],
           recipients: Sequence[PublicKey], *, counter: int,
           signer: SigningKey | None = None, writers: Writers | None = None) -> bytes:
    """The value at *path*, re-wrapped to *recipients*, with the same data key.

    For adding a reader or retiring a key that was not compromised: the data key and
    the plaintext stay; each recipient gets a new stanza. Because the whole header
    (stanzas included) is the AEAD's associated data, the payload is sealed again under
    the same data key with a fresh nonce, never the old one: the same key and nonce
    over a different header would reuse Poly1305's one-time key. *counter* is the new
    revision's rollback counter; *signer* signs it. With *writers*, the value must carry
    a valid signature by one of them first, so a planted value is never re-signed.
    Raises DecryptionError if *key* cannot open the value (SignatureError for *writers*).
    """
    env = parse_for_decryption(blob)
    keys = [key] if isinstance(key, SecretKey) else list(key)
    if not keys:
        raise KeyFileError("rewrap needs a secret key that opens the value")
    opener = next((k for k in keys if env.stanza_for(k.public.kid) is not None), keys[0])
    plaintext, data_key = _open_with_data_key(env, _requested_path(path), opener, writers)
    return _encrypt_validated(plaintext, env.path, recipients, counter=counter, signer=signer,
                              data_key=data_key)


def _encrypt_from_parts(
    plaintext: bytes,
    path: str,
    recipients: Sequence[PublicKey],
    *,
    data_key: bytes,
    nonce: bytes,
    ephemeral_secrets: Sequence[bytes],
    counter: int = 0,
    signer: SigningKey | None = None,
) -> bytes:
    """Deterministic encryption for known-answer test vectors. Never use it to store data.

    Builds each stanza exactly as libsodium's ``crypto_box_seal`` does, but with
    a given ephemeral secret: ``epk || crypto_box(dk, blake2b(epk || pk, 24), pk, esk)``.
    (Ed25519 signatures are deterministic already.)
    """
    wrapped = []
    for r, esk in zip(recipients, ephemeral_secrets, strict=True):
        epk = sodium.crypto_scalarmult_base(esk)
        box_nonce = sodium.crypto_generichash_blake2b_salt_personal(epk + r.raw, digest_size=24)
        wrapped.append(epk + sodium.crypto_box_easy(data_key, box_nonce, r.raw, esk))
    return _seal(plaintext, path, list(recipients), data_key, nonce, wrapped, counter, signer)


def decrypt(blob: bytes, path: str, key: SecretKey, *, writers: Writers | None = None) -> bytes:
    """Decrypt envelope bytes read from *path* with *key*.

    Raises DecryptionError for every failure: malformed or truncated bytes,
    unknown version, an invalid path (asked for or stored), an envelope bound
    to another path, no stanza for this key, or any failed integrity check.
    With *writers*, the value must also carry a valid signature by one of them
    (else :class:`~vaultkey.errors.SignatureError`, a DecryptionError).
    """
    return open_envelope(parse_for_decryption(blob), path, key, writers=writers)


def parse_for_decryption(blob: bytes) -> Envelope:
    """Parse envelope bytes; any problem is the one DecryptionError."""
    try:
        return Envelope.parse(blob)
    except MalformedEnvelope as exc:
        raise DecryptionError(f"malformed envelope: {exc.message}") from None


def _requested_path(path: object) -> bytes:
    """The path asked for, held to the key path rules, as UTF-8 bytes."""
    try:
        return validate_key(path).encode("utf-8")
    except InvalidPath as exc:
        # Why: one error type for every decryption failure. And a path that cannot
        # be encoded is refused, never "repaired": replacing a lone surrogate by
        # '?' would let '/a\udc80' open the value bound to '/a?'.
        raise DecryptionError(f"invalid path: {exc.message}") from None


def open_envelope(env: Envelope, path: str, key: SecretKey, *,
                  writers: Writers | None = None) -> bytes:
    """Decrypt a parsed envelope read from *path* (see :func:`decrypt`)."""
    try:
        validate_key(env.path)  # parse checked it; an Envelope built in memory was not parsed
    except InvalidPath as exc:
        raise DecryptionError(
            f"malformed envelope: envelope path is not a valid key path: {exc.message}"
        ) from None
    return _open_validated(env, _requested_path(path), key, writers)


def _open_validated(env: Envelope, asked: bytes, key: SecretKey,
                    writers: Writers | None = None) -> bytes:
    """:func:`open_envelope` once both paths are known valid: *env* was parsed (which
    checks its path) and *asked* is a key path that passed ``validate_key``, in UTF-8.

    Why: the SDK validates the path it asks for once, before the request names it.
    """
    # Why: the AEAD associated data is the stored header, so an envelope copied
    # unchanged to another key still authenticates; this comparison is the check
    # that binds it to where it was read from (docs/FORMAT.md section 6, step 3).
    return _open_with_data_key(env, asked, key, writers)[0]


def _open_with_data_key(env: Envelope, asked: bytes, key: SecretKey,
                        writers: Writers | None = None) -> tuple[bytes, bytes]:
    """The plaintext and the data key (the checks of docs/FORMAT.md section 6, steps 3-9)."""
    if not hmac.compare_digest(env.path.encode("utf-8"), asked):
        raise DecryptionError("integrity check failed: the envelope is bound to another path")
    if writers is not None and (problem := writers.problem(env)) is not None:
        raise SignatureError(problem)
    stanza = env.stanza_for(key.public.kid)
    if stanza is None:
        raise DecryptionError(
            f"no stanza for key {key.key_id}: this value was not encrypted for your key",
            hint="ask a writer to re-encrypt it for your group",
        )
    try:
        data_key = key._unwrap(stanza.wrapped)
        payload_key, commitment = _derive(data_key)
        # Why: the commitment stops a writer from giving two recipients different
        # data keys that open one ciphertext to different plaintexts.
        if not hmac.compare_digest(commitment, env.commitment):
            raise DecryptionError("integrity check failed")
        plaintext = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            env.ciphertext, env.header(), env.nonce, payload_key
        )
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise DecryptionError("integrity check failed") from None
    return plaintext, data_key


__all__ = ["SecretKey", "decrypt", "encrypt", "rewrap", "sign_envelope"]
