"""The root command group, global connection options and shared helpers."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vaultkey import errors
from vaultkey._version import __version__
from vaultkey.client.settings import SETTINGS, SOURCES, resolve

if TYPE_CHECKING:
    from vaultkey._cli._client import CliClient
    from vaultkey.client.settings import ClientSettings

F = TypeVar("F", bound=Callable[..., Any])

# The CLI's own exit codes; every other one is the exit_code of an error class.
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

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


@dataclass
class GlobalOptions:
    """The root command's options: client settings given as flags, and their sources."""

    flags: dict[str, Any]  # by setting name; None: not given
    profile: str | None = None
    config: str | None = None

    def settings(self) -> ClientSettings:
        """The flags over ``VAULTKEY_*`` and the profile (see :func:`resolve`)."""
        return resolve(self.flags, profile=self.profile, config_path=self.config)

    def client(self) -> CliClient:
        from vaultkey._cli._client import CliClient

        return CliClient(settings=self.settings())


def _global_options(command: F) -> F:
    """An option for each client setting with a CLI flag, then --profile and --config."""
    for row in reversed((*SETTINGS, *SOURCES)):
        if row.flag:
            command = click.option(row.flag, row.name, metavar=row.metavar,
                                   help=row.cli_help())(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
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


def write_out(data: bytes) -> None:
    """Write bytes to stdout; a reader that went away (``| head``) ends us quietly with 141."""
    import os

    from vaultkey.errors import UsageError

    if sys.stdout is None:
        raise UsageError("stdout is closed; redirect it to a file or a pipe")
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
        view = memoryview(data)
        while view:  # os.write, so a short write or EPIPE is never hidden in a buffer
            view = view[os.write(fd, view):]
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None


def emit(data: Any, as_json: bool, text: str) -> None:
    out = json.dumps(data, indent=2, sort_keys=True) if as_json else text
    write_out(out.encode("utf-8", "surrogateescape") + b"\n")


# What a terminal would act on instead of showing: C0 and C1 controls and DEL (ESC starts
# the sequences that recolour, retitle, move the cursor or, with OSC 52, set the
# clipboard), the line/paragraph separators, the bidi embeddings, overrides and isolates
# (which make one name look like another), and lone surrogates (not printable at all).
# The backslash too, so that an escape shown is never confused with the same text typed.
_INVISIBLE = r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: object) -> str:
    """*text* made safe to print on a terminal: nothing in it is executed, all is seen.

    Every string that comes from the server (key names, token names, groups, token ids,
    error messages and hints) goes through here before the CLI prints it in text mode.
    The convention, Python-style: ``\\`` becomes ``\\\\``; C0 controls, DEL and C1
    controls (U+0000-U+001F, U+007F-U+009F) become ``\\xNN``; U+2028/U+2029, the bidi
    controls U+202A-U+202E and U+2066-U+2069, and lone surrogates become ``\\uNNNN``
    (hex in lower case). Other characters are shown as they are. ``-o json`` output is
    not passed through here: JSON escaping keeps it exact (and ASCII)::

        >>> print(visible("/app/\\x1b[31mred"))
        /app/\\x1b[31mred
    """
    return re.sub(_INVISIBLE, _escape, str(text))  # re caches the compiled pattern
