"""The store adapter against a real etcd."""

from __future__ import annotations

import pytest

from vaultkey.envelope import MAX_ENVELOPE_BYTES
from vaultkey.errors import Conflict, InvalidPath, Unavailable, ValueTooLarge
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings, EtcdStore


def test_fixture_runs_a_real_etcd(etcd_server, etcd_conn):
    status = etcd_conn.client().status()
    assert status.version.startswith("3.")
    assert etcd_server.proc.poll() is None


def test_put_then_get_returns_value_and_metadata(store):
    rev = store.put("/app/db", b"\x00\x01binary")
    entry = store.get("/app/db")
    assert entry is not None
    assert entry.value == b"\x00\x01binary"
    assert entry.mod_revision == rev == entry.create_revision
    assert entry.version == 1


def test_get_missing_key_returns_none(store):
    assert store.get("/nope") is None


def test_values_live_under_the_namespace_only(store, etcd_conn, namespace):
    store.put("/a/b", b"v")
    raw, _meta = etcd_conn.client().get(namespace + "/a/b")
    assert raw == b"v"
    assert etcd_conn.client().get("/a/b") == (None, None)


def test_range_by_prefix_respects_segments_and_order(store):
    for path in ["/app/b", "/app/a", "/app/sub/c", "/app2/x", "/ap"]:
        store.put(path, path.encode())
    entries, revision = store.range("/app")
    assert [e.path for e in entries] == ["/app/a", "/app/b", "/app/sub/c"]
    assert [e.value for e in entries] == [b"/app/a", b"/app/b", b"/app/sub/c"]
    assert revision >= max(e.mod_revision for e in entries)


def test_list_keys_reads_no_values_and_pages_at_one_revision(store):
    for i in range(5):
        store.put(f"/k/{i}", b"secret-ish")
    fetched = store.counters.values_fetched
    page = store.list_keys("/k/", limit=2)
    assert page.paths == ["/k/0", "/k/1"] and page.after is not None
    store.put("/k/22", b"written after the first page")
    rest: list[str | None] = []
    after = page.after
    while after is not None:
        nxt = store.list_keys("/k/", revision=page.revision, after=after, limit=2)
        rest += nxt.paths
        after = nxt.after
    assert rest == ["/k/2", "/k/3", "/k/4"]  # /k/22 is newer than the listing's revision
    assert store.list_keys("/k/3", exact=True).paths == ["/k/3"]
    assert store.list_keys("/k/9", exact=True).paths == []
    assert store.counters.values_fetched == fetched


def test_load_run_fetches_exactly_the_run_at_the_listing_revision(store):
    for i in range(4):
        store.put(f"/r/{i}", f"v{i}".encode())
    page = store.list_keys("/r/")
    store.put("/r/1", b"changed later")
    entries = store.load_run("/r/1", "/r/2", 2, page.revision)
    assert [(e.path, e.value) for e in entries] == [("/r/1", b"v1"), ("/r/2", b"v2")]


def test_keys_not_written_by_vaultkey_are_reported_as_none_never_raised(store):
    raw = store.conn.client()
    for bad in (b"/bad/\xff\xfe", b"/bad/a//b", b"/bad/ctl\x01", b"/bad/ok"):
        raw.put(store.namespace.encode() + bad, b"x")
    page = store.list_keys("/bad/")
    assert page.paths.count(None) == 3 and "/bad/ok" in page.paths
    assert [e.path for e in store.range("/bad/")[0]] == ["/bad/ok"]
    assert store.counters.invalid_keys >= 3


def test_delete_reports_whether_the_key_existed(store):
    store.put("/d/x", b"1")
    assert store.delete("/d/x") > 0
    assert store.get("/d/x") is None
    assert store.delete("/d/x") == 0


def test_cas_with_current_revision_succeeds(store):
    rev1 = store.put("/cas/k", b"one")
    rev2 = store.put("/cas/k", b"two", if_revision=rev1)
    assert rev2 > rev1
    assert store.get("/cas/k").value == b"two"


def test_cas_with_stale_revision_is_refused_and_keeps_the_value(store):
    rev1 = store.put("/cas/k", b"one")
    store.put("/cas/k", b"two", if_revision=rev1)
    with pytest.raises(Conflict, match="compare-and-swap"):
        store.put("/cas/k", b"three", if_revision=rev1)
    assert store.get("/cas/k").value == b"two"


def test_cas_revision_zero_means_must_not_exist(store):
    store.put("/cas/new", b"x", if_revision=0)
    with pytest.raises(Conflict):
        store.put("/cas/new", b"y", if_revision=0)


def test_create_only_refuses_existing_key(store):
    store.put("/c/k", b"first", create_only=True)
    with pytest.raises(Conflict, match="already exists"):
        store.put("/c/k", b"second", create_only=True)
    assert store.get("/c/k").value == b"first"


def test_delete_with_stale_revision_is_refused(store):
    rev = store.put("/del/k", b"1")
    store.put("/del/k", b"2")
    with pytest.raises(Conflict):
        store.delete("/del/k", if_revision=rev)
    assert store.get("/del/k").value == b"2"


@pytest.mark.parametrize("bad", ["relative", "/a//b", "/a/../b", "/a/", "/a\x00b", "/%2e%2e"])
def test_invalid_paths_are_refused_before_etcd(store, etcd_conn, namespace, bad):
    with pytest.raises(InvalidPath):
        store.put(bad, b"x")
    entries, _ = store.range("/")
    assert entries == []


def test_largest_allowed_envelope_fits_etcd_request_limit(store):
    # Longest path and largest value together, through the CAS transaction path.
    long_path = "/" + "/".join(["p" * 100] * 10)
    value = b"\xab" * MAX_ENVELOPE_BYTES
    rev = store.put(long_path, value, if_revision=0)
    assert store.get(long_path).mod_revision == rev
    assert len(store.get(long_path).value) == MAX_ENVELOPE_BYTES


def test_a_value_over_etcds_request_limit_is_a_clear_value_too_large(store):
    # The proxy refuses bodies over MAX_ENVELOPE_BYTES before etcd (one size check per
    # side: tests/e2e/test_proxy_writes.py); the store maps etcd's own refusal.
    with pytest.raises(ValueTooLarge, match="too large"):
        store.put("/big", b"x" * (2 * 1024 * 1024))
    assert store.get("/big") is None


def test_unreachable_etcd_raises_unavailable():
    from vaultkey._dev.etcdproc import free_port

    conn = EtcdConnection(EtcdSettings(endpoints=[f"127.0.0.1:{free_port()}"], timeout=0.5))
    try:
        with pytest.raises(Unavailable):
            EtcdStore(conn, "/x").get("/k")
    finally:
        conn.close()
