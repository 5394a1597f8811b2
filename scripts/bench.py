#!/usr/bin/env python3
"""vaultkey against etcd alone, in one run on one machine: one command, one table.

Starts a real etcd and a real TLS ``vaultkey serve`` on loopback (temp dir, free ports) and
measures, each next to its baseline:

(a) GET of a 64-byte value: proxied ``GET /v1/kv/...`` vs etcd's own HTTP/JSON gateway
    ``POST /v3/kv/range``, both with wrk at -t1 -c1 and -t2 -c32; the proxy's ``/healthz``
    (framework + TLS floor); the SDK's ``Client.get`` vs python-etcd3 ``get``, sequential.
(b) PUT of a pre-built envelope: proxied ``PUT /v1/kv/...`` vs ``POST /v3/kv/put`` with
    wrk; and the client-side cost of building (and opening) one envelope.
(c) Bulk read of a 500-key prefix: ``Client.get_many`` vs a raw python-etcd3 prefix read
    of the proxy's namespace, both with the same local decryption.
(d) Watch fan-out: scripts/bench_watch.py (1,000 watchers): delivery p50/p99, proxy RSS.
(e) CLI: whole-process ``vaultkey get`` vs ``python -c pass`` and crypt's ``get``.
(f) ACL decision time: ``PolicySet.allowed`` at 10 and at 10,000 rules.

Prints the table and the targets (P1-P7, met or missed) and writes docs/BENCHMARKS.md
(machine, command, table) unless --smoke. Exit status 1 if a case failed (or, with
--strict, a target was missed).

    scripts/bench                          # full run (about 2-3 minutes), writes the doc
    scripts/bench --smoke --out /tmp/b.md  # the harness end to end in under a minute (CI)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import timeit
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from benchlib import clirun, report, wrk
from benchlib.report import Row, Target
from benchlib.stack import GROUP, ROOT, Stack
from benchlib.timing import median, pct, time_each

from vaultkey.client import Client
from vaultkey.crypto import decrypt, encrypt
from vaultkey.policy.engine import Capability, PolicySet
from vaultkey.policy.parse import parse_policy
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings

SCRIPTS = Path(__file__).resolve().parent
DOC = SCRIPTS.parent / "docs" / "BENCHMARKS.md"
GET_PATH, PUT_PATH, BULK_PREFIX = "/bench/key", "/bench/put", "/bench/bulk/"
GATEWAY_PUT_KEY = b"/bench-gateway/put"  # outside the proxy's root: no watch event for it
LEVELS = ((1, 1), (2, 32))  # wrk (threads, connections)
T = TypeVar("T")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n: dict[str, float] = field(default_factory=dict)  # named numbers for the targets

    def guard(self, case: str, fn: Callable[[], None]) -> None:
        """Run one case; a failure becomes a FAILED row (the other cases still run)."""
        progress(f"{case} ...")
        try:
            fn()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            traceback.print_exc()
            self.failures.append(f"{case}: {type(exc).__name__}: {exc}")
            msg = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.rows.append(Row(case, "", msg[:200], "", ""))


def progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# ---- (a) and (b): wrk against the proxy and etcd's gateway ------------------------------------

def wrk_cases(run: Run, st: Stack, envelope_get: bytes, envelope_put: bytes) -> None:
    a, tmp = run.args, run.tmp
    auth = {"Authorization": f"Bearer {st.token}"}
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    (tmp / "put.env").write_bytes(envelope_put)
    scripts = {
        "gw GET": (st.etcd.url + "/v3/kv/range", wrk.request_script(
            tmp / "gw_get.lua", "POST", headers={"Content-Type": "application/json"},
            body=json.dumps({"key": b64(st.raw_key(GET_PATH))}))),
        "px GET": (st.base + "/v1/kv" + GET_PATH,
                   wrk.request_script(tmp / "px_get.lua", "GET", headers=auth)),
        "healthz": (st.base + "/healthz", wrk.request_script(tmp / "healthz.lua", "GET")),
        "gw PUT": (st.etcd.url + "/v3/kv/put", wrk.request_script(
            tmp / "gw_put.lua", "POST", headers={"Content-Type": "application/json"},
            body=json.dumps({"key": b64(GATEWAY_PUT_KEY), "value": b64(envelope_put)}))),
        "px PUT": (st.base + "/v1/kv" + PUT_PATH, wrk.request_script(
            tmp / "px_put.lua", "PUT", body_file=tmp / "put.env",
            headers={**auth, "Content-Type": "application/octet-stream"})),
    }
    groups = [("gw GET", "px GET"), ("healthz",), ("gw PUT", "px PUT")]
    http = st.http()
    warm_up(run, scripts["px GET"], http)
    got: dict[tuple[str, int], list[wrk.WrkResult]] = {}
    cache: dict[int, list[float]] = {}  # connections -> [hits, misses] during proxied GETs
    cache_waits: list[float] = []
    for rnd in range(a.rounds):
        for threads, conns in LEVELS:
            for group in groups:
                for name in group if rnd % 2 == 0 else tuple(reversed(group)):
                    url, lua = scripts[name]
                    before = {}
                    if name == "px GET":
                        # Steady-state reads: a cache that writes made unusable (its fence
                        # late under load) is waited for, and the wait reported.
                        waited = wait_cache_usable(http)
                        if waited is not None and waited > 0.5:
                            cache_waits.append(waited)
                            progress(f"  the read cache was not usable: waited {waited:.1f} s")
                        before = cache_stats(http)
                    res = wrk.run(url, lua, threads=threads, connections=conns,
                                  seconds=a.seconds)
                    got.setdefault((name, conns), []).append(res)
                    extra = ""
                    if "hits" in before:
                        after = cache_stats(http)
                        dh, dm = (after[k] - before[k] for k in ("hits", "misses"))
                        tally = cache.setdefault(conns, [0.0, 0.0])
                        tally[0], tally[1] = tally[0] + dh, tally[1] + dm
                        extra = f"  read cache hits {100 * dh / max(1.0, dh + dm):.0f} %"
                    progress(f"  round {rnd + 1}/{a.rounds} {name:8s} c{conns:<3d} "
                             f"{res.rps:8.0f} req/s  p50 {res.p50_ms:.2f} ms  "
                             f"p99 {res.p99_ms:.2f} ms{extra}")

    def agg(name: str, conns: int) -> tuple[float, float, float]:
        rs = got[(name, conns)]
        return (median([r.rps for r in rs]), median([r.p50_ms for r in rs]),
                median([r.p99_ms for r in rs]))

    def cell(name: str, conns: int) -> str:
        rps, p50, p99 = agg(name, conns)
        each = [r.rps for r in got[(name, conns)]]
        spread = f" ({min(each):,.0f}–{max(each):,.0f})" if len(each) > 1 else ""
        return f"{rps:,.0f} req/s{spread}; p50 {p50:.2f} / p99 {p99:.2f} ms"

    def cache_text(conns: int) -> str:
        if conns not in cache:
            return "; the proxy exports no read-cache metrics"
        hits, misses = cache[conns]
        return (f"; proxy read cache answered {100 * hits / max(1.0, hits + misses):.1f} % "
                "of these GETs (/metrics)")

    if cache_waits:
        run.notes.append(
            f"Before {len(cache_waits)} of {a.rounds * len(LEVELS)} proxied GET runs the "
            "proxy's read cache was not usable (after the PUT runs before them); the "
            "harness waited for it ("
            + ", ".join("over 30 s" if w == float("inf") else f"{w:.1f} s" for w in cache_waits)
            + ") so that the GET rows show steady-state reads.")
    errors = sum(r.socket_errors for rs in got.values() for r in rs)
    if errors:
        run.notes.append(f"wrk reported {errors} socket errors (connect/read/write/timeout) "
                         "over all runs.")
    rounds = f"{a.rounds} round{'s' if a.rounds > 1 else ''} of {max(1, round(a.seconds))} s"
    if a.rounds > 1:
        rounds += " (req/s range over the rounds in brackets)"
    for threads, conns in LEVELS:
        run.rows.append(Row(
            f"(a) GET c{conns}",
            f"wrk -t{threads} -c{conns}, 64-byte value: proxied GET /v1/kv/... vs etcd "
            f"gateway POST /v3/kv/range; median of {rounds}; ratio = req/s{cache_text(conns)}",
            cell("px GET", conns), cell("gw GET", conns),
            f"{agg('px GET', conns)[0] / agg('gw GET', conns)[0]:.2f}"))
        run.n[f"get_ratio_c{conns}"] = agg("px GET", conns)[0] / agg("gw GET", conns)[0]
    run.n["get_added_p50_c1_ms"] = agg("px GET", 1)[1] - agg("gw GET", 1)[1]
    for threads, conns in LEVELS:
        run.rows.append(Row(
            f"(a) /healthz c{conns}",
            f"wrk -t{threads} -c{conns}: proxy GET /healthz (no token, no etcd: framework + "
            "TLS floor); ratio = proxied GET / healthz req/s",
            cell("healthz", conns), "-",
            f"{agg('px GET', conns)[0] / agg('healthz', conns)[0]:.2f}"))
    for threads, conns in LEVELS:
        ratio = agg("px PUT", conns)[0] / agg("gw PUT", conns)[0]
        run.rows.append(Row(
            f"(b) PUT c{conns}",
            f"wrk -t{threads} -c{conns}, pre-built {len(envelope_put)}-byte envelope: proxied "
            f"PUT /v1/kv/... vs etcd gateway POST /v3/kv/put; median of {rounds}; "
            "ratio = req/s", cell("px PUT", conns), cell("gw PUT", conns), f"{ratio:.2f}"))
        run.n[f"put_ratio_c{conns}"] = ratio
    run.n["put_p50_c1_ms"] = agg("px PUT", 1)[1]


# How to scrape every worker's /metrics: proxy processes (--workers) and the stack's CA
# (an ssl.SSLContext); set in main().
SCRAPE: dict[str, Any] = {"workers": 1, "verify": None}


def cache_stats(http: Any) -> dict[str, float]:
    """The proxy's ``vaultkey_cache_*`` gauges from /metrics (empty: it has no read cache),
    summed over its workers (``usable``: the least of them). Each worker answers its own
    scrapes, so each scrape is a new connection, until every worker's pid has been seen."""
    seen: dict[str, dict[str, float]] = {}
    workers = int(SCRAPE["workers"])
    for _attempt in range(20 * workers):
        with httpx.Client(base_url=http.base_url, verify=SCRAPE["verify"], timeout=30) as fresh:
            text = fresh.get("/metrics").raise_for_status().text
        pid = re.search(r"^vaultkey_process_id (\S+)$", text, re.M)
        seen[pid.group(1) if pid else "?"] = {
            m[1]: float(m[2]) for m in re.finditer(r"^vaultkey_cache_(\w+) (\S+)$", text, re.M)}
        if len(seen) >= workers:
            break
    if len(seen) < workers:
        raise RuntimeError(f"/metrics reached {len(seen)} of {workers} workers")
    total: dict[str, float] = {}
    for stats in seen.values():
        for name, value in stats.items():
            total[name] = (min(total.get(name, value), value) if name == "usable"
                           else total.get(name, 0.0) + value)
    return total


def cache_share(http: Any, fn: Callable[[], T]) -> tuple[T, str]:
    """*fn()*, and a note on how many of the proxy's reads meanwhile its read cache answered."""
    before = cache_stats(http)
    result = fn()
    if "hits" not in before:
        return result, ""
    after = cache_stats(http)
    hits, misses = (after[k] - before[k] for k in ("hits", "misses"))
    return result, (f"; proxy read cache answered {100 * hits / max(1.0, hits + misses):.1f} % "
                    "of its reads (/metrics)")


def wait_cache_usable(http: Any, limit: float = 30.0) -> float | None:
    """If the proxy has a read cache, wait until /metrics says it is usable; seconds waited
    (None: it has no read cache; inf: still not usable after *limit* seconds)."""
    if "usable" not in cache_stats(http):
        return None
    t0 = time.monotonic()
    while cache_stats(http)["usable"] != 1.0:
        if time.monotonic() - t0 > limit:
            return float("inf")
        http.get("/v1/kv" + GET_PATH).raise_for_status()
        time.sleep(0.1)
    return time.monotonic() - t0


def warm_up(run: Run, get: tuple[str, Path], http: Any) -> None:
    """Proxied GETs for --warmup seconds, then (if it has one) until the read cache is usable:
    the table is about a proxy in its steady state."""
    progress(f"  warm-up: proxied GET for {run.args.warmup:.0f} s")
    wrk.run(get[0], get[1], threads=1, connections=1, seconds=run.args.warmup)
    waited = wait_cache_usable(http)
    if waited is not None:
        progress(f"  warm-up: the read cache is usable (waited {waited:.1f} s)")


# ---- (a) SDK get, (c) bulk read -----------------------------------------------------------

def sdk_get_case(run: Run, st: Stack, client: Client, etcd_client: Any, value: bytes,
                 envelope: bytes) -> None:
    ops = run.args.ops
    assert client.get(GET_PATH) == value
    assert etcd_client.get(st.raw_key(GET_PATH))[0] == envelope
    raw_key = st.raw_key(GET_PATH)
    warm = min(50, ops)
    wait_cache_usable(st.http())  # after the PUT runs: steady-state reads, as in the wrk rows
    sdk, cached = cache_share(st.http(), lambda: time_each(lambda: client.get(GET_PATH), ops,
                                                           warmup=warm))
    raw = time_each(lambda: etcd_client.get(raw_key), ops, warmup=warm)
    run.rows.append(Row(
        "(a) SDK get",
        f"Client.get (HTTPS to the proxy + local decrypt) vs python-etcd3 get of the raw key, "
        f"sequential, {ops} ops: median / p99; ratio = median time{cached}",
        f"{ms(median(sdk))} / {ms(pct(sdk, .99))} ({1 / median(sdk):,.0f} ops/s)",
        f"{ms(median(raw))} / {ms(pct(raw, .99))} ({1 / median(raw):,.0f} ops/s)",
        f"{median(sdk) / median(raw):.2f}x"))


def bulk_case(run: Run, st: Stack, client: Client, etcd_client: Any) -> None:
    n, reps = run.args.bulk_keys, run.args.bulk_reps
    values = {f"{BULK_PREFIX}k{i:04d}": secrets.token_hex(32).encode() for i in range(n)}
    for path, v in values.items():
        etcd_client.put(st.raw_key(path), encrypt(v, path, [st.public]))
    ns = (ROOT + "/kv").encode()
    prefix = st.raw_key(BULK_PREFIX)

    def raw_decrypt() -> dict[str, bytes]:
        out = {}
        for blob, meta in etcd_client.get_prefix(prefix):
            path = meta.key[len(ns):].decode()
            out[path] = decrypt(blob, path, st.secret)
        return out

    def raw_only() -> int:
        return sum(1 for _ in etcd_client.get_prefix(prefix))

    # Written to etcd directly, so a proxy with a read cache sees them once its watch has
    # delivered them: wait for that (the measurement is of reads, not of the catch-up).
    deadline = time.monotonic() + 30
    while client.get_many(BULK_PREFIX) != values:
        if time.monotonic() > deadline:
            raise AssertionError("get_many did not return the values written to etcd in 30 s")
        time.sleep(0.1)
    assert raw_decrypt() == values, "the raw read returned other values"
    wait_cache_usable(st.http())
    sdk, cached = cache_share(st.http(), lambda: time_each(
        lambda: client.get_many(BULK_PREFIX), reps, warmup=1))
    raw = time_each(raw_decrypt, reps, warmup=1)
    bare = time_each(raw_only, reps, warmup=1)
    ratio = median(sdk) / median(raw)
    run.n["bulk_ratio"] = ratio
    run.rows.append(Row(
        f"(c) bulk read {n} keys",
        f"Client.get_many (one HTTPS request + local decrypt) vs python-etcd3 get_prefix of "
        f"the raw namespace + the same decrypt; median of {reps}; ratio = time{cached}",
        f"{ms(median(sdk))}", f"{ms(median(raw))} (range alone {ms(median(bare))})",
        f"{ratio:.2f}x"))


# ---- (b) envelope crypto, (f) ACL: CPU only --------------------------------------------------

def crypto_case(run: Run, st_public: Any, st_secret: Any) -> None:
    n, value = run.args.crypto_ops, secrets.token_hex(32).encode()
    enc = time_each(lambda: encrypt(value, PUT_PATH, [st_public]), n, warmup=min(100, n))
    blob = encrypt(value, PUT_PATH, [st_public])
    dec = time_each(lambda: decrypt(blob, PUT_PATH, st_secret), n, warmup=min(100, n))
    run.n["encrypt_s"] = median(enc)
    run.rows.append(Row(
        "(b) encrypt one envelope",
        f"vaultkey.crypto.encrypt, 64-byte value, 1 recipient, median / p99 of {n} in a "
        "Python loop (client side, before a PUT)",
        f"{us(median(enc))} / {us(pct(enc, .99))}", "-", "-"))
    run.rows.append(Row(
        "(c) decrypt one envelope",
        f"vaultkey.crypto.decrypt of that envelope, median / p99 of {n} (the local cost per "
        "key of a bulk read)", f"{us(median(dec))} / {us(pct(dec, .99))}", "-", "-"))


def acl_policy(n_rules: int) -> PolicySet:
    text = f'group = "{GROUP}"\nrecipients = ["vkpub1_none"]\n' + "".join(
        f'[[rules]]\nprefix = "/svc/{i}/"\nallow = ["read"]\n' for i in range(n_rules))
    return PolicySet([parse_policy(text, f"bench-{n_rules}.toml")])


def acl_case(run: Run) -> None:
    batches, number = run.args.acl_batches, run.args.acl_number
    found: dict[int, tuple[float, float]] = {}
    for n_rules in (10, 10_000):
        acl = acl_policy(n_rules)
        medians = []
        for path, expect in ((f"/svc/{n_rules - 1}/key", True), ("/other/key", False)):
            assert acl.allowed(GROUP, path, Capability.READ) is expect
            timer = timeit.Timer("allowed(g, p, c)", globals={
                "allowed": acl.allowed, "g": GROUP, "p": path, "c": Capability.READ})
            medians.append(median([t / number for t in timer.repeat(batches, number)]))
        found[n_rules] = (medians[0], medians[1])
    for n_rules, (hit, miss) in found.items():
        base_hit, base_miss = found[10]
        run.rows.append(Row(
            f"(f) ACL {n_rules:,} rules",
            f"PolicySet.allowed, one group of {n_rules:,} prefix rules /svc/<i>/: µs per "
            f"decision, median of {batches} timeit batches of {number}: a path under the last "
            "rule / a path under none" + ("; baseline = 10 rules, ratio = time" if n_rules > 10
                                          else ""),
            f"{hit * 1e6:.2f} / {miss * 1e6:.2f} µs",
            "-" if n_rules == 10 else f"{base_hit * 1e6:.2f} / {base_miss * 1e6:.2f} µs",
            "-" if n_rules == 10 else f"{hit / base_hit:.2f}x / {miss / base_miss:.2f}x"))
    run.n["acl_10k_us"] = max(found[10_000]) * 1e6


# ---- (d) watch fan-out -------------------------------------------------------------------

def watch_case(run: Run) -> None:
    out = run.tmp / "watch.json"
    cmd = [sys.executable, str(SCRIPTS / "bench_watch.py"), "--json", str(out)]
    cmd += ["--smoke"] if run.args.smoke else ["--watchers", str(run.args.watchers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if not out.exists():
        raise RuntimeError(f"bench_watch.py exited with {proc.returncode} and no results:\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    o = json.loads(out.read_text())
    lat, rss = o["latency_from_ack_ms"], o["rss_peak_mb"]
    run.n["watch_p99_ms"], run.n["watch_rss_mb"] = lat["p99"], rss
    run.rows.append(Row(
        f"(d) watch {o['watchers']:,} watchers",
        f"scripts/bench_watch.py: {o['watchers']:,} SSE watchers x {o['puts']} puts through "
        "the proxy: delivery from put ack p50 / p99; proxy peak RSS; delivered / expected",
        f"p50 {lat['p50']:.1f} / p99 {lat['p99']:.1f} ms; RSS {rss:.0f} MB",
        f"delivered {o['delivered']:,} / {o['expected']:,}", "-"))
    if proc.returncode != 0 or not o.get("ok"):
        raise RuntimeError(f"bench_watch.py reported a problem (exit {proc.returncode}): "
                           f"lost {o.get('lost')}, duplicated {o.get('duplicated')}, "
                           f"errors {o.get('setup_errors', [])[:2] + o.get('run_errors', [])[:2]}")


# ---- (e) CLI --------------------------------------------------------------------------------

def cli_case(run: Run, st: Stack, value: bytes) -> None:
    n = run.args.cli_runs
    token_file = run.tmp / "cli.token"
    token_file.write_text(st.token + "\n")
    token_file.chmod(0o600)
    (run.tmp / "config.toml").write_text("")  # no profile from the user's config file
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
    env.update(VAULTKEY_ADDR=st.base, VAULTKEY_TOKEN_FILE=str(token_file),
               VAULTKEY_CACERT=str(st.ca), VAULTKEY_KEY=str(st.key_path),
               VAULTKEY_TRUST=str(st.trust_dir), VAULTKEY_CONFIG=str(run.tmp / "config.toml"))
    script = Path(sys.executable).parent / "vaultkey"
    vk = [str(script)] if script.exists() else [sys.executable, "-m", "vaultkey"]
    cmds = {"get": clirun.Command([*vk, "get", GET_PATH], env, value),
            "pass": clirun.Command([sys.executable, "-c", "pass"], env)}
    crypt_tmp = run.tmp / "crypt"
    crypt_tmp.mkdir()
    if shutil.which(clirun.CRYPT) is None and run.args.install_crypt:
        clirun.install_crypt()
    with clirun.crypt_get(crypt_tmp, value) as crypt:
        if isinstance(crypt, clirun.Command):
            cmds["crypt"] = crypt
        wait_cache_usable(st.http())
        t = clirun.timed_runs(cmds, n)
    get, floor = median(t["get"]), median(t["pass"])

    def cell(name: str) -> str:  # the minimum too: this machine's noise comes in steps
        return f"{ms(median(t[name]))} (min {ms(min(t[name]))})"

    run.n["cli_ratio"] = get / floor
    how = f"median (and minimum) of {n} runs each, interleaved; ratio = median time"
    run.rows.append(Row(
        "(e) CLI get",
        "whole process `vaultkey get` (64-byte value, over TLS, decrypted) vs `python -c "
        f"pass` in the same venv; {how}", cell("get"), cell("pass"), f"{get / floor:.2f}x"))
    if "crypt" not in t:
        run.rows.append(Row("(e) CLI get vs crypt", "crypt-xordataexchange get", cell("get"),
                            str(crypt), "-"))
        run.n["crypt_ratio"] = float("nan")
        return
    c = median(t["crypt"])
    run.n["crypt_ratio"] = get / c
    run.rows.append(Row(
        "(e) CLI get vs crypt",
        "`vaultkey get` vs `crypt-xordataexchange get` of a 64-byte value (RSA-2048 OpenPGP "
        f"key, etcd v2 API); {how}", cell("get"), cell("crypt"), f"{get / c:.2f}x"))


# ---- targets ----------------------------------------------------------------------------------

def targets(n: dict[str, float]) -> list[Target]:
    def has(*keys: str) -> bool:
        return all(k in n for k in keys)

    def pcent(x: float) -> str:
        return f"{100 * x:.0f} %"

    out = []
    if has("get_ratio_c32"):
        out.append(Target("P1", "proxied GET c32 req/s / gateway", "≥ 70 %",
                          pcent(n["get_ratio_c32"]), n["get_ratio_c32"] >= 0.70))
    else:
        out.append(Target("P1", "proxied GET c32 req/s / gateway", "≥ 70 %", "-", None))
    if has("get_ratio_c1", "get_added_p50_c1_ms"):
        out.append(Target(
            "P2", "proxied GET c1 req/s / gateway; added p50", "≥ 60 %; ≤ 0.3 ms",
            f"{pcent(n['get_ratio_c1'])}; {n['get_added_p50_c1_ms']:.2f} ms",
            n["get_ratio_c1"] >= 0.60 and n["get_added_p50_c1_ms"] <= 0.3))
    else:
        out.append(Target("P2", "proxied GET c1 req/s / gateway; added p50", "≥ 60 %; ≤ 0.3 ms",
                          "-", None))
    if has("put_ratio_c32"):
        out.append(Target("P3", "proxied PUT c32 req/s / gateway put", "≥ 50 %",
                          pcent(n["put_ratio_c32"]), n["put_ratio_c32"] >= 0.50))
    else:
        out.append(Target("P3", "proxied PUT c32 req/s / gateway put", "≥ 50 %", "-", None))
    out.append(Target("P4", "bulk read of the prefix: get_many / (raw range + decrypt)", "≤ 1.5x",
                      f"{n['bulk_ratio']:.2f}x" if has("bulk_ratio") else "-",
                      n["bulk_ratio"] <= 1.5 if has("bulk_ratio") else None))
    if has("watch_p99_ms", "watch_rss_mb"):
        out.append(Target("P5", "watchers: delivery p99; proxy peak RSS", "≤ 250 ms; ≤ 200 MB",
                          f"{n['watch_p99_ms']:.1f} ms; {n['watch_rss_mb']:.0f} MB",
                          n["watch_p99_ms"] <= 250 and n["watch_rss_mb"] <= 200))
    else:
        out.append(Target("P5", "watchers: delivery p99; proxy peak RSS", "≤ 250 ms; ≤ 200 MB",
                          "-", None))
    if has("cli_ratio"):
        crypt = n.get("crypt_ratio", float("nan"))
        vs_crypt = "crypt not measured" if crypt != crypt else f"{crypt:.2f}x crypt get"
        out.append(Target("P6", "`vaultkey get` / `python -c pass` (and / crypt get)", "≤ 2.5x",
                          f"{n['cli_ratio']:.2f}x ({vs_crypt})", n["cli_ratio"] <= 2.5))
    else:
        out.append(Target("P6", "`vaultkey get` / `python -c pass`", "≤ 2.5x", "-", None))
    out.append(Target("P7", "ACL decision median at 10,000 rules (worse of the two paths)",
                      "≤ 5 µs", f"{n['acl_10k_us']:.2f} µs" if has("acl_10k_us") else "-",
                      n["acl_10k_us"] <= 5 if has("acl_10k_us") else None))
    return out


# ---- main ---------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny durations to check the harness (CI); writes no doc unless --out")
    ap.add_argument("--out", type=Path, help=f"write the Markdown here (default: {DOC}, "
                    "except with --smoke)")
    ap.add_argument("--seconds", type=float, default=3.0, help="each wrk run (default 3)")
    ap.add_argument("--warmup", type=float, default=5.0,
                    help="proxied GETs before measuring (default 5 s)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="wrk rounds over all cases; the table has their medians (default 3)")
    ap.add_argument("--ops", type=int, default=1000, help="sequential SDK/etcd3 gets (1000)")
    ap.add_argument("--bulk-keys", type=int, default=500, help="keys in the bulk prefix (500)")
    ap.add_argument("--bulk-reps", type=int, default=15, help="bulk reads of each kind (15)")
    ap.add_argument("--crypto-ops", type=int, default=2000, help="envelopes timed (2000)")
    ap.add_argument("--cli-runs", type=int, default=15, help="runs of each command (15)")
    ap.add_argument("--acl-batches", type=int, default=15, help="timeit batches (15)")
    ap.add_argument("--acl-number", type=int, default=20000, help="decisions per batch (20000)")
    ap.add_argument("--watchers", type=int, default=1000, help="bench_watch.py watchers (1000)")
    ap.add_argument("--workers", type=int, help="pass --workers N to `vaultkey serve` (default: "
                    "its own default); read-cache figures are summed over the workers")
    ap.add_argument("--install-crypt", action="store_true",
                    help=f"apt-get install {clirun.CRYPT_DEB} if crypt is missing")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args(argv)
    if args.smoke:
        args.seconds, args.rounds, args.ops, args.bulk_reps = 1.0, 1, 30, 3
        args.warmup = 1.0
        args.crypto_ops, args.cli_runs, args.acl_batches, args.acl_number = 200, 3, 3, 2000
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):  # both clean up the servers
        signal.signal(sig, signal.default_int_handler)
    command = "scripts/bench" + (" " + shlex.join(argv) if argv else "")
    machine = report.machine(wrk.version(), clirun.crypt_version())
    tmp = Path(tempfile.mkdtemp(prefix="vk-bench-"))
    run = Run(args, tmp)
    proxy_command = "vaultkey serve"
    try:
        progress(f"temp dir {tmp}")
        run.guard("(f) ACL", lambda: acl_case(run))
        value = secrets.token_hex(32).encode()  # 64 bytes, printable (crypt prints it)
        SCRAPE["workers"] = args.workers or 1
        extra = [] if args.workers is None else ["--workers", str(args.workers)]
        with Stack.start(tmp / "stack", extra) as st:
            SCRAPE["verify"] = st.ssl_context()
            proxy_command = st.proxy_command()
            envelope_get = encrypt(value, GET_PATH, [st.public])
            envelope_put = encrypt(value, PUT_PATH, [st.public])
            conn = EtcdConnection(EtcdSettings(endpoints=[st.etcd.url]))
            etcd_client = conn.client()
            etcd_client.put(st.raw_key(GET_PATH), envelope_get)
            client = Client(st.base, st.token, key=st.key_path, trust=st.trust_dir,
                            cacert=str(st.ca))
            try:
                http = st.http()  # warm the proxy up (imports, caches, first connections)
                deadline = time.monotonic() + 30  # the value was written to etcd directly
                while http.get("/v1/kv" + GET_PATH).status_code == 404:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the proxy does not find {GET_PATH} in 30 s")
                    time.sleep(0.1)
                for _ in range(50):
                    http.get("/v1/kv" + GET_PATH).raise_for_status()
                    http.get("/healthz").raise_for_status()
                run.guard("(a)/(b) wrk", lambda: wrk_cases(run, st, envelope_get, envelope_put))
                run.guard("(a) SDK get", lambda: sdk_get_case(run, st, client, etcd_client,
                                                              value, envelope_get))
                run.guard("(b) envelope crypto", lambda: crypto_case(run, st.public, st.secret))
                run.guard("(c) bulk read", lambda: bulk_case(run, st, client, etcd_client))
                run.guard("(e) CLI", lambda: cli_case(run, st, value))
            finally:
                client.close()
                conn.close()
        run.guard("(d) watch", lambda: watch_case(run))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    order = "abcdef"
    run.rows.sort(key=lambda r: order.index(r.case[1]) if r.case[:1] == "(" else 99)
    tgts = targets(run.n)
    mode = " (--smoke: checks the harness, the numbers mean nothing)" if args.smoke else ""
    print(f"\nvaultkey benchmarks{mode}: {command}\n")
    print(report.table(run.rows))
    print()
    print(report.targets_table(tgts))
    for note in run.notes:
        print(f"note: {note}")
    if run.failures:
        print("\nFAILED cases:\n" + "\n".join(f"  {f}" for f in run.failures))
        return 1
    out = args.out or (None if args.smoke else DOC)
    if out is not None:
        notes = [*run.notes] + (["--smoke run: tiny durations, numbers not meaningful."]
                                if args.smoke else [])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.markdown(command, machine, run.rows, tgts, notes, proxy_command))
        print(f"\nwrote {out}")
    missed = [t.name for t in tgts if t.met is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main(sys.argv[1:]))
