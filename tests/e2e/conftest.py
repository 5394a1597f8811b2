"""A real `vaultkey serve` (uvicorn, TLS from a trustme CA) against the real etcd.

``proxy_factory(...)`` starts one proxy subprocess with its own policy
directory, keys, admin token and etcd root; every proxy is stopped at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trustme

from vaultkey._dev.etcdproc import EtcdProcess, free_port
from vaultkey.crypto import SecretKey, encrypt, write_keypair
from vaultkey.policy.load import load_policy_dir
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings, EtcdStore

POLICIES = {
    "alpha.toml": """
group = "alpha"
recipients = ["alpha.pub"]
[[rules]]
prefix = "/alpha/"
allow = ["read", "list", "write", "delete", "watch"]
[[rules]]
prefix = "/alpha/locked/"
deny = ["write", "delete"]
[[rules]]
prefix = "/alpha/hidden/"
deny = ["list"]
[[rules]]
prefix = "/shared/"
allow = ["read", "list"]
[[rules]]
prefix = "/shared/alpha/"
allow = ["write", "delete"]
[[rules]]
prefix = "/services/+/config/"
allow = ["read", "list"]
[[rules]]
key = "/beta/public/motd"
allow = ["read"]
""",
    "beta.toml": """
group = "beta"
recipients = ["beta.pub"]
[[rules]]
prefix = "/beta/"
allow = ["read", "list", "write", "delete"]
[[rules]]
prefix = "/shared/"
allow = ["read", "list", "write"]
[[rules]]
key = "/shared/alpha/secret"
deny = ["read"]
[[rules]]
prefix = "/services/beta/"
allow = ["read", "list", "write", "delete"]
""",
    "gamma.toml": """
group = "gamma"
description = "a janitor: may write and delete under /beta/drop/ but never read"
recipients = ["gamma.pub"]
[[rules]]
prefix = "/beta/drop/"
allow = ["write", "delete"]
""",
}


@dataclass
class Proxy:
    addr: str
    ca_path: Path
    admin_token: str
    policy_dir: Path
    root: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    audit_path: Path
    etcd_url: str
    keys: dict[str, SecretKey] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    workdir: Path = field(default=Path("."))
    client_cert: tuple[Path, Path] | None = None

    def key_path(self, group: str) -> Path:
        return self.workdir / f"{group}.key"

    def trust_dir(self) -> Path:
        """A trust store holding every group's public key (as a careful operator sets up)."""
        trust = self.workdir / "trust"
        if not trust.exists():
            trust.mkdir()
            for pub in self.policy_dir.glob("*.pub"):
                shutil.copy(pub, trust / pub.name)
        return trust

    def env(self, group: str, **extra: str) -> dict[str, str]:
        """Environment for the CLI acting as *group* (no inherited VAULTKEY_* settings)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
        base.update(VAULTKEY_ADDR=self.addr, VAULTKEY_CACERT=str(self.ca_path),
                    VAULTKEY_TOKEN=self.tokens[group], VAULTKEY_KEY=str(self.key_path(group)),
                    VAULTKEY_TRUST=str(self.trust_dir()),
                    VAULTKEY_CONFIG="/dev/null")
        base.update(extra)
        return base

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        if self.client_cert:
            ctx.load_cert_chain(*map(str, self.client_cert))
        return httpx.Client(base_url=self.addr, verify=ctx, headers=headers, timeout=10)

    def store(self) -> EtcdStore:
        conn = EtcdConnection(EtcdSettings(endpoints=[self.etcd_url]))
        return EtcdStore(conn, self.root + "/kv")

    def envelope(self, path: str, value: bytes) -> bytes:
        """An envelope encrypted for exactly the groups that may read *path*."""
        return encrypt(value, path, load_policy_dir(self.policy_dir).reader_keys(path))

    def create_token(self, group: str, **body: object) -> str:
        with self.client(self.admin_token) as c:
            r = c.post("/v1/tokens", json={"group": group, **body})
            assert r.status_code == 200, r.text
            return str(r.json()["token"])

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") + self.audit_path.read_text(
            errors="replace") if self.audit_path.exists() else self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path, Path, Path]:
    ca = trustme.CA()
    d = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.private_key_pem.write_to_path(str(d / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(d / "server.pem"))
    for pem in cert.cert_chain_pems[1:]:
        with open(d / "server.pem", "ab") as fh:
            fh.write(pem.bytes())
    return ca, d / "ca.pem", d / "server.pem", d / "server.key"


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll *predicate* until it is true (instead of sleeping a guessed time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def wait_healthy(proxy: Proxy, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.proc.poll() is not None:
            raise RuntimeError(
                f"proxy exited {proxy.proc.returncode}:\n{proxy.log_path.read_text()}")
        try:
            with proxy.client() as c:
                if c.get("/healthz").status_code == 200:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"proxy not healthy after {timeout}s:\n{proxy.log_path.read_text()}")


@pytest.fixture(scope="session")
def proxy_factory(tmp_path_factory, tls_ca, etcd_server) -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []
    _ca, ca_path, cert, key = tls_ca

    def start(policies: dict[str, str] | None = None, etcd_url: str | None = None,
              extra_args: list[str] | None = None,
              client_cert: tuple[Path, Path] | None = None) -> Proxy:
        d = tmp_path_factory.mktemp("proxy")
        pol = d / "policies"
        pol.mkdir()
        keys = {}
        for name, text in (policies or POLICIES).items():
            (pol / name).write_text(text)
            group = name.removesuffix(".toml")
            key_path, _pub = write_keypair(pol / group)
            keys[group] = SecretKey.load(key_path)
            shutil.move(str(key_path), str(d / f"{group}.key"))
        admin = secrets.token_urlsafe(32)
        (d / "admin-token").write_text(admin + "\n")
        (d / "admin-token").chmod(0o600)
        port = free_port()
        root = f"/vk-{uuid.uuid4().hex[:10]}"
        url = etcd_url or etcd_server.url
        log_path, audit_path = d / "proxy.log", d / "audit.log"
        args = [sys.executable, "-m", "vaultkey", "serve", "--policies", str(pol),
                "--etcd", url, "--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert),
                "--tls-key", str(key), "--admin-token-file", str(d / "admin-token"),
                "--root", root, "--audit-log", str(audit_path), *(extra_args or [])]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        proxy = Proxy(f"https://127.0.0.1:{port}", ca_path, admin, pol, root, proc, log_path,
                      audit_path, url, keys, workdir=d, client_cert=client_cert)
        started.append(proxy)
        wait_healthy(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="module")
def proxy(proxy_factory) -> Proxy:
    """A proxy with groups alpha and beta, and one token for each."""
    p = proxy_factory()
    p.tokens = {g: p.create_token(g, name=f"{g}-test") for g in ("alpha", "beta")}
    return p


@pytest.fixture
def private_etcd(tmp_path) -> Iterator[EtcdProcess]:
    """An etcd of this test's own, for tests that stop and restart it."""
    with EtcdProcess.start(tmp_path / "etcd", client_port=free_port()) as etcd:
        yield etcd
