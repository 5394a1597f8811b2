"""Tokens: hashed at rest, revocation and expiry, admin/group separation."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests._helpers.wait import wait_until
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings, EtcdStore
from vaultkey.proxy.tokens import hash_token


def _sys_records(proxy) -> list[bytes]:
    conn = EtcdConnection(EtcdSettings(endpoints=[proxy.etcd_url]))
    try:
        entries, _ = EtcdStore(conn, proxy.root + "/sys").range("/tokens/")
        return [e.value for e in entries]
    finally:
        conn.close()


def test_tokens_are_stored_only_as_hashes(proxy):
    token = proxy.create_token("alpha", name="hash-check")
    records = _sys_records(proxy)
    blob = b"\n".join(records)
    assert token.encode() not in blob
    assert token.split(".")[1].encode() not in blob
    hashes = {json.loads(r)["hash"] for r in records}
    assert hash_token(token) in hashes


ROOT_READER = """
group = "everything"
recipients = ["everything.pub"]
[[rules]]
prefix = "/"
allow = ["read", "list", "write", "delete"]
"""


def test_kv_api_cannot_reach_the_token_records(proxy_factory):
    """Even a group that may read and list everything never sees <root>/sys."""
    p = proxy_factory(policies={"everything.toml": ROOT_READER})
    token = p.create_token("everything")
    p.create_token("everything", name="a second token record")
    with p.client(token) as c:
        assert c.put("/v1/kv/app/x", content=p.envelope("/app/x", b"v")).status_code == 200
        listed = c.get("/v1/kv/", params={"list": "true"})
        loaded = c.get("/v1/kv/", params={"recursive": "true"})
        assert listed.status_code == loaded.status_code == 200
        assert listed.json()["keys"] == ["/app/x"]
        assert [e["path"] for e in loaded.json()["entries"]] == ["/app/x"]
        for path in ["/v1/kv/sys/tokens/", "/v1/kv/../sys/tokens/", "/v1/kv/%2e%2e/sys/tokens/"]:
            for params in ({"list": "true"}, {"recursive": "true"}):
                r = c.get(path, params=params)
                assert r.status_code in (200, 404, 422), path
                assert '"hash"' not in r.text
                if r.status_code == 200:  # /sys/tokens/ inside the KV namespace: empty
                    assert r.json().get("keys", []) == r.json().get("entries", []) == []


def test_token_create_returns_the_token_once_and_list_hides_it(proxy):
    with proxy.client(proxy.admin_token) as c:
        created = c.post("/v1/tokens", json={"group": "beta", "name": "listing"}).json()
        listed = c.get("/v1/tokens").json()["tokens"]
    assert created["token"].startswith("vkt_")
    assert any(t["id"] == created["id"] and t["group"] == "beta" for t in listed)
    assert created["token"] not in json.dumps(listed)
    assert all("hash" not in t for t in listed)


def test_revoked_token_gets_401_at_once(proxy):
    token = proxy.create_token("alpha", name="to-revoke")
    with proxy.client(token) as c:
        assert c.get("/v1/whoami").status_code == 200
        token_id = c.get("/v1/whoami").json()["token_id"]
    with proxy.client(proxy.admin_token) as admin:
        assert admin.delete(f"/v1/tokens/{token_id}").status_code == 200
        assert admin.delete(f"/v1/tokens/{token_id}").status_code == 404
    with proxy.client(token) as c:
        r = c.get("/v1/whoami")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    with proxy.client(proxy.admin_token) as admin:  # listed as revoked, with the time
        listed = admin.get("/v1/tokens").json()
    assert token_id not in {t["id"] for t in listed["tokens"]}
    revoked = [t for t in listed["revoked"] if t["id"] == token_id]
    assert len(revoked) == 1 and revoked[0]["group"] == "alpha"
    assert revoked[0]["name"] == "to-revoke" and revoked[0]["revoked"] > revoked[0]["created"]
    assert "hash" not in revoked[0] and token not in json.dumps(listed)


def test_expired_token_gets_401(proxy):
    token = proxy.create_token("alpha", ttl="1s")  # the shortest TTL there is
    with proxy.client(token) as c:
        assert c.get("/v1/whoami").status_code == 200

        def refused() -> httpx.Response | None:
            r = c.get("/v1/whoami")
            return r if r.status_code != 200 else None

        r = wait_until(refused, timeout=10)  # the proxy's clock runs out 1 s after creation
    assert r, "the token never expired"
    assert r.status_code == 401
    assert "expired" in r.json()["error"]["message"]


def test_bad_and_missing_tokens_get_401(proxy):
    good = proxy.tokens["alpha"]
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for token in [None, "", "nonsense", forged, "vkt_0000000000000000." + "A" * 43]:
        with proxy.client(token) as c:
            assert c.get("/v1/kv/alpha/x").status_code == 401, token


def test_admin_api_refuses_group_tokens(proxy):
    with proxy.client(proxy.tokens["alpha"]) as c:
        assert c.post("/v1/tokens", json={"group": "alpha"}).status_code == 403
        assert c.get("/v1/tokens").status_code == 403
        assert c.delete("/v1/tokens/0123456789abcdef").status_code == 403


def test_admin_token_has_no_kv_access(proxy):
    with proxy.client(proxy.admin_token) as c:
        assert c.get("/v1/kv/alpha/x").status_code == 403


def test_token_for_unknown_group_or_bad_ttl_is_422(proxy):
    with proxy.client(proxy.admin_token) as c:
        assert c.post("/v1/tokens", json={"group": "nobody"}).status_code == 422
        assert c.post("/v1/tokens", json={"group": "alpha", "ttl": "soon"}).status_code == 422
        assert c.post("/v1/tokens", content=b"{not json").status_code == 422


def _cli(proxy, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"VAULTKEY_ADDR": proxy.addr, "VAULTKEY_CACERT": str(proxy.ca_path),
           "VAULTKEY_TOKEN": token or proxy.admin_token, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "vaultkey", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def test_token_cli_create_list_revoke(proxy):
    created = _cli(proxy, "token", "create", "--group", "beta", "--ttl", "1h", "--name", "cli")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("vkt_") and "\n" not in token  # only the token on stdout
    listed = _cli(proxy, "token", "list")
    assert listed.returncode == 0 and "cli" in listed.stdout and token not in listed.stdout
    token_id = token[4:20]
    assert token_id in listed.stdout
    assert _cli(proxy, "token", "revoke", token_id).returncode == 0
    denied = _cli(proxy, "token", "list", token=token)
    assert denied.returncode == 5, denied.stderr
    assert "invalid or revoked token" in denied.stderr
    assert "Traceback" not in denied.stderr
