"""Client-side hygiene, end to end: tokens never cross an HTTP proxy in clear text, server
strings are printed harmlessly, token files must be private.

The forward proxy here is a real one on a loopback socket: it records everything a client
sends it in clear text and relays CONNECT tunnels to their target.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import POLICIES, wait_for
from vaultkey._dev.etcdproc import free_port
from vaultkey.client import AsyncClient, Client
from vaultkey.signkey import write_keypair

PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
              "all_proxy")


class RecordingProxy:
    """An HTTP forward proxy that records each request head it is sent in clear text.

    A CONNECT is answered 200 and relayed to its target (so https works through it);
    anything else, i.e. a plain-HTTP request handed to the proxy, is recorded and refused.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.heads: list[bytes] = []
        self.tunnelled = bytearray()  # what clients sent inside tunnels (TLS records)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk:
                break
            head += chunk
        self.heads.append(head)
        if not head.startswith(b"CONNECT "):
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        host, _, port = head.split()[1].decode().rpartition(":")
        upstream = socket.create_connection((host, int(port)))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=self._pipe, args=(upstream, conn, None), daemon=True).start()
        self._pipe(conn, upstream, self.tunnelled)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, record: bytearray | None) -> None:
        try:
            while data := src.recv(65536):
                if record is not None:
                    record += data
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def recorder(monkeypatch) -> Iterator[RecordingProxy]:
    """A recording proxy, named by every proxy variable (and no NO_PROXY exemption)."""
    rec = RecordingProxy()
    for name in PROXY_VARS:
        monkeypatch.setenv(name, rec.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def insecure_proxy(tmp_path_factory, etcd_server) -> Iterator[tuple[str, str]]:
    """`vaultkey serve --insecure` on loopback: (http:// address, admin token)."""
    d = tmp_path_factory.mktemp("insecure")
    (d / "alpha.toml").write_text(POLICIES["alpha.toml"])
    write_keypair(d / "alpha")
    admin, port = secrets.token_urlsafe(32), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
    env["VAULTKEY_ADMIN_TOKEN"] = admin
    proc = subprocess.Popen([sys.executable, "-m", "vaultkey", "serve", "--insecure",
                             "--policies", str(d), "--etcd", etcd_server.url, "--listen",
                             f"127.0.0.1:{port}", "--root", f"/vk-insecure-{port}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    addr = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:  # trust_env=False: this readiness probe must not use any proxy either
            return httpx.get(addr + "/readyz", trust_env=False).status_code == 200
        except httpx.TransportError:
            return False

    try:
        assert wait_for(up, timeout=30)
        yield addr, admin
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
    return subprocess.run([sys.executable, "-m", "vaultkey", *args], capture_output=True,
                          env={**base, "VAULTKEY_CONFIG": "/dev/null", **env}, timeout=60,
                          check=False)


def test_plain_http_never_goes_through_a_proxy(insecure_proxy, recorder):
    addr, admin = insecure_proxy
    # The control: a client that honours the variables does hand its token to the proxy.
    with pytest.raises(httpx.HTTPError):
        httpx.get(addr + "/v1/whoami", headers={"Authorization": f"Bearer {admin}"},
                  trust_env=True).raise_for_status()
    assert wait_for(lambda: any(admin.encode() in h for h in recorder.heads))
    recorder.heads.clear()

    r = _cli("whoami", env={"VAULTKEY_ADDR": addr, "VAULTKEY_TOKEN": admin})
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.startswith(b"admin token")
    with Client(addr, admin) as vk:
        assert vk.whoami()["kind"] == "admin"

    async def use_async() -> str:
        async with AsyncClient(addr, admin) as avk:
            return str((await avk.whoami())["kind"])

    assert asyncio.run(use_async()) == "admin"
    assert recorder.heads == []  # went direct, every time


def _assert_only_tunnels(recorder: RecordingProxy, target: str, token: str) -> None:
    assert recorder.heads, "the https requests should have used the proxy"
    for head in recorder.heads:
        assert head.startswith(f"CONNECT {target} HTTP/1.1\r\n".encode()), head
        assert b"authorization" not in head.lower()
    assert recorder.tunnelled  # TLS went through the tunnel ...
    assert token.encode() not in recorder.tunnelled  # ... and the proxy could not read it


def test_https_goes_through_a_proxy_only_as_a_connect_tunnel(proxy, recorder):
    target, token = proxy.addr.removeprefix("https://"), proxy.tokens["alpha"]
    env = {"VAULTKEY_ADDR": proxy.addr, "VAULTKEY_CACERT": str(proxy.ca_path),
           "VAULTKEY_TOKEN": token}
    r = _cli("whoami", env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.startswith(b"group token")
    _assert_only_tunnels(recorder, target, token)
    recorder.heads.clear()
    with Client(proxy.addr, token, cacert=str(proxy.ca_path)) as vk:
        assert vk.whoami()["group"] == "alpha"

    async def use_async() -> str:
        async with AsyncClient(proxy.addr, token, cacert=str(proxy.ca_path)) as avk:
            return str((await avk.whoami())["group"])

    assert asyncio.run(use_async()) == "alpha"
    _assert_only_tunnels(recorder, target, token)


def vk(proxy, group, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "vaultkey", *args], capture_output=True,
                          env=proxy.env(group, **env), timeout=60, check=False)


def ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_key_names_are_listed_escaped_in_text_and_exact_in_json(proxy):
    bidi = "/alpha/names/\u202egnp.exe"  # a legal path that would display reversed
    ok(vk(proxy, "alpha", "set", bidi, "v"))
    # A name the proxy would refuse, planted in etcd directly (as a compromised writer
    # could): if the proxy lists it at all, it must not reach the terminal raw.
    planted = "/alpha/names/\x1b[31mred"
    proxy.store().conn.client().put((proxy.root + "/kv" + planted).encode(), b"x")
    text = ok(vk(proxy, "alpha", "ls", "/alpha/names/"))
    assert b"\x1b" not in text and "\u202e".encode() not in text
    assert b"/alpha/names/\\u202egnp.exe\n" in text
    doc = json.loads(ok(vk(proxy, "alpha", "ls", "-o", "json", "/alpha/names/")))
    assert bidi in doc["keys"]
    if planted in doc["keys"]:
        assert b"/alpha/names/\\x1b[31mred\n" in text


def test_token_names_are_listed_escaped_in_text_and_exact_in_json(proxy):
    name = "evil\x1b]0;pwned\x07\x1b[2J\u2066x\r\nfake line"
    proxy.create_token("beta", name=name)
    admin = {"VAULTKEY_TOKEN": proxy.admin_token}
    text = ok(vk(proxy, "alpha", "token", "list", **admin))
    assert b"\x1b" not in text and b"\x07" not in text and b"\r" not in text
    assert b"evil\\x1b]0;pwned\\x07\\x1b[2J\\u2066x\\x0d\\x0afake line\n" in text
    assert b"\nfake line" not in text  # no line of its own in the table
    doc = json.loads(ok(vk(proxy, "alpha", "token", "list", "-o", "json", **admin)))
    assert name in [t["name"] for t in doc["tokens"]]


def test_a_token_file_others_can_read_is_refused(proxy, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(proxy.tokens["alpha"] + "\n")
    token_file.chmod(0o644)
    r = vk(proxy, "alpha", "--token-file", str(token_file), "whoami", VAULTKEY_TOKEN="")
    assert r.returncode == 64
    assert b"permissions 0644 are too open" in r.stderr
    assert f"chmod 600 {token_file}".encode() in r.stderr
    token_file.chmod(0o600)
    assert ok(vk(proxy, "alpha", "--token-file", str(token_file), "whoami",
                 VAULTKEY_TOKEN="")).startswith(b"group token")
    r = vk(proxy, "alpha", "whoami", VAULTKEY_TOKEN="", VAULTKEY_TOKEN_FILE=str(tmp_path))
    assert r.returncode == 64 and b"not a regular file" in r.stderr


@pytest.mark.parametrize("option", ["--admin-token-file", "--etcd-password-file"])
def test_serve_refuses_secret_files_others_can_read(tmp_path, option):
    secret = tmp_path / "secret"
    secret.write_text(secrets.token_urlsafe(32) + "\n")
    secret.chmod(0o640)
    env = {"VAULTKEY_ADMIN_TOKEN": secrets.token_urlsafe(32)}
    r = _cli("serve", "--insecure", "--policies", str(tmp_path), option, str(secret),
             env=env)
    assert r.returncode == 64, r.stderr.decode()
    assert b"permissions 0640 are too open" in r.stderr
    assert f"run: chmod 600 {secret}".encode() in r.stderr


def _dev(*args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
    return subprocess.Popen([sys.executable, "-m", "vaultkey", "dev", "--listen",
                             f"127.0.0.1:{free_port()}", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_dev_keeps_the_mode_of_an_existing_dir_and_refuses_a_shared_one(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o755)
    proc = _dev("--dir", str(mine))
    try:
        assert wait_for(lambda: (mine / "env").exists() or proc.poll() is not None, 60)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        exports = dict(line.removeprefix("export ").split("=", 1)
                       for line in (mine / "env").read_text().splitlines())
        assert wait_for(lambda: _cli("whoami", env=exports).returncode == 0, 30)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert oct(mine.stat().st_mode & 0o777) == "0o755"
    for name in ("admin.token", "dev.token", "dev.key", "env"):
        assert oct((mine / name).stat().st_mode & 0o777) == "0o600", name

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    proc = _dev("--dir", str(shared))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 64
    assert b"writable by group or others (mode 0777)" in err
    assert oct(shared.stat().st_mode & 0o777) == "0o777"
    assert list(shared.iterdir()) == []

