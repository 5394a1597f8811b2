"""``vaultkey serve --workers 2``: one address, two processes, supervised.

Each check opens new connections (the kernel spreads them across the workers),
so a check that holds for all of them holds for both workers.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests._helpers.procs import descendants
from tests._helpers.wait import wait_until
from tests.e2e.conftest import POLICIES, Proxy

CONNECTIONS = 24


def _workers(proxy: Proxy) -> list[int]:
    return sorted(descendants(proxy.proc.pid))


def _each_new_connection(proxy: Proxy, token: str, path: str) -> set[int]:
    statuses = set()
    for _ in range(CONNECTIONS):
        with proxy.client(token) as c:
            statuses.add(c.get(path).status_code)
    return statuses


@pytest.fixture(scope="module")
def workers(proxy_factory) -> Proxy:
    p = proxy_factory(extra_args=["--workers", "2"])
    p.tokens = {"alpha": p.create_token("alpha"), "beta": p.create_token("beta")}
    assert wait_until(lambda: len(_workers(p)) == 2)
    return p


def test_two_workers_serve_one_address_and_share_tokens_and_data(workers):
    assert len(_workers(workers)) == 2
    with workers.client(workers.tokens["alpha"]) as c:
        assert c.put("/v1/kv/alpha/w", content=workers.envelope("/alpha/w", b"v")
                     ).status_code == 200
    # A token made through one worker and a value written through it: every worker has them
    # (for another worker, within its watch delay).
    assert wait_until(lambda: _each_new_connection(workers, workers.tokens["alpha"],
                                                   "/v1/kv/alpha/w") == {200})


def test_a_client_reads_its_writes_on_any_worker_with_its_min_revision(workers):
    """A new connection may land on the other worker, whose watch may not have the write
    yet: X-Vaultkey-Min-Revision (the SDK sends it) makes the read reflect it anyway."""
    token = workers.tokens["alpha"]
    for i in range(CONNECTIONS):
        with workers.client(token) as c:
            written = c.put("/v1/kv/alpha/ryw", content=workers.envelope(
                "/alpha/ryw", b"%d" % i)).json()["revision"]
        with workers.client(token) as c:  # a new connection
            r = c.get("/v1/kv/alpha/ryw", headers={"X-Vaultkey-Min-Revision": str(written)})
            assert r.json()["revision"] == written
    with workers.client(token) as c:
        r = c.get("/v1/kv/alpha/ryw", headers={"X-Vaultkey-Min-Revision": "12x"})
        assert r.status_code == 422


def test_sighup_reloads_policies_in_every_worker(workers):
    beta = workers.policy_dir / "beta.toml"
    original = beta.read_text()
    try:
        beta.write_text(original + '\n[[rules]]\nprefix = "/alpha/"\nallow = ["list"]\n')
        workers.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: _each_new_connection(
            workers, workers.tokens["beta"], "/v1/kv/alpha/?list=true") == {200})
    finally:
        beta.write_text(original)
        workers.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: _each_new_connection(
            workers, workers.tokens["beta"], "/v1/kv/alpha/?list=true") == {403})


def test_a_worker_that_dies_is_replaced_and_the_address_keeps_answering(workers):
    before = _workers(workers)
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    # Connections it had accepted or queued die with it (as with any crashed server);
    # once the kernel has dropped its socket, new connections all go to the one left.
    assert wait_until(lambda: not _alive(victim))

    def all_answered() -> bool:
        try:
            return _each_new_connection(workers, workers.tokens["alpha"],
                                        "/v1/kv/alpha/w") == {200}
        except httpx.TransportError:
            return False

    assert wait_until(all_answered, timeout=5)
    assert wait_until(lambda: len(_workers(workers)) == 2 and victim not in _workers(workers),
                      timeout=15)
    assert "starting another" in workers.log_path.read_text()


def test_sigterm_stops_every_worker_and_killing_the_supervisor_leaves_no_orphan(
        proxy_factory):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        p = proxy_factory(policies=POLICIES, extra_args=["--workers", "2"])
        assert wait_until(lambda p=p: len(_workers(p)) == 2)
        pids = _workers(p)
        p.proc.send_signal(sig)
        p.proc.wait(30)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, f"workers outlived the supervisor ({sig!r})"
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
