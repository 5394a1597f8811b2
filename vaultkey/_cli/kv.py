"""``vaultkey set / get / ls / rm / whoami``: the everyday commands."""

from __future__ import annotations

import os
import sys

import click

from vaultkey._cli import base
from vaultkey._cli.common import OUTPUT, GlobalOptions, cli, emit, visible


def read_value(value: str | None, file: str | None) -> bytes:
    """VALUE's bytes, or --file's, or stdin's (VALUE absent or '-')."""
    if value is not None and file is not None:
        raise click.UsageError("give VALUE or --file, not both")
    if file is not None:
        try:
            with open(file, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise click.UsageError(f"cannot read {file}: {exc.strerror}") from exc
    if value is None or value == "-":
        if sys.stdin is None:
            raise click.UsageError("no VALUE given and stdin is closed")
        if sys.stdin.isatty():
            click.echo("reading the value from stdin; end with Ctrl-D", err=True)
        return sys.stdin.buffer.read()
    return os.fsencode(value)  # the argument's exact bytes, even if they are not UTF-8


@cli.command("set", epilog="""\b
Examples:
  vaultkey set /payments/db/password 'hunter2'
  printf 'no newline' | vaultkey set /payments/api-key
  vaultkey set /payments/tls/key --file server.key
  vaultkey set /payments/flag on --if-revision 42     # compare-and-swap
  vaultkey set /payments/seed x --create-only --recipient ops.pub
  vaultkey set --ttl 30s /payments/session/a token    # gone in 30 s""")
@click.argument("path")
@click.argument("value", required=False)
@click.option("--file", "-f", "file", metavar="FILE", help="Read the value from FILE.")
@click.option("--if-revision", type=int, metavar="N",
              help="Only write if the key's current revision is N (0: must not exist).")
@click.option("--create-only", is_flag=True, help="Fail if the key already exists.")
@click.option("--recipient", "recipients", multiple=True, metavar="FILE",
              help="Encrypt to this public key file instead of asking the proxy (repeatable).")
@click.option("--ttl", metavar="TTL",
              help="Delete the key after TTL (30, 30s, 5m, 2h; 2 s to 24 h) under a new lease.")
@OUTPUT
@click.pass_obj
def set_cmd(opts: GlobalOptions, path: str, value: str | None, file: str | None,
            if_revision: int | None, create_only: bool, recipients: tuple[str, ...],
            ttl: str | None, output: str) -> None:
    """Encrypt VALUE (or stdin, or --file) locally and store it at PATH.

    The value is stored byte for byte: nothing is added or stripped. By
    default it is encrypted to every group that may read PATH, as named by
    the proxy and checked against your trust store.
    """
    from vaultkey.keys import PublicKey

    data = read_value(value, file)
    explicit = [PublicKey.load(r) for r in recipients] or None
    with opts.client() as client:
        revision = client.set(path, data, recipients=explicit, if_revision=if_revision,
                              create_only=create_only, ttl=ttl)
    expiry = "" if ttl is None else f", deleted after {visible(ttl)}"
    answer = {"path": path, "revision": revision, "bytes": len(data)}
    emit(answer if ttl is None else {**answer, "ttl": ttl}, output == "json",
         f"stored {len(data)} bytes at {visible(path)} (revision {visible(revision)}{expiry})")


@cli.command("get", epilog="""\b
Examples:
  vaultkey get /payments/db/password
  vaultkey get /payments/tls/key > server.key       # exact bytes, no added newline
  vaultkey get -o json /payments/db/password""")
@click.argument("path")
@OUTPUT
@click.pass_obj
def get_cmd(opts: GlobalOptions, path: str, output: str) -> None:
    """Fetch PATH and decrypt it locally; write the exact bytes to stdout.

    A newline is added only when stdout is a terminal and the value does not
    already end with one.
    """
    base.get(opts, path, output)  # also run without click: see vaultkey._cli.main


def _children(prefix: str, keys: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for key in keys:
        rest = key[len(prefix):]
        head, sep, _ = rest.partition("/")
        seen[prefix + head + ("/" if sep else "")] = None
    return list(seen)


@cli.command("ls", epilog="""\b
Examples:
  vaultkey ls /payments/            # direct children; sub-prefixes end in '/'
  vaultkey ls -r /payments/         # every key below
  vaultkey ls -r -o json /""")
@click.argument("prefix", default="/")
@click.option("-r", "--recursive", is_flag=True, help="List every key below PREFIX.")
@OUTPUT
@click.pass_obj
def ls_cmd(opts: GlobalOptions, prefix: str, recursive: bool, output: str) -> None:
    """List the keys under PREFIX that you may read (names only, no values)."""
    with opts.client() as client:
        keys = client.list(prefix)  # validates PREFIX (once), so it is only normalised here
    pfx = prefix if prefix.endswith("/") else prefix + "/"
    shown = keys if recursive else _children(pfx, keys)
    # Key names are whatever someone managed to store: shown escaped, never executed.
    emit({"prefix": pfx, "keys": shown}, output == "json",
         "\n".join(visible(k) for k in shown))


@cli.command("rm", epilog="""\b
Examples:
  vaultkey rm /payments/old-key
  vaultkey rm /payments/flag --if-revision 42""")
@click.argument("path")
@click.option("--if-revision", type=int, metavar="N",
              help="Only delete if the key's current revision is N.")
@click.pass_obj
def rm_cmd(opts: GlobalOptions, path: str, if_revision: int | None) -> None:
    """Delete PATH."""
    with opts.client() as client:
        client.delete(path, if_revision=if_revision)
    click.echo(f"deleted {visible(path)}", err=True)


@cli.command("whoami", epilog="\b\nExample:\n  vaultkey whoami -o json")
@OUTPUT
@click.pass_obj
def whoami_cmd(opts: GlobalOptions, output: str) -> None:
    """Show which group your token belongs to."""
    with opts.client() as client:
        me = client.whoami()
    text = (f"{visible(me['kind'])} token {visible(me['token_id'])}"
            + (f" of group {visible(me['group'])}" if me.get("group") else ""))
    emit(me, output == "json", text)


@cli.command("completion", epilog="""\b
Examples:
  eval "$(vaultkey completion bash)"     # in ~/.bashrc
  vaultkey completion zsh > ~/.zfunc/_vaultkey""")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> None:
    """Print the shell completion script for SHELL."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    ctx = click.get_current_context()
    root = ctx.find_root().command
    click.echo(cls(root, {}, "vaultkey", "_VAULTKEY_COMPLETE").source())
