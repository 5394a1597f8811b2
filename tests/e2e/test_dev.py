"""`vaultkey dev`: one command, working exports, clean shutdown on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from vaultkey._dev.etcdproc import free_port


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def _start_dev(*args: str) -> tuple[subprocess.Popen[str], dict[str, str], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
    proc = subprocess.Popen([sys.executable, "-m", "vaultkey", "dev", "--listen",
                             f"127.0.0.1:{port}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    exports: dict[str, str] = {}
    lines = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline and "VAULTKEY_TRUST" not in exports:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.match(r"export (VAULTKEY_\w+)=(.*)$", line.strip())
        if m:
            exports[m.group(1)] = m.group(2)
    assert "VAULTKEY_TOKEN" in exports, "".join(lines) + (proc.stderr.read() if proc.poll() else "")
    return proc, exports, "".join(lines)


def _cli(exports: dict[str, str], *args: str, stdin: bytes = b"") -> bytes:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
    env.update(exports, VAULTKEY_CONFIG="/dev/null")
    r = subprocess.run([sys.executable, "-m", "vaultkey", *args], input=stdin,
                       capture_output=True, env=env, timeout=60, check=False)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def test_dev_exports_work_and_ctrl_c_leaves_nothing_behind():
    proc, exports, _out = _start_dev()
    state_dir = str(Path(exports["VAULTKEY_KEY"]).parent)
    try:
        assert _processes_mentioning(state_dir + "/etcd"), "etcd should be running"
        _cli(exports, "set", "/hello/world", "-", stdin=b"it works\n")
        assert _cli(exports, "get", "/hello/world") == b"it works\n"
        assert _cli(exports, "whoami").startswith(b"group token")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode in (0, 130)
    assert _processes_mentioning(state_dir) == []
    assert not Path(state_dir).exists(), "temporary state should be removed"


def test_dev_with_dir_keeps_state_for_reuse(tmp_path):
    state = tmp_path / "vk"
    proc, exports, _ = _start_dev("--dir", str(state))
    try:
        _cli(exports, "set", "/kept", "across restarts")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert (state / "dev.key").exists() and (state / "etcd").exists()
    assert oct((state / "dev.key").stat().st_mode & 0o777) == "0o600"
    proc, exports2, _ = _start_dev("--dir", str(state))
    try:
        assert _cli(exports2, "get", "/kept") == b"across restarts"
        assert exports2["VAULTKEY_KEY"] == exports["VAULTKEY_KEY"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert _processes_mentioning(str(state)) == []


def _stop_with(proc: subprocess.Popen[str], sig: int) -> None:
    proc.send_signal(sig)
    proc.communicate(timeout=30)


def test_sigterm_and_sighup_also_clean_up():
    for sig in (signal.SIGTERM, signal.SIGHUP):
        proc, exports, _ = _start_dev()
        state_dir = str(Path(exports["VAULTKEY_KEY"]).parent)
        assert _processes_mentioning(state_dir + "/etcd")
        _stop_with(proc, sig)
        assert proc.returncode is not None
        assert _processes_mentioning(state_dir) == [], sig
        assert not Path(state_dir).exists(), sig


def test_second_dev_on_the_same_dir_is_refused(tmp_path):
    state = tmp_path / "vk"
    proc, exports, _ = _start_dev("--dir", str(state))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
        second = subprocess.run([sys.executable, "-m", "vaultkey", "dev", "--dir", str(state),
                                 "--listen", f"127.0.0.1:{free_port()}"], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 64
        assert "already running" in second.stderr
        assert _cli(exports, "whoami").startswith(b"group token")  # the first is unharmed
    finally:
        _stop_with(proc, signal.SIGINT)


def test_kept_dir_reuses_its_token(tmp_path):
    state = tmp_path / "vk"
    proc, first, _ = _start_dev("--dir", str(state))
    _stop_with(proc, signal.SIGINT)
    proc, second, _ = _start_dev("--dir", str(state))
    _stop_with(proc, signal.SIGINT)
    assert first["VAULTKEY_TOKEN"] == second["VAULTKEY_TOKEN"]
