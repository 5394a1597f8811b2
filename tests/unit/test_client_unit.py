"""SDK pieces without a network: settings, trust store, retries (httpx MockTransport)."""

from __future__ import annotations

import httpx
import pytest

import vaultkey
from vaultkey._files import write_private
from vaultkey.client import Client
from vaultkey.client.settings import resolve
from vaultkey.client.trust import TrustStore
from vaultkey.crypto import SecretKey, write_keypair


def test_explicit_beats_env_beats_default_profile(tmp_path):
    cfg = tmp_path / "c.toml"
    tf = tmp_path / "tok"
    write_private(tf, b"from-profile-file\n")  # token files must be 0600
    cfg.write_text(f'default_profile = "p"\n[profiles.p]\naddr = "https://profile:1"\n'
                   f'token_file = "{tf}"\ncacert = "/profile/ca.pem"\n')
    s = resolve({}, env={}, config_path=cfg)
    assert (s.addr, s.token, s.cacert) == ("https://profile:1", "from-profile-file",
                                           "/profile/ca.pem")
    env = {"VAULTKEY_ADDR": "https://env:2", "VAULTKEY_TOKEN": "env-token"}
    s = resolve({}, env=env, config_path=cfg)
    assert (s.addr, s.token, s.cacert) == ("https://env:2", "env-token", "/profile/ca.pem")
    s = resolve({"addr": "https://flag:3", "token": "t"}, env=env, config_path=cfg)
    assert (s.addr, s.token) == ("https://flag:3", "t")
    assert "from-profile-file" not in repr(resolve({}, env={}, config_path=cfg))


def test_a_chosen_profile_beats_the_environment(tmp_path):
    tf = tmp_path / "prod-token"
    write_private(tf, b"prod-token")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[profiles.prod]\naddr = "https://prod:1"\ntoken_file = "{tf}"\n')
    dev_shell = {"VAULTKEY_ADDR": "https://127.0.0.1:8443", "VAULTKEY_TOKEN": "dev-token"}
    s = resolve({}, env=dev_shell, profile="prod", config_path=cfg)
    assert (s.addr, s.token) == ("https://prod:1", "prod-token")
    s = resolve({}, env={**dev_shell, "VAULTKEY_PROFILE": "prod"}, config_path=cfg)
    assert (s.addr, s.token) == ("https://prod:1", "prod-token")


def test_an_explicit_config_file_must_exist(tmp_path):
    with pytest.raises(vaultkey.UsageError, match="does not exist"):
        resolve({}, env={}, config_path=tmp_path / "missing.toml")
    with pytest.raises(vaultkey.UsageError, match="does not exist"):
        resolve({}, env={"VAULTKEY_CONFIG": str(tmp_path / "missing.toml")})


def test_home_is_expanded_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    s = resolve({"key": "~/k.key", "cacert": "~/ca.pem"}, env={}, config_path="/dev/null")
    assert (s.key, s.cacert) == (f"{tmp_path}/k.key", f"{tmp_path}/ca.pem")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[profiles.p]\ntoken = "inline"\n', "unknown keys"),
        ("not toml [", "cannot read config"),
    ],
)
def test_bad_config_files_are_clear_errors(tmp_path, text, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(vaultkey.UsageError, match=message):
        resolve({}, env={}, profile="p", config_path=cfg)


def test_unknown_profile_names_known_ones(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[profiles.a]\n[profiles.b]\n")
    with pytest.raises(vaultkey.UsageError) as info:
        resolve({}, env={}, profile="zzz", config_path=cfg)
    assert "known profiles: a, b" in info.value.diagnostics()


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


def test_get_many_refuses_keys_outside_the_prefix():
    body = b'{"prefix": "/a/", "revision": 1, "entries": [{"path": "/b/x", "envelope": ""}]}'
    with Client("https://vk.test", "t", transport=_serving(200, body, "application/json"),
                key=SecretKey.generate()) as vk, \
            pytest.raises(vaultkey.ProtocolError, match="outside /a/"):
        vk.get_many("/a/")


def test_401_hint_speaks_to_cli_users():
    body = b'{"error": {"code": "unauthenticated", "message": "missing token", "hint": "x"}}'
    with Client("https://vk.test", "t", transport=_serving(401, body, "application/json")) as vk, \
            pytest.raises(vaultkey.Unauthenticated) as info:
        vk.whoami()
    assert "VAULTKEY_TOKEN" in info.value.diagnostics()


def test_a_profile_token_is_never_sent_to_another_address(tmp_path):
    tf = tmp_path / "prod-token"
    write_private(tf, b"prod-token")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'default_profile = "prod"\n[profiles.prod]\naddr = "https://prod:1"\n'
                   f'token_file = "{tf}"\n')
    with pytest.raises(vaultkey.UsageError, match="another address"):
        resolve({}, env={"VAULTKEY_ADDR": "https://dev:2"}, config_path=cfg)
    with pytest.raises(vaultkey.UsageError, match="another address"):
        resolve({"addr": "https://other:3"}, env={}, config_path=cfg)
    s = resolve({"addr": "https://other:3", "token": "t"}, env={}, config_path=cfg)
    assert (s.addr, s.token) == ("https://other:3", "t")
    assert resolve({}, env={}, config_path=cfg).token == "prod-token"


def test_environment_proxies_are_only_used_for_https():
    # http:// (loopback, `serve --insecure`) would hand a proxy the token in clear text.
    with Client("http://127.0.0.1:1", "t") as plain, Client("https://vk.test", "t") as tls:
        assert plain._http.trust_env is False
        assert tls._http.trust_env is True  # a proxy may tunnel TLS (CONNECT)
