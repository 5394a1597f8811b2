"""The read cache's guarantees on real etcd with two proxy replicas (docs/API.md, "Reads").

Replicas share one etcd root; each has its own cache fed by its own watch hub.
"""

from __future__ import annotations

import re
import statistics
import time

import pytest

from tests.e2e.conftest import Proxy, wait_for
from tests.e2e.test_watch import POLICIES, put

ROUNDS = 40


def _metric(proxy: Proxy, name: str) -> float:
    with proxy.client() as c:
        found = re.search(rf"^{name} ([0-9.e+]+)$", c.get("/metrics").text, re.M)
    assert found, name
    return float(found.group(1))


def _read(proxy: Proxy, path: str, query: str = "") -> tuple[int, int | None]:
    """(status, mod revision) of a GET as the owner group."""
    with proxy.client(proxy.tokens["owner"]) as c:
        r = c.get(f"/v1/kv{path}{query}")
        return r.status_code, (r.json()["revision"] if r.status_code == 200 else None)


@pytest.fixture(scope="module")
def replicas(proxy_factory) -> tuple[Proxy, Proxy]:
    first = proxy_factory(policies=POLICIES)
    second = proxy_factory(policies=POLICIES, extra_args=["--root", first.root])
    for p in (first, second):
        p.tokens = {"owner": first.create_token("owner")}
        assert wait_for(lambda p=p: _metric(p, "vaultkey_cache_usable") == 1, timeout=10)
    return first, second


def test_a_replica_reads_its_own_writes_at_once_from_its_cache(replicas):
    first, _ = replicas
    hits = _metric(first, "vaultkey_cache_hits")
    with first.client(first.tokens["owner"]) as c:
        for i in range(ROUNDS):
            r = c.put("/v1/kv/ryw/k", content=first.envelope("/ryw/k", b"%d" % i))
            written = r.json()["revision"]
            got = c.get("/v1/kv/ryw/k").json()
            assert got["revision"] == written
            assert c.delete("/v1/kv/ryw/k").status_code == 200
            assert c.get("/v1/kv/ryw/k").status_code == 404
            assert c.get("/v1/kv/ryw/?list=true").json()["keys"] == []
    assert _metric(first, "vaultkey_cache_hits") >= hits + 2 * ROUNDS  # served from memory


def test_a_write_through_one_replica_reaches_the_others_cache_within_the_watch_delay(
        replicas):
    first, second = replicas
    lags = []
    for i in range(ROUNDS):
        written = int(str(put(first, "/lag/k", b"%d" % i)["revision"]))
        start = time.monotonic()
        while _read(second, "/lag/k")[1] != written:
            assert time.monotonic() - start < 2, "the other replica never caught up"
        lags.append(time.monotonic() - start)
    print(f"replica lag over {ROUNDS} writes: median {statistics.median(lags) * 1000:.1f} ms, "
          f"worst {max(lags) * 1000:.1f} ms (each includes one GET round trip)")
    assert max(lags) < 1.0


def test_consistent_true_is_linearizable_across_replicas(replicas):
    first, second = replicas
    for i in range(ROUNDS):
        written = int(str(put(first, "/lin/k", b"%d" % i)["revision"]))
        assert _read(second, "/lin/k", "?consistent=true") == (200, written)
    with second.client(second.tokens["owner"]) as c:
        listed = c.get("/v1/kv/lin/?recursive=true&consistent=true").json()
        assert [e["revision"] for e in listed["entries"]] == [written]


def test_no_read_comes_from_the_cache_while_its_watch_is_down(proxy_factory, private_etcd):
    """etcd restarts: until the replica's watch is back and proven caught up by a fence,
    its reads go to etcd, so a change it has not yet seen is never hidden by the cache."""
    writer = proxy_factory(policies=POLICIES, etcd_url=private_etcd.url)
    reader = proxy_factory(policies=POLICIES, etcd_url=private_etcd.url,
                           extra_args=["--root", writer.root])
    writer.tokens = reader.tokens = {"owner": writer.create_token("owner")}
    put(writer, "/down/k", b"old")
    assert wait_for(lambda: _metric(reader, "vaultkey_cache_usable") == 1, timeout=10)
    assert _read(reader, "/down/k")[0] == 200  # cached now
    raw = writer.store()  # (reader.root names its unused own root: --root was overridden)
    caught = 0
    for _attempt in range(5):
        private_etcd.stop()  # the watch drops; its reconnect backoff grows meanwhile
        time.sleep(3)
        private_etcd.restart()
        fresh = raw.put("/down/k", b"written while the reader's watch was down")
        before = _metric(reader, "vaultkey_cache_usable")
        status, revision = _read(reader, "/down/k")
        deadline = time.monotonic() + 5
        while status == 503 and time.monotonic() < deadline:  # its etcd client reconnects
            status, revision = _read(reader, "/down/k")
        after = _metric(reader, "vaultkey_cache_usable")
        if before == after == 0:  # the read was made while the cache was unusable
            assert (status, revision) == (200, fresh)
            caught += 1
            break
    assert caught, "the reader's watch was never seen down: nothing was shown"
    assert wait_for(lambda: _metric(reader, "vaultkey_cache_usable") == 1, timeout=20)
    assert _read(reader, "/down/k")[1] == fresh
