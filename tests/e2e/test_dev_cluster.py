"""`vaultkey dev --cluster 3 --replicas 2`: the production layout on one machine (issue 13).

Three etcd members with TLS to clients and mutual TLS between them, a least-privilege
etcd user for the proxies, two proxy replicas in VAULTKEY_ADDR, a load-balancer
snippet; Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from tests._helpers.procs import processes_mentioning, stop
from tests.e2e.test_dev import _cli, _start_dev
from vaultkey.errors import StoreError
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings, EtcdStore


def _rest_of_banner(proc, out: str, timeout: float = 30.0) -> str:
    """What `vaultkey dev` prints after the exports, up to its last banner line."""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    while "Ctrl-C stops every replica" not in out and time.monotonic() < deadline:
        if select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk.decode(errors="replace")
    return out


def _cmdlines(text: str) -> list[str]:
    return [line.partition(": ")[2] for line in processes_mentioning(text)]


def test_dev_cluster_runs_tls_members_rbac_and_replicas_and_stops_them_all(tmp_path):
    state = tmp_path / "vk"
    proc, exports, out = _start_dev("--cluster", "3", "--replicas", "2", "--lb", "nginx",
                                    "--dir", str(state))
    try:
        out = _rest_of_banner(proc, out)
        addrs = exports["VAULTKEY_ADDR"].split(",")
        assert len(addrs) == 2
        for addr in addrs:  # the nginx snippet names both replicas
            assert f"server {addr.removeprefix('https://')} " in out
        members = [c for c in _cmdlines(str(state / "etcd-cluster")) if "--name member" in c]
        assert len(members) == 3
        for cmd in members:  # TLS to clients, mutual TLS between members
            assert "--listen-peer-urls https://" in cmd and "--peer-client-cert-auth" in cmd
            assert "--listen-client-urls https://" in cmd
        assert len([c for c in _cmdlines(str(state)) if " serve " in c]) == 2

        _cli(exports, "set", "/cluster/hello", "-", stdin=b"from a replica")
        for addr in addrs:  # each replica serves it
            assert _cli({**exports, "VAULTKEY_ADDR": addr}, "get",
                        "/cluster/hello") == b"from a replica"

        # The proxies' etcd user may use /vaultkey/ only; etcd itself refuses the rest.
        client_urls = [c.split("--advertise-client-urls ")[1].split()[0] for c in members]
        ca = str(state / "etcd-cluster" / "pki" / "ca.pem")
        password = (state / "etcd-password").read_text().strip()
        assert oct((state / "etcd-password").stat().st_mode & 0o777) == "0o600"
        conn = EtcdConnection(EtcdSettings(endpoints=client_urls, ca_cert=ca, user="vaultkey",
                                           password=password))
        try:
            assert EtcdStore(conn, "/vaultkey/kv").get("/cluster/hello") is not None
            with pytest.raises(StoreError, match="permission denied"):
                EtcdStore(conn, "/elsewhere").get("/anything")
        finally:
            conn.close()
    finally:
        stop(proc, signal.SIGINT, timeout=60)
    assert processes_mentioning(str(state)) == []
    assert (state / "etcd-cluster" / "member1").exists()  # kept: --dir


def test_dev_cluster_options_are_checked():
    for args, message in ((["--cluster", "2"], "odd number"),
                          (["--replicas", "2"], "go with --cluster")):
        r = subprocess.run([sys.executable, "-m", "vaultkey", "dev", *args],
                           capture_output=True, timeout=60, check=False)
        assert r.returncode == 64 and message in r.stderr.decode(), r.stderr
