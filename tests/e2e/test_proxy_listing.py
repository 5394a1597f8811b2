"""Listings and recursive reads load only what the caller may read (real etcd, real proxy).

The proxy's ``/metrics`` count what its KV store read from etcd: values fetched
and keys enumerated. That is how these tests see what was loaded.
"""

from __future__ import annotations

import concurrent.futures
import re

import pytest

from tests.e2e.conftest import Proxy, wait_for
from tests.e2e.test_proxy_dos import _stats

POLICIES = {
    "lister.toml": """
group = "lister"
recipients = ["lister.pub"]
[[rules]]
prefix = "/"
allow = ["list"]
""",
    "partial.toml": """
group = "partial"
recipients = ["partial.pub"]
[[rules]]
prefix = "/"
allow = ["list"]
[[rules]]
prefix = "/data/"
allow = ["read", "list"]
[[rules]]
prefix = "/data/secret/"
deny = ["read"]
[[rules]]
prefix = "/mine/"
allow = ["read", "list", "write"]
""",
    "owner.toml": """
group = "owner"
recipients = ["owner.pub"]
[[rules]]
prefix = "/"
allow = ["read", "list", "write", "delete"]
""",
}
UNREADABLE = 3000
VALUE_SIZE = 20_000


def _metric(proxy: Proxy, name: str) -> float:
    with proxy.client() as c:
        text = c.get("/metrics").text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert match, name
    return float(match.group(1))


def _read(proxy: Proxy, what: str) -> float:
    """Values fetched or keys listed, from etcd and from the read cache together."""
    return (_metric(proxy, f"vaultkey_store_{what}")
            + _metric(proxy, {"values_fetched": "vaultkey_cache_values_read",
                              "keys_listed": "vaultkey_cache_keys_listed"}[what]))


@pytest.fixture(scope="module", params=["cache", "no-cache"])
def lproxy(proxy_factory, request) -> Proxy:
    """Each test runs with the read cache (listings from memory) and without (from etcd):
    both must touch only what the caller may read."""
    p = proxy_factory(policies=POLICIES,
                      extra_args=[] if request.param == "cache" else ["--cache-bytes", "0"])
    p.tokens = {g: p.create_token(g) for g in ("lister", "partial", "owner")}
    raw = p.store().conn.client()
    ns = (p.root + "/kv").encode()
    blob = b"\x00" * VALUE_SIZE  # what it holds does not matter: nobody may read it
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: raw.put(ns + f"/other/{i:05d}".encode(), blob),
                      range(UNREADABLE)))
    for i in range(3):
        raw.put(ns + f"/data/secret/{i}".encode(), blob)
        raw.put(ns + f"/data/open/{i}".encode(), p.envelope(f"/data/open/{i}", b"v"))
    raw.put(ns + b"/data/open/zz", p.envelope("/data/open/zz", b"v"))
    return p


def test_a_list_only_groups_recursive_read_fetches_no_value_and_enumerates_nothing(lproxy):
    fetched = _read(lproxy, "values_fetched")
    listed = _read(lproxy, "keys_listed")
    with lproxy.client(lproxy.tokens["lister"]) as c:
        for params in ({"recursive": "true"}, {"list": "true"}):
            r = c.get("/v1/kv/", params=params)
            assert r.status_code == 200, r.text
            assert r.json().get("entries", r.json().get("keys")) == []
    assert _read(lproxy, "values_fetched") == fetched
    assert _read(lproxy, "keys_listed") == listed


def test_a_partial_reader_fetches_exactly_its_readable_values(lproxy):
    fetched = _read(lproxy, "values_fetched")
    listed = _read(lproxy, "keys_listed")
    with lproxy.client(lproxy.tokens["partial"]) as c:
        r = c.get("/v1/kv/", params={"recursive": "true"})
    assert r.status_code == 200, r.text
    paths = [e["path"] for e in r.json()["entries"]]
    assert paths == ["/data/open/0", "/data/open/1", "/data/open/2", "/data/open/zz"]
    # Only the 4 readable values were fetched; only /data/ and /mine/ were enumerated
    # (7 keys), never the 3,000 keys under /other/.
    assert _read(lproxy, "values_fetched") - fetched == 4
    assert _read(lproxy, "keys_listed") - listed == 7


def test_the_answer_size_limit_counts_only_readable_data(lproxy):
    # 60 MB of unreadable values under / must not make the answer "too large".
    with lproxy.client(lproxy.tokens["partial"]) as c:
        assert c.get("/v1/kv/", params={"recursive": "true"}).status_code == 200
    with lproxy.client(lproxy.tokens["owner"]) as c:
        r = c.get("/v1/kv/", params={"recursive": "true"})
        assert r.status_code == 413, r.text
        assert "exceed 16 MiB" in r.json()["error"]["message"]
        assert c.get("/v1/kv/other/", params={"list": "true"}).status_code == 200


def test_eight_concurrent_recursive_reads_by_a_list_only_group_keep_rss_flat(lproxy):
    pid = lproxy.proc.pid
    _fds, rss0 = _stats(pid)
    peak = rss0

    def read(_i: int) -> int:
        with lproxy.client(lproxy.tokens["lister"]) as c:
            return c.get("/v1/kv/", params={"recursive": "true"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(read, i) for i in range(8)]
        while not all(f.done() for f in futures):
            peak = max(peak, _stats(pid)[1])
        assert [f.result() for f in futures] == [200] * 8
    print(f"list-only recursive reads: RSS before {rss0:.1f} MB, peak {peak:.1f} MB")
    assert peak - rss0 < 50


BAD_KEYS = [b"/data/open/\xff\xfe", b"/data/open/a//b", b"/data/open/ctl\x01x",
            b"/data/open/./dot", b"/data/open/trailing/", b"/data/open/nl\nx"]


def test_keys_vaultkey_did_not_write_are_skipped_counted_and_logged_never_a_500(lproxy):
    raw = lproxy.store().conn.client()
    ns = (lproxy.root + "/kv").encode()
    # Counted when met: by the watch hub (which feeds the read cache) or by a listing.
    invalid = _metric(lproxy, "vaultkey_store_invalid_keys")
    for bad in BAD_KEYS:
        raw.put(ns + bad, b"junk")
    raw.put((lproxy.root + "/sys/tokens/").encode() + b"\xff", b"junk")
    try:
        with lproxy.client(lproxy.tokens["partial"]) as c:
            for params in ({"recursive": "true"}, {"list": "true"}):
                for prefix in ("/v1/kv/", "/v1/kv/data/", "/v1/kv/data/open/"):
                    r = c.get(prefix, params=params)
                    assert r.status_code == 200, r.text
                    body = r.json()
                    listed = [e["path"] for e in body.get("entries", [])] + body.get("keys", [])
                    assert listed and all("//" not in p and "\x01" not in p for p in listed)
            assert c.get("/v1/kv/data/open/%ff%fe").status_code in (404, 422)
            assert c.get("/v1/kv/data/open/a//b").status_code in (404, 422)
        with lproxy.client(lproxy.admin_token) as c:
            assert c.get("/v1/tokens").status_code == 200
        assert _metric(lproxy, "vaultkey_store_invalid_keys") > invalid
        assert wait_for(lambda: "\\xff\\xfe" in lproxy.log_path.read_text(errors="replace"))
    finally:
        for bad in BAD_KEYS:
            raw.delete(ns + bad)
