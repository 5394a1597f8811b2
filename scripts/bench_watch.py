#!/usr/bin/env python3
"""Watch fan-out benchmark (issue 9 "Fan-out"; issue 10 P5 targets): N SSE watchers, M puts.

Starts a real etcd and TLS `vaultkey serve` on loopback in a temp dir; load processes open N
watchers on one prefix (asyncio + ssl, raw HTTP/1.1, one TLS connection each) and wait for
their first bookmark; then M puts go through the proxy. Reports put-to-delivery latency over
all (watcher, event) pairs from each put's 200 answer (= commit) and from its send
(time.monotonic is system-wide), delivered vs expected (no loss/duplicate, in order), proxy
RSS before/with/after the watchers, and etcd watch streams and subscribers from /metrics.
Exits 1 on a lost, duplicated or reordered event, a failed watcher, or streams != 2.

  python scripts/bench_watch.py [--watchers 1000 --puts 50 --procs 1 --json out.json]
  python scripts/bench_watch.py --smoke          # 20 watchers, 5 puts: a few seconds (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trustme
from benchlib.stack import stop_process as stop

from vaultkey._dev.etcdproc import EtcdProcess, free_port
from vaultkey.crypto import encrypt
from vaultkey.keys import PublicKey
from vaultkey.signkey import write_keypair

POLICY = 'group = "bench"\nrecipients = ["bench.pub"]\n[[rules]]\nprefix = "/bench/"\n' \
         'allow = ["read", "list", "write", "watch"]\n'
PREFIX = "/bench/"
P5_P99_MS, P5_RSS_MB = 250.0, 200.0


# ---- a load process: its share of the watchers, raw HTTP/1.1 over TLS -----------------------

class Watcher:
    def __init__(self) -> None:
        self.ready = asyncio.Event()  # first bookmark (or failure)
        self.events: list[tuple[str, int | None, float]] = []  # (event, id, arrival)
        self.changes = 0
        self.error: str | None = None
        self.writer: asyncio.StreamWriter | None = None


async def watch_one(w: Watcher, cfg: dict[str, Any], ctx: ssl.SSLContext,
                    sem: asyncio.Semaphore) -> None:
    request = (f"GET /v1/watch{PREFIX} HTTP/1.1\r\nHost: 127.0.0.1:{cfg['port']}\r\n"
               f"Authorization: Bearer {cfg['token']}\r\nAccept: text/event-stream\r\n\r\n")
    try:
        async with sem:  # bound the concurrent TLS handshakes
            reader, w.writer = await asyncio.open_connection("127.0.0.1", cfg["port"], ssl=ctx)
            w.writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
        if head.split(b" ", 2)[1] != b"200":
            raise RuntimeError(head.decode(errors="replace").splitlines()[0])
        chunked, buf = b"transfer-encoding: chunked" in head.lower(), b""
        while True:
            if chunked:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = (await reader.readexactly(size + 2))[:-2] if size else b""
            else:
                data = await reader.read(65536)
            if not data:
                raise RuntimeError("the stream ended")
            now, buf = time.monotonic(), buf + data
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
                kind, rev = fields.get(b"event", b"").decode(), fields.get(b"id")
                if kind == "bookmark":
                    w.ready.set()
                    continue
                w.events.append((kind, int(rev) if rev else None, now))
                w.changes += kind in ("put", "delete")
    except (OSError, EOFError, ValueError, RuntimeError, IndexError) as exc:
        w.error = f"{type(exc).__name__}: {exc}"
    finally:
        w.ready.set()


async def load_process(cfg: dict[str, Any]) -> None:
    """Open the watchers; report; wait for M changes each; report them; close on "close"."""
    ctx, loop = ssl.create_default_context(cafile=cfg["ca"]), asyncio.get_running_loop()
    ws, sem, t0 = [Watcher() for _ in range(cfg["count"])], asyncio.Semaphore(cfg["tls"]), \
        time.monotonic()
    tasks = [asyncio.create_task(watch_one(w, cfg, ctx, sem)) for w in ws]
    await asyncio.wait([asyncio.create_task(w.ready.wait()) for w in ws],
                       timeout=cfg["setup_timeout"])
    for w in ws:
        w.error = w.error or (None if w.ready.is_set() else "no first bookmark in time")
    report = lambda **kw: print(json.dumps(  # noqa: E731
        {**kw, "errors": [w.error for w in ws if w.error]}), flush=True)
    report(setup_s=time.monotonic() - t0)
    gc.freeze()  # no collector pause of this client during the measurement (50k tuples)
    gc.disable()
    want = int(await loop.run_in_executor(None, sys.stdin.readline))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(w.changes < want and not w.error for w in ws):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # anything extra (a duplicate) would arrive now
    report(events=[w.events for w in ws])
    await loop.run_in_executor(None, sys.stdin.readline)  # "close"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for w in ws:
        if w.writer:
            w.writer.close()
    await asyncio.sleep(0.2)  # let the close_notify alerts go out


# ---- the parent: etcd, proxy, puts, report ---------------------------------------------------

def proc_stats(pid: int) -> tuple[float, float, float]:
    """(RSS MB, peak RSS MB, CPU seconds) of *pid*."""
    status, stat_ = Path(f"/proc/{pid}/status").read_text(), Path(f"/proc/{pid}/stat")
    rss, hwm = (int(re.search(rf"^{k}:\s+(\d+)", status, re.M)[1]) / 1024  # type: ignore[index]
                for k in ("VmRSS", "VmHWM"))
    ticks = stat_.read_text().rpartition(")")[2].split()[11:13]
    return rss, hwm, sum(map(int, ticks)) / os.sysconf("SC_CLK_TCK")


def metrics(client: Any) -> dict[str, float]:
    text = client.get("/metrics").text
    return {m[1]: float(m[2]) for m in re.finditer(r"^vaultkey_watch_(\w+) (\S+)$", text, re.M)}


def stat(xs: list[float]) -> dict[str, float]:
    s = sorted(xs) or [float("nan")]
    return {"p50": s[round(.5 * (len(s) - 1))], "p99": s[round(.99 * (len(s) - 1))], "max": s[-1]}


def start_proxy(tmp: Path, etcd_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """`vaultkey serve` as the e2e fixture starts it; wait until it is ready."""
    ctx, addr = ssl.create_default_context(cafile=str(tmp / "ca.pem")), f"127.0.0.1:{free_port()}"
    with open(tmp / "proxy.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vaultkey", "serve", "--policies", str(tmp / "policies"),
             "--etcd", etcd_url, "--listen", addr, "--tls-cert", str(tmp / "server.pem"),
             "--tls-key", str(tmp / "server.key"), "--admin-token-file", str(tmp / "admin-token"),
             "--root", "/vk-bench", "--audit-log", str(tmp / "audit.log"),
             "--max-connections", "4000"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    for _ in range(600):
        with contextlib.suppress(httpx.TransportError):
            if proc.poll() is None and httpx.get(
                    f"https://{addr}/readyz", verify=ctx).status_code == 200:
                return proc, f"https://{addr}"
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError("the proxy did not start:\n" + (tmp / "proxy.log").read_text()[-3000:])


def analyse(results: list[list[tuple[str, int | None, float]]], puts: list[dict[str, Any]]
            ) -> dict[str, Any]:
    revs, by_rev = [p["revision"] for p in puts], {p["revision"]: p for p in puts}
    ack, sent, per_put = [], [], {r: [] for r in revs}
    bad = dict.fromkeys(("delivered", "lost", "duplicated", "out_of_order", "unexpected",
                         "not_exact"), 0)
    for events in results:
        got = [rev for kind, rev, _t in events if kind in ("put", "delete")]
        bad["unexpected"] += sum(kind != "put" or rev not in by_rev for kind, rev, _t in events)
        bad["delivered"] += len(set(revs) & set(got))  # distinct (watcher, put) pairs
        bad["lost"] += len(set(revs) - set(got))
        bad["duplicated"] += len(got) - len(set(got))
        bad["out_of_order"] += sum(b <= a for a, b in itertools.pairwise(got))
        bad["not_exact"] += got != revs  # watchers whose changes are not exactly the puts
        for kind, rev, t in events:
            if kind == "put" and rev in by_rev:
                ack.append((t - by_rev[rev]["ack"]) * 1000)
                sent.append((t - by_rev[rev]["sent"]) * 1000)
                per_put[rev].append(ack[-1])
    return {**bad, "latency_from_ack_ms": stat(ack),
            "latency_from_send_ms": stat(sent),
            "put_rtt_ms": stat([(p["ack"] - p["sent"]) * 1000 for p in puts]),
            "last_delivery_per_put_ms": [max(v, default=None) for v in per_put.values()]}


def run(args: argparse.Namespace, tmp: Path, running: list[Any]) -> dict[str, Any]:
    cert = (ca := trustme.CA()).issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp / "server.pem"))
    (pol := tmp / "policies").mkdir()
    (pol / "bench.toml").write_text(POLICY)
    key_path, pub_path = write_keypair(pol / "bench")
    shutil.move(str(key_path), str(tmp / "bench.key"))
    admin = secrets.token_urlsafe(32)
    (tmp / "admin-token").write_text(admin + "\n")
    (tmp / "admin-token").chmod(0o600)
    running.append(etcd := EtcdProcess.start(tmp / "etcd"))
    proxy, addr = start_proxy(tmp, etcd.url)
    running.append(proxy)
    ctx = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
    r = httpx.post(addr + "/v1/tokens", verify=ctx, json={"group": "bench", "name": "bench"},
                   headers={"Authorization": f"Bearer {admin}"})
    token = r.raise_for_status().json()["token"]
    c = httpx.Client(base_url=addr, verify=ctx, headers={"Authorization": f"Bearer {token}"},
                     timeout=30)
    running.append(c)  # closed before the proxy stops: an open one holds its shutdown 10 s
    envelopes = [encrypt(secrets.token_bytes(64), f"{PREFIX}k{i}", [PublicKey.load(pub_path)])
                 for i in range(args.puts)]
    out: dict[str, Any] = {k: getattr(args, k) for k in ("watchers", "puts", "interval", "procs")}
    out["rss_before_mb"] = proc_stats(proxy.pid)[0]
    t0, loads = time.monotonic(), []
    for i in range(args.procs):
        cfg = {"port": int(addr.rsplit(":", 1)[1]), "ca": str(tmp / "ca.pem"), "token": token,
               "count": args.watchers // args.procs + (i < args.watchers % args.procs),
               "tls": args.concurrency, "setup_timeout": 300}
        running.append(p := subprocess.Popen([sys.executable, __file__, "--load", json.dumps(cfg)],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             text=True))
        loads.append(p)

    def hear() -> list[dict[str, Any]]:
        return [json.loads(p.stdout.readline() or '{"events": [], "errors": ["load died"]}')
                for p in loads]

    def tell(line: str) -> None:
        for p in loads:
            p.stdin.write(line + "\n")
            p.stdin.flush()

    out["setup_errors"] = [e for r in hear() for e in r["errors"]]
    out["setup_s"] = time.monotonic() - t0
    time.sleep(0.5)
    out["rss_with_watchers_mb"], out["metrics_with_watchers"] = proc_stats(proxy.pid)[0], metrics(c)
    puts, cpu0, start = [], proc_stats(proxy.pid)[2], time.monotonic()
    for i, envelope in enumerate(envelopes):
        time.sleep(max(0.0, start + i * args.interval - time.monotonic()))
        sent = time.monotonic()
        r = c.put(f"/v1/kv{PREFIX}k{i}", content=envelope)
        puts.append({"sent": sent, "ack": time.monotonic(),
                     "revision": r.raise_for_status().json()["revision"]})
    out["proxy_cpu_pct"] = 100 * (proc_stats(proxy.pid)[2] - cpu0) / (time.monotonic() - start)
    tell(str(args.puts))
    finals = hear()
    out["rss_after_puts_mb"], out["metrics_after_puts"] = proc_stats(proxy.pid)[0], metrics(c)
    tell("close")
    for p in loads:
        p.wait(30)
    deadline = time.monotonic() + 30
    while metrics(c).get("subscribers", 0) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    out["rss_after_close_mb"], out["rss_peak_mb"], _ = proc_stats(proxy.pid)
    out["metrics_after_close"] = metrics(c)
    out["run_errors"] = [e for f in finals for e in f["errors"]]
    out["expected"] = args.watchers * args.puts
    out.update(analyse([ev for f in finals for ev in f["events"]], puts))
    log = (tmp / "proxy.log").read_text(errors="replace").splitlines()
    out["proxy_log_problems"] = [x for x in log if re.search(r"WARNING|ERROR|Traceback", x)][:20]
    out["p5_met"] = {"p99_le_250ms": out["latency_from_ack_ms"]["p99"] <= P5_P99_MS,
                     "rss_le_200mb": out["rss_peak_mb"] <= P5_RSS_MB}
    out["ok"] = (out["delivered"] == out["expected"] and out["not_exact"] == out["unexpected"]
                 == 0 and not out["setup_errors"] + out["run_errors"]
                 and out["metrics_with_watchers"].get("streams") == 2.0)
    return out


def table(o: dict[str, Any]) -> str:
    m, mc = o["metrics_with_watchers"], o["metrics_after_close"]
    ms = lambda d: f"{d['p50']:.1f} / {d['p99']:.1f} / {d['max']:.1f} ms"  # noqa: E731
    rows = [
        ("watchers x puts (load processes)", f"{o['watchers']} x {o['puts']}, every "
         f"{o['interval'] * 1000:.0f} ms ({o['procs']})", ""),
        ("setup: TLS connect + first bookmark, all watchers", f"{o['setup_s']:.2f} s", ""),
        ("events delivered / expected", f"{o['delivered']} / {o['expected']}", "equal"),
        ("lost / duplicated / out of order / unexpected / watchers not exact", " / ".join(
            str(o[k]) for k in ("lost", "duplicated", "out_of_order", "unexpected",
                                "not_exact")), "0"),
        ("latency from put ack p50 / p99 / max", ms(o["latency_from_ack_ms"]),
         f"p99 ≤ {P5_P99_MS:.0f} ms"),
        ("latency from put send p50 / p99 / max", ms(o["latency_from_send_ms"]), ""),
        ("put round trip p50 / p99 / max", ms(o["put_rtt_ms"]), ""),
        ("proxy CPU while putting", f"{o['proxy_cpu_pct']:.0f} % of one core", ""),
        ("proxy RSS before / with watchers / after puts / closed (peak)", " / ".join(
            f"{o[k]:.0f}" for k in ("rss_before_mb", "rss_with_watchers_mb", "rss_after_puts_mb",
                                    "rss_after_close_mb")) + f" MB ({o['rss_peak_mb']:.0f})",
         f"≤ {P5_RSS_MB:.0f} MB"),
        ("etcd watch streams / subscribers, with watchers; closed",
         f"{m.get('streams')} / {m.get('subscribers')}; {mc.get('streams')} / "
         f"{mc.get('subscribers')}", "2 / N; 2 / 0"),
        ("hub events in / out / dropped",
         f"{mc.get('events_in')} / {mc.get('events_out')} / {mc.get('dropped')}", ""),
        ("errors: setup / run / proxy log lines", f"{len(o['setup_errors'])} / "
         f"{len(o['run_errors'])} / {len(o['proxy_log_problems'])}", "0"),
        ("issue 10 P5 met: p99, RSS", f"{o['p5_met']['p99_le_250ms']}, "
         f"{o['p5_met']['rss_le_200mb']}", ""),
    ]
    return "\n".join(["| measure | value | target |", "|---|---|---|",
                      *(f"| {a} | {b} | {c} |" for a, b, c in rows)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--puts", type=int, default=50)
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between puts")
    ap.add_argument("--procs", type=int, default=1, help="load processes for the watchers")
    ap.add_argument("--concurrency", type=int, default=50, help="TLS handshakes at once")
    ap.add_argument("--smoke", action="store_true", help="20 watchers, 5 puts (CI)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--load", help=argparse.SUPPRESS)  # internal: run as a load process
    args = ap.parse_args()
    if args.load:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it (Ctrl-C reaches all)
        with contextlib.suppress(ImportError):
            import uvloop
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(load_process(json.loads(args.load)))
        return 0
    if args.smoke:
        args.watchers, args.puts, args.interval = 20, 5, 0.1
    for sig in (signal.SIGINT, signal.SIGTERM):  # both clean up (also if started with `&`)
        signal.signal(sig, signal.default_int_handler)
    tmp = Path(tempfile.mkdtemp(prefix="vk-bench-watch-"))
    running: list[Any] = []
    try:
        out = run(args, tmp, running)
    except BaseException:
        with contextlib.suppress(OSError):
            print("proxy log (tail):\n" + (tmp / "proxy.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        for thing in reversed(running):  # load processes, client, proxy, etcd
            with contextlib.suppress(Exception):
                if isinstance(thing, subprocess.Popen):
                    stop(thing, 5 if thing.stdin else 15)
                else:
                    thing.close() if isinstance(thing, httpx.Client) else thing.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(out))
    for problem in out["setup_errors"][:5] + out["run_errors"][:5] + out["proxy_log_problems"]:
        print("  !", problem)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
