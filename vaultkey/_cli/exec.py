"""``vaultkey exec``: run a command with the values under prefixes as its environment.

The values go from the proxy into the command's environment and nowhere else: never
into vaultkey's argv, output, logs or error messages (errors name paths, never values).
The names follow :mod:`vaultkey.client.envmap`.

vaultkey stays the command's parent instead of exec()ing it, because it has work left:
it forwards signals, passes the exit status on and, with ``--restart-on-change``,
replaces the command when a value it uses changes. The command is started without a
shell and without ``preexec_fn`` (see tests/_helpers/procs.py: a forked child of a
process with threads must not run Python before exec).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from vaultkey._cli.base import ExitWith, echo_err
from vaultkey._cli.common import GlobalOptions, cli, visible, write_out
from vaultkey._cli.watch import batches as debounced
from vaultkey.client.envmap import (
    check_env_prefix,
    check_prefixes,
    child_env,
    fingerprint,
    parse_maps,
    plan,
)
from vaultkey.durations import duration
from vaultkey.errors import UsageError, VaultkeyError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from vaultkey.client import Client
    from vaultkey.client._watch import WatchEvent
    from vaultkey.client.envmap import Export
    from vaultkey.client.settings import ClientSettings

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGQUIT)
# After one of these, vaultkey is on its way out: it never starts the command again.
STOPPING = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGQUIT})
Message = tuple[str, Any]  # ("exit", Popen) | ("batch", [WatchEvent]) | ("error", exc)


def _signal(_ctx: click.Context, param: click.Parameter, value: str) -> signal.Signals:
    name = value.strip().upper().removeprefix("SIG")
    try:
        return signal.Signals(int(name)) if name.isdigit() else signal.Signals["SIG" + name]
    except (KeyError, ValueError):
        raise click.BadParameter(f"{value!r} is not a signal (e.g. TERM, HUP, 15)",
                                 param=param) from None


def _status(returncode: int) -> int:
    """A shell's view of an exit status: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _load(client: Client, prefix: str, after: int = 0) -> tuple[dict[str, bytes], int]:
    """The values under *prefix* and the etcd revision they were read at (one snapshot).

    Why the revision: the watch starts right after it, so no change between the load and
    the watch is missed. (*after*: a resync's revision; the client's next reads ask the
    proxy for at least the highest revision it has seen, which is newer.)
    """
    del after  # the client's own seen revision already covers it
    snap = client.snapshot([prefix])
    return dict(snap.values), snap.revision


class _Values:
    """The values under each prefix, kept current from the watch's batches."""

    def __init__(self, client: Client, prefixes: list[str], maps: dict[str, str],
                 env_prefix: str, inherited: dict[bytes, bytes] | None) -> None:
        self.client, self.maps, self.env_prefix = client, maps, env_prefix
        self.inherited = inherited
        self.values: dict[str, dict[str, bytes]] = {}
        self.revisions: dict[str, int] = {}  # what each prefix was (re)loaded at
        for prefix in prefixes:
            self.reload(prefix)

    def reload(self, prefix: str, after: int = 0) -> None:
        self.values[prefix], self.revisions[prefix] = _load(self.client, prefix, after)

    def exports(self) -> list[Export]:
        return plan(self.values, self.maps, self.env_prefix)

    def env(self) -> dict[bytes, bytes]:
        return child_env(self.exports(), self.inherited)

    def apply(self, batch: list[WatchEvent]) -> None:
        """Apply *batch* in order; a resync (changes were lost) reloads its prefix."""
        for event in batch:
            prefix = next(p for p in self.values if event.path.startswith(p))
            if event.type == "resync":
                self.reload(prefix, event.revision)
            elif event.revision <= self.revisions[prefix]:
                continue  # already in the last (re)load
            elif event.type == "delete":
                self.values[prefix].pop(event.path, None)
            elif event.error is not None:  # keep the last good value
                echo_err(f"vaultkey: warning: {visible(event.error.message)}; keeping the "
                         "value it had")
            elif event.value is not None:
                self.values[prefix][event.path] = event.value


class _Child:
    """The command's running process, replaced in place by a restart.

    ``current`` is assigned in one step (a signal handler may run between any two
    bytecodes of the main thread and must see a process and its "exited" event together).
    """

    def __init__(self, argv: list[str], executable: str,
                 inbox: queue.SimpleQueue[Message]) -> None:
        self.argv, self.executable, self.inbox = argv, executable, inbox
        self.current: tuple[subprocess.Popen[bytes], threading.Event] | None = None
        self.stopping: int | None = None

    def start(self, env: dict[bytes, bytes]) -> None:
        try:
            proc = subprocess.Popen(self.argv, executable=self.executable, env=env)
        except OSError as exc:
            raise UsageError(f"cannot run {self.argv[0]}: {exc.strerror}") from None
        exited = threading.Event()
        self.current = (proc, exited)

        def reap() -> None:  # the one waiter: the main thread waits on *exited*
            proc.wait()
            exited.set()
            self.inbox.put(("exit", proc))

        threading.Thread(target=reap, daemon=True, name="vaultkey-exec-wait").start()
        if self.stopping is not None:  # came while there was no process to forward it to
            self.forward(self.stopping, None)

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        """The handler of each forwarded signal: pass it to the running process."""
        if signum in STOPPING and self.stopping is None:
            self.stopping = signum
        current = self.current
        if current is not None and not current[1].is_set():
            with contextlib.suppress(ProcessLookupError):
                current[0].send_signal(signum)

    def replace(self, env: dict[bytes, bytes], sig: signal.Signals, grace: float,
                revision: int) -> None:
        """Stop the process (*sig*, then SIGKILL after *grace* seconds), wait until it has
        exited, then start it again with *env*; unless it exited on its own, or vaultkey
        was told to stop: then the main loop ends with its status."""
        if self.current is None or self.current[1].is_set() or self.stopping is not None:
            return
        proc, exited = self.current
        echo_err(f"vaultkey: values changed (revision {revision}): restarting "
                 f"{visible(self.argv[0])} (sending {sig.name} to pid {proc.pid})")
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        if not exited.wait(grace):
            echo_err(f"vaultkey: pid {proc.pid} is still running {grace:g} s after "
                     f"{sig.name}: killing it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            exited.wait()
        if self.stopping is None:
            self.start(env)

    def abandon(self, grace: float) -> None:
        """vaultkey fails: stop the process (SIGTERM, SIGKILL after *grace* seconds)."""
        if self.current is not None and not self.current[1].is_set():
            proc, exited = self.current
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
                if not exited.wait(grace):
                    proc.kill()
                    exited.wait()

    def supervise(self, on_batch: Callable[[list[WatchEvent]], None]) -> int:
        """Wait for the process to exit (handling batches of changes meanwhile); its status."""
        while True:
            kind, item = self.inbox.get()
            if kind == "exit" and self.current is not None and item is self.current[0]:
                return _status(item.returncode)
            if kind == "batch":
                on_batch(item)
            elif kind == "error":
                why = item.diagnostics() if isinstance(item, VaultkeyError) else (
                    f"{type(item).__name__}: {item}")
                echo_err(f"vaultkey: warning: the watch ended ({visible(why)}); "
                         f"{visible(self.argv[0])} keeps the values it has")


def _follow(settings: ClientSettings, since: dict[str, int], debounce: float,
            inbox: queue.SimpleQueue[Message]) -> None:
    """Watch each prefix from the revision it was loaded at; each debounced batch of
    changes (or the error that ended the watch) goes to *inbox*.

    One client per prefix: each watch decrypts in its own thread, and a client's
    operations (its rollback marks) are not shared between threads.
    """
    from vaultkey.client import Client

    events: queue.SimpleQueue[WatchEvent | Exception] = queue.SimpleQueue()

    def pump(prefix: str, revision: int) -> None:
        try:
            with Client(settings=settings) as client:
                for event in client.watch(prefix, revision):
                    events.put(event)
        except Exception as exc:
            events.put(exc)

    def merged() -> Iterator[WatchEvent]:
        while True:
            item = events.get()
            if isinstance(item, Exception):
                raise item
            yield item

    def batches() -> None:
        try:
            for batch in debounced(merged(), debounce):
                inbox.put(("batch", batch))
        except Exception as exc:
            inbox.put(("error", exc))

    for prefix, revision in since.items():
        threading.Thread(target=pump, args=(prefix, revision), daemon=True,
                         name=f"vaultkey-exec-watch {prefix}").start()
    threading.Thread(target=batches, daemon=True, name="vaultkey-exec-batches").start()


def _dry_run(exports: list[Export]) -> None:
    lines = "".join(f"{visible(e.name)}\t{visible(e.path)}\n" for e in exports)
    write_out(lines.encode("utf-8", "surrogateescape"))


@cli.command("exec", context_settings={"allow_interspersed_args": False}, epilog="""\b
Examples:
  vaultkey exec --prefix /payments/ -- ./server --port 8080
  vaultkey exec --prefix /payments/ --map /payments/db/password=PGPASSWORD -- psql
  vaultkey exec --prefix /app/config/ --env-prefix APP_ --restart-on-change -- ./app
  vaultkey exec --prefix /app/config/ --dry-run        # names and paths, never values
\b
Names: the key's path after its --prefix, each character other than A-Z, a-z,
0-9 and _ (so each /) replaced by _, upper-cased, --env-prefix put in front, and
a _ in front of a name that starts with a digit (no shell could name it):
  /payments/db/password under /payments/           -> DB_PASSWORD
  /app/2fa-code under /app/ (no --env-prefix)      -> _2FA_CODE
--map PATH=NAME gives that key NAME instead; all other keys keep their names.
A --map PATH that was not loaded, two keys with one name, a name that is empty
or holds = or NUL, and a value holding a NUL byte are errors, never overwrites.
\b
Environment: the inherited one without any VAULTKEY_* variable (the command
never gets vaultkey's token), then the values, which win over inherited
variables of the same name. With --pristine: the values and nothing else.
Values are passed as bytes: they need not be UTF-8.
\b
Signals: SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2 and SIGQUIT are forwarded
to the command (in a terminal, Ctrl-C reaches it directly too); one ignored
when vaultkey starts (nohup) stays ignored, by the command too. After SIGINT,
SIGTERM or SIGQUIT the command is never restarted: vaultkey waits for it.
\b
--restart-on-change: the prefixes are watched from the revision they were
loaded at. After each batch of changes (--debounce) that changes the
command's environment (an identical re-write does not), vaultkey sends
--restart-signal, sends SIGKILL if it still runs after --grace, waits for it
to exit and starts it again with the new values. A change that makes an
invalid environment (a collision, a NUL byte) is reported and not applied; a
value that does not decrypt keeps its last value.
\b
Exit status: the command's; 128+N if a signal N ended it; vaultkey's own
codes (see vaultkey --help) if it could not start it. When the command exits,
vaultkey exits (it is not restarted).""")
@click.option("--prefix", "prefixes", multiple=True, required=True, metavar="PREFIX",
              help="Export every value under PREFIX (repeatable; one request each).")
@click.option("--map", "maps", multiple=True, metavar="PATH=NAME",
              help="Name the key PATH NAME instead of its automatic name (repeatable).")
@click.option("--env-prefix", default="", metavar="TEXT",
              help="Put TEXT (A-Z, a-z, 0-9, _) in front of every automatic name.")
@click.option("--pristine", is_flag=True,
              help="Give the command only the values, not vaultkey's environment.")
@click.option("--restart-on-change", is_flag=True,
              help="Watch the prefixes; restart the command when its environment changes.")
@click.option("--restart-signal", default="TERM", show_default=True, callback=_signal,
              metavar="SIGNAL", help="The signal that asks the command to stop for a restart.")
@click.option("--grace", default="10s", show_default=True,
              metavar="DURATION", help="How long a restart waits before SIGKILL.")
@click.option("--debounce", default="0.2s", show_default=True,
              metavar="DURATION", help="A batch of changes ends after this long without one.")
@click.option("--dry-run", is_flag=True,
              help="Print each name and the path it comes from (never a value); run nothing.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def exec_cmd(opts: GlobalOptions, prefixes: tuple[str, ...], maps: tuple[str, ...],
             env_prefix: str, pristine: bool, restart_on_change: bool,
             restart_signal: signal.Signals, grace: str, debounce: str, dry_run: bool,
             command: tuple[str, ...]) -> None:
    """Run COMMAND (no shell) with the values under each PREFIX in its environment.

    Put -- before COMMAND, so that its options are not taken for vaultkey's.
    """
    from vaultkey.client import Client

    checked, mapped = check_prefixes(prefixes), parse_maps(maps)
    grace_s, debounce_s = duration(grace, "--grace"), duration(debounce, "--debounce")
    env_prefix = check_env_prefix(env_prefix)
    argv = list(command)
    if not argv and not dry_run:
        raise click.UsageError("give the command to run, after --")
    executable = shutil.which(argv[0]) if argv else None
    if argv and executable is None:
        raise click.UsageError(f"no such command: {argv[0]}")
    settings = opts.client_settings()
    with Client(settings=settings) as client:
        values = _Values(client, checked, mapped, env_prefix,
                         None if pristine else dict(os.environb))
        if dry_run:
            _dry_run(values.exports())
            return
        assert executable is not None
        raise ExitWith(_run(values, _Child(argv, executable, queue.SimpleQueue()),
                            restart_signal, grace_s, debounce_s if restart_on_change else None))


def _run(values: _Values, child: _Child, restart_signal: signal.Signals, grace: float,
         debounce: float | None) -> int:
    """Start the command and supervise it (restarting it if *debounce* is not None);
    its exit status."""
    env = values.env()
    for sig in FORWARDED:
        if signal.getsignal(sig) != signal.SIG_IGN:  # nohup: stays ignored, by the command too
            signal.signal(sig, child.forward)
    child.start(env)
    running = fingerprint(env)
    del env  # the child has it; vaultkey keeps the values in `values` alone

    def on_batch(batch: list[WatchEvent]) -> None:
        nonlocal running
        command, revision = visible(child.argv[0]), max(event.revision for event in batch)
        if child.stopping is not None:
            echo_err(f"vaultkey: not restarting {command}: vaultkey is stopping "
                     f"({signal.Signals(child.stopping).name})")
            return
        try:
            values.apply(batch)
            new_env = values.env()
        except VaultkeyError as exc:  # messages name paths, never values
            echo_err(f"vaultkey: warning: not restarting {command}: "
                     f"{visible(exc.diagnostics())}")
            return
        new = fingerprint(new_env)
        if new == running:  # a value written again as it was, or changed and changed back
            echo_err(f"vaultkey: the changes up to revision {revision} leave the environment "
                     f"of {command} as it is: not restarting")
            return
        running = new
        child.replace(new_env, restart_signal, grace, revision)

    try:
        if debounce is not None:
            _follow(values.client.settings, dict(values.revisions), debounce, child.inbox)
        return child.supervise(on_batch)
    except BaseException:
        child.abandon(grace)  # never leave the command running without its supervisor
        raise
