#!/usr/bin/env python3
"""Capacity figures (issue 13, part 4): the proxy's memory over many requests and many
connections, and etcd's database size, against a real etcd and TLS proxy.

1. RSS of the proxy process after start-up and one warm-up;
2. wrk with 32 connections, GETs of one key, until at least --requests have been served:
   RSS after;
3. wrk with 500 concurrent connections for --seconds: RSS during (sampled) and after;
4. etcd's database size (its own /metrics) after writing --values values of 1 KiB.

    python scripts/bench_capacity.py [--requests 100000] [--seconds 10] [--values 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cache_memory import metric_in, rss_mb
from benchlib import wrk
from benchlib.stack import Stack

from vaultkey.crypto import encrypt


def _etcd_db_bytes(st: Stack) -> float:
    import httpx

    return metric_in(httpx.get(st.etcd.url + "/metrics", timeout=10).text,
                     "etcd_mvcc_db_total_size_in_bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--values", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Stack.start(Path(tmp)) as st:
        pid = st.proxy.pid
        http = st.http()
        path = "/bench/capacity/key"
        assert http.put("/v1/kv" + path, content=encrypt(b"v", path, [st.public])).is_success
        for _ in range(100):
            http.get("/v1/kv" + path)
        start_rss = rss_mb(pid)
        script = wrk.request_script(Path(tmp) / "get.lua", "GET",
                                    headers={"Authorization": f"Bearer {st.token}"})
        url = st.base + "/v1/kv" + path
        served = 0
        while served < args.requests:
            served += wrk.run(url, script, threads=2, connections=32, seconds=5).requests
        after_requests = rss_mb(pid)
        peak = [0.0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            busy = wrk.run(url, script, threads=2, connections=500, seconds=args.seconds,
                           timeout_s=10)
        finally:
            done.set()
            sampler.join()
        time.sleep(2)
        after_connections = rss_mb(pid)
        db_before = _etcd_db_bytes(st)
        value = bytes(1024)
        for i in range(args.values):
            p = f"/bench/capacity/v{i:06d}"
            http.put("/v1/kv" + p, content=encrypt(value, p, [st.public]))
        db_after = _etcd_db_bytes(st)
    print(f"proxy RSS after start-up: {start_rss:.1f} MB")
    print(f"after {served:,} GETs (wrk, 32 connections): {after_requests:.1f} MB "
          f"({after_requests - start_rss:+.1f} MB)")
    print(f"500 concurrent connections for {args.seconds:g} s ({busy.requests:,} GETs, "
          f"{busy.rps:,.0f}/s, p99 {busy.p99_ms:.1f} ms, {busy.socket_errors} socket errors): "
          f"peak {peak[0]:.1f} MB, {after_connections:.1f} MB 2 s after")
    print(f"etcd database: {db_before / 2**20:.1f} MiB, then {db_after / 2**20:.1f} MiB after "
          f"{args.values:,} values of 1 KiB ({(db_after - db_before) / max(args.values, 1):,.0f} "
          "bytes per value)")


if __name__ == "__main__":
    main()
