"""`vaultkey dev`: one command, working exports, clean shutdown on Ctrl-C.

Every `vaultkey dev` here is started with SIGINT at its default action (the
runner may have it ignored, e.g. under ``nohup pytest &``) and is stopped in a
``finally``: a test that fails or times out never leaves a dev proxy or its
etcd running.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests._helpers.procs import PORT_TAKEN, kill_tree, popen, processes_mentioning, stop
from vaultkey._dev.etcdproc import free_port

EXPORT = re.compile(rb"export (VAULTKEY_\w+)=(.*)$")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}


def _read_exports(proc: subprocess.Popen[bytes], timeout: float) -> tuple[dict[str, str], str]:
    """Read stdout until the last export line, without ever blocking past *timeout*."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    exports: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while "VAULTKEY_TRUST" not in exports:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break  # it exited
        buf += chunk
        for line in buf.splitlines():
            m = EXPORT.match(line.strip())
            if m:
                exports[m.group(1).decode()] = m.group(2).decode()
    return exports, buf.decode(errors="replace")


def _start_dev(*args: str, attempts: int = 3) -> tuple[subprocess.Popen[bytes], dict[str, str],
                                                        str]:
    """Start `vaultkey dev` on a free port; return it, its exports and what it printed.

    If another process took the port between free_port() and dev's bind, try a new one.
    """
    for attempt in range(1, attempts + 1):
        proc = popen([sys.executable, "-m", "vaultkey", "dev", "--listen",
                      f"127.0.0.1:{free_port()}", *args], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=_env())
        try:
            exports, out = _read_exports(proc, timeout=60)
        except BaseException:
            kill_tree(proc)
            raise
        if "VAULTKEY_TOKEN" in exports and "VAULTKEY_TRUST" in exports:
            return proc, exports, out
        exited = proc.poll()
        rest, err_bytes = kill_tree(proc)
        out += (rest or b"").decode(errors="replace")
        err = (err_bytes or b"").decode(errors="replace")
        if exited is not None and PORT_TAKEN in err.lower() and attempt < attempts:
            continue
        raise AssertionError(f"vaultkey dev gave no exports (exit {exited}):\n{out}\n{err}")
    raise AssertionError("unreachable")


def _cli(exports: dict[str, str], *args: str, stdin: bytes = b"") -> bytes:
    env = _env()
    env.update(exports, VAULTKEY_CONFIG="/dev/null")
    r = subprocess.run([sys.executable, "-m", "vaultkey", *args], input=stdin,
                       capture_output=True, env=env, timeout=60, check=False)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def test_dev_exports_work_and_ctrl_c_leaves_nothing_behind():
    proc, exports, _out = _start_dev()
    state_dir = str(Path(exports["VAULTKEY_KEY"]).parent)
    try:
        assert processes_mentioning(state_dir + "/etcd"), "etcd should be running"
        _cli(exports, "set", "/hello/world", "-", stdin=b"it works\n")
        assert _cli(exports, "get", "/hello/world") == b"it works\n"
        assert _cli(exports, "whoami").startswith(b"group token")
    finally:
        stop(proc, signal.SIGINT, timeout=30)
    assert proc.returncode in (0, 130)
    assert processes_mentioning(state_dir) == []
    assert not Path(state_dir).exists(), "temporary state should be removed"


def test_dev_with_dir_keeps_state_for_reuse(tmp_path):
    state = tmp_path / "vk"
    proc, exports, _ = _start_dev("--dir", str(state))
    try:
        _cli(exports, "set", "/kept", "across restarts")
    finally:
        stop(proc, signal.SIGINT, timeout=30)
    assert (state / "dev.key").exists() and (state / "etcd").exists()
    assert oct((state / "dev.key").stat().st_mode & 0o777) == "0o600"
    proc, exports2, _ = _start_dev("--dir", str(state))
    try:
        assert _cli(exports2, "get", "/kept") == b"across restarts"
        assert exports2["VAULTKEY_KEY"] == exports["VAULTKEY_KEY"]
    finally:
        stop(proc, signal.SIGINT, timeout=30)
    assert processes_mentioning(str(state)) == []


def test_sigterm_and_sighup_also_clean_up():
    for sig in (signal.SIGTERM, signal.SIGHUP):
        proc, exports, _ = _start_dev()
        state_dir = str(Path(exports["VAULTKEY_KEY"]).parent)
        try:
            assert processes_mentioning(state_dir + "/etcd")
        finally:
            stop(proc, sig, timeout=30)
        assert proc.returncode is not None
        assert processes_mentioning(state_dir) == [], sig
        assert not Path(state_dir).exists(), sig


def test_second_dev_on_the_same_dir_is_refused(tmp_path):
    state = tmp_path / "vk"
    proc, exports, _ = _start_dev("--dir", str(state))
    try:
        for _attempt in range(3):  # a new port if another process took the free one
            second = subprocess.run([sys.executable, "-m", "vaultkey", "dev", "--dir",
                                     str(state), "--listen", f"127.0.0.1:{free_port()}"],
                                    env=_env(), capture_output=True, text=True, timeout=60,
                                    check=False)
            if PORT_TAKEN not in second.stderr.lower():
                break
        assert second.returncode == 64
        assert "already running" in second.stderr
        assert _cli(exports, "whoami").startswith(b"group token")  # the first is unharmed
    finally:
        stop(proc, signal.SIGINT, timeout=30)


def test_kept_dir_reuses_its_token(tmp_path):
    state = tmp_path / "vk"
    proc, first, _ = _start_dev("--dir", str(state))
    stop(proc, signal.SIGINT, timeout=30)
    proc, second, _ = _start_dev("--dir", str(state))
    stop(proc, signal.SIGINT, timeout=30)
    assert first["VAULTKEY_TOKEN"] == second["VAULTKEY_TOKEN"]
    assert processes_mentioning(str(state)) == []
