"""Several proxy addresses against real replicas (two TLS proxies on one etcd root): a
replica SIGKILLed under load, the CLI past a dead address, a watch that moves replicas."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import vaultkey
from tests._helpers.wait import wait_until, within
from tests.e2e.test_cli import ok, vk
from vaultkey._dev.etcdproc import free_port
from vaultkey.client import Client
from vaultkey.errors import OutcomeUnknown

THREADS = 4


def _replicas(proxy_factory: Any) -> tuple[Any, Any, str]:
    first = proxy_factory()
    second = proxy_factory(extra_args=["--root", first.root, "--policies",
                                       str(first.policy_dir)])
    token = first.create_token("alpha")  # tokens live in etcd: valid on every replica
    return first, second, token


def _client(addrs: list[str], token: str, key_from: Any) -> Client:
    return Client(addrs, token, key=key_from.key_path("alpha"), trust=key_from.trust_dir(),
                  cacert=str(key_from.ca_path))


def _kill(proxy: Any) -> float:
    """SIGKILL *proxy* (no graceful anything); the time the signal was sent."""
    killed_at = time.monotonic()
    proxy.proc.send_signal(signal.SIGKILL)
    proxy.proc.wait(30)
    return killed_at


@dataclass
class Load:
    """What the threads of the mixed load did (each list appended to by one thread at once
    is fine: list.append is atomic)."""

    attempted: list[str] = field(default_factory=list)
    acknowledged: dict[str, bytes] = field(default_factory=dict)
    unknown: dict[str, bytes] = field(default_factory=dict)
    errors: list[tuple[float, str, BaseException]] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)  # when each good read ended
    successes: list[tuple[float, float]] = field(default_factory=list)  # (start, end)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, client: Client, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            path, value = f"/alpha/failover/{n}-{i}", f"value {n}-{i}".encode()
            self.attempted.append(path)
            start = time.monotonic()
            try:
                client.set(path, value)
            except OutcomeUnknown:
                self.unknown[path] = value
            except vaultkey.VaultkeyError as exc:
                self.errors.append((start, f"write {path}", exc))
            else:
                self.acknowledged[path] = value
                self.successes.append((start, time.monotonic()))
            self.read(client, path, value)

    def read(self, client: Client, path: str, value: bytes) -> None:
        known = list(self.acknowledged.items())
        check, expected = known[len(known) // 2] if known else (path, value)
        start = time.monotonic()
        try:
            got = client.get(check)
        except vaultkey.NotFound:
            if check in self.acknowledged:
                self.errors.append((start, f"read {check}", AssertionError("acknowledged, gone")))
            return
        except vaultkey.VaultkeyError as exc:
            self.errors.append((start, f"read {check}", exc))
            return
        if got != expected:
            self.errors.append((start, f"read {check}", AssertionError(got)))
            return
        self.reads.append(time.monotonic())
        self.successes.append((start, time.monotonic()))


def test_a_replica_killed_under_load_loses_no_acknowledged_write(proxy_factory):
    first, second, token = _replicas(proxy_factory)
    load = Load()
    with _client([first.addr, second.addr], token, first) as shared:
        threads = [threading.Thread(target=load.run, args=(shared, n)) for n in range(THREADS)]
        for t in threads:
            t.start()
        assert wait_until(lambda: len(load.acknowledged) >= 20 or load.errors, timeout=60)
        assert shared._wire.failover.current == 0  # the clients use the first replica
        killed_at = _kill(first)
        after = len(load.attempted)
        assert wait_until(lambda: any(end > killed_at for end in load.reads), timeout=60)
        time.sleep(2.0)  # keep the load going on the surviving replica
        load.stop.set()
        for t in threads:
            t.join(60)
        assert shared._wire.failover.current == 1
    assert not load.errors, load.errors[:5]
    with _client([second.addr], token, first) as check:
        for path, value in load.acknowledged.items():
            assert check.get(path) == value, path
        found = 0
        for path, value in load.unknown.items():
            with contextlib.suppress(vaultkey.NotFound):
                assert check.get(path) == value
                found += 1
    first_good = min(end for start, end in load.successes if start >= killed_at)
    print(f"\nproxy kill: {len(load.attempted)} writes attempted ({len(load.attempted) - after} "
          f"after the kill), {len(load.acknowledged)} acknowledged, "
          f"{len(load.acknowledged)} of them found afterwards, {len(load.unknown)} outcome "
          f"unknown ({found} of them applied), {len(load.errors)} other errors, "
          f"{len([r for r in load.reads if r > killed_at])} good reads after the kill; "
          f"first success on the other replica {1000 * (first_good - killed_at):.0f} ms "
          f"after the SIGKILL ({THREADS} threads, one shared Client)")
    assert len(load.attempted) > after  # writes went on after the kill


def test_the_cli_gets_past_a_dead_address(proxy, tmp_path):
    dead = f"https://127.0.0.1:{free_port()}"
    marks = tmp_path / "marks.json"
    env = {"VAULTKEY_ADDR": f"{dead},{proxy.addr}", "VAULTKEY_MARKS": str(marks)}
    ok(vk(proxy, "alpha", "set", "/alpha/failover/cli", "past the dead one", **env))
    assert ok(vk(proxy, "alpha", "get", "/alpha/failover/cli", **env)) == b"past the dead one"
    # the rollback marks of this list are kept under the whole list, not under one address
    assert list(json.loads(marks.read_text())["scopes"]) == [f"{dead},{proxy.addr}"]


def test_a_dead_address_alone_is_unavailable_and_names_it(proxy):
    dead = f"https://127.0.0.1:{free_port()}"
    other = f"https://127.0.0.1:{free_port()}"
    r = vk(proxy, "alpha", "get", "/alpha/failover/cli", VAULTKEY_ADDR=f"{dead},{other}")
    assert r.returncode == 8, r.stderr.decode()
    assert dead.encode() in r.stderr and other.encode() in r.stderr


def test_a_watch_resumes_on_the_other_replica_when_its_replica_is_killed(proxy_factory):
    first, second, token = _replicas(proxy_factory)
    seen: list[vaultkey.client.WatchEvent] = []
    with _client([first.addr, second.addr], token, first) as watcher, \
            _client([second.addr], token, first) as writer, within(120), \
            watcher.watch("/alpha/fw/") as changes:

        def write() -> None:
            assert wait_until(lambda: changes.revision is not None, timeout=60)
            writer.set("/alpha/fw/before", b"1")
            assert wait_until(lambda: len(seen) >= 1, timeout=60)
            assert watcher._wire.failover.current == 0  # the stream comes from the first
            _kill(first)
            writer.set("/alpha/fw/meanwhile", b"2")  # written while the watch reconnects
            assert wait_until(lambda: watcher._wire.failover.current == 1, timeout=60)
            writer.set("/alpha/fw/after", b"3")

        thread = threading.Thread(target=write)
        thread.start()
        for change in changes:
            seen.append(change)
            if len(seen) == 3:
                break
        thread.join(60)
    assert [(c.type, c.path, c.value) for c in seen] == [
        ("put", "/alpha/fw/before", b"1"), ("put", "/alpha/fw/meanwhile", b"2"),
        ("put", "/alpha/fw/after", b"3")]
