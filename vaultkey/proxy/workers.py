"""``vaultkey serve --workers N``: N proxy processes sharing one listening address.

Python runs one request at a time per process, so one process uses one core.
With ``--workers N`` the command becomes a small supervisor: it starts N
ordinary ``vaultkey serve`` processes that each listen on the same address with
``SO_REUSEPORT`` (the kernel spreads new connections across them), each with its
own etcd connection, watch hub and read cache, exactly like N replicas on one
host. The supervisor:

* passes SIGHUP (reload policies, reopen the audit log) and SIGUSR1 on to every
  worker, and SIGTERM/SIGINT too, then waits for them to finish;
* starts a new worker when one exits unexpectedly (at most one per second);
* imports nothing that talks to etcd and never forks after gRPC starts (its
  workers are new processes, not forks: see tests/_helpers/procs.py).

A worker whose supervisor has gone (killed with SIGKILL) stops by itself within
a second, so no orphan keeps serving.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)
SUPERVISOR_ENV = "VAULTKEY_SUPERVISOR_PID"
RESTART_DELAY = 1.0


def worker_argv(argv: list[str]) -> list[str]:
    """The command line of one worker: the same ``serve`` arguments, one process each,
    listening with SO_REUSEPORT (later options win over earlier ones in click)."""
    return [sys.executable, "-m", "vaultkey", *argv, "--workers", "1", "--reuse-port"]


def supervise(argv: list[str], workers: int) -> int:
    """Run *workers* workers until SIGTERM/SIGINT; returns the exit status."""
    env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
    cmd = worker_argv(argv)

    def spawn() -> subprocess.Popen[bytes]:
        # Own session: a terminal's Ctrl-C reaches the supervisor only, which passes it
        # on once (a second SIGINT would make uvicorn skip its graceful shutdown).
        return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)

    procs = [spawn() for _ in range(workers)]
    stopping = threading.Event()

    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping.set()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, forward)
    log.info("vaultkey serve: %d workers (pids %s)", workers,
             ", ".join(str(p.pid) for p in procs))
    while not stopping.is_set():
        for i, proc in enumerate(procs):
            if proc.poll() is not None and not stopping.is_set():
                log.error("worker pid %d exited with status %s; starting another", proc.pid,
                          proc.returncode)
                time.sleep(RESTART_DELAY)
                if not stopping.is_set():
                    procs[i] = spawn()
        stopping.wait(0.2)
    return reap(procs, 30)


def reap(procs: list[subprocess.Popen[bytes]], timeout: float) -> int:
    """Wait for each (already signalled) process, SIGKILL one still running after *timeout*
    seconds; the first failing exit status, else 0."""
    status = 0
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        status = status or (proc.returncode if proc.returncode > 0 else 0)
    return status


def exit_with_supervisor() -> None:
    """In a worker: stop (SIGTERM to itself) once the supervisor is gone."""
    parent = os.environ.get(SUPERVISOR_ENV)
    if not parent or not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(0.5)
        log.error("the supervisor (pid %s) is gone; this worker stops", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="vaultkey-supervisor-watch", daemon=True).start()


__all__ = ["exit_with_supervisor", "reap", "supervise", "worker_argv"]
