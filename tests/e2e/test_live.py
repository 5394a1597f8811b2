"""Live configuration (``client.live``) against a real TLS proxy on a real etcd: how soon
a write shows, a proxy restart, a resync, reads that never wait, errors, stop()."""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest

import vaultkey
from tests._helpers.procs import popen
from tests._helpers.wait import wait_until
from vaultkey.client import AsyncClient, Client
from vaultkey.client._live import Change
from vaultkey.crypto import encrypt


def client(proxy: Any, cls: type[Any] = Client, addr: str | None = None) -> Any:
    return cls(addr or proxy.addr, proxy.tokens["alpha"], key=proxy.key_path("alpha"),
               cacert=str(proxy.ca_path), trust=proxy.trust_dir())


def subscribers(proxy: Any) -> int:
    with proxy.client() as c:
        found = re.search(r"^vaultkey_watch_subscribers (\S+)$", c.get("/metrics").text, re.M)
    assert found is not None
    return int(float(found.group(1)))


def healthy(proxy: Any) -> bool:
    with proxy.client() as c:
        return c.get("/healthz").status_code == 200


def restart(proxy: Any, while_down: Any = None) -> None:
    """Stop *proxy* (SIGTERM), call *while_down*, then start the same command again: the
    same address, etcd root, policies and tokens (kept in etcd)."""
    proxy.stop()
    if while_down is not None:
        while_down()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
    with open(proxy.log_path, "ab") as log:
        proxy.proc = popen(list(proxy.proc.args), stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, env=env)  # the factory stops it
    assert wait_until(lambda: proxy.proc.poll() is not None or healthy(proxy), timeout=30,
                      ignore=(httpx.TransportError,))
    assert proxy.proc.poll() is None, proxy.logs()


@pytest.fixture
def own_proxy(proxy_factory) -> Any:
    """A proxy of this test's own (it is stopped and restarted), with an alpha token."""
    p = proxy_factory()
    p.tokens = {"alpha": p.create_token("alpha", name="alpha-live")}
    return p


@pytest.fixture
def replica(proxy_factory, own_proxy) -> Any:
    """A second proxy on own_proxy's etcd root and policies: writes while it is down."""
    r = proxy_factory(extra_args=["--root", own_proxy.root,
                                  "--policies", str(own_proxy.policy_dir)])
    r.tokens = own_proxy.tokens
    return r


def test_a_write_shows_in_live_within_the_watch_delay(proxy):
    visible: dict[int, float] = {}  # revision -> when on_change saw it
    path = "/alpha/live/delay/value"
    with client(proxy) as vk, client(proxy) as writer:
        writer.set(path, b"0")
        with vk.live("/alpha/live/delay/",
                     on_change=lambda c: visible.setdefault(c.revision, time.perf_counter())
                     ) as cfg:
            delays, totals = [], []
            for i in range(1, 21):
                called = time.perf_counter()
                revision = writer.set(path, str(i).encode())
                returned = time.perf_counter()
                assert wait_until(lambda r=revision: r in visible, timeout=10, interval=0.001)
                assert cfg[path] == str(i).encode() and cfg.revision >= revision
                delays.append(max(0.0, visible[revision] - returned))
                totals.append(visible[revision] - called)
    early = sum(1 for d in delays if d == 0.0)
    print(f"\nlive: a write shows {statistics.median(delays) * 1000:.1f} ms (median of 20) "
          f"after set() returns; worst {max(delays) * 1000:.1f} ms; {early} of 20 already "
          f"visible when set() returned; from the set() call: median "
          f"{statistics.median(totals) * 1000:.1f} ms, worst {max(totals) * 1000:.1f} ms")
    assert statistics.median(delays) < 1.0 and max(delays) < 5.0


def test_on_change_gets_paths_old_new_and_revision_and_deletes_fall_back(proxy):
    changes: list[Change] = []
    p = "/alpha/live/cb/"
    with client(proxy) as vk:
        vk.set(p + "a", b"A")
        vk.set(p + "mode", b"stored")
        with vk.live(p, defaults={p + "mode": b"default", p + "x": b"X"},
                     on_change=changes.append) as cfg:
            assert dict(cfg) == {p + "a": b"A", p + "mode": b"stored", p + "x": b"X"}
            revision = vk.set(p + "a", b"A2")
            assert wait_until(lambda: cfg[p + "a"] == b"A2")
            vk.delete(p + "mode")  # its default comes back
            assert wait_until(lambda: cfg[p + "mode"] == b"default")
            vk.delete(p + "a")  # no default: it disappears
            assert wait_until(lambda: p + "a" not in cfg)
            with vk.register(p + "svc1", b"1", ttl=30) as reg:  # two keys on one lease
                vk.set(p + "svc2", b"2", lease=reg.lease)
                assert wait_until(lambda: p + "svc2" in cfg)
            # leaving revoked the lease: both keys went at one revision, one Change
            assert wait_until(lambda: p + "svc1" not in cfg and p + "svc2" not in cfg)
            assert cfg.snapshot() == {p + "mode": b"default", p + "x": b"X"}
    first = changes[0]
    assert (first.paths, first.revision) == ({p + "a"}, revision)
    assert (first.old[p + "a"], first.new[p + "a"], first.new[p + "x"]) == (b"A", b"A2", b"X")
    assert [(c.paths, c.old.get(p + "mode"), c.new.get(p + "mode")) for c in changes[1:3]] == [
        ({p + "mode"}, b"stored", b"default"), ({p + "a"}, b"default", b"default")]
    assert changes[-1].paths == {p + "svc1", p + "svc2"}  # never one without the other
    assert [c.revision for c in changes] == sorted({c.revision for c in changes})


def live_alone(proxy: Any, prefix: str, **kw: Any) -> Any:
    """A live view whose client is closed already: the view has a connection of its own,
    and an idle one in the client's pool would hold the proxy's graceful stop for 10 s."""
    with client(proxy) as vk:
        vk.set(prefix + "a", b"before")
        return vk.live(prefix, **kw)


def test_live_survives_a_proxy_restart_and_reads_never_wait_for_the_network(
        own_proxy, replica):
    p = "/alpha/live/restart/"
    reads: list[float] = []
    with live_alone(own_proxy, p) as cfg, client(own_proxy, addr=replica.addr) as other:
        def while_down() -> None:
            for _ in range(200):  # the proxy is gone: reads are dict lookups
                started = time.perf_counter()
                assert cfg[p + "a"] == b"before" and p + "b" not in cfg
                reads.append(time.perf_counter() - started)
            other.set(p + "b", b"written while it was down")

        stopped = time.monotonic()
        restart(own_proxy, while_down)
        assert wait_until(lambda: p + "b" in cfg, timeout=30)  # replayed on resume
        back = time.monotonic() - stopped
        with client(own_proxy) as vk:
            vk.set(p + "a", b"after")
        assert wait_until(lambda: cfg[p + "a"] == b"after", timeout=10)
        assert cfg.running and cfg.errors == 0
    print(f"\nlive: current again {back:.2f} s after the proxy began to stop")
    print(f"\nlive: {len(reads)} reads with the proxy down: median "
          f"{statistics.median(reads) * 1e6:.1f} us, worst {max(reads) * 1e6:.1f} us")
    assert max(reads) < 0.05


def test_a_resync_after_a_compaction_reloads_the_whole_prefix(own_proxy, replica):
    p = "/alpha/live/resync/"
    changes: list[Change] = []
    with live_alone(own_proxy, p, on_change=changes.append) as cfg, \
            client(own_proxy, addr=replica.addr) as other:
        loaded_at = cfg.revision

        def while_down() -> None:  # the live view's resume point is compacted away
            other.delete(p + "a")
            other.set(p + "kept", b"2")
            newest = other.set(p + "new", b"3")
            own_proxy.store().conn.client().compact(newest, physical=True)

        restart(own_proxy, while_down)
        assert wait_until(lambda: p + "new" in cfg, timeout=30)
        assert dict(cfg) == {p + "kept": b"2", p + "new": b"3"}
    [reload] = changes  # one reload, one Change: not three events
    assert reload.paths == {p + "a", p + "kept", p + "new"} and reload.revision > loaded_at
    assert dict(reload.old) == {p + "a": b"before"}


def test_a_value_that_does_not_decrypt_is_reported_and_the_previous_value_kept(proxy, caplog):
    p = "/alpha/live/bad/"
    with client(proxy) as vk, vk.live(p, defaults={p + "a": b"default"}) as cfg:
        vk.set(p + "a", b"good")
        assert wait_until(lambda: cfg[p + "a"] == b"good")
        # An older envelope put back (counter 1, below the reader's mark): a rollback.
        old = encrypt(b"rolled-back", p + "a", [proxy.keys["alpha"].public], counter=1)
        with proxy.client(proxy.tokens["alpha"]) as raw:
            assert raw.put(f"/v1/kv{p}a", content=old).status_code == 200
        assert wait_until(lambda: f"{p}a does not decrypt" in caplog.text, timeout=10)
        assert cfg[p + "a"] == b"good" and isinstance(cfg.error, vaultkey.RollbackDetected)
        assert cfg.errors == 1 and cfg.running and "rolled-back" not in caplog.text
        vk.set(p + "a", b"fixed")
        assert wait_until(lambda: cfg[p + "a"] == b"fixed")


def test_permission_denied_raises_at_once_and_a_revoked_token_ends_the_view(proxy):
    with client(proxy) as vk, pytest.raises(vaultkey.PermissionDenied):
        vk.live("/beta/")
    token = proxy.create_token("alpha", name="to-revoke")
    with Client(proxy.addr, token, key=proxy.key_path("alpha"), cacert=str(proxy.ca_path),
                trust=proxy.trust_dir()) as vk, vk.live("/alpha/live/revoke/") as cfg:
        with proxy.client(proxy.admin_token) as admin:
            assert admin.delete(f"/v1/tokens/{token[4:20]}").status_code == 200
        with pytest.raises(vaultkey.Unauthenticated):
            cfg.wait_for_change(timeout=10)
        assert not cfg.running and isinstance(cfg.error, vaultkey.Unauthenticated)


def test_stop_closes_the_watch_at_once(proxy):
    before = subscribers(proxy)
    with client(proxy) as vk:
        cfg = vk.live("/alpha/live/stop/")
        assert wait_until(lambda: subscribers(proxy) == before + 1)
        started = time.monotonic()
        cfg.stop()
        stopped = time.monotonic() - started
        assert not cfg._thread.is_alive()
        assert wait_until(lambda: subscribers(proxy) == before)
        assert not [t for t in threading.enumerate() if t.name.startswith("vaultkey-live")]
    print(f"\nlive: stop() took {stopped * 1000:.1f} ms")
    assert stopped < 3


def test_async_live_follows_a_change(proxy):
    p = "/alpha/live/async/"

    async def run() -> tuple[Change | None, dict[str, bytes]]:
        async with client(proxy, AsyncClient) as vk:
            await vk.set(p + "a", b"1")
            async with await vk.live(p, defaults={p + "b": b"B"}) as cfg:
                assert dict(cfg) == {p + "a": b"1", p + "b": b"B"}
                # Waiting first: a change applied before the call is not reported.
                waiting = asyncio.create_task(cfg.wait_for_change(timeout=10))
                await asyncio.sleep(0)  # the task registers its wait
                await vk.set(p + "a", b"2")
                return await waiting, dict(cfg)

    change, values = asyncio.run(asyncio.wait_for(run(), 30))
    assert change is not None and change.paths == {p + "a"}
    assert (change.old[p + "a"], change.new[p + "a"]) == (b"1", b"2")
    assert values == {p + "a": b"2", p + "b": b"B"}
