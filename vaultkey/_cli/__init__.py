"""The ``vaultkey`` command line. The CLI package is the only code that prints,
exits or configures logging (the proxy's server entry point aside).

Start-up is kept fast: command modules import heavy dependencies (gRPC,
FastAPI, uvicorn, httpx) inside the command, never at import time::

    $ vaultkey keygen payments
    key id: vk1_...
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import click

from vaultkey._cli.common import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, cli, visible
from vaultkey.errors import UsageError, VaultkeyError

# Registering commands: each module adds its commands to `cli` when imported.
from vaultkey._cli import admin as _admin  # noqa: F401  isort: skip
from vaultkey._cli import dev as _dev  # noqa: F401  isort: skip
from vaultkey._cli import keys as _keys  # noqa: F401  isort: skip
from vaultkey._cli import kv as _kv  # noqa: F401  isort: skip
from vaultkey._cli import serve as _serve  # noqa: F401  isort: skip
from vaultkey._cli import watch as _watch  # noqa: F401  isort: skip


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - one exit per error kind
    """Run the CLI; expected failures become one line on stderr and an exit code."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None,
                          standalone_mode=False, prog_name="vaultkey")
    except VaultkeyError as exc:
        # Messages and hints may quote the server (or a name someone stored): never raw.
        click.echo(f"vaultkey: error: {visible(exc.diagnostics())}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return UsageError.exit_code if isinstance(exc, click.UsageError) else exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        # Expected failures are VaultkeyErrors above; anything else is a bug. One line,
        # unless VAULTKEY_DEBUG asks for the traceback.
        if os.environ.get("VAULTKEY_DEBUG"):
            raise
        click.echo(f"vaultkey: internal error: {type(exc).__name__}: {visible(exc)} "
                   "(set VAULTKEY_DEBUG=1 for a traceback, and please report it)", err=True)
        return 1
    # click returns a command's requested exit code (ctx.exit(N)) in non-standalone mode
    return result if isinstance(result, int) else 0
