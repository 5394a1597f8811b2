#!/usr/bin/env python3
"""The vaultkey demo: `vaultkey dev`, then the CLI from other processes, then Ctrl-C.

1. starts `vaultkey dev` (local etcd, throwaway CA, TLS proxy, a `dev` group);
2. stores a secret with `vaultkey set` (value from stdin) and reads it back byte-exactly;
3. shows that etcd itself holds only ciphertext, bound to the path;
4. shows that a key outside the group cannot decrypt it (exit code 7);
5. stops `vaultkey dev` with Ctrl-C (SIGINT) and checks nothing is left running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vaultkey._dev.etcdproc import free_port

VK = [sys.executable, "-m", "vaultkey"]
SECRET = b"postgres://app:correct-horse-battery-staple@db.internal/app\n"


def say(text: str) -> None:
    print(text, flush=True)


def start_dev() -> tuple[subprocess.Popen[str], dict[str, str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
    proc = subprocess.Popen([*VK, "dev", "--listen", f"127.0.0.1:{free_port()}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    exports, etcd_url = {}, ""
    assert proc.stdout is not None
    while "VAULTKEY_TRUST" not in exports or not etcd_url:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise SystemExit("vaultkey dev failed to start:\n" + err)
        say("  | " + line.rstrip())
        if m := re.match(r"export (VAULTKEY_\w+)=(.*)$", line.strip()):
            exports[m.group(1)] = m.group(2)
        if m := re.match(r"# etcd (\S+)", line.strip()):
            etcd_url = m.group(1)
    return proc, {**env, **exports, "VAULTKEY_CONFIG": "/dev/null"}, etcd_url


def vk(env: dict[str, str], *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*VK, *args], input=stdin, capture_output=True, env=env, check=False)


def run() -> bool:
    t0 = time.monotonic()
    say("$ vaultkey dev")
    proc, env, etcd_url = start_dev()
    state_dir = str(Path(env["VAULTKEY_KEY"]).parent)
    ok = True
    try:
        say(f"started in {time.monotonic() - t0:.1f}s\n")
        r = vk(env, "set", "/demo/db/url", stdin=SECRET)
        said = r.stderr.decode().strip() or r.stdout.decode().strip()
        say(f"$ printf '...' | vaultkey set /demo/db/url\n  {said}")
        ok &= r.returncode == 0
        got = vk(env, "get", "/demo/db/url").stdout
        say(f"$ vaultkey get /demo/db/url\n  {got!r}  byte-exact: {got == SECRET}")
        ok &= got == SECRET
        say("$ vaultkey ls -r /\n  " + vk(env, "ls", "-r", "/").stdout.decode().strip())

        import etcd3  # read etcd directly, as an attacker with the database would

        host, port = etcd_url.removeprefix("http://").split(":")
        raw = [v for v, _ in etcd3.client(host, int(port)).get_prefix(b"/vaultkey/kv")]
        say(f"etcd holds {len(raw)} value(s); plaintext visible in etcd: "
            f"{any(SECRET.strip() in v for v in raw)}; first bytes: {raw[0][:24]!r}")
        ok &= not any(SECRET.strip() in v for v in raw)

        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([*VK, "keygen", f"{tmp}/eve"], capture_output=True, check=True)
            r = vk({**env, "VAULTKEY_KEY": f"{tmp}/eve.key"}, "get", "/demo/db/url")
            say(f"$ VAULTKEY_KEY=eve.key vaultkey get /demo/db/url   -> exit {r.returncode}\n"
                f"  {r.stderr.decode().strip()}")
            ok &= r.returncode == 7
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _mentions(p, state_dir)]
    say(f"\nCtrl-C: vaultkey dev exited {proc.returncode}; processes left behind: "
        f"{len(leftovers)}; state removed: {not Path(state_dir).exists()}")
    ok &= not leftovers and not Path(state_dir).exists()
    say(f"demo {'PASSED' if ok else 'FAILED'} in {time.monotonic() - t0:.1f}s")
    return ok


def _mentions(pid: str, text: str) -> bool:
    try:
        return text in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
