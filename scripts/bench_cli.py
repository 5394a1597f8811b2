#!/usr/bin/env python3
"""Whole-process time of `vaultkey get` and `vaultkey --version` (median of N runs).

Starts `vaultkey dev` on a free loopback port, stores one value, then runs
each command N times as a fresh process and prints the medians:

    python scripts/bench_cli.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time

from vaultkey._dev.etcdproc import free_port

VK = [sys.executable, "-m", "vaultkey"]


def start_dev() -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
    proc = subprocess.Popen([*VK, "dev", "--listen", f"127.0.0.1:{free_port()}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    exports: dict[str, str] = {}
    assert proc.stdout is not None
    while "VAULTKEY_TRUST" not in exports:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("vaultkey dev did not start")
        m = re.match(r"export (VAULTKEY_\w+)=(.*)$", line.strip())
        if m:
            exports[m.group(1)] = m.group(2)
    return proc, {**env, **exports}


def timed(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    proc, env = start_dev()
    try:
        subprocess.run([*VK, "set", "/bench/value", "x" * 64], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        rows = {
            "python -c pass": timed([sys.executable, "-c", "pass"], env, args.runs),
            "vaultkey --version": timed([*VK, "--version"], env, args.runs),
            "vaultkey get": timed([*VK, "get", "/bench/value"], env, args.runs),
        }
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    for name, samples in rows.items():
        print(f"{name:20s} median {statistics.median(samples):7.1f} ms   "
              f"min {min(samples):7.1f} ms   max {max(samples):7.1f} ms   (n={len(samples)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
