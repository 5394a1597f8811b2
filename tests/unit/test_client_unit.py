"""The SDK's operations and transport without a network (httpx MockTransport): retries,
answers that are not a vaultkey proxy's, and what a set validates."""

from __future__ import annotations

import httpx
import pytest

import vaultkey
from vaultkey.client import Client
from vaultkey.crypto import SecretKey


def _counting(statuses):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        status = statuses[min(len(calls) - 1, len(statuses) - 1)]
        if status == 200:
            return httpx.Response(200, json={"kind": "group", "token_id": "x", "group": "g"})
        return httpx.Response(status, headers={"Retry-After": "0"},
                              json={"error": {"code": "unavailable", "message": "etcd down"}})

    return calls, httpx.MockTransport(handler)


def test_reads_are_retried_on_503_then_succeed():
    calls, transport = _counting([503, 503, 200])
    with Client("https://vk.test", "t", transport=transport) as vk:
        assert vk.whoami()["group"] == "g"
    assert calls == ["GET", "GET", "GET"]


def test_reads_give_up_after_the_retry_budget():
    calls, transport = _counting([503])
    with Client("https://vk.test", "t", transport=transport, retries=2) as vk, \
            pytest.raises(vaultkey.Unavailable, match="etcd down"):
        vk.whoami()
    assert len(calls) == 3


def test_writes_are_never_retried():
    calls, transport = _counting([503])
    key = SecretKey.generate()
    with Client("https://vk.test", "t", transport=transport, key=key) as vk, \
            pytest.raises(vaultkey.Unavailable):
        vk.set("/a/b", b"v", recipients=[key.public])
    assert calls == ["PUT"]


def test_connection_errors_are_retried_for_reads():
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) < 2:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"kind": "admin", "token_id": "a"})

    with Client("https://vk.test", "t", transport=httpx.MockTransport(handler)) as vk:
        assert vk.whoami()["kind"] == "admin"
    assert len(attempts) == 2


def _serving(status: int, body: bytes, content_type: str = "text/html") -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(
        status, content=body, headers={"content-type": content_type}))


@pytest.mark.parametrize("call", ["whoami", "list", "get_many", "get"])
def test_a_server_that_is_not_a_vaultkey_proxy_is_a_protocol_error(call):
    transport = _serving(200, b"<html>captive portal</html>")
    with Client("https://vk.test", "t", transport=transport, key=SecretKey.generate()) as vk:
        args = () if call == "whoami" else ("/a/b",) if call == "get" else ("/a/",)
        with pytest.raises(vaultkey.ProtocolError, match="did not answer like a vaultkey"):
            getattr(vk, call)(*args)


def test_json_of_the_wrong_shape_is_a_protocol_error():
    transport = _serving(200, b'{"unexpected": true}', "application/json")
    with Client("https://vk.test", "t", transport=transport) as vk, \
            pytest.raises(vaultkey.ProtocolError, match="unexpected answer"):
        vk.list("/a/")


def test_gateway_errors_are_unavailable_and_other_statuses_protocol_errors():
    with Client("https://vk.test", "t", transport=_serving(502, b"<h1>Bad Gateway</h1>"),
                retries=0) as vk, pytest.raises(vaultkey.Unavailable, match="HTTP 502"):
        vk.whoami()
    with Client("https://vk.test", "t", transport=_serving(500, b"oops"), retries=0) as vk, \
            pytest.raises(vaultkey.ProtocolError, match="HTTP 500"):
        vk.whoami()


@pytest.mark.parametrize(("listed", "message"), [("/b/x", "outside /a/"),
                                                  ("/a/../b", "invalid key path")])
def test_get_many_refuses_keys_the_proxy_should_not_list(listed, message):
    body = b'{"prefix": "/a/", "revision": 1, "entries": [{"path": "%s", "envelope": ""}]}' % (
        listed.encode())
    with Client("https://vk.test", "t", transport=_serving(200, body, "application/json"),
                key=SecretKey.generate()) as vk, \
            pytest.raises(vaultkey.ProtocolError, match=message):
        vk.get_many("/a/")


def test_401_hint_speaks_to_cli_users():
    body = b'{"error": {"code": "unauthenticated", "message": "missing token", "hint": "x"}}'
    with Client("https://vk.test", "t", transport=_serving(401, body, "application/json")) as vk, \
            pytest.raises(vaultkey.Unauthenticated) as info:
        vk.whoami()
    assert "VAULTKEY_TOKEN" in info.value.diagnostics()


def test_environment_proxies_are_only_used_for_https():
    # http:// (loopback, `serve --insecure`) would hand a proxy the token in clear text.
    with Client("http://127.0.0.1:1", "t") as plain, Client("https://vk.test", "t") as tls:
        assert plain._wire.http.trust_env is False
        assert tls._wire.http.trust_env is True  # a proxy may tunnel TLS (CONNECT)


def _proxy_for(key: SecretKey, envelope: bytes = b"") -> httpx.MockTransport:
    """Names *key* as the one recipient, accepts writes, and serves *envelope* at /a/b."""
    import base64

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/recipients/"):
            entry = {"key_id": key.key_id, "public_key": key.public.to_text()}
            return httpx.Response(200, json={"groups": [{"group": "g", "recipients": [entry]}],
                                             "escrow": []})
        if request.method == "PUT":
            return httpx.Response(200, json={"revision": 7})
        return httpx.Response(200, json={"path": "/a/b", "revision": 7, "create_revision": 7,
                                         "version": 1,
                                         "envelope": base64.b64encode(envelope).decode()})

    return httpx.MockTransport(handler)


@pytest.fixture
def validations(monkeypatch):
    """Every key path validated on the client side (the SDK's core and crypto)."""
    from vaultkey import crypto, paths
    from vaultkey.client import _core

    seen: list[str] = []

    def counting(path):
        seen.append(path)
        return paths.validate_key(path)

    for module in (_core, crypto):
        monkeypatch.setattr(module, "validate_key", counting)
    return seen


def test_a_set_validates_its_path_once_and_checks_the_size_once(validations, monkeypatch):
    from vaultkey import crypto
    from vaultkey.client.trust import TrustStore

    sizes = []
    check_size = crypto._check_size
    monkeypatch.setattr(crypto, "_check_size", lambda *a: sizes.append(a[1]) or check_size(*a))
    key = SecretKey.generate()
    with Client("https://vk.test", "t", key=key, trust=TrustStore.from_entries([key.key_id]),
                transport=_proxy_for(key)) as vk:
        assert vk.set("/a/b", b"v") == 7
    assert validations == ["/a/b"] and sizes == ["/a/b"]
    # The public entry still validates for every other caller.
    validations.clear()
    crypto.encrypt(b"v", "/a/b", [key.public])
    assert validations == ["/a/b"]
    with pytest.raises(vaultkey.InvalidPath):
        crypto.encrypt(b"v", "/a/../b", [key.public])


def test_a_read_validates_its_path_once(validations):
    from vaultkey.crypto import encrypt

    key = SecretKey.generate()
    envelope = encrypt(b"v", "/a/b", [key.public])
    validations.clear()
    with Client("https://vk.test", "t", key=key, transport=_proxy_for(key, envelope)) as vk:
        assert vk.get("/a/b") == b"v"
    assert validations == ["/a/b"]


def test_reads_ask_for_at_least_the_highest_revision_the_client_has_seen():
    """Read your writes and monotonic reads on any replica: the proxy waits for (or reads
    etcd at) the revision in X-Vaultkey-Min-Revision (tests/e2e/test_workers.py)."""
    import base64

    from vaultkey.crypto import encrypt

    key = SecretKey.generate()
    sent: list[tuple[str, str | None]] = []
    stored = [encrypt(b"v", "/a/k", [key.public])]

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, request.headers.get("x-vaultkey-min-revision")))
        if request.method == "PUT":
            stored.append(request.content)
            return httpx.Response(200, json={"path": "/a/k", "revision": 41})
        envelope = base64.b64encode(stored[-1]).decode()
        return httpx.Response(200, json={"path": "/a/k", "envelope": envelope, "revision": 40,
                                         "create_revision": 7, "version": 3})

    with Client("https://vk.test", "t", key=key, transport=httpx.MockTransport(handler)) as vk:
        vk.get("/a/k")
        vk.set("/a/k", b"v", recipients=[key.public])
        vk.get("/a/k")
    assert sent == [("GET", None), ("PUT", None), ("GET", "41")]


def test_a_keyring_opens_each_value_with_the_key_it_was_sealed_to():
    import base64

    from vaultkey.crypto import encrypt

    old, new = SecretKey.generate(), SecretKey.generate()
    sealed = {"/a/old": old, "/a/new": new}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1/kv")
        envelope = base64.b64encode(encrypt(b"v", path, [sealed[path].public])).decode()
        return httpx.Response(200, json={"path": path, "envelope": envelope, "revision": 2,
                                         "create_revision": 1, "version": 1})

    with Client("https://vk.test", "t", key=[new, old],
                transport=httpx.MockTransport(handler)) as vk:
        assert vk.get("/a/old") == b"v" and vk.get("/a/new") == b"v"
    with Client("https://vk.test", "t", key=[new], transport=httpx.MockTransport(handler)) as vk, \
            pytest.raises(vaultkey.DecryptionError, match="no stanza"):
        vk.get("/a/old")
