"""The SDK's HTTP boundary (client/_transport.py) and the loopback rule it shares with the
proxy (vaultkey/_net.py): where a token may go, and how error answers are mapped."""

from __future__ import annotations

import pytest

import vaultkey
from vaultkey._net import is_loopback
from vaultkey.client import Client
from vaultkey.client._transport import error_from_response, proxy_configured


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True),
    ("127.0.0.2", True),  # all of 127.0.0.0/8, as on the proxy side
    ("127.255.255.254", True),
    ("::1", True),
    ("[::1]", True),
    ("::ffff:127.0.0.1", True),  # IPv4-mapped
    ("localhost", True),
    ("LOCALHOST", True),
    ("0.0.0.0", False),  # every interface, not loopback
    ("::", False),
    ("10.0.0.5", False),
    ("128.0.0.1", False),
    ("::ffff:10.0.0.5", False),
    ("localhost.example.com", False),  # names are never resolved
    ("vault.internal", False),
    ("", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("addr", ["http://127.0.0.2:8443", "http://[::1]:8443",
                                  "HTTP://LOCALHOST:8443", "https://vault.example.com"])
def test_a_token_may_go_to_loopback_in_clear_and_anywhere_over_tls(addr):
    Client(addr, "t").close()


@pytest.mark.parametrize(("addr", "message"), [
    ("http://10.0.0.5:8443", "refusing to send a token over plain HTTP to 10.0.0.5"),
    ("http://[::ffff:10.0.0.5]:1", "plain HTTP"),
    ("http://[::1", "bad proxy address"),
    ("https://vk:port", "bad proxy address"),
    ("ftp://127.0.0.1", "bad proxy address"),
    ("127.0.0.1:8443", "bad proxy address"),
])
def test_other_addresses_are_refused_before_anything_is_sent(addr, message):
    with pytest.raises(vaultkey.UsageError, match=message):
        Client(addr, "t")


@pytest.mark.parametrize(("status", "code", "error"), [
    (401, "unauthenticated", vaultkey.Unauthenticated),
    (403, "permission_denied", vaultkey.PermissionDenied),
    (404, "not_found", vaultkey.NotFound),
    (409, "conflict", vaultkey.Conflict),
    (413, "value_too_large", vaultkey.ValueTooLarge),
    (422, "invalid_envelope", vaultkey.MalformedEnvelope),
    (422, "invalid_request", vaultkey.UsageError),
    (408, "request_timeout", vaultkey.RequestTimeout),
    (502, "store_error", vaultkey.StoreError),
    (503, "unavailable", vaultkey.Unavailable),
    (418, "teapot", vaultkey.ProtocolError),
])
def test_error_bodies_map_to_the_exception_tree(status, code, error):
    mapped = error_from_response(status, {"error": {"code": code, "message": "m"}})
    assert type(mapped) is error


def test_proxy_variables_are_noticed(monkeypatch):
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "http_proxy",
                 "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert not proxy_configured("https://vk:8443")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert proxy_configured("https://vk:8443")
    assert proxy_configured("HTTPS://vk:8443")
    assert not proxy_configured("http://127.0.0.1:8443")


def test_plain_http_never_takes_a_proxy(monkeypatch):
    # A forward proxy would see the Authorization header of a plain-HTTP request.
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "https_proxy"):
        monkeypatch.setenv(name, "http://proxy:3128")
    assert not proxy_configured("http://127.0.0.1:8443")
    assert not proxy_configured("HTTP://localhost:8443")
    assert proxy_configured("https://127.0.0.1:8443")  # CONNECT: the proxy sees only TLS
