#!/usr/bin/env python3
"""How long key lifecycle operations take against a real etcd and TLS proxy.

Writes N values (1 KiB) under /bench/lifecycle/, then times, with the SDK: ``rewrap`` with
nothing to do (every value already current), ``rotate`` (a fresh data key for every value),
and a plain ``get_many`` of the same prefix for comparison::

    python scripts/bench_lifecycle.py [--values 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.stack import Stack

from vaultkey.client import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Stack.start(Path(tmp)) as st, \
            Client(st.base, st.token, key=st.key_path, trust=st.trust_dir,
                   cacert=str(st.ca)) as vk:
        for i in range(args.values):
            vk.set(f"/bench/lifecycle/k{i:05d}", bytes(1024))
        timings = {}
        for name, run in (("get_many", lambda: vk.get_many("/bench/lifecycle/")),
                          ("rewrap, nothing to do", lambda: vk.rewrap("/bench/lifecycle/")),
                          ("rotate", lambda: vk.rotate("/bench/lifecycle/"))):
            start = time.perf_counter()
            result = run()
            timings[name] = time.perf_counter() - start
            if name == "rotate":
                assert result.count("rotated") == args.values  # type: ignore[union-attr]
        for name, seconds in timings.items():
            print(f"{name:<24} {args.values} values: {seconds * 1000:8.0f} ms "
                  f"({args.values / seconds:6.0f} values/s)")


if __name__ == "__main__":
    main()
