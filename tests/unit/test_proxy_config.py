"""ProxyConfig refuses unsafe settings; token helpers behave."""

from __future__ import annotations

import pytest

from vaultkey.errors import UsageError
from vaultkey.proxy.config import ProxyConfig
from vaultkey.proxy.store.etcdconn import EtcdSettings
from vaultkey.proxy.tokens import hash_token, new_token, parse_token_id, parse_ttl

ADMIN = "kJ8vQ2xN5rT0wY7bL4mF1sD9gH6cP3aE_u-Zo2Q"


def cfg(tmp_path, **kw):
    base = dict(policies=str(tmp_path), etcd=EtcdSettings(), admin_token=ADMIN)
    base.update(kw)
    return ProxyConfig(**base)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "refusing to serve plain HTTP"),
        ({"insecure": True, "listen": "0.0.0.0:8443"}, "loopback"),
        ({"insecure": True, "listen": "10.0.0.1:8443"}, "loopback"),
        ({"insecure": True, "admin_token": "short"}, "at least 32"),
        ({"tls_cert": "x.pem"}, "go together"),
        ({"insecure": True, "listen": "nope"}, "HOST:PORT"),
        ({"insecure": True, "root": "/vaultkey/"}, "--root"),
        ({"insecure": True, "client_ca": "ca.pem"}, "--client-ca needs"),
    ],
)
def test_unsafe_or_inconsistent_settings_are_refused(tmp_path, kw, message):
    with pytest.raises(UsageError) as info:
        cfg(tmp_path, **kw).check()
    assert message in info.value.diagnostics()


def test_insecure_loopback_is_accepted(tmp_path):
    cfg(tmp_path, insecure=True, listen="127.0.0.1:8200").check()
    cfg(tmp_path, insecure=True, listen="[::1]:8200").check()


def test_config_repr_hides_secrets(tmp_path):
    text = repr(cfg(tmp_path, etcd=EtcdSettings(user="u", password="hunter2-etcd")))
    assert ADMIN not in text and "hunter2-etcd" not in text


def test_tokens_are_random_prefixed_and_parseable():
    a, a_id = new_token()
    b, _ = new_token()
    assert a != b and a.startswith("vkt_") and parse_token_id(a) == a_id
    assert parse_token_id("vkt_zz." + "A" * 43) is None
    assert hash_token(a) != hash_token(b) and len(hash_token(a)) == 64


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800),
                                                ("24h", 86400), ("7d", 604800)])
def test_ttl_parsing(text, seconds):
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("bad", ["", "0", "-5", "1y", "soon", "1.5h"])
def test_bad_ttl_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        parse_ttl(bad)
