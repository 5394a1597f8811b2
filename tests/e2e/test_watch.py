"""The watch hub and the /v1/watch SSE stream, leases and revocation (real etcd, TLS proxy)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Proxy, wait_for

POLICIES = {
    "watcher.toml": """
group = "watcher"
recipients = ["watcher.pub"]
[[rules]]
prefix = "/"
allow = ["watch", "list"]
[[rules]]
prefix = "/open/"
allow = ["read", "list", "watch"]
""",
    "owner.toml": """
group = "owner"
recipients = ["owner.pub"]
[[rules]]
prefix = "/"
allow = ["read", "list", "write", "delete", "watch"]
""",
    "other.toml": """
group = "other"
recipients = ["other.pub"]
[[rules]]
prefix = "/"
allow = ["read", "list", "write", "delete", "watch"]
""",
}


class Stream:
    """An SSE stream read by a thread: ``events`` fills as they arrive."""

    def __init__(self, proxy: Proxy, token: str, prefix: str, since: int | None = None,
                 read: bool = True) -> None:
        self.events: list[dict[str, object]] = []
        self.ended = threading.Event()
        headers = {"Last-Event-ID": str(since)} if since is not None else {}
        self._client = proxy.client(token)
        self._response = self._client.send(
            self._client.build_request("GET", f"/v1/watch{prefix}", headers=headers,
                                       timeout=httpx.Timeout(10, read=60)), stream=True)
        assert self._response.status_code == 200, self._response.read()
        if read:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.ended.set()

    def _read(self) -> None:
        kind, ident = None, None
        try:
            for line in self._response.iter_lines():
                if line.startswith("event: "):
                    kind, ident = line[7:], None
                elif line.startswith("id: "):
                    ident = int(line[4:])
                elif line.startswith("data: "):
                    self.events.append({"event": kind, **json.loads(line[6:]),
                                        "id": ident, "at": time.monotonic()})
        except httpx.HTTPError:
            pass
        self.ended.set()

    def changes(self) -> list[dict[str, object]]:
        return [e for e in self.events if e["event"] in ("put", "delete")]

    def close(self) -> None:
        # Why shutdown and not close: closing a TLS socket that another thread is reading
        # leaves an OpenSSL error behind that breaks this thread's next TLS connection.
        sock = self._response.extensions["network_stream"].get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        self.ended.wait(5)
        self._response.close()
        self._client.close()


@contextlib.contextmanager
def stream(*args: object, **kw: object) -> Iterator[Stream]:
    s = Stream(*args, **kw)  # type: ignore[arg-type]
    try:
        assert wait_for(lambda: s.events or not kw.get("read", True))  # the first bookmark
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def wproxy(proxy_factory) -> Proxy:
    p = proxy_factory(policies=POLICIES, extra_args=["--watch-queue", "32"])
    p.tokens = {g: p.create_token(g) for g in ("watcher", "owner", "other")}
    return p


def put(proxy: Proxy, path: str, value: bytes = b"v", group: str = "owner",
        query: str = "") -> dict[str, object]:
    with proxy.client(proxy.tokens[group]) as c:
        r = c.put(f"/v1/kv{path}{query}", content=proxy.envelope(path, value))
        assert r.status_code == 200, r.text
        return dict(r.json())


def test_a_watcher_gets_only_the_events_it_may_read_under_a_shared_prefix(wproxy):
    with stream(wproxy, wproxy.tokens["watcher"], "/") as s, \
            stream(wproxy, wproxy.tokens["watcher"], "/open/") as scoped:
        for path in ("/open/a", "/closed/b", "/openx/c", "/open/d"):
            put(wproxy, path)
        with wproxy.client(wproxy.tokens["owner"]) as c:
            assert c.delete("/v1/kv/closed/b").status_code == 200
            assert c.delete("/v1/kv/open/a").status_code == 200
        assert wait_for(lambda: len(s.changes()) >= 3)
        assert wait_for(lambda: len(scoped.changes()) >= 3)
        time.sleep(0.3)  # nothing else may arrive
        seen = [(e["event"], e["path"]) for e in s.changes()]
        assert seen == [("put", "/open/a"), ("put", "/open/d"), ("delete", "/open/a")]
        assert [(e["event"], e["path"]) for e in scoped.changes()] == seen  # not /openx/


def test_resume_from_last_event_id_has_no_gap_and_no_duplicate(wproxy):
    with stream(wproxy, wproxy.tokens["owner"], "/resume/") as s:
        first = [put(wproxy, f"/resume/{i}")["revision"] for i in range(3)]
        assert wait_for(lambda: len(s.changes()) == 3)
    later = [put(wproxy, f"/resume/{i}")["revision"] for i in range(3, 6)]
    with stream(wproxy, wproxy.tokens["owner"], "/resume/", since=first[-1]) as again:
        assert wait_for(lambda: len(again.changes()) >= 3)
        time.sleep(0.3)
        assert [e["revision"] for e in again.changes()] == later


def test_compaction_past_a_watchers_revision_gives_resync(wproxy):
    rev = put(wproxy, "/compact/a")["revision"]
    newest = put(wproxy, "/compact/a", b"again")["revision"]
    client = wproxy.store().conn.client()
    client.compact(newest, physical=True)
    with stream(wproxy, wproxy.tokens["owner"], "/compact/", since=int(rev) - 1) as s:
        assert wait_for(s.ended.is_set)
        resync = [e for e in s.events if e["event"] == "resync"]
        assert resync and resync[0]["reason"] == "compacted"


def test_a_revoked_tokens_stream_ends_within_a_second(wproxy):
    token = wproxy.create_token("owner")
    with stream(wproxy, token, "/") as s:
        with wproxy.client(wproxy.admin_token) as c:
            token_id = token[4:20]
            started = time.monotonic()
            assert c.delete(f"/v1/tokens/{token_id}").status_code == 200
        assert wait_for(s.ended.is_set, timeout=3)
        assert time.monotonic() - started < 1.0
        assert s.events[-1]["event"] == "revoked"


def test_a_busy_stream_of_a_revoked_token_ends_within_a_second_too(wproxy):
    token = wproxy.create_token("owner")
    stop = threading.Event()

    def writes() -> None:
        i = 0
        while not stop.is_set():
            put(wproxy, f"/busy/{i % 5}")
            i += 1
            time.sleep(0.05)

    writer = threading.Thread(target=writes)
    with stream(wproxy, token, "/busy/") as s:
        writer.start()
        try:
            assert wait_for(lambda: len(s.changes()) >= 5)
            with wproxy.client(wproxy.admin_token) as c:
                started = time.monotonic()
                assert c.delete(f"/v1/tokens/{token[4:20]}").status_code == 200
            assert wait_for(s.ended.is_set, timeout=3)
            assert time.monotonic() - started < 1.0
            assert s.events[-1]["event"] == "revoked"
            late = [e for e in s.changes() if e["at"] > started + 0.1]  # type: ignore[operator]
            assert not late, late
        finally:
            stop.set()
            writer.join()


def test_a_stream_is_audited_once_when_it_opens_and_once_when_it_closes(wproxy):
    with stream(wproxy, wproxy.tokens["owner"], "/audited/") as s:
        put(wproxy, "/audited/x")
        put(wproxy, "/audited/y")
        assert wait_for(lambda: len(s.changes()) == 2)
    def lines() -> list[dict[str, object]]:
        return [json.loads(line) for line in wproxy.audit_path.read_text().splitlines()
                if '"/audited/"' in line]
    assert wait_for(lambda: len(lines()) == 2)
    opened, closed = lines()
    assert (opened["op"], closed["op"]) == ("watch.open", "watch.close")
    assert closed["events"] == 2 and opened["status"] == 200


WRITES = 200


def test_a_subscriber_that_stops_reading_is_dropped_and_the_others_keep_up(wproxy):
    def dropped() -> float:
        with wproxy.client() as c:
            text = c.get("/metrics").text
        found = re.search(r"^vaultkey_watch_dropped ([0-9.e+]+)$", text, re.M)
        assert found
        return float(found.group(1))

    before = dropped()
    big = b"x" * 200_000  # a few fill the sockets' buffers; then 32 fill the queue
    with stream(wproxy, wproxy.tokens["owner"], "/slow/", read=False), \
            stream(wproxy, wproxy.tokens["owner"], "/slow/") as fast:
        delays = []
        for i in range(WRITES):
            sent = time.monotonic()
            put(wproxy, f"/slow/{i % 50}", big)
            if i % 10 == 0:
                assert wait_for(lambda n=i: len(fast.changes()) > n)
                delays.append(fast.changes()[-1]["at"] - sent)  # type: ignore[operator]
        assert wait_for(lambda: dropped() > before, timeout=20)
        assert wait_for(lambda: len(fast.changes()) == WRITES, timeout=20)
        assert not [e for e in fast.events if e["event"] == "resync"]
    print(f"well-behaved watcher while one was stuck: worst delay {max(delays) * 1000:.1f} ms")
    assert max(delays) < 0.5


def test_ttl_values_expire_and_revoking_the_lease_deletes_at_once(wproxy):
    answer = put(wproxy, "/ttl/gone-soon", query="?ttl=2")
    assert answer["ttl"] == 2 and len(str(answer["lease"])) == 16
    with wproxy.client(wproxy.tokens["owner"]) as c:
        assert wait_for(lambda: c.get("/v1/kv/ttl/gone-soon").status_code == 404, timeout=5)
        kept = put(wproxy, "/ttl/kept", query="?ttl=30s")
        assert c.post(f"/v1/leases/{kept['lease']}/keepalive").json()["ttl"] > 0
        assert c.delete(f"/v1/leases/{kept['lease']}").status_code == 200
        assert c.get("/v1/kv/ttl/kept").status_code == 404
        for bad in ("1", "0", "25h", "soon"):
            r = c.put(f"/v1/kv/ttl/x?ttl={bad}", content=wproxy.envelope("/ttl/x", b"v"))
            assert r.status_code == 422, (bad, r.text)


def test_a_group_cannot_keep_alive_revoke_or_attach_another_groups_lease(wproxy):
    lease = str(put(wproxy, "/iso/a", query="?ttl=30")["lease"])
    with wproxy.client(wproxy.tokens["other"]) as c:
        for r in (c.post(f"/v1/leases/{lease}/keepalive"), c.delete(f"/v1/leases/{lease}"),
                  c.put(f"/v1/kv/iso/b?lease={lease}",
                        content=wproxy.envelope("/iso/b", b"v"))):
            assert r.status_code == 404, r.text
        # An id that does not exist answers exactly the same.
        missing = c.post("/v1/leases/0000000000000001/keepalive")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
    with wproxy.client(wproxy.tokens["owner"]) as c:
        assert c.get("/v1/kv/iso/a").status_code == 200  # untouched
        assert c.post(f"/v1/leases/{lease}/keepalive").status_code == 200


def test_a_token_revoked_on_one_replica_is_refused_by_the_other_at_once(
        wproxy, proxy_factory):
    second = proxy_factory(policies=POLICIES, extra_args=["--root", wproxy.root])
    worst = 0.0
    for _ in range(20):
        token = wproxy.create_token("owner")
        with second.client(token) as c:
            assert wait_for(lambda c=c: c.get("/v1/whoami").status_code == 200)  # cached
            with wproxy.client(wproxy.admin_token) as admin:
                assert admin.delete(f"/v1/tokens/{token[4:20]}").status_code == 200
            revoked = time.monotonic()
            while c.get("/v1/whoami").status_code != 401:
                assert time.monotonic() - revoked < 2
            worst = max(worst, time.monotonic() - revoked)
    print(f"revocation across replicas: worst of 20 trials {worst * 1000:.1f} ms")
    # Pushed by the watch (milliseconds; the figure above), not waited out: without the push a
    # live replica would trust its cached record for 60 s. The bound is loose on purpose, as
    # a timing bound on a loaded 2-core CI machine must be (one run there took 125 ms).
    assert worst < 1.0


def test_events_stay_in_order_with_no_gap_across_an_etcd_restart(proxy_factory, private_etcd):
    p = proxy_factory(policies=POLICIES, etcd_url=private_etcd.url)
    p.tokens = {"owner": p.create_token("owner")}
    with stream(p, p.tokens["owner"], "/r/") as s:
        before = [put(p, f"/r/{i}")["revision"] for i in range(3)]
        assert wait_for(lambda: len(s.changes()) == 3)
        private_etcd.restart()
        with p.client(p.tokens["owner"]) as c:  # the proxy reconnects by itself
            assert wait_for(lambda: c.get("/readyz").status_code == 200, timeout=20)
        after = [put(p, f"/r/{i}")["revision"] for i in range(3, 6)]
        assert wait_for(lambda: len(s.changes()) == 6, timeout=20)
        assert [e["revision"] for e in s.changes()] == before + after
        assert not [e for e in s.events if e["event"] == "resync"]
    with p.client() as c:  # still one watch on kv/ and one on sys/ after the restart
        assert wait_for(lambda: "vaultkey_watch_streams 2.0" in c.get("/metrics").text)


def test_a_revision_that_changes_several_keys_has_one_resume_point_at_its_end(wproxy):
    lease = str(put(wproxy, "/multi/a", query="?ttl=30")["lease"])
    put(wproxy, "/multi/b", query=f"?lease={lease}")
    with stream(wproxy, wproxy.tokens["owner"], "/multi/") as s:
        with wproxy.client(wproxy.tokens["owner"]) as c:
            assert c.delete(f"/v1/leases/{lease}").status_code == 200
        assert wait_for(lambda: len(s.changes()) == 2)
        first, second = s.changes()
        assert first["revision"] == second["revision"]  # one etcd revision, two keys
        assert (first["id"], second["id"]) == (None, second["revision"])


def test_a_stopping_replica_ends_its_streams_at_once_so_clients_resume_elsewhere(
        proxy_factory):
    import signal

    p = proxy_factory(policies=POLICIES)
    p.tokens = {"owner": p.create_token("owner")}
    with stream(p, p.tokens["owner"], "/") as s:
        started = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        assert wait_for(s.ended.is_set, timeout=5)
        p.proc.wait(10)
        stopped = time.monotonic() - started
        assert [e["reason"] for e in s.events if e["event"] == "resync"] == ["restarted"]
    print(f"replica with an open stream stopped in {stopped:.2f} s")
    assert stopped < 3
