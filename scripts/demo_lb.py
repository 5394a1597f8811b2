#!/usr/bin/env python3
"""Service discovery end to end: registrations drive a rendered load-balancer config.

1. starts `vaultkey dev` (local etcd, throwaway CA, TLS proxy);
2. runs `vaultkey render --watch` on a HAProxy-style template whose backends are the
   registrations under /demo/services/web/ (the `services()` helper), with a reload
   command that logs each reload;
3. registers two backends with `vaultkey register --ttl 3s` (each a process keeping its
   lease alive): the config lists both;
4. kills one backend with SIGKILL (no goodbye): its lease runs out and the config drops it;
5. stops the other with SIGTERM (it deregisters at once): the config drops it too;
6. stops everything and checks nothing is left running.

    ./scripts/demo_lb            # or: .venv/bin/python scripts/demo_lb.py
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from demo import VK, say, start_dev

TEMPLATE = """\
# rendered by vaultkey render (no revision or time in here: only a real change rewrites it)
frontend web
    bind *:8080
    default_backend web
backend web
{% for s in services('/demo/services/web/') %}    server {{ s.name }} {{ s.address }} check
{% else %}    # no backend registered
{% endfor %}"""


def wait_for(what: str, check: Callable[[], object], timeout: float = 20.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise SystemExit(f"demo FAILED: timed out waiting for {what}")


def run() -> bool:
    t0 = time.monotonic()
    say("$ vaultkey dev")
    dev, env, _etcd = start_dev()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            (d / "lb.cfg.j2").write_text(TEMPLATE)
            out, reloads = d / "lb.cfg", d / "reloads.log"

            def spawn(*args: str) -> subprocess.Popen[bytes]:
                proc = subprocess.Popen([*VK, *args], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                procs.append(proc)
                return proc

            say("$ vaultkey render lb.cfg.j2 lb.cfg --prefix /demo/services/web/ --watch "
                "--wait 0.2s --reload-cmd 'echo reload >> reloads.log'")
            spawn("render", str(d / "lb.cfg.j2"), str(out), "--prefix", "/demo/services/web/",
                  "--watch", "--wait", "0.2s", "--reload-cmd", f"echo reload >> {reloads}")
            wait_for("the first render", out.exists)
            say("  lb.cfg (no backends yet):\n" + _show(out))

            say("$ vaultkey register /demo/services/web/a 127.0.0.1:9001 --ttl 3s  (and b)")
            spawn("register", "/demo/services/web/a", "127.0.0.1:9001", "--ttl", "3s")
            b = spawn("register", "/demo/services/web/b", "127.0.0.1:9002", "--ttl", "3s")
            took = wait_for("both backends", lambda: "server a" in out.read_text()
                            and "server b" in out.read_text())
            say(f"  both registered; lb.cfg re-rendered within {took:.2f}s:\n" + _show(out))

            b.send_signal(signal.SIGKILL)
            took = wait_for("b to expire", lambda: "server b" not in out.read_text())
            say(f"backend b killed (SIGKILL, no goodbye): its 3 s lease ran out and lb.cfg "
                f"dropped it {took:.2f}s later:\n" + _show(out))

            procs[1].send_signal(signal.SIGTERM)
            took = wait_for("a to go", lambda: "server a" not in out.read_text())
            say(f"backend a stopped (SIGTERM, deregisters): dropped {took:.2f}s later")
            count = len(reloads.read_text().splitlines())
            # first render, a and b (one batch or two), b gone, a gone
            say(f"reloads: {count} (one per change of the rendered file)")
            ok = 4 <= count <= 5
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        dev.send_signal(signal.SIGINT)
        dev.communicate(timeout=30)
    say(f"demo {'PASSED' if ok else 'FAILED'} in {time.monotonic() - t0:.1f}s")
    return ok


def _show(path: Path) -> str:
    return "\n".join("  | " + line for line in path.read_text().splitlines())


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
