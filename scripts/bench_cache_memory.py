#!/usr/bin/env python3
"""The read cache's memory with N keys of S bytes (default 100,000 x 1 KB).

Starts etcd and a TLS proxy (scripts/benchlib/stack.py), writes the keys straight
to etcd under the proxy's root, waits until the proxy's cache holds them all, and
prints the proxy's RSS before and after, the cache's own estimate
(``vaultkey_cache_bytes``) and the measured bytes per key:

    python scripts/bench_cache_memory.py [--keys 100000] [--size 1024]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib.stack import Stack

from vaultkey.proxy.store.etcdconn import EtcdConnection, EtcdSettings


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else 0.0


def metric_in(text: str, name: str) -> float:
    """The value of the unlabelled Prometheus metric *name* in *text* (0 if absent)."""
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def metric(st: Stack, name: str) -> float:
    return metric_in(st.http().get("/metrics").text, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    with Stack.start(Path(tempfile.mkdtemp(prefix="vk-cache-mem-"))) as st:
        time.sleep(1)
        before = rss_mb(st.proxy.pid)
        client = EtcdConnection(EtcdSettings(endpoints=[st.etcd.url])).client()
        value = os.urandom(args.size)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: client.put(st.raw_key(f"/bench/m/{i:07d}"), value),
                          range(args.keys)))
        wrote = time.monotonic() - started
        deadline = time.monotonic() + 120
        while metric(st, "vaultkey_cache_keys") < args.keys:
            if time.monotonic() > deadline:
                raise SystemExit("the cache never held every key")
            time.sleep(0.5)
        time.sleep(1)
        after = rss_mb(st.proxy.pid)
        estimate = metric(st, "vaultkey_cache_bytes")
        payload = args.keys * (args.size + len("/bench/m/0000000"))
        print(f"{args.keys} keys of {args.size} B written to etcd in {wrote:.1f} s")
        print(f"proxy RSS: {before:.1f} MB before, {after:.1f} MB with every key cached "
              f"(+{after - before:.1f} MB; {(after - before) * 2**20 / args.keys:.0f} B/key)")
        print(f"vaultkey_cache_bytes (the bound's estimate): {estimate / 2**20:.1f} MiB "
              f"({estimate / args.keys:.0f} B/key); values+paths alone {payload / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
