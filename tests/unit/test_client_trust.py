"""The client's trust store (client/trust.py)."""

from __future__ import annotations

import pytest

import vaultkey
from vaultkey.client.trust import TrustStore
from vaultkey.crypto import SecretKey
from vaultkey.signkey import write_keypair


def test_trust_store_directory_and_file(tmp_path):
    (tmp_path / "dir").mkdir()
    _key, pub = write_keypair(tmp_path / "dir" / "a")
    other = SecretKey.generate().public
    store = TrustStore.load(tmp_path / "dir")
    trusted = vaultkey.PublicKey.load(pub)
    assert store.check([trusted]) == [trusted]
    with pytest.raises(vaultkey.UntrustedRecipient, match=other.key_id):
        store.check([trusted, other])
    listing = tmp_path / "ids"
    listing.write_text(f"# pinned\n{other.key_id}  # ops\n{trusted.to_text()}\n")
    assert len(TrustStore.load(listing)) == 2
    listing.write_text("garbage\n")
    with pytest.raises(vaultkey.KeyFileError, match="ids:1"):
        TrustStore.load(listing)


