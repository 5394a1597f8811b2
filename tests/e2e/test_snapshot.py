"""Snapshots: several prefixes and keys read as of one etcd revision (what render needs)."""

from __future__ import annotations

import pytest

from vaultkey.client import Client
from vaultkey.errors import UsageError


def _client(proxy) -> Client:
    return Client(proxy.addr, proxy.tokens["alpha"], key=proxy.key_path("alpha"),
                  trust=proxy.trust_dir(), cacert=str(proxy.ca_path))


def test_a_snapshot_reads_every_prefix_and_key_at_one_revision(proxy):
    with _client(proxy) as c:
        c.set("/alpha/snap/a/x", b"a1")
        c.set("/alpha/snap/b/y", b"b1")
        c.set("/alpha/snap/k", b"k1")
        first = c.snapshot(["/alpha/snap/a/", "/alpha/snap/b/"], ["/alpha/snap/k",
                                                                   "/alpha/snap/absent"])
        assert dict(first.values) == {"/alpha/snap/a/x": b"a1", "/alpha/snap/b/y": b"b1",
                                      "/alpha/snap/k": b"k1"}
        c.set("/alpha/snap/a/x", b"a2")
        c.set("/alpha/snap/k", b"k2")
        c.delete("/alpha/snap/b/y")
        again = c.snapshot(["/alpha/snap/a/", "/alpha/snap/b/"], ["/alpha/snap/k"],
                           at=first.revision)
        assert again.revision == first.revision and dict(again.values) == dict(first.values)
        now = c.snapshot(["/alpha/snap/a/", "/alpha/snap/b/"], ["/alpha/snap/k"])
        assert dict(now.values) == {"/alpha/snap/a/x": b"a2", "/alpha/snap/k": b"k2"}
        keys_only = c.snapshot([], ["/alpha/snap/k", "/alpha/snap/a/x"])
        assert dict(keys_only.values) == {"/alpha/snap/a/x": b"a2", "/alpha/snap/k": b"k2"}
        with pytest.raises(UsageError, match="newer than etcd's current revision"):
            c.snapshot(["/alpha/snap/a/"], [], at=now.revision + 1000)


def test_a_read_at_a_revision_still_needs_read(proxy):
    with _client(proxy) as c:
        revision = c.set("/alpha/snap/private", b"v")
    with proxy.client(proxy.tokens["beta"]) as beta:
        r = beta.get("/v1/kv/alpha/snap/private", params={"revision": str(revision)})
        assert r.status_code == 403
        r = beta.get("/v1/kv/alpha/snap/", params={"recursive": "true",
                                                  "revision": str(revision)})
        assert r.status_code == 403
