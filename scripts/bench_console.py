#!/usr/bin/env python3
"""Operator console benchmark (issue 14): navigation to the first view fully rendered,
with 10,000 keys.

Starts a throwaway etcd and TLS ``vaultkey serve`` (scripts/benchlib/stack.py: group
``bench`` may read, write, list and watch ``/bench/``), seeds N keys straight into etcd
under the proxy's root (envelopes encrypted locally for the group's public key, 100 puts
per etcd transaction), waits until the proxy lists them all, then opens the console in
Debian's headless Chromium (Playwright) R times. Each run is a fresh browser context
signed in programmatically (the token is put in sessionStorage by an init script, before
the page's own scripts run) and timed from navigation to the keyspace view marked ready
(``#view[data-ready]``: the tree's first level drawn with every verdict on screen).

Two layouts: ``flat`` puts all N keys directly under /bench/ (the first level is N keys:
100 are drawn, with their coverage, then "show more"); ``tree`` puts them in 100 folders
of N/100 keys (the first level is 100 folders).

  python scripts/bench_console.py [--keys 10000 --runs 7 --layout flat --layout tree]
  python scripts/bench_console.py --json out.json
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib.stack import ROOT, Stack
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, sync_playwright

from vaultkey.crypto import encrypt
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings

CHROMIUM = "/usr/bin/chromium"
TXN = 100  # puts per etcd transaction (etcd allows 128 operations)


def spki(cert_path: Path) -> str:
    """The server key's pin, so Chromium trusts this certificate (and only this one)."""
    key = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def paths(layout: str, n: int) -> list[str]:
    if layout == "flat":
        return [f"/bench/key-{i:05d}" for i in range(n)]
    per = max(1, n // 100)
    return [f"/bench/svc-{i // per:03d}/key-{i % per:04d}" for i in range(n)]


def seed(st: Stack, keys: list[str]) -> float:
    """Write *keys* straight into etcd; returns the seconds it took (encryption included)."""
    started = time.perf_counter()
    conn = EtcdConnection(EtcdSettings(endpoints=[st.etcd.url], timeout=30.0))
    try:
        client = conn.client()
        client.delete_prefix(f"{ROOT}/kv/bench/".encode())
        for i in range(0, len(keys), TXN):
            puts = [client.transactions.put(st.raw_key(p), encrypt(b"value", p, [st.public]))
                    for p in keys[i:i + TXN]]
            client.transaction(compare=[], success=puts, failure=[])
    finally:
        conn.close()
    return time.perf_counter() - started


def wait_listed(st: Stack, n: int) -> None:
    http = st.http()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(http.get("/v1/kv/bench/", params={"list": "true"}).json()["keys"]) == n:
            return
        time.sleep(0.2)
    raise SystemExit(f"the proxy did not list {n} keys within 60 s")


def one_run(browser: Browser, st: Stack) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        token = json.dumps(st.token)
        context.add_init_script(f"sessionStorage.setItem('vaultkey.console.token', {token});")
        page = context.new_page()
        started = time.perf_counter()
        page.goto(f"{st.base}/ui/#keyspace")
        page.wait_for_selector("#view[data-ready]", timeout=30_000)
        wall = (time.perf_counter() - started) * 1000
        in_page = float(page.get_attribute("#view", "data-ready-at") or "nan")
        drawn = page.locator("li.key, li.folder").count()
        error = page.locator("#view .error").count()
        if error:
            raise SystemExit("the console showed an error: "
                             + page.locator("#view .error").first.inner_text())
        return {"wall_ms": wall, "in_page_ms": in_page, "items_drawn": drawn}
    finally:
        context.close()


def measure(browser: Browser, st: Stack, layout: str, n: int, runs: int) -> dict[str, Any]:
    keys = paths(layout, n)
    seeded = seed(st, keys)
    wait_listed(st, n)
    one_run(browser, st)  # warm-up: the proxy's first listing, Chromium's caches
    results = [one_run(browser, st) for _ in range(runs)]
    walls = [r["wall_ms"] for r in results]
    in_page = [r["in_page_ms"] for r in results]
    return {"layout": layout, "keys": n, "runs": runs, "seed_s": round(seeded, 2),
            "items_drawn": results[0]["items_drawn"],
            "wall_ms": {"median": round(statistics.median(walls), 1),
                        "min": round(min(walls), 1), "max": round(max(walls), 1)},
            "in_page_ms": {"median": round(statistics.median(in_page), 1),
                           "min": round(min(in_page), 1), "max": round(max(in_page), 1)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--layout", action="append", choices=("flat", "tree"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    layouts = args.layout or ["flat", "tree"]
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vk-bench-console-") as tmp, \
            Stack.start(Path(tmp)) as st, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--ignore-certificate-errors-spki-list="
                                           + spki(st.tmp / "server.pem")])
        try:
            for layout in layouts:
                found = measure(browser, st, layout, args.keys, args.runs)
                out.append(found)
                print(f"{layout:>4}: {found['keys']} keys, {found['items_drawn']} items drawn; "
                      f"navigation to first view rendered: median {found['wall_ms']['median']} "
                      f"ms (min {found['wall_ms']['min']}, max {found['wall_ms']['max']}) over "
                      f"{found['runs']} runs; in-page {found['in_page_ms']['median']} ms; "
                      f"seeded in {found['seed_s']} s", flush=True)
        finally:
            browser.close()
    report = {"machine": {"cpus": os.cpu_count(), "chromium": CHROMIUM}, "results": out}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    slow = [r for r in out if r["wall_ms"]["median"] >= 1000]
    if slow:
        print("FAIL: the first view took 1 s or more", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
