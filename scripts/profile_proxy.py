#!/usr/bin/env python3
"""Profile the proxy under wrk load with py-spy; write where its time goes as text.

Starts etcd and one TLS proxy (scripts/benchlib/stack.py), drives one case with wrk
(``get``: proxied GET of one key, ``put``: proxied PUT of an envelope) while
``py-spy record`` samples the proxy, and writes the functions taking the most
samples (inclusive and self) to docs/profiles/<case>-c<conns>.txt::

    pip install py-spy
    python scripts/profile_proxy.py put --connections 32
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import wrk
from benchlib.stack import Stack

from vaultkey.crypto import encrypt

DOCS = Path(__file__).resolve().parents[1] / "docs" / "profiles"


def _frame(text: str) -> str:
    name, _, where = text.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else name


def summarize(raw: Path, top: int = 45) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    out = [f"samples: {total} (all threads, idle excluded)", "", "inclusive:"]
    out += [f"{100 * v / total:5.1f}%  {k}" for k, v in inclusive.most_common(top)]
    out += ["", "self:"]
    out += [f"{100 * v / total:5.1f}%  {k}" for k, v in own.most_common(top // 2)]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=["get", "put"])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=6)
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    tmp = Path(tempfile.mkdtemp(prefix="vk-profile-"))
    with Stack.start(tmp / "stack") as st:
        envelope = encrypt(b"x" * 64, "/bench/k", [st.public])
        (tmp / "env.bin").write_bytes(envelope)
        assert st.http().put("/v1/kv/bench/k", content=envelope).status_code == 200
        headers = {"Authorization": f"Bearer {st.token}"}
        if args.case == "put":
            headers["Content-Type"] = "application/octet-stream"
        script = wrk.request_script(tmp / "case.lua", args.case.upper(), headers=headers,
                                    body_file=tmp / "env.bin" if args.case == "put" else None)
        raw = tmp / "raw.txt"
        spy_proc = subprocess.Popen(
            [spy, "record", "-p", str(st.proxy.pid), "-d", str(args.seconds), "-r", "250",
             "--format", "raw", "-o", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        result = wrk.run(st.base + "/v1/kv/bench/k", script, threads=min(2, args.connections),
                         connections=args.connections, seconds=args.seconds - 1)
        spy_proc.wait()
    DOCS.mkdir(parents=True, exist_ok=True)
    out = DOCS / f"{args.case}-c{args.connections}.txt"
    out.write_text(f"proxied {args.case.upper()} /v1/kv/bench/k, wrk -c{args.connections}: "
                   f"{result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 "
                   f"{result.p99_ms:.2f} ms (one proxy process; py-spy record -r 250)\n\n"
                   + summarize(raw))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
