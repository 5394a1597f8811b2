"""The tests' child processes start reliably while this process talks to etcd over gRPC.

A regression here aborted `vaultkey dev` in CI before it ever ran (exit -6,
"Epoll1Poller ... epoll_wait error: Bad file descriptor"): the child was started
with ``preexec_fn``, which forces fork() and with it gRPC's fork handlers.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

from tests._helpers.procs import popen
from vaultkey.proxy.store.etcd import EtcdStore


def test_children_survive_a_busy_grpc_channel_in_the_parent(store: EtcdStore) -> None:
    store.put("/busy", b"x")
    done = threading.Event()

    def hammer() -> None:
        while not done.is_set():
            store.get("/busy")

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        # With preexec_fn, 28 of 200 such children aborted here; 60 make a miss ~1e-4.
        results = []
        for _ in range(60):
            child = popen(["true"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _out, err = child.communicate(timeout=30)
            results.append((child.returncode, err[-200:]))
    finally:
        done.set()
        thread.join(10)
    assert [r for r in results if r[0] != 0] == []


def test_children_get_default_sigint_even_when_the_runner_ignores_it() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under `nohup pytest &`
    try:
        child = popen([sys.executable, "-c",
                       "import signal; print(signal.getsignal(signal.SIGINT) is "
                       "signal.default_int_handler)"], stdout=subprocess.PIPE)
        out, _ = child.communicate(timeout=30)
    finally:
        signal.signal(signal.SIGINT, before)
    assert out.strip() == b"True"
