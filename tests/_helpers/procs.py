"""Child processes in tests: started so they obey SIGINT, always stopped, ports retried.

- :func:`popen` starts a child with SIGINT at its default disposition. A shell
  that runs pytest in the background (``nohup pytest &``) sets SIGINT to
  "ignored", children inherit that, and a child Python then never raises
  KeyboardInterrupt: a test that interrupts it would hang. So when SIGINT is
  ignored here, a handler is installed first (exec resets handled signals to
  their default). Never with ``preexec_fn``: that forces a real fork(), whose
  handlers in grpcio >= 1.80 restart gRPC's poller in the child, where
  ``close_fds`` then closes its epoll fd and the child aborts before exec (seen:
  28 of 200 children while this process had a busy etcd channel; grpc#43055).
- :func:`stop` signals a child and waits; if it does not exit in time, it and
  every process it started are killed before the test fails, so a timeout never
  leaves a ``vaultkey dev`` or an etcd running.
- :func:`start_on_free_port` and :func:`start_etcd` pick a free port, and pick
  again if another process took it between the pick and the child's bind;
  start_etcd also shortens the election of its single member (fast restarts).

Example::

    proc = popen([sys.executable, "-m", "vaultkey", "dev"], stdout=subprocess.PIPE)
    try:
        ...
    finally:
        stop(proc, signal.SIGINT)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests._helpers.wait import wait_until
from vaultkey._dev.etcdproc import EtcdProcess, free_port
from vaultkey.errors import Unavailable, UsageError

PORT_TAKEN = "address already in use"


def popen(args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen, with SIGINT at its default in the child (see the module doc)."""
    if (signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            and threading.current_thread() is threading.main_thread()):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return subprocess.Popen(args, **kwargs)


def descendants(pid: int) -> list[int]:
    """Every live process started (directly or not) by *pid*, children first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def kill_tree(proc: subprocess.Popen[Any]) -> tuple[Any, Any]:
    """SIGKILL *proc* and everything it started (etcd runs in its own session), then reap.

    Returns what was left in its pipes, like communicate() ((None, None) if nothing was)."""
    if proc.poll() is None:
        for pid in [*descendants(proc.pid), proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    left: tuple[Any, Any] = (None, None)
    with contextlib.suppress(ValueError, OSError):  # ValueError: its pipes are closed already
        left = proc.communicate()
    proc.wait()
    return left


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
         timeout: float = 15.0) -> tuple[Any, Any]:
    """Send *sig*, wait for the exit and return (stdout, stderr) like communicate().

    If the child is still running after *timeout* seconds, kill it and all it
    started, then fail: the caller asked for a clean stop and did not get one.
    """
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise AssertionError(f"pid {proc.pid} ({' '.join(map(str, proc.args))}) did not exit "
                             f"within {timeout}s of {signal.Signals(sig).name}; killed it and "
                             "its children") from None


def processes_mentioning(text: str) -> list[str]:
    """'pid: command line' of every process whose command line contains *text*."""
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


def start_on_free_port(spawn: Callable[[int], subprocess.Popen[Any]],
                       ready: Callable[[int], object], *, log: Path, timeout: float = 30.0,
                       attempts: int = 3) -> tuple[subprocess.Popen[Any], int]:
    """Start a server with ``spawn(port)`` and wait until ``ready(port)``; return (proc, port).

    *spawn* must send the child's output to *log*. Ports come from free_port(),
    which releases the port before the child binds it; if another process takes
    it in between, the child exits with "address already in use" and a new port
    is tried. A child that exits for any other reason, or is not ready within
    *timeout*, fails with its log.
    """
    for attempt in range(1, attempts + 1):
        port = free_port()
        proc = spawn(port)
        try:
            up = wait_until(lambda: proc.poll() is not None or ready(port),  # noqa: B023
                            timeout, ignore=(httpx.TransportError, OSError))
        except BaseException:
            kill_tree(proc)
            raise
        if up and proc.poll() is None:
            return proc, port
        exited = proc.poll()
        kill_tree(proc)
        text = log.read_text(errors="replace")
        if exited is not None and PORT_TAKEN in text.lower() and attempt < attempts:
            continue
        state = f"exited with status {exited}" if exited is not None else (
            f"was not ready within {timeout}s")
        raise RuntimeError(f"{' '.join(map(str, proc.args))} {state}:\n{text[-4000:]}")
    raise AssertionError("unreachable")


# A single member elects itself; etcd's default 1 s election timeout only delays it. With
# these, a restart on existing data is ready in about 0.2 s instead of 1.5 s.
FAST_ELECTION = ["--heartbeat-interval", "10", "--election-timeout", "100"]


def start_etcd(data_dir: Path, attempts: int = 3, *, extra_args: list[str] | None = None,
               **kwargs: Any) -> EtcdProcess:
    """EtcdProcess.start (fast election), with new ports if another process took the chosen ones."""
    for attempt in range(1, attempts + 1):
        try:
            return EtcdProcess.start(data_dir, extra_args=[*FAST_ELECTION, *(extra_args or [])],
                                     **kwargs)
        except (UsageError, Unavailable) as exc:
            if attempt == attempts or PORT_TAKEN not in exc.diagnostics().lower():
                raise
            shutil.rmtree(Path(data_dir) / "etcd-data", ignore_errors=True)
    raise AssertionError("unreachable")
