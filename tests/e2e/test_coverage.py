"""The coverage report (issue 14): one planted case of each verdict, reported correctly by
``GET /v1/coverage``, the access matrix and ``vaultkey coverage``, whose exit code gates CI.

Real etcd, a real TLS proxy and the real CLI. Values the proxy would refuse to store
(a stanza for a group that may not read, a foreign value) are planted straight into
etcd under the proxy's root, as a writer bypassing the proxy could.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.test_cli import vk
from vaultkey.crypto import SecretKey, encrypt
from vaultkey.signkey import SigningKey

SIGNER = SigningKey.generate()
OLD = SecretKey.generate()  # alpha's key before a rotation


def _policies() -> dict[str, str]:
    return {
        "alpha.toml": f"""
group = "alpha"
recipients = ["alpha.pub"]
retired = ["{OLD.public.to_text()}"]
signers = ["{SIGNER.public.to_text()}"]
[[rules]]
prefix = "/cov/"
allow = ["read", "list", "write", "delete", "watch"]
[[rules]]
prefix = "/cov/signed/"
require_signature = ["group:alpha"]
""",
        "beta.toml": """
group = "beta"
recipients = ["beta.pub"]
[[rules]]
prefix = "/cov/shared/"
allow = ["read", "list"]
""",
    }


EXPECTED = {
    "/cov/ok": "ok",
    "/cov/signed/ok": "ok",
    "/cov/shared/missing": "missing-reader",
    "/cov/stale-group": "stale-recipient",
    "/cov/stale-retired": "stale-recipient",
    "/cov/unknown": "unknown-key",
    "/cov/signed/unsigned": "unsigned-where-required",
    "/cov/foreign": "foreign",
    "/cov/copied": "foreign",
}


@pytest.fixture(scope="module")
def planted(proxy_factory):
    proxy = proxy_factory(_policies())
    proxy.tokens = {g: proxy.create_token(g) for g in ("alpha", "beta")}
    alpha, beta = proxy.keys["alpha"].public, proxy.keys["beta"].public
    stray = SecretKey.generate().public
    with proxy.client(proxy.tokens["alpha"]) as c:  # the normal way, through the proxy
        for path in ("/cov/ok", "/cov/clean/a"):
            assert c.put(f"/v1/kv{path}", content=proxy.envelope(path, b"v")).status_code == 200
    store = proxy.store()
    try:
        store.put("/cov/signed/ok", encrypt(b"v", "/cov/signed/ok", [alpha], signer=SIGNER))
        store.put("/cov/shared/missing", encrypt(b"v", "/cov/shared/missing", [alpha]))
        store.put("/cov/stale-group", encrypt(b"v", "/cov/stale-group", [alpha, beta]))
        store.put("/cov/stale-retired",
                  encrypt(b"v", "/cov/stale-retired", [alpha, OLD.public]))
        store.put("/cov/unknown", encrypt(b"v", "/cov/unknown", [alpha, stray]))
        store.put("/cov/signed/unsigned", encrypt(b"v", "/cov/signed/unsigned", [alpha]))
        store.put("/cov/foreign", b"plain text someone wrote with etcdctl")
        store.put("/cov/copied", encrypt(b"v", "/cov/ok", [alpha]))
    finally:
        store.conn.close()
    time.sleep(0.3)  # the replica's watch brings the planted keys to its cache
    return proxy


def _coverage(proxy, token: str, target: str, **params: str):
    with proxy.client(token) as c:
        return c.get(f"/v1/coverage{target}", params=params)


def test_each_planted_verdict_is_reported(planted):
    r = _coverage(planted, planted.admin_token, "/cov/")
    assert r.status_code == 200, r.text
    body = r.json()
    got = {row["path"]: row for row in body["keys"]}
    assert {p: got[p]["verdict"] for p in EXPECTED} == EXPECTED
    assert got["/cov/clean/a"]["verdict"] == "ok"
    missing = got["/cov/shared/missing"]
    assert missing["readers"] == ["alpha", "beta"]
    assert [(s["group"], s["role"], s["position"]) for s in missing["stanzas"]] == [
        ("alpha", "current", 0)]
    assert missing["problems"][0]["fix"] == "vaultkey rewrap /cov/shared/"
    retired = got["/cov/stale-retired"]
    assert {(s["group"], s["role"]) for s in retired["stanzas"]} == {
        ("alpha", "current"), ("alpha", "old")}
    assert got["/cov/stale-retired"]["problems"][0]["fix"] == "vaultkey rotate /cov/"
    assert {s["role"] for s in got["/cov/unknown"]["stanzas"]} == {"current", "unknown"}
    assert got["/cov/signed/ok"]["signer"]["name"] == SIGNER.public.key_id
    assert got["/cov/signed/ok"]["counter"] is not None
    assert got["/cov/foreign"]["stanzas"] == [] and got["/cov/foreign"]["counter"] is None
    assert "bound to /cov/ok" in got["/cov/copied"]["problems"][0]["detail"]
    assert body["summary"]["foreign"] == 2 and body["summary"]["ok"] == 3
    assert all(row["revision"] > 0 and row["size"] > 0 for row in body["keys"])


def test_a_group_token_sees_only_what_it_may_list_and_read(planted):
    beta = _coverage(planted, planted.tokens["beta"], "/cov/shared/").json()
    assert [row["path"] for row in beta["keys"]] == ["/cov/shared/missing"]
    # beta may not list /cov/: refused before the store is read, like a listing
    assert _coverage(planted, planted.tokens["beta"], "/cov/").status_code == 403
    assert _coverage(planted, planted.tokens["beta"], "/cov/ok").status_code == 403
    assert _coverage(planted, planted.tokens["beta"], "/cov/nothing-here").status_code == 403
    assert _coverage(planted, "", "/cov/").status_code == 401
    one = _coverage(planted, planted.tokens["alpha"], "/cov/unknown").json()
    assert [row["verdict"] for row in one["keys"]] == ["unknown-key"]


def test_pages_cover_every_key_once(planted):
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": "3", **({"after": after} if after else {})}
        page = _coverage(planted, planted.admin_token, "/cov/", **params).json()
        seen += [row["path"] for row in page["keys"]]
        after = page["next"]
        if after is None:
            break
    assert len(seen) == len(set(seen)) == len(EXPECTED) + 1
    assert _coverage(planted, planted.admin_token, "/cov/", limit="0").status_code == 422


def test_the_access_matrix_shows_capabilities_rules_and_who_can_decrypt(planted):
    with planted.client(planted.admin_token) as c:
        body = c.get("/v1/access/cov/shared/missing").json()
    rows = {row["group"]: row for row in body["groups"]}
    assert rows["beta"]["read"] == {"allowed": True, "rule": "beta.toml:4"}  # its [[rules]] table
    assert rows["beta"]["write"]["allowed"] is False
    assert rows["beta"]["can_decrypt"] is False
    assert rows["beta"]["mismatch"] == "missing-reader"
    assert rows["beta"]["fix"] == "vaultkey rewrap /cov/shared/"
    assert rows["alpha"]["can_decrypt"] is True and rows["alpha"]["mismatch"] is None
    with planted.client(planted.admin_token) as c:
        stale = {r["group"]: r for r in c.get("/v1/access/cov/stale-group").json()["groups"]}
    assert stale["beta"]["read"]["allowed"] is False and stale["beta"]["can_decrypt"] is True
    assert stale["beta"]["mismatch"] == "stale-recipient"
    with planted.client(planted.tokens["beta"]) as c:
        mine = c.get("/v1/access/cov/shared/").json()
    assert [r["group"] for r in mine["groups"]] == ["beta"]
    assert mine["groups"][0]["decrypt_count"] == [0, 1]


def test_the_cli_reports_each_verdict_prints_fixes_and_gates_ci(planted):
    admin = {"VAULTKEY_TOKEN": planted.admin_token}
    r = vk(planted, "alpha", "coverage", "/cov/", "-o", "json", "--fix-hint", **admin)
    assert r.returncode == 16, r.stderr
    report = json.loads(r.stdout)
    assert {row["path"]: row["verdict"] for row in report["keys"]
            if row["path"] in EXPECTED} == EXPECTED
    assert "vaultkey rewrap /cov/shared/" in report["fixes"]
    text = vk(planted, "alpha", "coverage", "/cov/", "--fix-hint", **admin)
    out = text.stdout.decode()
    assert text.returncode == 16
    assert "10 keys under /cov/" in out and "2 foreign" in out and "1 missing-reader" in out
    assert "to fix:\n  vaultkey rotate /cov/" in out or "  vaultkey rotate /cov/\n" in out
    clean = vk(planted, "alpha", "coverage", "/cov/clean/")
    assert clean.returncode == 0, clean.stderr
    assert b"(all ok)" in clean.stdout


def test_a_missing_reader_is_cleared_by_rewrap(planted):
    before = _coverage(planted, planted.admin_token, "/cov/shared/missing").json()
    assert before["keys"][0]["verdict"] == "missing-reader"
    r = vk(planted, "alpha", "rewrap", "/cov/shared/")
    assert r.returncode == 0, r.stderr
    after = _coverage(planted, planted.admin_token, "/cov/shared/missing").json()
    assert after["keys"][0]["verdict"] == "ok"
    assert vk(planted, "beta", "get", "/cov/shared/missing").stdout == b"v"
