"""Operations: SIGHUP reload, etcd outages, logs without secrets, refusing plain HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import httpx

from tests._helpers.procs import popen, start_on_free_port, stop
from tests._helpers.wait import wait_until
from tests.e2e.conftest import POLICIES

ADMIN_TOKEN_0 = "xT1nB5vC9xZ3lK7jH2gF6dS0aP4oI8uY3tR7e-q"
ADMIN_TOKEN_1 = "yW2eR6tY0uI4oP8aS3dF7gH1jK5lZ9xC2vB6n_m"


def test_sighup_reload_takes_effect_and_broken_set_keeps_old_one(proxy_factory):
    proxy = proxy_factory()
    token = proxy.create_token("beta")
    client = proxy.client(token)
    assert client.get("/v1/kv/alpha/", params={"list": "true"}).status_code == 403

    errors: list[str] = []
    stop = threading.Event()

    def hammer() -> None:  # requests in flight during reloads must all be answered
        with proxy.client(token) as c:
            while not stop.is_set():
                try:
                    status = c.get("/v1/kv/beta/", params={"list": "true"}).status_code
                    if status != 200:
                        errors.append(str(status))
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        beta = proxy.policy_dir / "beta.toml"
        extra = '\n[[rules]]\nprefix = "/alpha/"\nallow = ["list"]\n'
        beta.write_text(POLICIES["beta.toml"] + extra)
        proxy.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: client.get("/v1/kv/alpha/", params={"list": "true"}).status_code
                         == 200), "reload did not take effect"

        beta.write_text('group = "beta"\n[[rules]]\nprefix = "/beta/"\nallow = ["fly"]\n')
        proxy.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "policy reload refused" in proxy.log_path.read_text())
        assert client.get("/v1/kv/alpha/", params={"list": "true"}).status_code == 200
        with proxy.client() as c:
            assert 'vaultkey_policy_reloads_total{result="refused"} 1.0' in c.get("/metrics").text
    finally:
        stop.set()
        worker.join()
        client.close()
    assert errors == []
    assert proxy.proc.poll() is None


def test_etcd_outage_gives_503_with_retry_after_then_recovers(proxy_factory, private_etcd):
    proxy = proxy_factory(etcd_url=private_etcd.url)
    token = proxy.create_token("alpha")
    path = "/alpha/outage"
    with proxy.client(token) as c:
        assert c.put(f"/v1/kv{path}", content=proxy.envelope(path, b"v")).status_code == 200
        private_etcd.stop()
        r = c.get(f"/v1/kv{path}")
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "unavailable"
        with proxy.client() as anon:
            assert anon.get("/readyz").status_code == 503
            assert anon.get("/healthz").status_code == 200
        private_etcd.restart()
        back = time.monotonic()
        assert wait_until(lambda: c.get(f"/v1/kv{path}").status_code == 200, timeout=20)
        print(f"\nproxy served again {time.monotonic() - back:.2f}s after etcd was healthy")
        assert c.put(f"/v1/kv{path}", content=proxy.envelope(path, b"w")).status_code == 200
    assert proxy.proc.poll() is None


def test_logs_never_contain_tokens_or_values(proxy):
    path, secret = "/alpha/log-canary", b"LOG-CANARY-PLAINTEXT-9f3a"
    env = proxy.envelope(path, secret)
    token = proxy.tokens["alpha"]
    with proxy.client(token) as c:
        c.put(f"/v1/kv{path}", content=env)
        c.get(f"/v1/kv{path}")
        c.get("/v1/kv/beta/x")
    with proxy.client(proxy.admin_token) as c:
        c.get("/v1/tokens")
    with proxy.client(token + "x") as c:
        c.get("/v1/whoami")
    # the audit writer is a background thread: wait for the last request's line
    assert wait_until(lambda: '"op": "token.list"' in proxy.audit_path.read_text()
                    and '"status": 401' in proxy.audit_path.read_text())
    logs = proxy.log_path.read_text() + proxy.audit_path.read_text()
    import base64

    for forbidden in [token, token.split(".")[1], proxy.admin_token, secret.decode(),
                      *proxy.tokens.values(), base64.b64encode(env).decode()[:40]]:
        assert forbidden not in logs
    audit = proxy.audit_path.read_text()
    assert '"op": "kv.write"' in audit and '"decision": "deny"' in audit
    assert '"token_id": "' in audit and path in audit


def test_audit_lines_are_json_with_the_documented_fields(proxy):
    import json

    with proxy.client(proxy.tokens["beta"]) as c:
        c.get("/v1/kv/beta/audit-probe")
    assert wait_until(lambda: "/beta/audit-probe" in proxy.audit_path.read_text())
    lines = [json.loads(x) for x in proxy.audit_path.read_text().splitlines()]
    probe = [x for x in lines if x["path"] == "/beta/audit-probe"][-1]
    assert set(probe) == {"time", "token_id", "claimed_token_id", "group", "op", "path",
                          "decision", "status", "revision", "ms"}
    assert probe["claimed_token_id"] is None  # set only when authentication fails
    assert probe["group"] == "beta" and probe["status"] == 404 and probe["op"] == "kv.read"


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "VAULTKEY_ADMIN_TOKEN": ADMIN_TOKEN_0}
    return subprocess.run([sys.executable, "-m", "vaultkey", "serve", *args],
                          capture_output=True, text=True, env={**base, **(env or {})},
                          timeout=60, check=False)


def test_plain_http_is_refused_without_insecure_flag(tmp_path):
    r = _serve("--policies", str(tmp_path), "--listen", "127.0.0.1:1")
    assert r.returncode == 64
    assert "refusing to serve plain HTTP" in r.stderr


def test_insecure_flag_is_refused_on_a_non_loopback_address(tmp_path):
    r = _serve("--policies", str(tmp_path), "--listen", "0.0.0.0:1", "--insecure")
    assert r.returncode == 64
    assert "only allowed on a loopback address" in r.stderr


def test_weak_or_missing_admin_token_is_refused(tmp_path):
    r = _serve("--policies", str(tmp_path), "--insecure", env={"VAULTKEY_ADMIN_TOKEN": "short"})
    assert r.returncode == 64 and "at least 32 characters" in r.stderr
    r = _serve("--policies", str(tmp_path), "--insecure", env={"VAULTKEY_ADMIN_TOKEN": ""})
    assert r.returncode == 64 and "no admin token" in r.stderr


def test_insecure_on_loopback_serves_plain_http(tmp_path, etcd_server):
    from vaultkey.signkey import write_keypair

    (tmp_path / "alpha.toml").write_text(POLICIES["alpha.toml"])
    write_keypair(tmp_path / "alpha")
    env = {"PATH": "/usr/bin:/bin", "VAULTKEY_ADMIN_TOKEN": ADMIN_TOKEN_1}
    log = tmp_path / "serve.log"

    def spawn(port: int) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            return popen([sys.executable, "-m", "vaultkey", "serve", "--policies", str(tmp_path),
                          "--etcd", etcd_server.url, "--listen", f"127.0.0.1:{port}",
                          "--insecure"], env=env, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)

    def up(port: int) -> bool:
        return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200

    proc, port = start_on_free_port(spawn, up, log=log, timeout=20)
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/v1/whoami",
                      headers={"Authorization": "Bearer " + ADMIN_TOKEN_1})
        assert r.json()["kind"] == "admin"
    finally:
        stop(proc)
    assert "INSECURE" in log.read_text()


def test_sigterm_drains_the_audit_log(proxy_factory):
    proxy = proxy_factory()
    token = proxy.create_token("beta")
    with proxy.client(token) as c:
        for _ in range(50):
            assert c.get("/v1/kv/beta/drain").status_code == 404
    proxy.stop()  # SIGTERM, graceful
    lines = [ln for ln in proxy.audit_path.read_text().splitlines() if "/beta/drain" in ln]
    assert len(lines) == 50


def test_admin_tokens_rotate_with_sighup_and_no_restart(proxy_factory):
    """Add the new admin token, SIGHUP, move clients over, remove the old one, SIGHUP."""
    import secrets

    proxy = proxy_factory()
    token_file = proxy.workdir / "admin-token"
    old, new = proxy.admin_token, secrets.token_urlsafe(32)
    group = proxy.create_token("alpha")
    answers: list[int] = []
    stop = threading.Event()

    def status(token: str) -> int:
        with proxy.client(token) as c:
            return c.get("/v1/tokens").status_code

    def in_flight() -> None:  # group reads and admin listings on kept-alive connections
        with proxy.client(group) as g, proxy.client(new) as admin:
            while not stop.is_set():
                answers.append(g.get("/v1/kv/alpha/", params={"list": "true"}).status_code)
                code = admin.get("/v1/tokens").status_code
                answers.append(200 if code in (200, 401) else code)  # 401 until it is added

    def more(n: int = 20) -> None:
        target = len(answers) + n
        assert wait_until(lambda: len(answers) >= target)

    worker = threading.Thread(target=in_flight)
    worker.start()
    try:
        more()
        token_file.write_text(f"{old}\n# added for the rotation\n{new}\n")
        proxy.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: status(new) == 200)
        assert status(old) == 200  # both, while clients move over
        more()
        token_file.write_text(f"{new}\n")
        proxy.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: status(old) == 401)
        assert status(new) == 200
        more()
    finally:
        stop.set()
        worker.join()
    assert len(answers) >= 60 and set(answers) == {200}, set(answers)
    print(f"\n{len(answers)} requests in flight across two SIGHUP reloads, all answered")
    token_file.write_text(f"{new}\n{'x' * 40}\n")  # a weak token: the whole file is refused
    proxy.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "admin token reload refused" in proxy.log_path.read_text())
    assert status(new) == 200 and status(old) == 401
    assert old not in proxy.log_path.read_text() and new not in proxy.log_path.read_text()
