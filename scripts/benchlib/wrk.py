"""wrk runs: a Lua script per request shape, ``wrk --latency``, and its output parsed.

    lua = request_script(tmp / "get.lua", "GET", headers={"Authorization": "Bearer ..."})
    res = run(url, lua, threads=2, connections=32, seconds=3)   # WrkResult
    res.rps, res.p50_ms, res.p99_ms
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    raw: str


def find_wrk() -> str | None:
    return shutil.which("wrk")


def version() -> str:
    wrk = find_wrk()
    if wrk is None:
        return "not installed"
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).splitlines()[0].split(" Copyright")[0].strip()


def _lua_str(text: str) -> str:
    """A Lua long-bracket string literal for *text* (no escapes inside)."""
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def request_script(path: Path, method: str, *, headers: dict[str, str] | None = None,
                   body: str | None = None, body_file: Path | None = None) -> Path:
    """Write a wrk Lua script that sends *method* with *headers* and a body (text or file)."""
    lines = [f"wrk.method = {_lua_str(method)}"]
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[ {_lua_str(name)} ] = {_lua_str(value)}")
    if body is not None:
        lines.append(f"wrk.body = {_lua_str(body)}")
    if body_file is not None:  # binary bodies: read at start-up, byte for byte
        lines += [f'local f = assert(io.open({_lua_str(str(body_file))}, "rb"))',
                  'wrk.body = f:read("*a")', "f:close()"]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it may hold a token
    return path


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m[1]) * _UNITS[m[2]]


def parse(out: str) -> WrkResult:
    """Requests/s, p50 and p99 (ms), the request count and error counts of ``wrk --latency``."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p50 = re.search(r"^\s+50(?:\.000)?%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99(?:\.000)?%\s+(\S+)", out, re.M)
    total = re.search(r"^\s*(\d+) requests in ", out, re.M)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"cannot parse the wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(float(rps[1]), _ms(p50[1]), _ms(p99[1]), int(total[1]),
                     int(non2xx[1]) if non2xx else 0,
                     sum(int(x) for x in sock.groups()) if sock else 0, out)


def run(url: str, script: Path, *, threads: int, connections: int, seconds: float,
        timeout_s: float = 2.0) -> WrkResult:
    """``wrk --latency`` for *seconds*; fails if any answer was not 2xx/3xx."""
    wrk = find_wrk()
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; scripts/_bootstrap.sh "
                           "installs it)")
    duration = f"{max(1, round(seconds))}s"
    cmd = [wrk, "--latency", f"-t{threads}", f"-c{connections}", f"-d{duration}",
           f"--timeout={max(1, round(timeout_s))}s", "-s", str(script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    if proc.returncode != 0 or proc.stderr.strip():  # a Lua error only goes to stderr
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    res = parse(proc.stdout)
    if res.non_2xx:
        raise RuntimeError(f"{url}: {res.non_2xx} of {res.requests} answers were not "
                           f"2xx/3xx:\n{proc.stdout}")
    if res.requests == 0:
        raise RuntimeError(f"{url}: wrk completed no request:\n{proc.stdout}")
    return res
