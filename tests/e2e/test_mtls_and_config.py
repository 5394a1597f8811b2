"""Mutual TLS from components, and `vaultkey serve` configured by environment or file."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

import vaultkey
from tests._helpers.procs import popen, start_on_free_port, stop
from tests.e2e.conftest import POLICIES
from vaultkey.client import Client
from vaultkey.signkey import write_keypair

ADMIN_TOKEN = "qP7wE3rT9yU1iO5pA8sD2fG6hJ0kL4zX7cV3bN9m"


def test_client_ca_requires_a_client_certificate(proxy_factory, tls_ca, tmp_path):
    ca, ca_path, _cert, _key = tls_ca
    client_cert = ca.issue_cert("payments-component")
    cert_path, key_path = tmp_path / "client.pem", tmp_path / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(str(cert_path))
    client_cert.private_key_pem.write_to_path(str(key_path))
    proxy = proxy_factory(extra_args=["--client-ca", str(ca_path)],
                          client_cert=(cert_path, key_path))

    # retries=0: a refused handshake is the same on every attempt, no need to back off.
    with Client(proxy.addr, proxy.admin_token, cacert=str(ca_path), retries=0) as no_cert, \
            pytest.raises(vaultkey.Unavailable):
        no_cert.whoami()
    with Client(proxy.addr, proxy.admin_token, cacert=str(ca_path), client_cert=str(cert_path),
                client_key=str(key_path)) as with_cert:
        assert with_cert.whoami()["kind"] == "admin"
    env = {"PATH": "/usr/bin:/bin", "VAULTKEY_ADDR": proxy.addr, "VAULTKEY_CACERT": str(ca_path),
           "VAULTKEY_TOKEN": proxy.admin_token, "VAULTKEY_CLIENT_CERT": str(cert_path),
           "VAULTKEY_CLIENT_KEY": str(key_path), "VAULTKEY_CONFIG": "/dev/null"}
    r = subprocess.run([sys.executable, "-m", "vaultkey", "whoami"], env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and "admin token" in r.stdout


@pytest.mark.parametrize("source", ["environment", "config file"])
def test_serve_takes_every_setting_from_env_or_config_file(tmp_path, etcd_server, source):
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "alpha.toml").write_text(POLICIES["alpha.toml"])
    write_keypair(pol / "alpha")
    (tmp_path / "admin").write_text(ADMIN_TOKEN)
    (tmp_path / "admin").chmod(0o600)
    log = tmp_path / "serve.log"

    def spawn(port: int) -> subprocess.Popen[bytes]:
        """`vaultkey serve` without flags (but --config): every setting comes from *source*."""
        given = {"policies": str(pol), "etcd": etcd_server.url, "listen": f"127.0.0.1:{port}",
                 "insecure": "true", "admin_token_file": str(tmp_path / "admin"),
                 "root": "/cfg-" + source[:3], "audit_log": str(tmp_path / "audit.log")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
        args = [sys.executable, "-m", "vaultkey", "serve"]
        if source == "environment":
            env.update({f"VAULTKEY_{k.upper()}": v for k, v in given.items()})
        else:
            cfg = tmp_path / "serve.toml"
            lines = [f'{k} = "{v}"' if k != "insecure" else "insecure = true"
                     for k, v in given.items()]
            cfg.write_text("[serve]\n" + "\n".join(lines) + "\n")
            args += ["--config", str(cfg)]
        with open(log, "wb") as out:
            return popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)

    def ready(port: int) -> bool:
        return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200

    proc, port = start_on_free_port(spawn, ready, log=log, timeout=20)
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/v1/whoami",
                      headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        assert r.json()["kind"] == "admin"
    finally:
        stop(proc)
    assert '"op": "whoami"' in (tmp_path / "audit.log").read_text()


def test_flags_override_the_config_file(tmp_path, etcd_server):
    cfg = tmp_path / "serve.toml"
    cfg.write_text('[serve]\nlisten = "0.0.0.0:1"\ninsecure = true\n')
    (tmp_path / "p").mkdir()
    env = {"PATH": "/usr/bin:/bin", "VAULTKEY_ADMIN_TOKEN": ADMIN_TOKEN}
    r = subprocess.run([sys.executable, "-m", "vaultkey", "serve", "--config", str(cfg),
                        "--policies", str(tmp_path / "p")], env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 64 and "loopback" in r.stderr  # the file's non-loopback listen
    r = subprocess.run([sys.executable, "-m", "vaultkey", "serve", "--config", str(cfg),
                        "--listen", "127.0.0.1:1", "--policies", str(tmp_path / "p")],
                       env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "loopback" not in r.stderr  # the flag won; it now fails later, on the empty policies
    assert r.returncode == 78
