#!/usr/bin/env python3
"""Backup and restore, rehearsed (docs/OPERATIONS.md, "Backup and restore").

1. a real etcd and TLS proxy; values written through the SDK (one group, its key file);
2. backup: an etcd snapshot (``etcdctl snapshot save``) plus what etcd does not hold:
   the policy directory, the group's secret key file, the trust store, the admin token file;
3. everything stopped and the original etcd data deleted;
4. restore: ``etcdctl snapshot restore`` into each member of a fresh 3-member cluster
   (TLS between members and to clients), a proxy given all three, with the backed-up
   policies and admin token;
5. every value read back through the proxy with the original key file and the original
   group token (tokens are stored, hashed, in etcd, so they come back with it).

    python scripts/rehearse_restore.py [--values 200]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib.stack import Stack, stop_process

from vaultkey._dev.cluster import EtcdCluster, find_etcdctl
from vaultkey.client import Client


def run() -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work, backup = Path(tmp) / "live", Path(tmp) / "backup"
        expected = {f"/bench/restore/k{i:04d}": f"value {i} {'x' * (i % 50)}".encode()
                    for i in range(args.values)}
        with Stack.start(work) as st, Client(st.base, st.token, key=st.key_path,
                                             trust=st.trust_dir, cacert=str(st.ca)) as vk:
            for path, value in expected.items():
                vk.set(path, value)
            token = st.token
            backup.mkdir()
            subprocess.run([find_etcdctl(), "--endpoints", st.etcd.url, "snapshot", "save",
                            str(backup / "snapshot.db")], check=True, capture_output=True)
            for name in ("policies", "trust"):
                shutil.copytree(work / name, backup / name)
            for name in ("bench.key", "admin-token", "ca.pem", "server.pem", "server.key"):
                if (work / name).exists():
                    shutil.copy2(work / name, backup / name)
        shutil.rmtree(work)  # the original etcd data is gone
        print(f"backed up {args.values} values: snapshot "
              f"{(backup / 'snapshot.db').stat().st_size / 1024:.0f} KiB + policies, key file, "
              "trust store, admin token; original data deleted")

        # A new 3-member cluster (TLS between members and to clients), every member
        # restored from the snapshot, and a proxy given all three members.
        with EtcdCluster.start(Path(tmp) / "restored", 3,
                               snapshot=backup / "snapshot.db") as cluster:
            proxy, _argv, base = Stack._start_proxy(
                backup, ",".join(cluster.endpoints), backup / "server.pem",
                backup / "server.key", backup / "ca.pem", ["--etcd-cacert", cluster.ca])
            try:
                with Client(base, token, key=backup / "bench.key", trust=backup / "trust",
                            cacert=str(backup / "ca.pem")) as vk:
                    got = vk.get_many("/bench/restore/")
            finally:
                stop_process(proxy)
    same = sum(1 for p, v in expected.items() if got.get(p) == v)
    ok = same == len(expected) == len(got)
    print(f"restored into a fresh 3-member TLS etcd cluster: {same}/{len(expected)} values "
          "read back through a "
          "proxy with the original key file and group token")
    print(f"restore rehearsal {'PASSED' if ok else 'FAILED'}")
    return ok


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
