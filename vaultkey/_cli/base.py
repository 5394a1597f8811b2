"""The parts of the CLI that need no click: global options, output, exit codes, ``get``.

``vaultkey get PATH`` and ``vaultkey --version`` run on this module alone, without
importing click (see :func:`vaultkey._cli.main`). The click commands use it too, so
both ways print and fail alike.
"""

from __future__ import annotations

import re
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from vaultkey._cli._client import CliClient
    from vaultkey.client.item import Item
    from vaultkey.client.settings import ClientSettings

# The CLI's own exit codes; every other one is the exit_code of an error class.
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class ExitWith(Exception):
    """Ends the command with *code*, through :func:`vaultkey._cli.main` (which catches it
    with or without click running)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class GlobalOptions:
    """The root command's options: client settings given as flags, and their sources."""

    def __init__(self, flags: dict[str, Any], profile: str | None = None,
                 config: str | None = None) -> None:
        self.flags = flags  # by setting name; None: not given
        self.profile = profile
        self.config = config

    def settings(self) -> ClientSettings:
        """The flags over ``VAULTKEY_*`` and the profile (see :func:`resolve`)."""
        from vaultkey.client.settings import resolve

        return resolve(self.flags, profile=self.profile, config_path=self.config)

    def client_settings(self) -> ClientSettings:
        """:meth:`settings` with the CLI's default rollback marks file (the SDK's default is
        memory only): a CLI reader remembers the counters it saw, run after run."""
        import dataclasses

        settings = self.settings()
        if settings.marks is None:
            from vaultkey.client.marks import default_marks_file

            settings = dataclasses.replace(settings, marks=default_marks_file())
        return settings

    def client(self) -> CliClient:
        from vaultkey._cli._client import CliClient

        return CliClient(settings=self.client_settings())


def echo_err(text: str) -> None:
    """One line on stderr (as ``click.echo(text, err=True)``; stderr may be closed)."""
    if sys.stderr is not None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


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
        raise ExitWith(EXIT_BROKEN_PIPE) from None


def emit(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        import json

        text = json.dumps(data, indent=2, sort_keys=True)
    write_out(text.encode("utf-8", "surrogateescape") + b"\n")


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


def item_json(item: Item) -> dict[str, Any]:
    import base64

    try:
        text: str | None = item.value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"path": item.path, "value": text,
            "value_base64": base64.b64encode(item.value).decode("ascii"),
            "revision": item.revision, "create_revision": item.create_revision,
            "version": item.version, "recipients": list(item.recipients),
            "counter": item.counter,
            "signer": None if item.signer is None else {
                "key_id": item.signer.key_id, "name": item.signer.name,
                "verified": item.signer.verified}}


def get(opts: GlobalOptions, path: str, output: str) -> None:
    """``vaultkey get``: fetch PATH, decrypt it locally, write its exact bytes to stdout."""
    with opts.client() as client:
        item = client.read(path)
    if output == "json":
        emit(item_json(item), True, "")
        return
    newline = sys.stdout is not None and sys.stdout.isatty() and not item.value.endswith(b"\n")
    write_out(item.value + (b"\n" if newline else b""))
