"""What :meth:`vaultkey.Client.read` returns (also importable as ``vaultkey.Item``)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
