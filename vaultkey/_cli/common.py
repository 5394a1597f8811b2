"""The root command group, global connection options and shared helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from vaultkey._version import __version__

if TYPE_CHECKING:
    from vaultkey._http import Connection

EXIT_CODES_HELP = """\b
Exit codes:
  0   success                  6   conflict (compare-and-swap lost)
  1   unexpected error         7   decryption failed
  3   not found                8   server or etcd unavailable
  4   permission denied        64  usage error
  5   not authenticated        65  malformed envelope, 66 key file problem
                               78  invalid policy files"""


@dataclass
class GlobalOptions:
    addr: str | None
    token: str | None
    token_file: str | None
    cacert: str | None

    def connection(self) -> Connection:
        from vaultkey._http import Connection, ConnectionSettings, read_token_file

        token = self.token
        if not token and self.token_file:
            token = read_token_file(self.token_file)
        return Connection(ConnectionSettings.from_env(addr=self.addr, token=token,
                                                      cacert=self.cacert))


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", "-V", prog_name="vaultkey")
@click.option("--addr", envvar="VAULTKEY_ADDR", metavar="URL",
              help="Proxy address [env VAULTKEY_ADDR; default https://127.0.0.1:8443].")
@click.option("--token", envvar="VAULTKEY_TOKEN", metavar="TOKEN",
              help="Token [env VAULTKEY_TOKEN]. Prefer --token-file or the environment.")
@click.option("--token-file", envvar="VAULTKEY_TOKEN_FILE", metavar="FILE",
              help="Read the token from FILE [env VAULTKEY_TOKEN_FILE].")
@click.option("--cacert", envvar="VAULTKEY_CACERT", metavar="FILE",
              help="CA certificate that signed the proxy's certificate [env VAULTKEY_CACERT].")
@click.pass_context
def cli(ctx: click.Context, addr: str | None, token: str | None, token_file: str | None,
        cacert: str | None) -> None:
    """vaultkey: client-side encrypted secrets and configuration in etcd."""
    ctx.obj = GlobalOptions(addr, token, token_file, cacert)


def emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)
