"""What :meth:`vaultkey.Client.read` returns (also importable as ``vaultkey.Item``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Signer:
    """Who signed a value."""

    key_id: str
    """The writer's signing key id (``vks1_...``)."""
    name: str | None
    """Its name in your trust store; None if the key is not in it."""
    verified: bool
    """True only if the signature was checked against that key of your trust store."""


@dataclass(frozen=True)
class Item:
    """One decrypted value and its metadata. Its repr never shows the value."""

    path: str
    """The key path it was read from (and that the envelope is bound to)."""
    value: bytes = field(repr=False)
    """The plaintext, exactly the bytes that were stored."""
    revision: int
    """etcd's revision of the last write: the ``if_revision`` of a compare-and-swap."""
    create_revision: int
    """etcd's revision of the write that created it."""
    version: int
    """How often it was written since it was created (1 after the first write)."""
    recipients: tuple[str, ...]
    """The key ids it is encrypted to (one per stanza)."""
    counter: int = 0
    """The writer's rollback counter (0: written without one)."""
    signer: Signer | None = None
    """Who signed it (None: not signed)."""
