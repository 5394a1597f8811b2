"""Regression tests from the security review of the proxy."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import pytest

from tests._helpers.wait import wait_until
from vaultkey.crypto import SecretKey, encrypt


@pytest.mark.parametrize("value", ["²", "٣", "99999999999999999999", "9223372036854775808",
                                   "-1", "1e3", "0x10", "1 2"])
def test_odd_if_match_values_are_422_never_500(proxy, value):
    raw = value.encode("utf-8")  # sent as raw bytes, as a hostile client would
    with proxy.client(proxy.tokens["alpha"]) as c:
        put = c.put("/v1/kv/alpha/im", content=proxy.envelope("/alpha/im", b"v"),
                    headers={"If-Match": raw})
        delete = c.delete("/v1/kv/alpha/im", headers={"If-Match": raw})
    assert (put.status_code, delete.status_code) == (422, 422), value


def test_token_endpoint_refuses_big_bodies_before_auth(proxy):
    big = b'{"group": "' + b"a" * 5_000_000 + b'"}'
    with proxy.client() as anon:
        assert anon.post("/v1/tokens", content=big).status_code == 401
        assert anon.post("/v1/tokens", content=b"{not json").status_code == 401
    with proxy.client(proxy.admin_token) as admin:
        assert admin.post("/v1/tokens", content=big).status_code == 413


@pytest.mark.parametrize("ttl", ["9" * 400, "99999999999999999999d", "٣", "3651d"])
def test_absurd_ttls_are_422(proxy, ttl):
    with proxy.client(proxy.admin_token) as admin:
        assert admin.post("/v1/tokens", json={"group": "alpha", "ttl": ttl}).status_code == 422


def test_delete_only_group_cannot_learn_whether_keys_exist(proxy):
    token = proxy.create_token("gamma")
    proxy.store().put("/beta/drop/present", proxy.envelope("/beta/drop/present", b"v"))
    with proxy.client(token) as c:
        present = c.delete("/v1/kv/beta/drop/present")
        absent = c.delete("/v1/kv/beta/drop/absent")
        assert (present.status_code, absent.status_code) == (200, 200)
        assert present.json() == {"path": "/beta/drop/present"}
        assert absent.json() == {"path": "/beta/drop/absent"}
        for headers in ({"If-Match": "0"}, {"If-Match": "5"}):
            assert c.delete("/v1/kv/beta/drop/present", headers=headers).status_code == 403
        env = proxy.envelope("/beta/drop/new", b"v")
        assert c.put("/v1/kv/beta/drop/new", content=env,
                     headers={"If-None-Match": "*"}).status_code == 403
        assert c.put("/v1/kv/beta/drop/new", content=env).status_code == 200
        assert c.get("/v1/kv/beta/drop/new").status_code == 403
    assert proxy.store().get("/beta/drop/present") is None


def test_deny_list_on_a_subprefix_is_not_bypassed_by_listing_the_parent(proxy):
    for path in ["/alpha/hidden/x", "/alpha/hidden/deeper/y", "/alpha/visible"]:
        proxy.store().put(path, proxy.envelope(path, b"v"))
    with proxy.client(proxy.tokens["alpha"]) as c:
        assert c.get("/v1/kv/alpha/hidden/", params={"list": "true"}).status_code == 403
        keys = c.get("/v1/kv/alpha/", params={"list": "true"}).json()["keys"]
        entries = c.get("/v1/kv/alpha/", params={"recursive": "true"}).json()["entries"]
        assert c.get("/v1/kv/alpha/hidden/x").status_code == 200  # read is still allowed
    assert "/alpha/visible" in keys
    assert not [k for k in keys if k.startswith("/alpha/hidden/")]
    assert not [e for e in entries if e["path"].startswith("/alpha/hidden/")]


def test_a_signature_is_optional_where_no_rule_requires_one(proxy):
    """Stored as it is; a reader that does not know the writer shows it as unverified."""
    from vaultkey.client import Client
    from vaultkey.signkey import SigningKey

    writer = SigningKey.generate()
    signed = encrypt(b"v", "/alpha/signed", [proxy.keys["alpha"].public], signer=writer)
    with proxy.client(proxy.tokens["alpha"]) as c:
        assert c.put("/v1/kv/alpha/signed", content=signed).status_code == 200
    with Client(proxy.addr, proxy.tokens["alpha"], key=proxy.key_path("alpha"),
                cacert=str(proxy.ca_path)) as vk:
        item = vk.read("/alpha/signed")
    assert item.value == b"v" and item.signer is not None
    assert (item.signer.key_id, item.signer.name, item.signer.verified) == (
        writer.key_id, None, False)


def test_client_disconnect_mid_body_is_not_a_500(proxy):
    parts = urlsplit(proxy.addr)
    ctx = ssl.create_default_context(cafile=str(proxy.ca_path))
    with socket.create_connection((parts.hostname, parts.port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"PUT /v1/kv/alpha/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                    b"Authorization: Bearer " + proxy.tokens["alpha"].encode() + b"\r\n\r\n"
                    + b"0123456789")
    assert wait_until(lambda: '"/alpha/cut"' in proxy.audit_path.read_text())
    audit = [ln for ln in proxy.audit_path.read_text().splitlines() if '"/alpha/cut"' in ln]
    assert '"status": 500' not in audit[-1]
    assert "Traceback" not in proxy.log_path.read_text()


def test_foreign_only_envelope_for_write_only_group_is_still_checked(proxy):
    token = proxy.create_token("gamma")
    bad = encrypt(b"v", "/beta/drop/z", [SecretKey.generate().public])
    with proxy.client(token) as c:
        assert c.put("/v1/kv/beta/drop/z", content=bad).status_code == 422
