"""The root command group, global connection options and shared helpers.

Each command's module is imported when that command runs (``vaultkey get`` loads
kv.py alone): :data:`COMMANDS` names the module of each command. Listing them all
(``--help``, shell completion, ``cli.commands``) imports every module.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

import click

from vaultkey import errors
from vaultkey._cli.base import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    GlobalOptions,
    emit,
    visible,
    write_out,
)
from vaultkey._version import __version__
from vaultkey.client.settings import SETTINGS, SOURCES

F = TypeVar("F", bound=Callable[..., Any])

# The module (in vaultkey._cli) that defines each command of the root group.
COMMANDS = {
    "set": "kv", "get": "kv", "ls": "kv", "rm": "kv", "whoami": "kv", "completion": "kv",
    "keygen": "keys", "key": "keys", "token": "admin", "policy": "admin", "dev": "dev",
    "serve": "serve", "watch": "watch", "register": "watch",
    "rewrap": "lifecycle", "rotate": "lifecycle", "exec": "exec", "render": "render",
    "coverage": "coverage",
}

_TREE_LINE = re.compile(r"── (\w+) +(.+?)(?: \(exit \d+\))?$", re.MULTILINE)


def exit_codes_help() -> str:
    """The exit codes, one line per error class, from the tree drawn in :mod:`vaultkey.errors`.

    A class is listed where it declares its own exit_code (InvalidPath is a UsageError).
    """
    described = dict(_TREE_LINE.findall(errors.__doc__ or ""))
    classes = [getattr(errors, name) for name in errors.__all__]
    rows = sorted((cls.exit_code, cls.__name__) for cls in classes
                  if "exit_code" in vars(cls) and cls is not errors.VaultkeyError)
    lines = ["  0    success"]
    lines += [f"  {code:<4} {name:<19} {described.get(name, '')}".rstrip() for code, name in rows]
    lines += [f"  {EXIT_INTERRUPTED}  interrupted", f"  {EXIT_BROKEN_PIPE}  the reader of "
              "stdout went away (e.g. | head)"]
    return "\b\nExit codes:\n" + "\n".join(lines)


class LazyGroup(click.Group):
    """The root group: a command's module is imported when the command is looked up."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self._commands:
            importlib.import_module(f"vaultkey._cli.{COMMANDS[cmd_name]}")
        return self._commands.get(cmd_name)

    @property
    def commands(self) -> MutableMapping[str, click.Command]:
        """Every command, all modules imported (help, completion, ``NoSuchCommand``)."""
        for module in sorted(set(COMMANDS.values())):
            importlib.import_module(f"vaultkey._cli.{module}")
        return self._commands

    @commands.setter
    def commands(self, value: MutableMapping[str, click.Command]) -> None:
        self._commands = value

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        # As click.Group's (the root group is not chained), without importing every module.
        name = name or cmd.name
        if name is None:
            raise TypeError("Command has no name.")
        self._commands[name] = cmd


def _global_options(command: F) -> F:
    """An option for each client setting with a CLI flag, then --profile and --config."""
    for row in reversed((*SETTINGS, *SOURCES)):
        if row.flag:
            command = click.option(row.flag, row.name, metavar=row.metavar,
                                   help=row.cli_help())(command)
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=exit_codes_help())
@click.version_option(__version__, "--version", "-V", prog_name="vaultkey")
@_global_options
@click.pass_context
def cli(ctx: click.Context, /, **opts: Any) -> None:
    """vaultkey: client-side encrypted secrets and configuration in etcd.

    Values are encrypted on your machine to the keys of every group allowed to
    read their path; the proxy and etcd only ever see ciphertext.
    """
    sources = {row.name: opts.pop(row.name) for row in SOURCES}
    ctx.obj = GlobalOptions(opts, **sources)


OUTPUT = click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text",
                      show_default=True, help="Output format.")

__all__ = ["COMMANDS", "EXIT_BROKEN_PIPE", "EXIT_INTERRUPTED", "OUTPUT", "GlobalOptions",
           "LazyGroup", "cli", "emit", "exit_codes_help", "visible", "write_out"]
