"""Error bodies, auditing, log rotation and small HTTP correctness points (real proxy).

One regression test per point of the hardening issue's parts 3, 4 and 6.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Proxy, wait_for


def _raw(proxy: Proxy, data: bytes) -> bytes:
    """Send raw bytes over TLS and return everything the proxy answers."""
    host, port = proxy.addr.removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=str(proxy.ca_path))
    with socket.create_connection((host, int(port)), timeout=10) as sock, \
            ctx.wrap_socket(sock, server_hostname=host) as tls:
        tls.sendall(data)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _json_error(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)["error"]


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    b"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
])
def test_the_http_layers_400s_have_the_json_error_body(proxy, request_bytes):
    status, error = _json_error(_raw(proxy, request_bytes))
    assert status == 400 and error["code"] == "bad_request"


@pytest.mark.parametrize("head", [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    b"GET /healthz?" + b"q" * 70_000 + b" HTTP/1.1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(300)) + b"\r\n",
])
def test_oversized_heads_get_431_with_the_json_error_body(proxy, head):
    status, error = _json_error(_raw(proxy, head))
    assert status == 431 and error["code"] == "headers_too_large"


def test_a_head_just_under_the_cap_is_served(proxy):
    answer = _raw(proxy, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
                  + b"a" * 60_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")


def _audit_lines(proxy: Proxy) -> list[str]:
    return proxy.audit_path.read_text(encoding="ascii").splitlines()


def test_every_v1_request_is_audited_including_upgrades_and_bad_methods(proxy):
    before = len(_audit_lines(proxy))
    with proxy.client(proxy.tokens["alpha"]) as c:
        assert c.request("PATCH", "/v1/kv/alpha/x").status_code == 405
        assert c.request("TRACE", "/v1/whoami").status_code == 405
        r = c.get("/v1/kv/alpha/x", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                               "Sec-WebSocket-Version": "13"})
        assert r.status_code == 422 and "upgrade" in r.json()["error"]["message"]
        r = c.get("/v1/whoami", headers={"Connection": "Upgrade", "Upgrade": "h2c"})
        assert r.status_code == 422
    assert wait_for(lambda: len(_audit_lines(proxy)) >= before + 4)
    records = [json.loads(line) for line in _audit_lines(proxy)[before:]]
    assert [r["status"] for r in records] == [405, 405, 422, 422]
    assert [r["decision"] for r in records[2:]] == ["deny", "deny"]
    assert records[2]["op"] == "upgrade"


def test_audit_lines_are_ascii_one_record_per_line(proxy):
    before = len(_audit_lines(proxy))
    odd = ["/v1/kv/alpha/line\u2028sep", "/v1/kv/alpha/para\u2029sep", "/v1/kv/alpha/caf\u00e9",
           "/v1/kv/alpha/\U0001f600", "/v1/kv/alpha/\u202eevil"]
    with proxy.client(proxy.tokens["alpha"]) as c:
        for path in odd:
            c.get(path)
    assert wait_for(lambda: len(_audit_lines(proxy)) >= before + len(odd))
    raw = proxy.audit_path.read_bytes()
    assert all(b < 0x80 for b in raw)  # no byte a line-oriented reader could split on
    records = [json.loads(line) for line in _audit_lines(proxy)[before:]]
    assert [r["path"] for r in records] == [p.removeprefix("/v1/kv") for p in odd]


def test_the_audit_log_is_rotated_with_sigusr1_and_no_line_is_lost(proxy_factory):
    proxy = proxy_factory()
    token = proxy.create_token("alpha")
    stop, sent = threading.Event(), [0]

    def load() -> None:
        with proxy.client(token) as c:
            while not stop.is_set():
                assert c.get("/v1/whoami").status_code == 200
                sent[0] += 1

    before = len(_audit_lines(proxy))
    worker = threading.Thread(target=load)
    worker.start()
    try:
        assert wait_for(lambda: sent[0] >= 50)
        rotated = proxy.audit_path.with_name("audit.log.1")
        os.rename(proxy.audit_path, rotated)  # what logrotate does (no copytruncate)
        proxy.proc.send_signal(signal.SIGUSR1)
        assert wait_for(proxy.audit_path.exists)
        assert wait_for(lambda: len(_audit_lines(proxy)) >= 50)
    finally:
        stop.set()
        worker.join()
    proxy.stop()  # drains the writer
    lines = rotated.read_text().splitlines() + proxy.audit_path.read_text().splitlines()
    whoami = [json.loads(line) for line in lines[before:] if '"whoami"' in line]
    assert len(whoami) == sent[0]
    assert oct(proxy.audit_path.stat().st_mode & 0o777) == "0o600"


def test_a_flood_of_made_up_token_ids_reads_etcd_at_most_once_a_second(proxy):
    def etcd_reads() -> float:
        with proxy.client() as c:
            found = re.search(r"^vaultkey_token_etcd_reads ([0-9.e+]+)$", c.get("/metrics").text,
                              re.M)
        assert found
        return float(found.group(1))

    reads = etcd_reads()
    started = time.monotonic()
    with proxy.client() as c:
        for i in range(400):
            fake = f"vkt_{os.urandom(8).hex()}.{'A' * 43}"
            r = c.get("/v1/whoami", headers={"Authorization": f"Bearer {fake}"})
            assert r.status_code == 401, (i, r.text)
    elapsed = time.monotonic() - started
    assert etcd_reads() - reads <= elapsed + 2  # one known-id refresh per second at most


def test_a_token_created_on_another_replica_is_accepted_within_a_second(proxy_factory):
    first = proxy_factory()
    second = proxy_factory(extra_args=["--root", first.root])  # a replica of `first`
    with second.client(f"vkt_{'0' * 16}.{'A' * 43}") as c:
        assert c.get("/v1/whoami").status_code == 401  # warms the known-id set on `second`
    token = first.create_token("alpha")
    with second.client(token) as c:
        assert wait_for(lambda: c.get("/v1/whoami").status_code == 200, timeout=3)


def test_the_trailing_slash_redirect_is_relative_and_ignores_the_host_header(proxy):
    with proxy.client(proxy.admin_token) as c:
        r = c.get("/v1/tokens/", headers={"Host": "evil.example"}, follow_redirects=False)
        assert r.status_code == 307
        assert r.headers["location"] == "/v1/tokens"
        r = c.get("/healthz/?a=1", headers={"Host": "evil.example"}, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (307, "/healthz?a=1")
        assert c.get("//evil.example/", follow_redirects=False).status_code == 404


def test_docs_pages_are_off_and_openapi_stays(proxy):
    with proxy.client() as c:
        assert c.get("/docs").status_code == 404
        assert c.get("/redoc").status_code == 404
        schema = c.get("/openapi.json")
        assert schema.status_code == 200 and schema.json()["info"]["title"] == "vaultkey proxy"


def test_readyz_tells_unauthenticated_callers_no_revision(proxy):
    with proxy.client() as c:
        assert c.get("/readyz").json() == {"status": "ok"}


@pytest.mark.parametrize("root", ["/vaultkey/kv/app", "/vaultkey/sys", "/a/b/kv",
                                  "/vaultkey/../x", "/bad root", "/x/"])
def test_a_root_inside_another_installation_or_malformed_is_refused(tmp_path, root):
    admin = tmp_path / "admin"
    admin.write_text("kJ8vQ2xN5rT0wY7bL4mF1sD9gH6cP3aE_u-Zo2Q")
    admin.chmod(0o600)
    env = {"PATH": os.environ["PATH"]}
    r = subprocess.run([sys.executable, "-m", "vaultkey", "serve", "--policies", str(tmp_path),
                        "--insecure", "--admin-token-file", str(admin), "--root", root],
                       env=env, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 64, r.stderr
    assert "--root" in r.stderr


@pytest.mark.parametrize("token", ["a" * 40, "ab" * 20, "abc" * 14, "01234567" * 5,
                                   "aAaAaAaAbBbBbBbBcCcCcCcCdDdDdDdD"])
def test_an_admin_token_with_obviously_low_entropy_is_refused(tmp_path, token):
    env = {"PATH": os.environ["PATH"], "VAULTKEY_ADMIN_TOKEN": token}
    r = subprocess.run([sys.executable, "-m", "vaultkey", "serve", "--policies", str(tmp_path),
                        "--insecure"], env=env, capture_output=True, text=True, timeout=30,
                       check=False)
    assert r.returncode == 64
    assert "entropy" in r.stderr


def test_log_files_mention_no_websocket_warning_flood(proxy):
    # Upgrade attempts are refused quietly (audited), not logged once each by uvicorn.
    assert "Unsupported upgrade request" not in Path(proxy.log_path).read_text()
