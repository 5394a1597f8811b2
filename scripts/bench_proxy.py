#!/usr/bin/env python3
"""Proxied GET vs direct etcd GET, measured in the same run (these machines are noisy).

Starts a real etcd and a real `vaultkey serve` over TLS, stores one envelope,
then measures for a fixed duration each:

* direct: python3-etcd3 `get` of the raw key (what a component would do without vaultkey);
* proxied: HTTPS `GET /v1/kv/...` with a group token through one keep-alive connection
  per worker (ACL check, token check, etcd read, JSON response).

Reports throughput (requests/s) and p50/p99 latency, sequential and with
--threads workers, and the ratios the roadmap targets (>= 70 % throughput,
<= 0.5 ms added p50). Usage: python scripts/bench_proxy.py [--seconds 5] [--threads 16]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import trustme

from vaultkey._dev.etcdproc import EtcdProcess, free_port
from vaultkey.crypto import encrypt, write_keypair
from vaultkey.keys import PublicKey
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings, EtcdStore

POLICY = 'group = "bench"\nrecipients = ["bench.pub"]\n[[rules]]\nprefix = "/bench/"\n' \
         'allow = ["read", "write", "list"]\n'


def run_for(seconds: float, threads: int, make_call: Callable[[], Callable[[], None]]
            ) -> tuple[float, list[float]]:
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        call = make_call()
        out = latencies[i]
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = [x for lst in latencies for x in lst]
    return len(flat) / elapsed, flat


def pct(values: list[float], q: float) -> float:
    return sorted(values)[int(q * (len(values) - 1))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=16)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vk-bench-"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp / "server.pem"))
    pol = tmp / "policies"
    pol.mkdir()
    (pol / "bench.toml").write_text(POLICY)
    write_keypair(pol / "bench")
    admin = secrets.token_urlsafe(32)
    port = free_port()
    with EtcdProcess.start(tmp / "etcd") as etcd:
        env = {**os.environ, "VAULTKEY_ADMIN_TOKEN": admin}
        proxy = subprocess.Popen(
            [sys.executable, "-m", "vaultkey", "serve", "--policies", str(pol), "--etcd",
             etcd.url, "--listen", f"127.0.0.1:{port}", "--tls-cert", str(tmp / "server.pem"),
             "--tls-key", str(tmp / "server.key")], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ctx = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
            base = f"https://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    if httpx.get(base + "/readyz", verify=ctx).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            token = httpx.post(base + "/v1/tokens", verify=ctx, json={"group": "bench"},
                               headers={"Authorization": f"Bearer {admin}"}).json()["token"]
            pub = PublicKey.load(pol / "bench.pub")
            envelope = encrypt(b"x" * 200, "/bench/key", [pub])
            conn = EtcdConnection(EtcdSettings(endpoints=[etcd.url]))
            EtcdStore(conn, "/vaultkey/kv").put("/bench/key", envelope)
            raw_key = b"/vaultkey/kv/bench/key"

            def direct() -> Callable[[], None]:
                client = conn.client()
                return lambda: client.get(raw_key)

            def proxied() -> Callable[[], None]:
                c = httpx.Client(base_url=base, verify=ctx,
                                 headers={"Authorization": f"Bearer {token}"})

                def call() -> None:
                    r = c.get("/v1/kv/bench/key")
                    assert r.status_code == 200

                return call

            def healthz() -> Callable[[], None]:
                c = httpx.Client(base_url=base, verify=ctx)
                return lambda: c.get("/healthz")

            results = {}
            for threads in (1, args.threads):
                for name, make in (("direct etcd", direct), ("proxied", proxied),
                                   ("healthz", healthz)):
                    rate, lat = run_for(args.seconds, threads, make)
                    results[(name, threads)] = (rate, lat)
                    print(f"{name:12s} threads={threads:<3d} {rate:8.0f} req/s   "
                          f"p50 {pct(lat, .5):6.2f} ms   p99 {pct(lat, .99):6.2f} ms",
                          flush=True)
            for threads in (1, args.threads):
                d_rate, d_lat = results[("direct etcd", threads)]
                p_rate, p_lat = results[("proxied", threads)]
                print(f"threads={threads}: proxied/direct throughput "
                      f"{100 * p_rate / d_rate:5.1f} %  (target >= 70 %); added p50 "
                      f"{statistics.median(p_lat) * 1000 - statistics.median(d_lat) * 1000:5.2f} ms"
                      f" (target <= 0.5 ms)")
            conn.close()
        finally:
            proxy.send_signal(signal.SIGTERM)
            proxy.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
