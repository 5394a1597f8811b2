"""Hostile clients, run as a separate process by test_proxy_dos.py.

Usage: python attacker.py KIND HOST PORT CAFILE COUNT [TOKEN]

It prints ``ready`` once its connections are in place, then one JSON line
with what it saw, and exits. Every loop is bounded in count and time; it only
ever connects to the loopback address it is given.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import sys
import time

LIMIT_S = 30.0  # no attack runs longer than this
HEADER_BYTES = 100 * 1024 * 1024
SUSTAIN_S = 1.5
DRIP = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000


async def _connect(host: str, port: int, ctx: ssl.SSLContext) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)


async def _until_closed(reader: asyncio.StreamReader, started: float) -> tuple[float, bytes]:
    """Wait for the server to close; return (seconds until EOF, first bytes received)."""
    first = b""
    try:
        async with asyncio.timeout(LIMIT_S):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                first = first or data[:200]
    except (TimeoutError, ConnectionError, ssl.SSLError):
        pass
    return time.monotonic() - started, first


async def huge_headers(host: str, port: int, ctx: ssl.SSLContext, n: int) -> dict[str, object]:
    """*n* connections at once, each sending a 100 MB header; cut off, they reconnect
    and start again, for SUSTAIN_S seconds."""
    print("ready", flush=True)
    started, results = time.monotonic(), []
    while time.monotonic() - started < SUSTAIN_S:
        conns = await asyncio.gather(*(_connect(host, port, ctx) for _ in range(n)))
        results += await asyncio.gather(*(huge_header(r, w) for r, w in conns))
    return {"connections": len(results),
            "sent_bytes_max": max(int(r["sent_bytes"]) for r in results),
            "closed_after_s_max": max(float(r["closed_after_s"]) for r in results),
            "status_lines": sorted({str(r["status_line"]) for r in results})}


async def huge_header(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> dict[str, float | int | str]:
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    chunk, sent = b"a" * (1024 * 1024), 0
    try:
        while (sent < HEADER_BYTES and time.monotonic() - started < LIMIT_S
               and not writer.is_closing() and not reader.at_eof()):
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    except (ConnectionError, ssl.SSLError):
        pass
    closed_after, first = await _until_closed(reader, started)
    return {"sent_bytes": sent, "closed_after_s": round(closed_after, 3),
            "status_line": first.split(b"\r\n", 1)[0].decode("latin-1")}


async def silent(host: str, port: int, ctx: ssl.SSLContext, n: int) -> dict[str, object]:
    conns = await asyncio.gather(*(_connect(host, port, ctx) for _ in range(n)),
                                 return_exceptions=True)
    ok = [c for c in conns if not isinstance(c, BaseException)]
    print("ready", flush=True)
    started = time.monotonic()
    closes = await asyncio.gather(*(_until_closed(r, started) for r, _w in ok))
    return _summary(len(ok), n, closes)


async def slowloris(host: str, port: int, ctx: ssl.SSLContext, n: int) -> dict[str, object]:
    conns = await asyncio.gather(*(_connect(host, port, ctx) for _ in range(n)),
                                 return_exceptions=True)
    ok = [c for c in conns if not isinstance(c, BaseException)]
    print("ready", flush=True)
    return await _drip_until_closed(ok, n, time.monotonic(), DRIP)


async def _drip(writer: asyncio.StreamWriter, data: bytes | None, started: float) -> None:
    """Send *data* (or endless "x"s) one byte every 0.2 s until the proxy closes."""
    i = 0
    while not writer.is_closing() and time.monotonic() - started < LIMIT_S:
        if data is not None and i >= len(data):
            return
        try:
            writer.write(data[i:i + 1] if data is not None else b"x")
            await writer.drain()
        except (ConnectionError, ssl.SSLError, RuntimeError):
            return
        i += 1
        await asyncio.sleep(0.2)


async def _drip_until_closed(ok: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
                             n: int, started: float, data: bytes | None) -> dict[str, object]:
    drips = [asyncio.ensure_future(_drip(w, data, started)) for _r, w in ok]
    closes = await asyncio.gather(*(_until_closed(r, started) for r, _w in ok))
    for task in drips:
        task.cancel()
    return _summary(len(ok), n, closes)


async def slow_body(host: str, port: int, ctx: ssl.SSLContext, n: int,
                    token: str = "") -> dict[str, object]:
    """Authenticated uploads that send their body one byte at a time (busy connections)."""
    conns = await asyncio.gather(*(_connect(host, port, ctx) for _ in range(n)),
                                 return_exceptions=True)
    ok = [c for c in conns if not isinstance(c, BaseException)]
    for i, (_r, w) in enumerate(ok):
        w.write(f"PUT /v1/kv/alpha/slow{i} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                "\r\nContent-Length: 100000\r\n\r\n".encode())
    print("ready", flush=True)
    started = time.monotonic()

    return await _drip_until_closed(ok, n, started, None)


async def garbage_tokens(host: str, port: int, ctx: ssl.SSLContext,
                         n: int, rate: str = "0") -> dict[str, object]:
    """*n* keep-alive connections sending requests with made-up tokens, for SUSTAIN_S s,
    in all *rate* requests a second (0: as fast as the proxy answers)."""
    conns = await asyncio.gather(*(_connect(host, port, ctx) for _ in range(n)))
    print("ready", flush=True)
    started, statuses = time.monotonic(), {}
    interval = n / float(rate) if float(rate) > 0 else 0.0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = 0
        while time.monotonic() - started < SUSTAIN_S:
            if interval:
                sent += 1
                await asyncio.sleep(max(0.0, started + sent * interval - time.monotonic()))
            fake = f"vkt_{secrets.token_hex(8)}.{secrets.token_urlsafe(32)}"
            writer.write(f"GET /v1/kv/alpha/legit HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: Bearer {fake}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            status = head.split(b" ", 2)[1].decode()
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(flood(r, w) for r, w in conns))
    return {"connections": n, "answers": statuses,
            "requests_per_s": round(sum(statuses.values()) / SUSTAIN_S)}


def _summary(opened: int, wanted: int, closes: list[tuple[float, bytes]]) -> dict[str, object]:
    times = sorted(t for t, _ in closes)
    statuses: dict[str, int] = {}
    for _t, first in closes:
        line = first.split(b"\r\n", 1)[0].decode("latin-1") or "(closed, no answer)"
        statuses[line] = statuses.get(line, 0) + 1
    return {"opened": opened, "wanted": wanted,
            "closed_by_server_max_s": round(times[-1], 3) if times else None,
            "closed_by_server_min_s": round(times[0], 3) if times else None,
            "answers": statuses}


KINDS = {"header": huge_headers, "silent": silent, "slowloris": slowloris,
         "slowbody": slow_body, "tokens": garbage_tokens}


def main() -> None:
    kind, host, port, cafile, count = sys.argv[1:6]
    ctx = ssl.create_default_context(cafile=cafile)
    attack = KINDS[kind]
    extra = [arg for arg in sys.argv[6:7] if arg]
    result = asyncio.run(attack(host, int(port), ctx, int(count), *extra))  # type: ignore[operator]
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
