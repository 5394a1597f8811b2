"""The root command group, global connection options and shared helpers."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from vaultkey._version import __version__

if TYPE_CHECKING:
    from vaultkey.client import CliClient

EXIT_CODES_HELP = """\b
Exit codes:
  0   success                  6   conflict (compare-and-swap lost)
  1   not a vaultkey answer    7   decryption failed
  3   not found                8   proxy or etcd unavailable
  4   permission denied        9   recipient key not in the trust store
  5   not authenticated        64  usage error
  65  malformed envelope       66  key file problem
  78  invalid policy files    130  interrupted; 141 stdout reader went away"""


@dataclass
class GlobalOptions:
    addr: str | None
    token: str | None
    token_file: str | None
    cacert: str | None
    client_cert: str | None
    client_key: str | None
    key: str | None
    trust: str | None
    profile: str | None
    config: str | None

    def client(self) -> CliClient:
        from vaultkey.client import CliClient
        from vaultkey.client.settings import resolve

        explicit = {"addr": self.addr, "token": self.token, "token_file": self.token_file,
                    "cacert": self.cacert, "client_cert": self.client_cert,
                    "client_key": self.client_key, "key": self.key, "trust": self.trust}
        return CliClient(settings=resolve(explicit, profile=self.profile,
                                          config_path=self.config))


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", "-V", prog_name="vaultkey")
@click.option("--addr", metavar="URL",
              help="Proxy address [env VAULTKEY_ADDR; default https://127.0.0.1:8443].")
@click.option("--token", metavar="TOKEN",
              help="Token [env VAULTKEY_TOKEN]. Prefer --token-file or the environment.")
@click.option("--token-file", metavar="FILE",
              help="Read the token from FILE [env VAULTKEY_TOKEN_FILE].")
@click.option("--cacert", metavar="FILE",
              help="CA certificate of the proxy's TLS certificate [env VAULTKEY_CACERT].")
@click.option("--client-cert", metavar="FILE",
              help="TLS client certificate, if the proxy requires one [env VAULTKEY_CLIENT_CERT].")
@click.option("--client-key", metavar="FILE",
              help="Key of the TLS client certificate [env VAULTKEY_CLIENT_KEY].")
@click.option("--key", metavar="FILE", help="Your secret key file [env VAULTKEY_KEY].")
@click.option("--trust", metavar="PATH",
              help="Trusted recipient keys: a directory of .pub files or a file of key ids "
              "[env VAULTKEY_TRUST].")
@click.option("--profile", metavar="NAME",
              help="Profile from the config file [env VAULTKEY_PROFILE].")
@click.option("--config", metavar="FILE",
              help="Client config file "
              "[env VAULTKEY_CONFIG; default ~/.config/vaultkey/config.toml].")
@click.pass_context
def cli(ctx: click.Context, /, **opts: Any) -> None:
    """vaultkey: client-side encrypted secrets and configuration in etcd.

    Values are encrypted on your machine to the keys of every group allowed to
    read their path; the proxy and etcd only ever see ciphertext.
    """
    ctx.obj = GlobalOptions(**opts)


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
        raise click.exceptions.Exit(141) from None


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
