"""Escrow (recovery) keys: allowed on every value, named by the recipients endpoint."""

from __future__ import annotations

import shutil

from vaultkey.client import Client
from vaultkey.crypto import SecretKey, decrypt, encrypt
from vaultkey.signkey import write_keypair


def test_escrow_key_gets_every_value_and_is_optional_for_writers(proxy_factory, tmp_path):
    escrow_key, escrow_pub = write_keypair(tmp_path / "recovery")
    proxy = proxy_factory(extra_args=["--escrow-key", str(escrow_pub)])
    token = proxy.create_token("alpha")
    trust = tmp_path / "trust"
    shutil.copytree(proxy.trust_dir(), trust)
    shutil.copy(escrow_pub, trust / "recovery.pub")
    recovery = SecretKey.load(escrow_key)

    with Client(proxy.addr, token, key=proxy.key_path("alpha"), cacert=str(proxy.ca_path),
                trust=trust) as vk:
        names = {g["group"] for g in vk.request("GET", "/v1/recipients/alpha/x")["groups"]}
        assert names == {"alpha"}
        assert [k.key_id for k in vk.recipients("/alpha/x")] == [
            proxy.keys["alpha"].key_id, recovery.key_id]
        vk.set("/alpha/x", b"recoverable")
        assert vk.get("/alpha/x") == b"recoverable"
        raw = vk.request("GET", "/v1/kv/alpha/x")["envelope"]
        readers_only = encrypt(b"v", "/alpha/y", [proxy.keys["alpha"].public])
        with proxy.client(token) as c:
            assert c.put("/v1/kv/alpha/y", content=readers_only).status_code == 200

    import base64

    assert decrypt(base64.b64decode(raw), "/alpha/x", recovery) == b"recoverable"
