"""The SDK (Client and AsyncClient) against a real TLS proxy and a real etcd."""

from __future__ import annotations

import asyncio
import json
import ssl

import httpx
import pytest

import vaultkey
from vaultkey.client import AsyncClient, Client
from vaultkey.crypto import SecretKey


def client(proxy, group: str, **kw) -> Client:
    return Client(proxy.addr, proxy.tokens[group], key=proxy.key_path(group),
                  cacert=str(proxy.ca_path), trust=proxy.trust_dir(), **kw)


def test_set_get_list_get_many_delete(proxy):
    with client(proxy, "alpha") as vk:
        rev = vk.set("/alpha/sdk/a", b"A")
        vk.set("/alpha/sdk/b", b"B\n")
        assert vk.get("/alpha/sdk/a") == b"A"
        assert vk.read("/alpha/sdk/a").revision == rev
        assert vk.list("/alpha/sdk/") == ["/alpha/sdk/a", "/alpha/sdk/b"]
        assert vk.get_many("/alpha/sdk") == {"/alpha/sdk/a": b"A", "/alpha/sdk/b": b"B\n"}
        vk.delete("/alpha/sdk/a")
        with pytest.raises(vaultkey.NotFound):
            vk.get("/alpha/sdk/a")


def test_typed_errors(proxy):
    with client(proxy, "alpha") as vk:
        with pytest.raises(vaultkey.PermissionDenied):
            vk.get("/beta/x")
        rev = vk.set("/alpha/sdk/cas", b"1", create_only=True)
        with pytest.raises(vaultkey.Conflict):
            vk.set("/alpha/sdk/cas", b"2", create_only=True)
        with pytest.raises(vaultkey.Conflict):
            vk.set("/alpha/sdk/cas", b"2", if_revision=rev - 1)
        vk.set("/alpha/sdk/cas", b"2", if_revision=rev)
        with pytest.raises(vaultkey.InvalidPath):
            vk.get("no/leading/slash")
    bad = "vkt_0000000000000000." + "A" * 43
    with Client(proxy.addr, bad, cacert=str(proxy.ca_path)) as vk, \
            pytest.raises(vaultkey.Unauthenticated):
        vk.whoami()
    for error in (vaultkey.NotFound, vaultkey.PermissionDenied, vaultkey.Unauthenticated,
                  vaultkey.Conflict, vaultkey.DecryptionError, vaultkey.Unavailable):
        assert issubclass(error, vaultkey.VaultkeyError)


def test_tls_is_verified_by_default(proxy):
    with Client(proxy.addr, proxy.tokens["alpha"]) as vk, pytest.raises(vaultkey.Unavailable,
                                                                        match="CERTIFICATE"):
        vk.whoami()


def test_async_client_shares_the_behaviour(proxy):
    async def scenario() -> tuple[bytes, dict[str, bytes], list[str]]:
        async with AsyncClient(proxy.addr, proxy.tokens["beta"], key=proxy.key_path("beta"),
                               cacert=str(proxy.ca_path), trust=proxy.trust_dir()) as vk:
            await vk.set("/beta/async/x", b"async value")
            got = await vk.get("/beta/async/x")
            many = await vk.get_many("/beta/async/")
            keys = await vk.list("/beta/async/")
            with pytest.raises(vaultkey.PermissionDenied):
                await vk.get("/alpha/x")
            return got, many, keys

    got, many, keys = asyncio.run(scenario())
    assert got == b"async value" and many == {"/beta/async/x": b"async value"}
    assert keys == ["/beta/async/x"]


def test_from_env_uses_the_environment(proxy, monkeypatch):
    for k, v in proxy.env("alpha").items():
        if k.startswith("VAULTKEY_"):
            monkeypatch.setenv(k, v)
    with Client.from_env() as vk:
        assert vk.whoami()["group"] == "alpha"
        vk.set("/alpha/env", b"from env")
        assert vk.get("/alpha/env") == b"from env"


def test_profile_from_config_file(proxy, tmp_path, monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("VAULTKEY_"):
            monkeypatch.delenv(k)
    token_file = tmp_path / "token"
    token_file.write_text(proxy.tokens["beta"] + "\n")
    token_file.chmod(0o600)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"""
default_profile = "beta"
[profiles.beta]
addr = "{proxy.addr}"
cacert = "{proxy.ca_path}"
token_file = "{token_file}"
key = "{proxy.key_path('beta')}"
trust = "{proxy.trust_dir()}"
""")
    monkeypatch.setenv("VAULTKEY_CONFIG", str(cfg))
    with Client.from_env() as vk:
        assert vk.whoami()["group"] == "beta"


class Tamper(httpx.BaseTransport):
    """Forwards to the real proxy, but rewrites the recipients answer."""

    def __init__(self, ca: str, rewrite) -> None:
        self.inner = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=ca))
        self.rewrite = rewrite
        self.puts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.puts += 1
        response = self.inner.handle_request(request)
        if request.url.path.startswith("/v1/recipients/"):
            response.read()
            body = self.rewrite(json.loads(response.content))
            return httpx.Response(200, json=body)
        return response


@pytest.mark.parametrize("mode", ["inject", "replace", "escrow"])
def test_proxy_injecting_an_unknown_recipient_key_is_refused(proxy, mode):
    attacker = SecretKey.generate().public

    def rewrite(body):
        entry = {"key_id": attacker.key_id, "public_key": attacker.to_text()}
        if mode == "inject":
            body["groups"][0]["recipients"].append(entry)
        elif mode == "replace":
            body["groups"][0]["recipients"] = [entry]
        else:
            body["escrow"] = [entry]
        return body

    transport = Tamper(str(proxy.ca_path), rewrite)
    with client(proxy, "alpha", transport=transport) as vk, \
            pytest.raises(vaultkey.UntrustedRecipient, match=attacker.key_id):
        vk.set("/alpha/tamper", b"must not leak")
    assert transport.puts == 0  # nothing was encrypted to the attacker, nothing was sent


def test_proxy_lying_about_key_ids_is_refused(proxy):
    attacker = SecretKey.generate().public
    trusted_id = proxy.keys["alpha"].key_id

    def rewrite(body):  # a trusted key id paired with the attacker's key
        body["groups"][0]["recipients"] = [{"key_id": trusted_id,
                                            "public_key": attacker.to_text()}]
        return body

    with client(proxy, "alpha", transport=Tamper(str(proxy.ca_path), rewrite)) as vk, \
            pytest.raises(vaultkey.UntrustedRecipient):
        vk.set("/alpha/tamper2", b"x")


def test_missing_trust_store_is_a_clear_error(proxy):
    with Client(proxy.addr, proxy.tokens["alpha"], cacert=str(proxy.ca_path),
                key=proxy.key_path("alpha")) as vk:
        with pytest.raises(vaultkey.UsageError, match="no trust store"):
            vk.set("/alpha/x", b"v")
        vk.set("/alpha/x", b"v", recipients=[proxy.keys["alpha"].public])
        assert vk.get("/alpha/x") == b"v"


class Counting(httpx.BaseTransport):
    """Counts requests and TCP connections on the way to the real proxy."""

    def __init__(self, ca: str) -> None:
        self.inner = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=ca))
        self.requests: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return self.inner.handle_request(request)

    def connections(self) -> int:
        return len(self.inner._pool.connections)


def test_get_many_is_one_request_and_the_client_reuses_one_connection(proxy):
    counting = Counting(str(proxy.ca_path))
    with client(proxy, "alpha", transport=counting) as vk:
        for i in range(5):
            vk.set(f"/alpha/many/k{i}", b"%d" % i)
        counting.requests.clear()
        values = vk.get_many("/alpha/many/")
        assert counting.requests == ["GET /v1/kv/alpha/many/"]
        assert values == {f"/alpha/many/k{i}": b"%d" % i for i in range(5)}
        for _ in range(20):
            vk.get("/alpha/many/k0")
        assert counting.connections() == 1
