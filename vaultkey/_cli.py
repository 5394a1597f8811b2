"""The ``vaultkey`` command line. The only module that prints, exits or configures logging.

Start-up is kept fast: command modules import their heavy dependencies
(gRPC, FastAPI, httpx) inside the command, never at import time::

    $ vaultkey keygen payments
    wrote payments.key (secret, mode 0600) and payments.pub
    key id: vk1_...
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from vaultkey._version import __version__
from vaultkey.errors import VaultkeyError

EXIT_CODES_HELP = """\b
Exit codes:
  0  success              5  not authenticated
  1  unexpected error     6  conflict (compare-and-swap lost)
  3  not found            7  decryption failed
  4  permission denied    8  server unavailable
  64 usage error          65 malformed data, 66 key file problem"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", "-V", prog_name="vaultkey")
def cli() -> None:
    """vaultkey: encrypted secrets and configuration in etcd."""


@cli.command(epilog="\b\nExamples:\n  vaultkey keygen payments\n  vaultkey keygen keys/web --force")
@click.argument("name")
@click.option("--force", is_flag=True, help="Overwrite existing NAME.key / NAME.pub.")
def keygen(name: str, force: bool) -> None:
    """Create an X25519 key pair: NAME.key (secret, 0600) and NAME.pub."""
    from vaultkey.crypto import SecretKey, write_keypair

    key_path, pub_path = write_keypair(name, force=force)
    key_id = SecretKey.load(key_path).key_id
    click.echo(f"wrote {key_path} (secret, mode 0600) and {pub_path}", err=True)
    click.echo(f"key id: {key_id}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; expected failures become one line on stderr and an exit code."""
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except VaultkeyError as exc:
        click.echo(f"vaultkey: error: {exc.diagnostics()}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 64 if isinstance(exc, click.UsageError) else exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
