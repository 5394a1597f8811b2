"""Passphrase-protected secret key text (``vksecp1_...``), docs/FORMAT.md section 2.1.

The 32-byte X25519 secret key is sealed with XChaCha20-Poly1305 under a key
derived from the passphrase with Argon2id (libsodium's, through PyNaCl)::

    text = protect(raw_secret, b"correct horse")    # "vksecp1_..."
    raw = unprotect(text, b"correct horse")         # WrongPassphrase if it is not

Where a passphrase comes from (:func:`passphrase_for`): ``VAULTKEY_PASSPHRASE_FILE``
(a file checked like a key file), else a terminal prompt, else a clear error.
"""

from __future__ import annotations

import base64
import os
import struct
import sys

import nacl.bindings as sodium
import nacl.exceptions
from nacl.pwhash import argon2id

from vaultkey._files import read_private
from vaultkey.errors import KeyFileError, WrongPassphrase

PROTECTED_TAG = "vksecp1"
_VERSION = 1  # Argon2id v1.3 + XChaCha20-Poly1305
# libsodium's "moderate" Argon2id cost: about 0.5 s and 256 MiB on a 2-core machine.
OPSLIMIT = argon2id.OPSLIMIT_MODERATE  # 3
MEMLIMIT = argon2id.MEMLIMIT_MODERATE  # 268,435,456 bytes
_MAX_OPSLIMIT, _MAX_MEMLIMIT = 16, 4 * 1024**3  # refuse a planted file that would hang
_HEAD = struct.Struct(">BII")  # version, opslimit, memlimit in KiB
_SALT, _NONCE, _SECRET, _TAG = 16, 24, 32, 16
_BODY_BYTES = _HEAD.size + _SALT + _NONCE + _SECRET + _TAG  # 97
_AD_LABEL = b"vaultkey protected key v1\x00"
PASSPHRASE_ENV = "VAULTKEY_PASSPHRASE_FILE"  # noqa: S105 - a variable name, not a secret


def _derive(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return bytes(argon2id.kdf(32, passphrase, salt, opslimit=opslimit, memlimit=memlimit))


def protect(raw_secret: bytes, passphrase: bytes, *, salt: bytes | None = None,
            nonce: bytes | None = None, opslimit: int = OPSLIMIT,
            memlimit: int = MEMLIMIT) -> str:
    """The protected key text of *raw_secret* (salt and nonce given only by test vectors)."""
    if not passphrase:
        raise KeyFileError("an empty passphrase protects nothing",
                           hint="give a passphrase, or keep the key file unprotected (0600)")
    salt = salt if salt is not None else os.urandom(_SALT)
    nonce = nonce if nonce is not None else os.urandom(_NONCE)
    head = _HEAD.pack(_VERSION, opslimit, memlimit // 1024)
    sealed = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        raw_secret, _AD_LABEL + head + salt, nonce, _derive(passphrase, salt, opslimit, memlimit))
    body = base64.urlsafe_b64encode(head + salt + nonce + sealed).rstrip(b"=").decode()
    return f"{PROTECTED_TAG}_{body}"


def is_protected(line: str) -> bool:
    return line.startswith(PROTECTED_TAG + "_")


def unprotect(line: str, passphrase: bytes, source: str = "secret key") -> bytes:
    """The raw secret key in protected key text; WrongPassphrase if *passphrase* is wrong."""
    body = line[len(PROTECTED_TAG) + 1:]
    try:
        data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        data = b""
    if (len(data) != _BODY_BYTES or not body.isascii()
            or base64.urlsafe_b64encode(data).rstrip(b"=").decode() != body):
        raise KeyFileError(f"{source}: protected key text is corrupted")
    version, opslimit, mem_kib = _HEAD.unpack_from(data)
    memlimit = mem_kib * 1024
    if version != _VERSION:
        raise KeyFileError(f"{source}: protected key version {version} is not supported")
    if not (1 <= opslimit <= _MAX_OPSLIMIT and 8192 <= memlimit <= _MAX_MEMLIMIT):
        raise KeyFileError(f"{source}: protected key has unreasonable Argon2id parameters "
                           f"(opslimit {opslimit}, memlimit {memlimit})")
    head = data[:_HEAD.size]
    salt = data[_HEAD.size:_HEAD.size + _SALT]
    nonce = data[_HEAD.size + _SALT:_HEAD.size + _SALT + _NONCE]
    sealed = data[_HEAD.size + _SALT + _NONCE:]
    try:
        return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            sealed, _AD_LABEL + head + salt, nonce,
            _derive(passphrase, salt, opslimit, memlimit)))
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase(f"{source}: wrong passphrase (or the key file was altered)",
                              hint=f"check the passphrase, or {PASSPHRASE_ENV}") from None


def read_passphrase_file(path: str) -> bytes:
    """A passphrase file's bytes less one trailing LF (checked like a key file)."""
    text = read_private(path, "passphrase file", KeyFileError)
    return text[:-1] if text.endswith(b"\n") else text


def passphrase_for(source: str, *, prompt: str | None = None) -> bytes:
    """The passphrase of *source*: from ``$VAULTKEY_PASSPHRASE_FILE``, else asked on the
    terminal; KeyFileError when neither is possible (never a hang in a service)."""
    path = os.environ.get(PASSPHRASE_ENV)
    if path:
        return read_passphrase_file(path)
    if sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty():
        import getpass

        return getpass.getpass(prompt or f"passphrase for {source}: ").encode("utf-8")
    raise KeyFileError(f"{source} is protected by a passphrase and there is no terminal to "
                       "ask for it", hint=f"set {PASSPHRASE_ENV} to a file holding it (mode 0600)")


__all__ = ["PASSPHRASE_ENV", "PROTECTED_TAG", "is_protected", "passphrase_for", "protect",
           "read_passphrase_file", "unprotect"]
