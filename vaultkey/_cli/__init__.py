"""The ``vaultkey`` command line. The CLI package is the only code that prints,
exits or configures logging (the proxy's server entry point aside).

Start-up is kept fast: a command's module is imported only when that command runs,
and command modules import heavy dependencies (gRPC, FastAPI, uvicorn, httpx) inside
the command, never at import time. The most frequent command, ``vaultkey get PATH``
(and ``--version``), runs without importing click at all: see :func:`main`::

    $ vaultkey keygen payments
    key id: vk1_...
"""

from __future__ import annotations

import os
import sys

from vaultkey._cli.base import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, ExitWith, echo_err, visible
from vaultkey.errors import UsageError, VaultkeyError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - one exit per error kind
    """Run the CLI; expected failures become one line on stderr and an exit code."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        return _run(args)
    except VaultkeyError as exc:
        # Messages and hints may quote the server (or a name someone stored): never raw.
        echo_err(f"vaultkey: error: {visible(exc.diagnostics())}")
        return exc.exit_code
    except ExitWith as exc:
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        code = _click_error(exc)
        if code is not None:
            return code
        # Expected failures are VaultkeyErrors above; anything else is a bug. One line,
        # unless VAULTKEY_DEBUG asks for the traceback.
        if os.environ.get("VAULTKEY_DEBUG"):
            raise
        echo_err(f"vaultkey: internal error: {type(exc).__name__}: {visible(exc)} "
                 "(set VAULTKEY_DEBUG=1 for a traceback, and please report it)")
        return 1


def _run(args: list[str]) -> int:
    """Run one command: the two most frequent forms directly, everything else with click.

    Why: importing click (and what it imports) was the largest part of a ``vaultkey
    get`` that the command does not need (``python -X importtime``). Only the exact forms
    ``vaultkey get PATH`` and ``vaultkey --version`` / ``-V`` are run here, through
    the same code (:mod:`vaultkey._cli.base`) as click runs them; any option, any
    other argument, a PATH starting with ``-`` or a shell-completion request goes to
    click, which parses and reports exactly as it always does.
    """
    if "_VAULTKEY_COMPLETE" not in os.environ:
        if args in (["--version"], ["-V"]):
            from vaultkey._version import __version__

            print(f"vaultkey, version {__version__}")  # as click.version_option prints it
            return 0
        if len(args) == 2 and args[0] == "get" and not args[1].startswith("-"):
            from vaultkey._cli import base

            try:
                base.get(base.GlobalOptions(_no_flags()), args[1], "text")
            except (EOFError, KeyboardInterrupt):  # as click reports an interruption
                echo_err("")
                echo_err("aborted")
                return EXIT_INTERRUPTED
            return 0
    from vaultkey._cli.common import cli

    result = cli.main(args=args, standalone_mode=False, prog_name="vaultkey")
    # click returns a command's requested exit code (ctx.exit(N)) in non-standalone mode
    return result if isinstance(result, int) else 0


def _no_flags() -> dict[str, None]:
    """The root command's options when none is given, as click passes them."""
    from vaultkey.client.settings import SETTINGS

    return {row.name: None for row in SETTINGS if row.flag}


def _click_error(exc: Exception) -> int | None:
    """The exit code of one of click's exceptions (after reporting it), else None.

    click is looked up, never imported: if it is not loaded, *exc* is none of its.
    """
    click = sys.modules.get("click")
    if click is None:
        return None
    if isinstance(exc, click.exceptions.Abort):
        echo_err("aborted")
        return EXIT_INTERRUPTED
    if isinstance(exc, click.ClickException):
        exc.show()
        return UsageError.exit_code if isinstance(exc, click.UsageError) else exc.exit_code
    if isinstance(exc, click.exceptions.Exit):
        return int(exc.exit_code)
    return None
