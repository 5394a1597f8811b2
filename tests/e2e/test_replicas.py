"""Two proxy replicas on one etcd root (issue 13): what one writes, the other serves, and
compare-and-swap through both loses no update."""

from __future__ import annotations

import threading
import time

from vaultkey.client import Client
from vaultkey.errors import Conflict


def _replicas(proxy_factory):
    first = proxy_factory()
    second = proxy_factory(extra_args=["--root", first.root, "--policies",
                                       str(first.policy_dir)])
    token = first.create_token("alpha")  # tokens live in etcd: valid on every replica
    return first, second, token


def _client(proxy, token: str, key_from) -> Client:
    return Client(proxy.addr, token, key=key_from.key_path("alpha"),
                  trust=key_from.trust_dir(), cacert=str(proxy.ca_path))


def test_32_writers_incrementing_through_two_replicas_lose_no_update(proxy_factory):
    first, second, token = _replicas(proxy_factory)
    path = "/alpha/replicas/counter"
    with _client(first, token, first) as c:
        c.set(path, b"0")
    acknowledged = [0] * 32
    conflicts = [0] * 32
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        replica = (first, second)[n % 2]
        try:
            with _client(replica, token, first) as vk:
                while acknowledged[n] < 5:
                    item = vk.read(path)
                    try:
                        vk.set(path, str(int(item.value) + 1).encode(),
                               if_revision=item.revision)
                    except Conflict:
                        conflicts[n] += 1
                        continue
                    acknowledged[n] += 1
        except BaseException as exc:
            errors.append(exc)

    start = time.monotonic()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    assert not errors, errors[:3]
    with _client(second, token, first) as c:
        final = int(c.get(path))
    print(f"\n32 writers through 2 replicas: {sum(acknowledged)} increments acknowledged, "
          f"final value {final}, {sum(conflicts)} lost swaps retried, {took:.1f} s")
    assert final == sum(acknowledged) == 160


def test_a_write_through_one_replica_is_read_through_the_other(proxy_factory):
    first, second, token = _replicas(proxy_factory)
    with _client(first, token, first) as a, _client(second, token, first) as b:
        revision = a.set("/alpha/replicas/x", b"written via the first")
        # the SDK asks the second replica for at least that revision: read-your-writes
        b._ops._saw(revision)
        assert b.get("/alpha/replicas/x") == b"written via the first"
