"""``vaultkey watch / register``: follow changes as they happen; keep a value alive.

``watch`` is a long-running command, so it uses the SDK's httpx client (streaming)
rather than the CLI's http.client one; httpx is imported when it starts, never
when the CLI is loaded.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from vaultkey._cli.common import OUTPUT, GlobalOptions, cli, visible, write_out
from vaultkey._cli.kv import read_value
from vaultkey.errors import UsageError

if TYPE_CHECKING:
    from vaultkey.client import WatchEvent


def _exit_on_sigterm() -> None:
    """SIGTERM ends the command like Ctrl-C does, with 143 (128 + 15)."""
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise click.exceptions.Exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _event_json(event: WatchEvent, values: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": event.type, "path": event.path, "revision": event.revision}
    if event.type == "resync":
        doc["reason"] = event.reason
    if event.type == "put":
        doc.update(version=event.version, create_revision=event.create_revision,
                   lease=event.lease)
    if values and event.error is not None:
        doc["error"] = {"type": type(event.error).__name__, "message": event.error.message}
    elif values and event.value is not None:
        try:
            doc["value"] = event.value.decode("utf-8")
        except UnicodeDecodeError:
            doc["value"] = None
        doc["value_base64"] = base64.b64encode(event.value).decode("ascii")
    return doc


def _event_text(event: WatchEvent, values: bool) -> str:
    line = f"{event.type} {visible(event.path)} {event.revision}"
    if event.reason is not None:
        line += f" {visible(event.reason)}"
    if values and event.value is not None:
        line += " " + visible(event.value.decode("utf-8", "surrogateescape"))
    return line


def _show(events: Iterable[WatchEvent], values: bool, as_json: bool) -> None:
    for event in events:
        if values and event.error is not None and not as_json:
            click.echo(f"vaultkey: warning: {visible(event.error.message)}", err=True)
        text = (json.dumps(_event_json(event, values), sort_keys=True) if as_json
                else _event_text(event, values))
        write_out(text.encode("utf-8", "surrogateescape") + b"\n")


def batches(events: Iterable[WatchEvent], debounce: float) -> Iterator[list[WatchEvent]]:
    """The events in batches: a batch ends after *debounce* seconds without a new event
    (or 10 debounces after its first one, so that a steady stream still makes batches)."""
    inbox: queue.Queue[WatchEvent | BaseException] = queue.Queue()

    def pump() -> None:
        try:
            for event in events:
                inbox.put(event)
        except BaseException as exc:
            inbox.put(exc)

    threading.Thread(target=pump, daemon=True, name="vaultkey-watch").start()
    batch: list[WatchEvent] = []
    first = last = 0.0
    while True:
        wait = None if not batch else min(last + debounce, first + 10 * debounce)
        try:
            item = inbox.get(timeout=None if wait is None else max(0.0, wait - time.monotonic()))
        except queue.Empty:
            yield batch
            batch = []
            continue
        if isinstance(item, BaseException):
            raise item
        last = time.monotonic()
        first = first if batch else last
        batch.append(item)


def _run(argv: list[str], batch: list[WatchEvent]) -> None:
    changed = dict.fromkeys(event.path for event in batch)
    resync = any(event.type == "resync" for event in batch)
    env = {**os.environ, "VAULTKEY_CHANGED": "\n".join(changed),
           "VAULTKEY_REVISION": str(max(event.revision for event in batch)),
           "VAULTKEY_RESYNC": "1" if resync else "0"}
    try:
        status = subprocess.run(argv, env=env, check=False).returncode
    except OSError as exc:
        raise UsageError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if status != 0:
        click.echo(f"vaultkey: warning: {visible(argv[0])} exited with status {status}",
                   err=True)


def _command(text: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise click.UsageError(f"--exec: {exc}") from exc
    if not argv:
        raise click.UsageError("--exec needs a command")
    if shutil.which(argv[0]) is None:
        raise click.UsageError(f"--exec: no such command: {argv[0]}")
    return argv


@cli.command("watch", epilog="""\b
Examples:
  vaultkey watch /payments/                   # put /payments/db/password 42
  vaultkey watch --values -o json /payments/config/
  vaultkey watch --since 42 /payments/        # the changes after revision 42 first
  vaultkey watch --exec 'systemctl reload app' /payments/config/
\b
--exec runs the command (split like a shell would, but without one) once per batch
of changes, with VAULTKEY_CHANGED (the changed paths, one per line; the prefix for
a resync), VAULTKEY_REVISION (the batch's last revision) and VAULTKEY_RESYNC (1 if
changes may have been missed, so reload all) in its environment.""")
@click.argument("prefix")
@click.option("--values", is_flag=True, help="Decrypt and show each value (needs your key).")
@click.option("--since", type=click.IntRange(min=0), metavar="REV",
              help="Start with the changes after revision REV.")
@click.option("--exec", "exec_cmd", metavar="CMD",
              help="Run CMD once per batch of changes instead of printing them.")
@click.option("--debounce", type=click.FloatRange(min=0.0, max=60.0), default=0.2,
              show_default=True, metavar="SECONDS",
              help="With --exec: a batch ends after this long without a change.")
@OUTPUT
@click.pass_obj
def watch_cmd(opts: GlobalOptions, prefix: str, values: bool, since: int | None,
              exec_cmd: str | None, debounce: float, output: str) -> None:
    """Print each change under PREFIX as it happens: type, path, revision.

    It reconnects and resumes by itself. A `resync` line means that changes were
    missed (the proxy's history no longer reaches back): reload what you follow.
    Runs until Ctrl-C (exit 130) or SIGTERM (exit 143).
    """
    from vaultkey.client import Client

    _exit_on_sigterm()
    argv = _command(exec_cmd) if exec_cmd is not None else None
    client = Client(settings=opts.client_settings())
    changes = client.watch(prefix, since, decrypt=values and argv is None)
    if argv is None:
        with client, changes:
            _show(changes, values, output == "json")
    else:  # the watch runs in a thread; the process ends it when it exits
        for batch in batches(changes, debounce):
            _run(argv, batch)


@cli.command("register", epilog="""\b
Examples:
  vaultkey register /services/web/10.0.0.7 '10.0.0.7:8080' --ttl 10s
  printf '%s' "$ENDPOINT" | vaultkey register /services/web/a""")
@click.argument("path")
@click.argument("value", required=False)
@click.option("--file", "-f", "file", metavar="FILE", help="Read the value from FILE.")
@click.option("--ttl", default="10s", show_default=True, metavar="TTL",
              help="The lease's TTL (10, 10s, 5m; 2 s to 24 h): how long the key outlives us.")
@click.pass_obj
def register_cmd(opts: GlobalOptions, path: str, value: str | None, file: str | None,
                 ttl: str) -> None:
    """Store VALUE at PATH under a lease and keep it alive until stopped.

    On Ctrl-C or SIGTERM the lease is revoked and the key is deleted at once;
    if the process dies without that (SIGKILL, a crash, a lost network), the key
    is deleted when the TTL runs out.
    """
    data = read_value(value, file)
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    with opts.client() as client, client.register(path, data, ttl=ttl) as reg:
        click.echo(f"registered {visible(path)} (lease {visible(reg.lease)}, ttl "
                   f"{reg.ttl:g} s); stop with Ctrl-C or SIGTERM", err=True)
        stop.wait()
    click.echo(f"revoked the lease: {visible(path)} is deleted", err=True)
