"""Writer signatures: which writers a path trusts, and whether an envelope's signature holds.

Public keys only, so both the proxy (write-time checks) and readers (the SDK and the CLI,
against their own trust store) use it; signing needs a secret key and lives in
:mod:`vaultkey.crypto`::

    >>> from vaultkey.keys import SigningPublicKey
    >>> writers = Writers.of([("release", SigningPublicKey(bytes(32)))])
    >>> writers.names()
    ['release']

The signature is Ed25519 over the envelope's bytes from the magic to the end of the
ciphertext block (docs/FORMAT.md section 7); the 16-byte ``signer_kid`` before it names
the key, and only a key the verifier already holds is ever used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vaultkey.envelope import Envelope
from vaultkey.keys import SigningPublicKey, format_signing_key_id


@dataclass(frozen=True)
class Writers:
    """The writer keys trusted for some path, by key id, each with a display name."""

    keys: dict[bytes, tuple[str, SigningPublicKey]]

    @classmethod
    def of(cls, named: Iterable[tuple[str, SigningPublicKey]]) -> Writers:
        keys: dict[bytes, tuple[str, SigningPublicKey]] = {}
        for name, key in named:
            keys.setdefault(key.kid, (name, key))
        return cls(keys)

    def names(self) -> list[str]:
        return sorted({name for name, _ in self.keys.values()})

    def name_of(self, kid: bytes) -> str | None:
        found = self.keys.get(kid)
        return None if found is None else found[0]

    def problem(self, env: Envelope) -> str | None:
        """None if *env* is signed by one of these writers and the signature verifies;
        otherwise what is wrong, in words (never anything about the plaintext)."""
        if env.signature is None:
            return "the value is not signed, but this path requires a writer signature"
        found = self.keys.get(env.signature.signer_kid)
        if found is None:
            return (f"the value is signed by {format_signing_key_id(env.signature.signer_kid)}, "
                    "which is not a trusted writer for this path")
        if not found[1].verify(env.signed_bytes(), env.signature.signature):
            return "the writer signature does not verify (forged, or altered after signing)"
        return None


def signature_valid(env: Envelope, key: SigningPublicKey) -> bool:
    """Whether *env* carries a signature by *key* that verifies."""
    sig = env.signature
    return (sig is not None and sig.signer_kid == key.kid
            and key.verify(env.signed_bytes(), sig.signature))


__all__ = ["Writers", "signature_valid"]
