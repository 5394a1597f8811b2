"""Key files on disk and writers' signing keys: ``vaultkey keygen`` (``--sign``).

* :func:`write_keypair`: an X25519 key pair, ``NAME.key`` (mode 0600, optionally
  protected by a passphrase) and ``NAME.pub``;
* :class:`SigningKey` and :func:`write_signing_keypair`: a writer's Ed25519 key pair,
  ``NAME.sigkey`` (mode 0600) and ``NAME.sigpub``, whose public half policies and trust
  stores list (docs/FORMAT.md section 2.2).

Private-key code: the proxy never imports this module (a test enforces that).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vaultkey._files import read_private, write_private
from vaultkey.errors import KeyFileError
from vaultkey.keys import (
    KEY_BYTES,
    SIGNING_SECRET_TAG,
    HasPublicKey,
    SigningPublicKey,
    decode_key_text,
    encode_key_text,
    key_line,
)

if TYPE_CHECKING:
    from pathlib import Path


def write_keypair(name: str | os.PathLike[str], *, force: bool = False,
                  passphrase: bytes | None = None) -> tuple[Path, Path]:
    """Generate a key pair and write ``NAME.key`` (mode 0600; protected by *passphrase*
    if given) and ``NAME.pub``."""
    from pathlib import Path  # only here: the CLI's other commands never write key files

    base = Path(name)
    key_path, pub_path = base.with_name(base.name + ".key"), base.with_name(base.name + ".pub")
    _refuse_existing((key_path, pub_path), force)
    from vaultkey.crypto import SecretKey

    secret = SecretKey.generate()
    _write_pair(key_path, secret.to_file_text(f"name: {base.name}", passphrase=passphrase),
                pub_path, secret.public.to_file_text(f"name: {base.name}"), force)
    return key_path, pub_path


class SigningKey(HasPublicKey[SigningPublicKey]):
    """A writer's Ed25519 signing key (its 32-byte seed). Its repr never shows the key.

    Writers sign envelopes with it (docs/FORMAT.md section 7); readers and the proxy
    verify with :class:`~vaultkey.keys.SigningPublicKey`::

        >>> w = SigningKey(bytes(32))
        >>> w.public.verify(b"message", w.sign(b"message"))
        True
    """

    __slots__ = ("_public", "_raw", "_signer")

    def __init__(self, raw: bytes) -> None:
        import nacl.signing

        if not isinstance(raw, bytes) or len(raw) != KEY_BYTES:
            raise KeyFileError("a secret signing key is exactly 32 bytes")
        self._raw = raw
        self._signer = nacl.signing.SigningKey(raw)
        self._public = SigningPublicKey(bytes(self._signer.verify_key))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(KEY_BYTES))

    def sign(self, message: bytes) -> bytes:
        return bytes(self._signer.sign(message).signature)

    def to_text(self) -> str:
        return encode_key_text(SIGNING_SECRET_TAG, self._raw)

    @classmethod
    def from_text(cls, text: str, source: str = "secret signing key") -> SigningKey:
        return cls(decode_key_text(key_line(text, source), SIGNING_SECRET_TAG, source))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Load a ``.sigkey`` file, refusing one readable by group or others."""
        data = read_private(path, "secret signing key file", KeyFileError, key_file=True)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFileError(f"{path}: not a vaultkey key file (not UTF-8 text)") from None
        return cls.from_text(text, str(path))

    def to_file_text(self, comment: str = "") -> str:
        head = "# vaultkey secret signing key (Ed25519): keep this file private (mode 0600)\n"
        if comment:
            head += f"# {comment}\n"
        return f"{head}# key id: {self.key_id}\n{self.to_text()}\n"

    def __repr__(self) -> str:
        return f"SigningKey({self.key_id}, <secret hidden>)"


def write_signing_keypair(name: str | os.PathLike[str], *,
                          force: bool = False) -> tuple[Path, Path]:
    """Generate an Ed25519 writer key pair: ``NAME.sigkey`` (mode 0600) and ``NAME.sigpub``."""
    from pathlib import Path

    base = Path(name)
    key_path = base.with_name(base.name + ".sigkey")
    pub_path = base.with_name(base.name + ".sigpub")
    _refuse_existing((key_path, pub_path), force)
    secret = SigningKey.generate()
    _write_pair(key_path, secret.to_file_text(f"name: {base.name}"), pub_path,
                secret.public.to_file_text(f"name: {base.name}"), force)
    return key_path, pub_path


def _refuse_existing(paths: Sequence[Path], force: bool) -> None:
    if force:
        return
    for existing in paths:
        if existing.exists() or existing.is_symlink():
            raise KeyFileError(f"{existing} already exists; refusing to overwrite it",
                               hint="choose another name or pass --force")


def _write_pair(key_path: Path, key_text: str, pub_path: Path, pub_text: str,
                force: bool) -> None:
    """The secret file (0600 from the first byte) and the public one; with *force* an old
    file (or a planted symlink) is replaced."""
    if force and (pub_path.is_symlink() or pub_path.exists()):
        pub_path.unlink()
    write_private(key_path, key_text.encode(), exclusive=not force)
    fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, pub_text.encode())
    finally:
        os.close(fd)


__all__ = ["SigningKey", "write_keypair", "write_signing_keypair"]
