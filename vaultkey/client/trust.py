"""The client's trust store: which keys it trusts, for encrypting and for writer signatures.

When the SDK asks the proxy who may read a path, a compromised proxy could
answer with its own key; when it reads a value, anyone who can write to etcd
(or a compromised proxy) could have planted it. So both questions are answered
locally, from a trust store configured once (``VAULTKEY_TRUST`` or ``trust=``):

* a file, one entry per line (``#`` starts a comment):

  - ``vk1_...`` or ``vkpub1_...``: a recipient key values may be encrypted to;
  - ``signer NAME vksigpub1_...``: a writer's public signing key, known as NAME
    (several keys may share a name: a team, or a key and its successor);
  - ``require-signature PREFIX NAME...``: values under PREFIX (or the key PREFIX)
    must be signed by a writer with one of these names; the longest matching
    PREFIX decides, so a sub-tree can name other writers;

* a directory: every ``*.pub`` file is a trusted recipient, every ``*.sigpub`` file a
  signer named after the file, and every ``*.trust`` file is read as above.

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

from vaultkey.errors import InvalidPath, KeyFileError, UntrustedRecipient, UsageError
from vaultkey.keys import PublicKey, SigningPublicKey
from vaultkey.paths import validate_prefix
from vaultkey.signatures import Writers

_KEY_ID_RE = re.compile(r"^vk1_[0-9a-f]{32}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class TrustStore:
    """Trusted recipient key ids, writer signing keys, and where signatures are required."""

    def __init__(self, key_ids: Iterable[str], source: str = "trust store", *,
                 signers: Iterable[tuple[str, SigningPublicKey]] = (),
                 required: dict[str, tuple[str, ...]] | None = None) -> None:
        self.key_ids = frozenset(key_ids)
        self.source = source
        self.signers = tuple(signers)
        self.required = dict(required or {})  # prefix (ending in '/') -> signer names
        unknown = sorted({n for names in self.required.values() for n in names}
                         - {n for n, _ in self.signers})
        if unknown:
            raise KeyFileError(f"{source}: require-signature names unknown signer(s): "
                               + ", ".join(unknown),
                               hint="add a 'signer NAME vksigpub1_...' line or a NAME.sigpub "
                               "file for each")
        self._all = Writers.of(self.signers)

    @classmethod
    def from_entries(cls, entries: Iterable[str], source: str = "trust store",
                     signers: Iterable[tuple[str, SigningPublicKey]] = ()) -> TrustStore:
        found = _Entries(signers=list(signers))
        found.read(entries, source)
        return cls(found.ids, source, signers=found.signers, required=found.required)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrustStore:
        p = Path(path)
        try:
            if p.is_dir():
                found = _Entries(ids=[PublicKey.load(f).key_id for f in sorted(p.glob("*.pub"))])
                for f in sorted(p.glob("*.sigpub")):
                    name = f.name.removesuffix(".sigpub")
                    _check_name(name, str(f))
                    found.signers.append((name, SigningPublicKey.load(f)))
                for f in sorted(p.glob("*.trust")):  # each with its own file:line in errors
                    found.read(f.read_text(encoding="utf-8").splitlines(), str(f))
                return cls(found.ids, str(p), signers=found.signers, required=found.required)
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

    def writers_for(self, path: str) -> Writers | None:
        """The writers a value at the key *path* must be signed by (None: no requirement)."""
        if not self.required:
            return None
        best = max((p for p in self.required if path.startswith(p) or path + "/" == p),
                   key=len, default=None)
        if best is None:
            return None
        names = set(self.required[best])
        return Writers.of((n, k) for n, k in self.signers if n in names)

    def signer(self, kid: bytes) -> tuple[str, SigningPublicKey] | None:
        """The trusted writer with signing key id *kid*, if any."""
        return self._all.keys.get(kid)

    def __len__(self) -> int:
        return len(self.key_ids)


class _Entries:
    """What trust store lines say, gathered over one or more files."""

    def __init__(self, ids: list[str] | None = None,
                 signers: list[tuple[str, SigningPublicKey]] | None = None) -> None:
        self.ids = ids or []
        self.signers = signers or []
        self.required: dict[str, tuple[str, ...]] = {}

    def read(self, lines: Iterable[str], source: str) -> None:
        for n, raw in enumerate(lines, 1):
            where = f"{source}:{n}"
            entry = raw.split("#", 1)[0].strip()
            words = entry.split()
            if not entry:
                continue
            if _KEY_ID_RE.match(entry):
                self.ids.append(entry)
            elif entry.startswith("vkpub1_"):
                self.ids.append(PublicKey.from_text(entry, where).key_id)
            elif words[0] == "signer" and len(words) == 3 and _NAME_RE.match(words[1]):
                self.signers.append((words[1], SigningPublicKey.from_text(words[2], where)))
            elif words[0] == "require-signature" and len(words) >= 3:
                prefix = _prefix(words[1], where)
                # The same prefix on several lines (or files): any of their writers.
                self.required[prefix] = tuple(dict.fromkeys(
                    self.required.get(prefix, ()) + tuple(words[2:])))
            else:
                raise KeyFileError(
                    f"{where}: not a key id (vk1_...), a public key (vkpub1_...), "
                    "'signer NAME vksigpub1_...' or 'require-signature PREFIX NAME...'")


def _check_name(name: str, source: str) -> None:
    if not _NAME_RE.match(name):
        raise KeyFileError(f"{source}: a signer's file name must be a valid signer name "
                           "(letters, digits, '_', '.', '@', '-'; up to 64)")


def _prefix(text: str, where: str) -> str:
    try:
        return validate_prefix(text)
    except InvalidPath as exc:
        raise KeyFileError(f"{where}: require-signature: {exc.message}") from None


__all__ = ["TrustStore"]
