"""Write-time checks, what etcd ends up holding, sizes, paths and compare-and-swap."""

from __future__ import annotations

import pytest

from vaultkey.crypto import SecretKey, encrypt
from vaultkey.envelope import MAX_ENVELOPE_BYTES
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings

PLAINTEXTS = [b"PLAINTEXT-CANARY-alpha-0001", b"PLAINTEXT-CANARY-shared-0002",
              b"PLAINTEXT-CANARY-beta-0003"]


def test_etcd_holds_no_plaintext_after_writes(proxy):
    alpha = proxy.client(proxy.tokens["alpha"])
    beta = proxy.client(proxy.tokens["beta"])
    for client, path, value in [(alpha, "/alpha/canary", PLAINTEXTS[0]),
                                (beta, "/shared/canary", PLAINTEXTS[1]),
                                (beta, "/beta/canary", PLAINTEXTS[2])]:
        assert client.put(f"/v1/kv{path}", content=proxy.envelope(path, value)).status_code == 200
    conn = EtcdConnection(EtcdSettings(endpoints=[proxy.etcd_url]))
    raw = [v for v, _meta in conn.client().get_prefix(proxy.root.encode())]
    conn.close()
    assert len(raw) >= 3
    for value in raw:
        for secret in PLAINTEXTS:
            assert secret not in value
            assert secret[-20:] not in value


def test_write_missing_a_reader_groups_stanza_is_refused(proxy):
    # /shared/cfg is readable by alpha and beta; encrypt for beta only.
    env = encrypt(b"v", "/shared/cfg", [proxy.keys["beta"].public])
    with proxy.client(proxy.tokens["beta"]) as c:
        r = c.put("/v1/kv/shared/cfg", content=env)
    assert r.status_code == 422
    assert "missing: alpha" in r.json()["error"]["message"]


def test_write_with_a_foreign_stanza_is_refused(proxy):
    stranger = SecretKey.generate()
    env = encrypt(b"v", "/alpha/x", [proxy.keys["alpha"].public, stranger.public])
    with proxy.client(proxy.tokens["alpha"]) as c:
        r = c.put("/v1/kv/alpha/x", content=env)
    assert r.status_code == 422
    assert stranger.key_id in r.json()["error"]["message"]


def test_write_bound_to_another_path_is_refused(proxy):
    env = proxy.envelope("/alpha/a", b"v")
    with proxy.client(proxy.tokens["alpha"]) as c:
        r = c.put("/v1/kv/alpha/b", content=env)
    assert r.status_code == 422
    assert "bound to '/alpha/a'" in r.json()["error"]["message"]


@pytest.mark.parametrize("body", [b"", b"garbage", b"VKEY\x02" + b"\x00" * 300])
def test_malformed_envelope_is_422(proxy, body):
    with proxy.client(proxy.tokens["alpha"]) as c:
        r = c.put("/v1/kv/alpha/x", content=body)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_envelope"


def test_oversized_body_is_413_before_etcd(proxy):
    with proxy.client(proxy.tokens["alpha"]) as c:
        r = c.put("/v1/kv/alpha/huge", content=b"\x00" * (MAX_ENVELOPE_BYTES + 1))
        assert r.status_code == 413
        assert c.get("/v1/kv/alpha/huge").status_code == 404


def test_one_mebibyte_value_round_trips_through_the_proxy(proxy):
    import base64

    from vaultkey.crypto import decrypt

    value = bytes(range(256)) * 4096
    with proxy.client(proxy.tokens["alpha"]) as c:
        r = c.put("/v1/kv/alpha/big", content=proxy.envelope("/alpha/big", value))
        assert r.status_code == 200
        env = base64.b64decode(c.get("/v1/kv/alpha/big").json()["envelope"])
    assert decrypt(env, "/alpha/big", proxy.keys["alpha"]) == value


@pytest.mark.parametrize(
    "raw_path",
    [
        "/v1/kv/alpha//x",
        "/v1/kv/alpha/%2e%2e/beta/x",
        "/v1/kv/alpha/./x",
        "/v1/kv/alpha%2Fx",
        "/v1/kv/alpha/%252Fx",
        "/v1/kv/alpha/x%00y",
        "/v1/kv/alpha/x%0Ay",
        "/v1/kv/alpha/%5Cx",
        "/v1/kv/alpha/%ff",
        "/v1/kv/alpha/" + "a" * 1100,
        "/v1/kv/alpha/x/",
    ],
)
def test_bad_paths_are_422_before_etcd(proxy, raw_path):
    # http.client sends the request target byte for byte (httpx would normalise "./").
    import http.client
    import ssl
    from urllib.parse import urlsplit

    port = urlsplit(proxy.addr).port
    ctx = ssl.create_default_context(cafile=str(proxy.ca_path))
    for method in ("GET", "PUT", "DELETE"):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        conn.request(method, raw_path, body=b"" if method == "PUT" else None,
                     headers={"Authorization": f"Bearer {proxy.tokens['alpha']}"})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 422, (method, raw_path, resp.status, body)


def test_compare_and_swap_and_create_only(proxy):
    path = "/alpha/cas"
    with proxy.client(proxy.tokens["alpha"]) as c:
        r1 = c.put(f"/v1/kv{path}", content=proxy.envelope(path, b"1"),
                   headers={"If-None-Match": "*"})
        assert r1.status_code == 200
        rev = r1.json()["revision"]
        again = c.put(f"/v1/kv{path}", content=proxy.envelope(path, b"x"),
                      headers={"If-None-Match": "*"})
        assert again.status_code == 409
        r2 = c.put(f"/v1/kv{path}", content=proxy.envelope(path, b"2"),
                   headers={"If-Match": str(rev)})
        assert r2.status_code == 200
        stale = c.put(f"/v1/kv{path}", content=proxy.envelope(path, b"3"),
                      headers={"If-Match": str(rev)})
        assert stale.status_code == 409
        assert c.get(f"/v1/kv{path}").json()["revision"] == r2.json()["revision"]
        assert c.delete(f"/v1/kv{path}", headers={"If-Match": str(rev)}).status_code == 409
        assert c.put(f"/v1/kv{path}", content=proxy.envelope(path, b"4"),
                     headers={"If-Match": "abc"}).status_code == 422


def test_get_on_a_prefix_without_list_is_422(proxy):
    with proxy.client(proxy.tokens["alpha"]) as c:
        assert c.get("/v1/kv/alpha/").status_code == 422


def test_openapi_is_served_and_the_cdn_backed_docs_pages_are_not(proxy):
    with proxy.client() as c:
        spec = c.get("/openapi.json").json()
        docs = c.get("/docs")
    assert "/v1/kv/{path}" in spec["paths"]
    assert docs.status_code == 404
