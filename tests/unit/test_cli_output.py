"""What the CLI prints from the server: escaped in text mode, exact in JSON.

The server here is hostile on purpose: a real HTTP server on a loopback socket that answers
with escape sequences, bidi overrides and line breaks in every string it controls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from vaultkey._cli.common import visible

ESC_TITLE = "\x1b]0;pwned\x07"  # OSC: set the terminal title
CLEAR = "\x1b[2J"
CLIPBOARD = "\x1b]52;c;ZXZpbA==\x07"  # OSC 52: write the clipboard


@pytest.mark.parametrize(("raw", "shown"), [
    ("/app/\x1b[31mred", "/app/\\x1b[31mred"),
    ("tab\there\r\nnext", "tab\\x09here\\x0d\\x0anext"),
    ("nul\x00 del\x7f c1\x85\x9b", "nul\\x00 del\\x7f c1\\x85\\x9b"),
    ("back\\slash", "back\\\\slash"),  # so a shown escape is never ambiguous
    ("\u202egnp.exe \u202a\u202b\u202c\u202d", "\\u202egnp.exe \\u202a\\u202b\\u202c\\u202d"),
    ("\u2066a\u2067b\u2068c\u2069", "\\u2066a\\u2067b\\u2068c\\u2069"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("lone \ud800 surrogate \udcff", "lone \\ud800 surrogate \\udcff"),
    ("café ünïcode 🔑 日本", "café ünïcode 🔑 日本"),  # printable text stays readable
    ("", ""),
])
def test_visible_escapes_what_a_terminal_would_act_on(raw, shown):
    assert visible(raw) == shown
    assert visible(raw).isprintable() or visible(raw) == ""


def test_visible_accepts_any_value():
    assert visible(42) == "42"
    assert visible(ValueError("bad\x1bthing")) == "bad\\x1bthing"


class _Hostile(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, Any]]] = {}

    def _answer(self) -> None:
        status, body = self.answers.get(self.path.split("?")[0], (404, {}))
        data = json.dumps(body).encode()  # \u001b etc.: the client decodes the real chars
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _vk(addr: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
    env.update(VAULTKEY_ADDR=addr, VAULTKEY_TOKEN="t0ken", VAULTKEY_CONFIG="/dev/null")
    return subprocess.run([sys.executable, "-m", "vaultkey", *args], capture_output=True,
                          env=env, timeout=60, check=False)


def _assert_harmless(out: bytes) -> None:
    for raw in ("\x1b", "\x07", "\r", "\u202e", "\u2066", "\x9b"):
        assert raw.encode() not in out, (raw, out)


def test_server_error_message_and_hint_are_escaped(hostile):
    _Hostile.answers["/v1/kv/x"] = (404, {"error": {
        "code": "not_found", "message": f"no key{CLEAR}{CLIPBOARD}",
        "hint": f"see \u202eevil\u2066 {ESC_TITLE}"}})
    r = _vk(hostile, "get", "/x")
    assert r.returncode == 3
    _assert_harmless(r.stderr)
    assert r.stderr == (b"vaultkey: error: no key\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07; "
                        b"see \\u202eevil\\u2066 \\x1b]0;pwned\\x07\n")


def test_unexpected_status_message_is_escaped(hostile):
    _Hostile.answers["/v1/whoami"] = (500, {"error": {"message": f"boom{CLEAR}\nforged"}})
    r = _vk(hostile, "whoami")
    assert r.returncode == 1
    _assert_harmless(r.stderr)
    assert b"boom\\x1b[2J\\x0aforged" in r.stderr
    assert r.stderr.count(b"\n") == 1  # one line, whatever the server sends


def test_whoami_text_is_escaped_and_json_exact(hostile):
    me = {"kind": f"group{CLEAR}", "token_id": f"id{ESC_TITLE}", "group": "ops\u202e\r\nx"}
    _Hostile.answers["/v1/whoami"] = (200, me)
    r = _vk(hostile, "whoami")
    assert r.returncode == 0, r.stderr
    _assert_harmless(r.stdout)
    assert r.stdout == (b"group\\x1b[2J token id\\x1b]0;pwned\\x07 of group "
                        b"ops\\u202e\\x0d\\x0ax\n")
    assert json.loads(_vk(hostile, "whoami", "-o", "json").stdout) == me


def test_key_names_are_escaped_and_json_exact(hostile):
    keys = [f"/app/{CLEAR}red", "/app/\u202egnp.exe", "/app/dir/a\nb", "/app/back\\slash"]
    _Hostile.answers["/v1/kv/app/"] = (200, {"keys": keys})
    r = _vk(hostile, "ls", "-r", "/app/")
    assert r.returncode == 0, r.stderr
    _assert_harmless(r.stdout)
    assert r.stdout.decode().splitlines() == [
        "/app/\\x1b[2Jred", "/app/\\u202egnp.exe", "/app/dir/a\\x0ab", "/app/back\\\\slash"]
    doc = json.loads(_vk(hostile, "ls", "-r", "-o", "json", "/app/").stdout)
    assert doc["keys"] == keys
    assert _vk(hostile, "ls", "-o", "json", "/app/").stdout.isascii()  # JSON escapes all


def test_token_list_and_create_are_escaped(hostile):
    tokens = [{"id": f"abc{CLEAR}", "group": "\x9b2Jops", "name": f"n{ESC_TITLE}",
               "expires": None}]
    _Hostile.answers["/v1/tokens"] = (200, {"tokens": tokens})
    r = _vk(hostile, "token", "list")
    assert r.returncode == 0, r.stderr
    _assert_harmless(r.stdout)
    row = r.stdout.decode().splitlines()[1]
    assert row.split() == ["abc\\x1b[2J", "\\x9b2Jops", "never", "n\\x1b]0;pwned\\x07"]
    assert json.loads(_vk(hostile, "token", "list", "-o", "json").stdout)["tokens"] == tokens
    _Hostile.answers["/v1/tokens"] = (200, {"token": f"vkt_{CLEAR}"})
    r = _vk(hostile, "token", "create", "--group", "ops")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"vkt_\\x1b[2J\n"


def test_the_exit_codes_in_help_come_from_the_error_classes():
    import re

    from vaultkey import errors
    from vaultkey._cli.common import cli, exit_codes_help

    text = exit_codes_help()
    assert cli.epilog == text
    listed = {(int(code), name) for code, name in re.findall(r"^  (\d+) +(\w+)", text, re.M)}
    for name in errors.__all__:
        cls = getattr(errors, name)
        if "exit_code" in vars(cls) and cls is not errors.VaultkeyError:
            assert (cls.exit_code, name) in listed
    assert {(65, "MalformedEnvelope"), (78, "PolicyError"), (0, "success"),
            (130, "interrupted"), (141, "the")} <= listed
    # The tree drawn in errors.py states the same codes as the classes.
    drawn = re.findall(r"── (\w+) .*\(exit (\d+)\)$", errors.__doc__ or "", re.M)
    assert drawn and all(getattr(errors, name).exit_code == int(code) for name, code in drawn)
