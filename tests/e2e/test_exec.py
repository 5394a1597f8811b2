"""`vaultkey exec` as a subprocess against a real TLS proxy on a real etcd.

The command it runs is CHILD: a Python script that saves the environment it got (as bytes)
to env-PID.json, appends its pid to `starts` (so a test counts the starts), records each
signal it gets in `signals`, and then behaves as its mode says.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._helpers.procs import kill_tree, popen, stop
from tests._helpers.wait import wait_until
from tests.e2e.test_cli import ok, vk
from vaultkey.client import Client

CHILD = """
import base64, json, os, signal, sys, time
from pathlib import Path

out, mode = Path(sys.argv[1]), sys.argv[2]  # mode: serve, stubborn, kill9 or exitN

def note(name, text):
    with open(out / name, "a") as f:
        f.write(text + "\\n")

def on_signal(signum, _frame):
    note("signals", f"{os.getpid()} {signal.Signals(signum).name}")
    if mode == "serve" and signum == signal.SIGTERM:
        sys.exit(3)

for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(sig, on_signal)
env = {base64.b64encode(k).decode(): base64.b64encode(v).decode()
       for k, v in os.environb.items()}
(out / ".env").write_text(json.dumps(env))
(out / ".env").rename(out / f"env-{os.getpid()}.json")
note("starts", str(os.getpid()))
if mode.startswith("exit"):
    sys.exit(int(mode[4:]))
if mode == "kill9":
    os.kill(os.getpid(), signal.SIGKILL)
while True:  # serve: exits 3 on SIGTERM; stubborn: only SIGKILL ends it
    time.sleep(0.05)
"""

SECRET = b"DISTINCTIVE-s3cret-\xff\xfe-value"
SECRET_TEXT = "DISTINCTIVE"


def sdk(proxy: Any) -> Client:
    return Client(proxy.addr, proxy.tokens["alpha"], key=proxy.key_path("alpha"),
                  cacert=str(proxy.ca_path), trust=proxy.trust_dir())


@dataclass
class Run:
    """What CHILD left in *out*, and the `vaultkey exec` (*proc*) that ran it in the
    background, its stdout and stderr in files (None: run in the foreground)."""

    out: Path
    proc: subprocess.Popen[bytes] | None = None

    def starts(self) -> list[int]:
        path = self.out / "starts"
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def env(self, pid: int) -> dict[bytes, bytes]:
        doc = json.loads((self.out / f"env-{pid}.json").read_text())
        return {base64.b64decode(k): base64.b64decode(v) for k, v in doc.items()}

    def signals(self) -> list[str]:
        path = self.out / "signals"
        return path.read_text().splitlines() if path.exists() else []

    def stderr(self) -> str:
        return (self.out / "vk.err").read_text(errors="replace")

    def output(self) -> bytes:
        return (self.out / "vk.out").read_bytes() + (self.out / "vk.err").read_bytes()

    def wait_for_starts(self, n: int) -> list[int]:
        assert wait_until(lambda: len(self.starts()) >= n, timeout=30), self.stderr()
        return self.starts()

    def settled(self, n: int) -> None:
        """Wait until vaultkey reported *n* batches that left the environment unchanged:
        every earlier change was handled by then."""
        assert wait_until(lambda: self.stderr().count("not restarting") >= n, timeout=30), (
            self.stderr())


def child_args(out: Path, mode: str) -> list[str]:
    script = out / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script), str(out), mode]


def run_exec(proxy: Any, out: Path, *args: str, mode: str = "exit0",
             **env: str) -> subprocess.CompletedProcess[bytes]:
    return vk(proxy, "alpha", "exec", *args, "--", *child_args(out, mode), **env)


@pytest.fixture
def running(proxy: Any, tmp_path: Path) -> Iterator[Any]:
    """Start `vaultkey exec ARGS -- CHILD MODE` in the background; killed at the end."""
    started: list[Run] = []

    def start(*args: str, mode: str = "serve") -> Run:
        with open(tmp_path / "vk.out", "wb") as out, open(tmp_path / "vk.err", "wb") as err:
            proc = popen([sys.executable, "-m", "vaultkey", "exec", *args, "--",
                          *child_args(tmp_path, mode)], env=proxy.env("alpha"),
                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        started.append(Run(tmp_path, proc))
        return started[-1]

    yield start
    for run in started:
        assert run.proc is not None
        kill_tree(run.proc)


def no_vaultkey_variables(env: dict[bytes, bytes]) -> bool:
    return not [k for k in env if k.startswith(b"VAULTKEY_")]


def test_the_command_gets_the_values_as_bytes_and_never_the_token(proxy, tmp_path):
    with sdk(proxy) as c:
        c.set("/alpha/exec/t1/db/password", SECRET)
        c.set("/alpha/exec/t1/api-key", b"key")
        c.set("/alpha/exec/t1/2fa", b"two")
        c.set("/alpha/exec/t2/pgpass", b"pg")
    r = run_exec(proxy, tmp_path, "--prefix", "/alpha/exec/t1/", "--prefix", "/alpha/exec/t2",
                 "--map", "/alpha/exec/t2/pgpass=PGPASSWORD", "--env-prefix", "APP_",
                 KEEP_ME="inherited", APP_API_KEY="overridden")
    ok(r)
    (pid,) = Run(tmp_path).starts()
    env = Run(tmp_path).env(pid)
    assert env[b"APP_DB_PASSWORD"] == SECRET  # not UTF-8, byte-exact
    assert env[b"APP_API_KEY"] == b"key"  # the value wins over the inherited variable
    assert env[b"APP_2FA"] == b"two"
    assert env[b"PGPASSWORD"] == b"pg" and b"APP_PGPASS" not in env
    assert env[b"KEEP_ME"] == b"inherited" and b"PATH" in env
    assert no_vaultkey_variables(env)
    assert SECRET_TEXT.encode() not in r.stdout + r.stderr


def test_pristine_gives_the_values_and_nothing_else(proxy, tmp_path):
    with sdk(proxy) as c:
        c.set("/alpha/exec/p1/a", b"1")
        c.set("/alpha/exec/p1/b-c", b"2")
    ok(run_exec(proxy, tmp_path, "--pristine", "--prefix", "/alpha/exec/p1/", KEEP_ME="x"))
    run = Run(tmp_path)
    env = run.env(run.starts()[0])
    env.pop(b"LC_CTYPE", None)  # the child Python sets it itself in a C locale (PEP 538)
    assert env == {b"A": b"1", b"B_C": b"2"}


def test_dry_run_prints_names_and_paths_never_values_and_runs_nothing(proxy, tmp_path):
    with sdk(proxy) as c:
        c.set("/alpha/exec/d1/db/url", SECRET)
        c.set("/alpha/exec/d1/x", SECRET)
    r = run_exec(proxy, tmp_path, "--dry-run", "--prefix", "/alpha/exec/d1/", "--map",
                 "/alpha/exec/d1/x=OTHER")
    assert ok(r).decode().splitlines() == ["DB_URL\t/alpha/exec/d1/db/url",
                                           "OTHER\t/alpha/exec/d1/x"]
    assert SECRET_TEXT.encode() not in r.stdout + r.stderr
    assert not (tmp_path / "starts").exists()


def test_exit_codes_pass_through(proxy, tmp_path):
    with sdk(proxy) as c:
        c.set("/alpha/exec/e1/x", b"1")
    assert run_exec(proxy, tmp_path, "--prefix", "/alpha/exec/e1/", mode="exit7").returncode == 7
    assert run_exec(proxy, tmp_path, "--prefix", "/alpha/exec/e1/", mode="exit0").returncode == 0
    # killed by signal 9: 128 + 9, as a shell reports it
    assert run_exec(proxy, tmp_path, "--prefix", "/alpha/exec/e1/", mode="kill9").returncode == 137


def test_errors_name_paths_never_values(proxy, tmp_path):
    with sdk(proxy) as c:
        c.set("/alpha/exec/n1/bin", b"DISTINCTIVE\0after-nul")
        c.set("/alpha/exec/n2/db-url", SECRET)
        c.set("/alpha/exec/n2/db/url", SECRET)
    r = run_exec(proxy, tmp_path, "--prefix", "/alpha/exec/n1/")
    assert r.returncode == 64
    assert b"/alpha/exec/n1/bin: the value holds a NUL byte" in r.stderr
    r2 = run_exec(proxy, tmp_path, "--prefix", "/alpha/exec/n2/")
    assert r2.returncode == 64
    assert b"/alpha/exec/n2/db-url and /alpha/exec/n2/db/url would both be $DB_URL" in r2.stderr
    r3 = run_exec(proxy, tmp_path, "--prefix", "/alpha/exec/n2/", "--map",
                  "/alpha/exec/n2/nope=X")
    assert r3.returncode == 64 and b"--map /alpha/exec/n2/nope: no such key" in r3.stderr
    for result in (r, r2, r3):
        assert SECRET_TEXT.encode() not in result.stdout + result.stderr
        assert b"after-nul" not in result.stdout + result.stderr
        assert b"Traceback" not in result.stderr
    assert not (tmp_path / "starts").exists()  # nothing ran


def test_usage_errors(proxy, tmp_path):
    r = vk(proxy, "alpha", "exec", "--prefix", "/alpha/exec/u/", "--", "no-such-command-x")
    assert r.returncode == 64 and b"no such command: no-such-command-x" in r.stderr
    r = vk(proxy, "alpha", "exec", "--prefix", "/alpha/exec/u/")
    assert r.returncode == 64 and b"give the command to run" in r.stderr
    r = vk(proxy, "alpha", "exec", "--prefix", "/alpha/exec/u/", "--grace", "soon", "--", "true")
    assert r.returncode == 64 and b"not a duration" in r.stderr


def test_signals_reach_the_command_and_its_exit_status_is_vaultkeys(proxy, running):
    with sdk(proxy) as c:
        c.set("/alpha/exec/s1/secret", SECRET)
    run = running("--prefix", "/alpha/exec/s1/")
    (pid,) = run.wait_for_starts(1)
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        run.proc.send_signal(sig)
        assert wait_until(lambda s=sig: f"{pid} {s.name}" in run.signals()), run.stderr()
    # The value is in the command's environment, not in vaultkey's argv or environment.
    for what in ("cmdline", "environ"):
        assert SECRET_TEXT.encode() not in Path(f"/proc/{run.proc.pid}/{what}").read_bytes()
    assert run.proc.poll() is None  # forwarded, and neither process stopped
    stop(run.proc, signal.SIGTERM)
    assert run.signals()[-1] == f"{pid} SIGTERM"
    assert run.proc.returncode == 3, run.stderr()
    assert SECRET_TEXT.encode() not in run.output()


def test_restart_on_change_restarts_once_per_change_and_never_for_a_rewrite(proxy, running):
    with sdk(proxy) as c:
        c.set("/alpha/exec/r1/db/password", b"one")
        c.set("/alpha/exec/r1/port", b"80")
        run = running("--prefix", "/alpha/exec/r1/", "--restart-on-change", "--debounce",
                      "100ms")
        (first,) = run.wait_for_starts(1)
        c.set("/alpha/exec/r1/port", b"80")  # the same value again: a new revision, same env
        run.settled(1)
        assert run.starts() == [first]
        c.set("/alpha/exec/r1/db/password", SECRET)
        _, second = run.wait_for_starts(2)
        c.set("/alpha/exec/r1/db/password", SECRET)  # again: unchanged
        run.settled(2)
    assert run.starts() == [first, second]  # exactly one restart
    assert run.signals() == [f"{first} SIGTERM"]  # the default --restart-signal
    assert run.env(first)[b"DB_PASSWORD"] == b"one"
    assert run.env(second)[b"DB_PASSWORD"] == SECRET
    assert no_vaultkey_variables(run.env(second))
    stop(run.proc, signal.SIGTERM)
    assert run.proc.returncode == 3
    assert SECRET_TEXT.encode() not in run.output()


def test_a_burst_of_writes_restarts_once_with_the_last_values(proxy, running):
    with sdk(proxy) as c:
        c.set("/alpha/exec/b1/n", b"0")
        run = running("--prefix", "/alpha/exec/b1/", "--restart-on-change", "--debounce",
                      "1500ms")
        (first,) = run.wait_for_starts(1)
        for i in range(1, 8):
            written = time.monotonic()
            c.set("/alpha/exec/b1/n", str(i).encode())
            c.set(f"/alpha/exec/b1/k{i}", b"v")
            assert time.monotonic() - written < 1.0, "too slow to write a burst"
        _, second = run.wait_for_starts(2)
        c.set("/alpha/exec/b1/n", b"7")
        run.settled(1)
    assert run.starts() == [first, second]
    env = run.env(second)
    assert env[b"N"] == b"7" and all(env[f"K{i}".encode()] == b"v" for i in range(1, 8))
    assert run.stderr().count(": restarting ") == 1


def test_a_command_that_ignores_the_restart_signal_is_killed_after_the_grace(proxy, running):
    with sdk(proxy) as c:
        c.set("/alpha/exec/g1/x", b"1")
        run = running("--prefix", "/alpha/exec/g1/", "--restart-on-change", "--debounce", "0s",
                      "--grace", "1.5s", "--restart-signal", "USR1", mode="stubborn")
        (first,) = run.wait_for_starts(1)
        c.set("/alpha/exec/g1/x", b"2")
        assert wait_until(lambda: run.signals() == [f"{first} SIGUSR1"], timeout=30)
        asked = time.monotonic()
        _, second = run.wait_for_starts(2)
    assert time.monotonic() - asked >= 1.2  # the grace period, then SIGKILL
    assert "still running 1.5 s after SIGUSR1: killing it" in run.stderr()
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # gone, and reaped, before the new one started
    assert run.env(second)[b"X"] == b"2"


def test_a_command_that_exits_on_its_own_ends_vaultkey_with_its_status(proxy, running):
    with sdk(proxy) as c:
        c.set("/alpha/exec/x1/x", b"1")
    run = running("--prefix", "/alpha/exec/x1/", "--restart-on-change", mode="exit5")
    assert run.proc.wait(timeout=30) == 5
    assert len(run.starts()) == 1


def test_after_sigint_the_command_is_never_restarted(proxy, running):
    with sdk(proxy) as c:
        c.set("/alpha/exec/i1/x", b"1")
        run = running("--prefix", "/alpha/exec/i1/", "--restart-on-change", "--debounce", "0s")
        (pid,) = run.wait_for_starts(1)
        run.proc.send_signal(signal.SIGINT)
        assert wait_until(lambda: run.signals() == [f"{pid} SIGINT"]), run.stderr()
        c.set("/alpha/exec/i1/x", b"2")  # the command ignored SIGINT: it keeps running
        run.settled(1)
    assert "not restarting" in run.stderr() and "vaultkey is stopping (SIGINT)" in run.stderr()
    assert run.starts() == [pid] and run.proc.poll() is None
    stop(run.proc, signal.SIGTERM)
    assert run.proc.returncode == 3


def test_a_change_that_makes_an_invalid_environment_is_reported_not_applied(proxy, running):
    with sdk(proxy) as c:
        c.set("/alpha/exec/v1/a-b", b"1")
        run = running("--prefix", "/alpha/exec/v1/", "--restart-on-change", "--debounce", "0s")
        (first,) = run.wait_for_starts(1)
        c.set("/alpha/exec/v1/a/b", SECRET)  # a second $A_B
        run.settled(1)
        c.delete("/alpha/exec/v1/a/b")  # back to the environment the command has
        run.settled(2)
        c.set("/alpha/exec/v1/nul", b"DISTINCTIVE\0tail")
        run.settled(3)
        c.set("/alpha/exec/v1/nul", b"fine")
        _, second = run.wait_for_starts(2)
    err = run.stderr()
    assert "/alpha/exec/v1/a-b and /alpha/exec/v1/a/b would both be $A_B" in err
    assert "/alpha/exec/v1/nul: the value holds a NUL byte" in err
    assert run.starts() == [first, second] and run.env(second)[b"NUL"] == b"fine"
    assert SECRET_TEXT.encode() not in run.output() and b"tail" not in run.output()
