"""Two groups with overlapping policies: every behaviour twice.

Once in-process on the memory store (milliseconds), and once through a real
TLS proxy and a real etcd, which shows the memory store hides no difference.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from vaultkey.crypto import SecretKey, encrypt

Y, N = True, False
# (group, capability, path, allowed)
CASES = [
    ("alpha", "read", "/alpha/x", Y),
    ("alpha", "write", "/alpha/x", Y),
    ("alpha", "delete", "/alpha/x", Y),
    ("alpha", "list", "/alpha/", Y),
    ("alpha", "write", "/alpha/locked/k", N),  # deny overrides at a longer prefix
    ("alpha", "delete", "/alpha/locked/k", N),
    ("alpha", "read", "/alpha/locked/k", Y),  # deny names only write/delete
    ("alpha", "read", "/alpha2/x", N),  # sibling prefix
    ("alpha", "write", "/alpha2/x", N),
    ("alpha", "read", "/alphabet", N),
    ("alpha", "read", "/shared/cfg", Y),
    ("alpha", "write", "/shared/cfg", N),
    ("alpha", "write", "/shared/alpha/secret", Y),  # longer prefix allows
    ("alpha", "read", "/shared/alpha/secret", Y),
    ("alpha", "read", "/services/web/config/timeout", Y),  # '+' segment
    ("alpha", "read", "/services/web/secrets/key", N),
    ("alpha", "read", "/services/a/b/config/x", N),  # '+' is exactly one segment
    ("alpha", "list", "/services/beta/config/", Y),
    ("alpha", "list", "/services/", N),
    ("alpha", "read", "/beta/public/motd", Y),  # exact key rule
    ("alpha", "read", "/beta/public/motd2", N),
    ("alpha", "list", "/beta/public/", N),  # a key rule grants nothing on a prefix
    ("alpha", "write", "/beta/public/motd", N),
    ("alpha", "read", "/beta/x", N),
    ("alpha", "read", "/alpha/with space/ünïcödé", Y),
    ("alpha", "list", "/", N),
    ("beta", "read", "/beta/x", Y),
    ("beta", "delete", "/beta/x", Y),
    ("beta", "write", "/shared/cfg", Y),
    ("beta", "delete", "/shared/cfg", N),
    ("beta", "read", "/shared/alpha/secret", N),  # exact key deny beats prefix allow
    ("beta", "read", "/shared/alpha/other", Y),
    ("beta", "write", "/shared/alpha/secret", Y),  # the deny names only read
    ("beta", "read", "/alpha/x", N),
    ("beta", "list", "/alpha/", N),
    ("beta", "read", "/services/beta/secrets/k", Y),
    ("beta", "read", "/services/web/config/timeout", N),
    ("beta", "read", "/sharedx/y", N),
    ("beta", "list", "/", N),
]

OUTSIDER = SecretKey.generate()


@pytest.fixture(scope="module", params=["memory", "etcd"])
def proxy(request, tmp_path_factory):
    from tests.e2e.conftest import POLICIES
    from tests.routes.inprocess import InProcessProxy

    if request.param == "memory":
        p = InProcessProxy.start(POLICIES, tmp_path_factory.mktemp("routes"))
    else:
        p = request.getfixturevalue("proxy_factory")()
    p.tokens = {g: p.create_token(g, name=f"{g}-test") for g in ("alpha", "beta")}
    return p


def url(path: str) -> str:
    return "/v1/kv" + quote(path, safe="/")


def envelope_for(proxy, path: str, value: bytes) -> bytes:
    from tests._helpers.envelopes import reader_keys

    readers = reader_keys(proxy.policy_dir, path)
    return encrypt(value, path, readers or [OUTSIDER.public])


@pytest.mark.parametrize(("group", "cap", "path", "allowed"), CASES,
                         ids=[f"{g}-{c}-{p}" for g, c, p, _ in CASES])
def test_group_can_do_exactly_what_its_rules_allow(proxy, group, cap, path, allowed):
    store = proxy.store()
    with proxy.client(proxy.tokens[group]) as c:
        if cap == "list":
            r = c.get(url(path), params={"list": "true"})
        elif cap == "read":
            store.put(path, envelope_for(proxy, path, b"v"))
            r = c.get(url(path))
        elif cap == "write":
            r = c.put(url(path), content=envelope_for(proxy, path, b"v"))
        else:
            store.put(path, envelope_for(proxy, path, b"v"))
            r = c.delete(url(path))
    assert r.status_code == (200 if allowed else 403), r.text
    if not allowed:
        assert r.json()["error"]["code"] == "permission_denied"


def test_denial_is_identical_whether_or_not_the_key_exists(proxy):
    proxy.store().put("/alpha/exists", envelope_for(proxy, "/alpha/exists", b"v"))
    with proxy.client(proxy.tokens["beta"]) as c:
        present = c.get(url("/alpha/exists"))
        absent = c.get(url("/alpha/absent"))
    assert present.status_code == absent.status_code == 403
    assert present.text.replace("exists", "X") == absent.text.replace("absent", "X")


def test_missing_key_is_404_only_for_a_reader(proxy):
    with proxy.client(proxy.tokens["alpha"]) as c:
        assert c.get(url("/alpha/never-written")).status_code == 404


def test_list_and_recursive_are_filtered_to_readable_keys(proxy):
    store = proxy.store()
    for path in ["/shared/a", "/shared/alpha/secret", "/shared/alpha/other", "/shared/z/deep"]:
        store.put(path, envelope_for(proxy, path, path.encode()))
    with proxy.client(proxy.tokens["beta"]) as c:
        keys = c.get(url("/shared/"), params={"list": "true"}).json()["keys"]
        entries = c.get(url("/shared"), params={"recursive": "true"}).json()["entries"]
    assert "/shared/alpha/secret" not in keys
    assert {"/shared/a", "/shared/alpha/other", "/shared/z/deep"} <= set(keys)
    assert [e["path"] for e in entries] == keys
    with proxy.client(proxy.tokens["alpha"]) as c:
        alpha_keys = c.get(url("/shared/"), params={"list": "true"}).json()["keys"]
    assert "/shared/alpha/secret" in alpha_keys


def test_recursive_returns_envelopes_that_decrypt(proxy):
    from vaultkey.crypto import decrypt

    store = proxy.store()
    for i in range(5):
        store.put(f"/alpha/app/k{i}", envelope_for(proxy, f"/alpha/app/k{i}", b"value %d" % i))
    with proxy.client(proxy.tokens["alpha"]) as c:
        body = c.get(url("/alpha/app/"), params={"recursive": "true"}).json()
    import base64

    got = {e["path"]: decrypt(base64.b64decode(e["envelope"]), e["path"], proxy.keys["alpha"])
           for e in body["entries"]}
    assert got == {f"/alpha/app/k{i}": b"value %d" % i for i in range(5)}
    assert body["revision"] >= max(e["revision"] for e in body["entries"])


def test_recipients_endpoint_names_reader_groups_and_keys(proxy):
    with proxy.client(proxy.tokens["alpha"]) as c:
        body = c.get("/v1/recipients/shared/alpha/other").json()
    groups = {g["group"]: g["recipients"] for g in body["groups"]}
    assert set(groups) == {"alpha", "beta"}
    assert groups["alpha"][0]["key_id"] == proxy.keys["alpha"].key_id
    with proxy.client(proxy.tokens["beta"]) as c:
        assert c.get("/v1/recipients/alpha/x").status_code == 403
