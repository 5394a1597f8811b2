"""The client's trust store: which recipient public keys it will encrypt to.

When the SDK asks the proxy who may read a path, a compromised proxy could
answer with its own key. So every key the proxy names must be in a local
trust store, configured once (``VAULTKEY_TRUST`` or ``trust=``), which is:

* a directory: every ``*.pub`` file in it is trusted; or
* a file: one entry per line, either a key id (``vk1_...``) or key text
  (``vkpub1_...``); ``#`` starts a comment.

Example::

    >>> from vaultkey.keys import PublicKey
    >>> pk = PublicKey(bytes(32))
    >>> store = TrustStore.from_entries([pk.key_id])
    >>> store.check([pk]) == [pk]
    True
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from vaultkey.errors import KeyFileError, UntrustedRecipient, UsageError
from vaultkey.keys import PublicKey

_KEY_ID_RE = re.compile(r"^vk1_[0-9a-f]{32}$")


class TrustStore:
    """A set of trusted key ids."""

    def __init__(self, key_ids: Iterable[str], source: str = "trust store") -> None:
        self.key_ids = frozenset(key_ids)
        self.source = source

    @classmethod
    def from_entries(cls, entries: Iterable[str], source: str = "trust store") -> TrustStore:
        ids = []
        for n, raw in enumerate(entries, 1):
            entry = raw.split("#", 1)[0].strip()
            if not entry:
                continue
            if _KEY_ID_RE.match(entry):
                ids.append(entry)
            elif entry.startswith("vkpub1_"):
                ids.append(PublicKey.from_text(entry, f"{source}:{n}").key_id)
            else:
                raise KeyFileError(
                    f"{source}:{n}: not a key id (vk1_...) or public key (vkpub1_...)"
                )
        return cls(ids, source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrustStore:
        p = Path(path)
        if p.is_dir():
            return cls([PublicKey.load(f).key_id for f in sorted(p.glob("*.pub"))], str(p))
        try:
            return cls.from_entries(p.read_text(encoding="utf-8").splitlines(), str(p))
        except OSError as exc:
            raise UsageError(f"cannot read trust store {p}: {exc.strerror}",
                             hint="point VAULTKEY_TRUST at a directory of .pub files or a "
                             "file of key ids") from exc

    def check(self, keys: Sequence[PublicKey]) -> list[PublicKey]:
        """Return *keys* if every one is trusted, else raise UntrustedRecipient."""
        unknown = [k.key_id for k in keys if k.key_id not in self.key_ids]
        if unknown:
            raise UntrustedRecipient(
                f"the proxy named recipient key(s) not in your trust store ({self.source}): "
                + ", ".join(unknown),
                hint="if this key really belongs to a reader group, add its .pub file to the "
                "trust store; otherwise the proxy may be compromised",
            )
        return list(keys)

    def __len__(self) -> int:
        return len(self.key_ids)
