"""A real `vaultkey serve` (uvicorn, TLS from a trustme CA) against the real etcd.

``proxy_factory(...)`` starts one proxy subprocess with its own policy
directory, keys, admin token and etcd root; the proxies a test module started
are stopped together when that module ends.

``wait_for`` is the suite's one polling helper (``tests._helpers.wait_until``),
kept importable here under its old name.
"""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trustme

from tests._helpers.envelopes import reader_keys, write_policies
from tests._helpers.procs import kill_tree, popen, start_etcd, start_on_free_port
from tests._helpers.wait import wait_until
from vaultkey._dev.etcdproc import EtcdProcess
from vaultkey.crypto import SecretKey, encrypt
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


def _tls_client(addr: str, ca_path: Path, client_cert: tuple[Path, Path] | None = None,
                token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ctx = ssl.create_default_context(cafile=str(ca_path))
    if client_cert:
        ctx.load_cert_chain(*map(str, client_cert))
    return httpx.Client(base_url=addr, verify=ctx, headers=headers, timeout=10)


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
        return _tls_client(self.addr, self.ca_path, self.client_cert, token)

    def store(self) -> EtcdStore:
        conn = EtcdConnection(EtcdSettings(endpoints=[self.etcd_url]))
        return EtcdStore(conn, self.root + "/kv")

    def envelope(self, path: str, value: bytes) -> bytes:
        """An envelope encrypted for exactly the groups that may read *path*."""
        return encrypt(value, path, reader_keys(self.policy_dir, path))

    def create_token(self, group: str, **body: object) -> str:
        with self.client(self.admin_token) as c:
            r = c.post("/v1/tokens", json={"group": group, **body})
            assert r.status_code == 200, r.text
            return str(r.json()["token"])

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") + self.audit_path.read_text(
            errors="replace") if self.audit_path.exists() else self.log_path.read_text()

    def stop(self) -> None:
        """SIGTERM (a graceful stop that drains the audit log); SIGKILL after 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.reap()

    def reap(self, timeout: float = 15.0) -> None:
        """Wait for a proxy that was sent SIGTERM; kill it if it does not exit in time."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_tree(self.proc)


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


wait_for = wait_until  # the old name, still imported by several test modules


@pytest.fixture(scope="module")
def proxy_factory(tmp_path_factory, tls_ca, etcd_server) -> Iterator[Callable[..., Proxy]]:
    """Start proxies for one test module; all of them are stopped when the module ends."""
    started: list[Proxy] = []
    _ca, ca_path, cert, key = tls_ca

    def start(policies: dict[str, str] | None = None, etcd_url: str | None = None,
              extra_args: list[str] | None = None,
              client_cert: tuple[Path, Path] | None = None) -> Proxy:
        d = tmp_path_factory.mktemp("proxy")
        pol, keys = write_policies(policies or POLICIES, d)
        admin = secrets.token_urlsafe(32)
        (d / "admin-token").write_text(admin + "\n")
        (d / "admin-token").chmod(0o600)
        root = f"/vk-{uuid.uuid4().hex[:10]}"
        url = etcd_url or etcd_server.url
        log_path, audit_path = d / "proxy.log", d / "audit.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}

        def spawn(port: int) -> subprocess.Popen[bytes]:
            args = [sys.executable, "-m", "vaultkey", "serve", "--policies", str(pol),
                    "--etcd", url, "--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert),
                    "--tls-key", str(key), "--admin-token-file", str(d / "admin-token"),
                    "--root", root, "--audit-log", str(audit_path), *(extra_args or [])]
            with open(log_path, "wb") as log:
                return popen(args, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)

        def healthy(port: int) -> bool:
            with _tls_client(f"https://127.0.0.1:{port}", ca_path, client_cert) as c:
                return c.get("/healthz").status_code == 200

        proc, port = start_on_free_port(spawn, healthy, log=log_path)
        proxy = Proxy(f"https://127.0.0.1:{port}", ca_path, admin, pol, root, proc, log_path,
                      audit_path, url, keys, workdir=d, client_cert=client_cert)
        started.append(proxy)
        return proxy

    yield start
    # A test's leaked client connection (garbage, not yet collected) would hold a graceful
    # shutdown for its whole timeout (10 s): collect it first, so the socket is closed.
    gc.collect()
    # Stop them all at once: the graceful shutdowns run in parallel, not one after another.
    for proxy in started:
        if proxy.proc.poll() is None:
            proxy.proc.send_signal(signal.SIGTERM)
    for proxy in started:
        proxy.reap()


@pytest.fixture(scope="module")
def proxy(proxy_factory) -> Proxy:
    """A proxy with groups alpha and beta, and one token for each."""
    p = proxy_factory()
    p.tokens = {g: p.create_token(g, name=f"{g}-test") for g in ("alpha", "beta")}
    return p


@pytest.fixture
def private_etcd(tmp_path) -> Iterator[EtcdProcess]:
    """An etcd of this test's own, for tests that stop and restart it."""
    with start_etcd(tmp_path / "etcd") as etcd:
        yield etcd
