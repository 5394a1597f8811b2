"""The CLI's start-up: each command imports only what it needs.

Asserted on module names (``sys.modules`` of a fresh process), never on timings;
``scripts/bench_cli.py`` measures the time. ``vaultkey get PATH`` runs here against a
small TLS server that answers like a vaultkey proxy, through the real code path.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trustme

from vaultkey._files import write_private
from vaultkey.client._lite import LiteConnection, LiteTransportError
from vaultkey.crypto import SecretKey, encrypt

# Runs the CLI's main() as `vaultkey ARGS...` would, then reports what was imported.
PROBE = """
import sys
from vaultkey._cli import main
rc = main(sys.argv[1:])
sys.stdout.flush()
import json
sys.stderr.write("\\n" + json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""

# Never on the client path: the server's stack, the SDK's httpx, and what the CLI avoids.
# (`cryptography` is: HKDF comes from it, as every primitive comes from it or libsodium.)
SERVER_AND_HEAVY = ("fastapi", "pydantic", "starlette", "uvicorn", "grpc", "etcd3", "httpx",
                    "httpcore", "h11", "anyio", "prometheus_client")
# Not for `vaultkey get` either: click, http.client (and the email package it parses
# headers with), the config-file parser (no config file here), the CA bundle (--cacert).
NOT_FOR_GET = ("click", "http.client", "email", "tomllib", "certifi")
OTHER_VAULTKEY = ("vaultkey.proxy", "vaultkey.policy", "vaultkey._dev", "vaultkey._cli.common",
                  "vaultkey._cli.kv", "vaultkey._cli.admin", "vaultkey._cli.dev",
                  "vaultkey._cli.serve", "vaultkey._cli.watch", "vaultkey._cli.keys",
                  "vaultkey.client._watch", "vaultkey.client._register", "vaultkey.client._sse",
                  "vaultkey.client.trust")


def _loaded(modules: set[str], names: tuple[str, ...]) -> set[str]:
    """Which of *names* (a package counts with its submodules) are in *modules*."""
    return {m for m in modules for n in names if m == n or m.startswith(n + ".")}


class FakeProxy:
    """A TLS server answering each request from ``answers`` (target -> status, JSON body)."""

    def __init__(self, tmp_path: Path) -> None:
        ca = trustme.CA()
        self.cacert = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(self.cacert))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self._context)
        self.answers: dict[str, tuple[int, object]] = {}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            try:
                with self._context.wrap_socket(conn, server_side=True) as tls:
                    head = b""
                    while b"\r\n\r\n" not in head and (chunk := tls.recv(65536)):
                        head += chunk
                    target = head.split(b" ", 2)[1].decode()
                    status, body = self.answers.get(target, (404, {"error": {
                        "code": "not_found", "message": f"{target} not found"}}))
                    data = json.dumps(body).encode()
                    tls.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                                b"Content-Length: %d\r\n\r\n" % (status, len(data)) + data)
            except (OSError, IndexError):
                conn.close()

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def proxy(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = FakeProxy(tmp_path)
    key = SecretKey.generate()
    write_private(tmp_path / "me.key", key.to_file_text().encode())
    envelope = encrypt(b"hunter2", "/app/db", [key.public])
    server.answers["/v1/kv/app/db"] = (200, {
        "path": "/app/db", "envelope": base64.b64encode(envelope).decode(),
        "revision": 7, "create_revision": 5, "version": 2})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "no-config"),
           "VAULTKEY_ADDR": f"https://127.0.0.1:{server.port}", "VAULTKEY_TOKEN": "vkt_test",
           "VAULTKEY_CACERT": str(server.cacert), "VAULTKEY_KEY": str(tmp_path / "me.key")}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    yield env
    server.close()


def _run(env: dict[str, str], *args: str) -> tuple[int, bytes, bytes, set[str]]:
    """(exit code, stdout, stderr without the report, modules imported) of one CLI run."""
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, env=env,
                       timeout=60, check=False)
    err, _, report = r.stderr.rpartition(b"\n")
    if r.returncode != 0 or not report.startswith(b"{"):
        raise AssertionError(r.stderr.decode(errors="replace"))
    found = json.loads(report)
    return found["rc"], r.stdout, err, set(found["modules"])


def test_get_imports_only_what_it_needs(proxy):
    rc, out, err, modules = _run(proxy, "get", "/app/db")
    assert (rc, out, err) == (0, b"hunter2", b"")
    # It did go the whole way: TLS, the socket HTTP client, the decryption.
    assert {"ssl", "vaultkey.client._lite", "vaultkey.crypto"} <= modules
    assert not _loaded(modules, SERVER_AND_HEAVY)
    assert not _loaded(modules, NOT_FOR_GET)
    assert not _loaded(modules, OTHER_VAULTKEY)


def test_get_without_click_answers_as_the_click_command_does(proxy):
    """Any option sends `get` through click; the answers and exit codes are the same."""
    for path in ("/app/db", "/app/missing"):
        fast = _run(proxy, "get", path)
        slow = _run(proxy, "--timeout", "10", "get", path)
        assert fast[:3] == slow[:3]
        assert "click" not in fast[3] and "vaultkey._cli.kv" in slow[3]
    assert fast[:3] == (3, b"", b"vaultkey: error: /v1/kv/app/missing not found\n")


def test_get_options_and_odd_arguments_go_to_click(proxy):
    rc, out, _err, modules = _run(proxy, "get", "-o", "json", "/app/db")
    assert rc == 0 and "click" in modules
    assert json.loads(out)["value"] == "hunter2" and json.loads(out)["revision"] == 7
    rc, _out, err, modules = _run(proxy, "get", "--", "-x")
    assert rc == 64 and "click" in modules and b"must be absolute" in err


def test_version_imports_neither_click_nor_the_client(proxy):
    from click.testing import CliRunner

    from vaultkey._cli.common import cli

    rc, out, _err, modules = _run(proxy, "--version")
    assert rc == 0 and out.decode() == CliRunner().invoke(cli, ["--version"]).output
    assert not _loaded(modules, ("click", "vaultkey.client", "vaultkey.crypto", "nacl"))


def test_a_command_imports_its_own_module_only(proxy, tmp_path):
    rc, _out, _err, modules = _run(proxy, "keygen", str(tmp_path / "k"))
    assert rc == 0 and "vaultkey._cli.keys" in modules
    assert not _loaded(modules, SERVER_AND_HEAVY)
    assert not _loaded(modules, ("vaultkey._cli.kv", "vaultkey._cli.admin", "vaultkey._cli.dev",
                                 "vaultkey._cli.serve", "vaultkey._cli.watch"))


def test_import_vaultkey_does_no_work():
    probe = "import sys, vaultkey; print(' '.join(sorted(sys.modules)))"
    modules = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                 check=True, timeout=60).stdout.split())
    assert not _loaded(modules, ("nacl", "vaultkey.keys", "vaultkey.crypto", "vaultkey.client",
                                 "vaultkey._cli", "dataclasses", "typing", *SERVER_AND_HEAVY))


def test_every_command_is_registered_by_the_module_named_for_it():
    from vaultkey._cli.common import COMMANDS, cli

    assert set(cli.commands) == set(COMMANDS)
    for name, module in COMMANDS.items():
        callback = cli.commands[name].callback
        assert callback is not None and callback.__module__ == f"vaultkey._cli.{module}", name


def test_the_fast_path_passes_the_root_options_click_passes():
    from vaultkey._cli import _no_flags
    from vaultkey._cli.common import cli

    with cli.make_context("vaultkey", ["get", "/app/db"]) as ctx:
        cli.callback(**ctx.params)
        assert ctx.obj.flags == _no_flags()
        assert (ctx.obj.profile, ctx.obj.config) == (None, None)


# -- the socket HTTP client that replaced http.client (and its email import) ---------------

def _answering(*answers: bytes) -> tuple[int, list[bytes]]:
    """A server that sends each answer on one connection, in turn, then closes it."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                for answer in answers:
                    seen.append(conn.recv(65536))
                    conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], seen


def _conn(port: int) -> LiteConnection:
    return LiteConnection(base_url=f"http://127.0.0.1:{port}",
                          verify=ssl.create_default_context(), headers={"X-A": "1"}, timeout=5)


def test_lite_reads_chunked_and_length_bodies_on_one_kept_alive_connection():
    port, seen = _answering(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\n{\"a\r\n6;ext=1\r\n\": 1}\r\n0\r\nTrailer: x\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nRetry-After: 3\r\n\r\n{}")
    conn = _conn(port)
    first = conn.request("PUT", "/v1/kv/a", content=b"xyz", headers={"If-Match": "4"})
    assert (first.status_code, first.json()) == (200, {"a": 1})
    second = conn.request("GET", "/v1/kv/b", params={"list": "true"})
    assert (second.status_code, second.content, second.headers["retry-after"]) == (404, b"{}", "3")
    conn.close()
    request = seen[0].decode()
    assert request.startswith(f"PUT /v1/kv/a HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n")
    assert "\r\nContent-Length: 3\r\n" in request and "\r\nIf-Match: 4\r\n" in request
    assert request.endswith("\r\n\r\nxyz") and "\r\nX-A: 1\r\n" in request
    assert seen[1].startswith(b"GET /v1/kv/b?list=true HTTP/1.1\r\n")


def test_lite_reads_a_body_that_ends_with_the_connection():
    port, _seen = _answering(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<p>hi</p>")
    response = _conn(port).request("GET", "/")
    assert (response.status_code, response.content) == (200, b"<p>hi</p>")


@pytest.mark.parametrize("answer", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\n"
                                    b"Content-Length: 10\r\n\r\nshort",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"])
def test_lite_refuses_what_is_not_http(answer):
    port, _seen = _answering(answer)
    with pytest.raises(LiteTransportError):
        _conn(port).request("GET", "/")


def test_lite_never_sends_a_header_or_target_that_would_split_the_request():
    conn = _conn(1)
    with pytest.raises(ValueError, match="invalid value of header 'X-B'"):
        conn.request("GET", "/", headers={"X-B": "a\r\nX-Evil: 1"})
    with pytest.raises(LiteTransportError, match="invalid request target"):
        conn.request("GET", "/a b")
