"""A least-privilege etcd user for the proxy (issue 13, part 1): etcd RBAC lets it read and
write its own root prefix only. The proxy works with it; the same credentials cannot read
anything outside the root (etcd refuses them), so a proxy bug cannot reach other data."""

from __future__ import annotations

import pytest
import trustme

from tests._helpers.procs import start_etcd
from tests.e2e.test_cli import ok, vk
from vaultkey._dev.cluster import least_privilege
from vaultkey._dev.etcdproc import EtcdTLS
from vaultkey.errors import StoreError
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings, EtcdStore

ROOT = "/vaultkey"


def _least_privilege(url: str, ca: str) -> None:
    """Another application's key, then what OPERATIONS.md, "etcd RBAC", does with etcdctl:
    root for the operator, and a role that may read and write ROOT/ only, for the proxy."""
    other = EtcdConnection(EtcdSettings(endpoints=[url], ca_cert=ca))
    try:
        other.client().put(b"/other-app/secret", b"not vaultkey's")
    finally:
        other.close()
    least_privilege(url, ca, ROOT, user="vaultkey", password="proxy-password",
                    root_password="rootpw")


def test_the_proxy_works_with_a_user_limited_to_its_root(proxy_factory, tmp_path):
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    tls = EtcdTLS(cert=str(tmp_path / "server.pem"), key=str(tmp_path / "server.key"),
                  ca=str(tmp_path / "ca.pem"))
    password = tmp_path / "etcd-password"
    password.write_text("proxy-password\n")
    password.chmod(0o600)
    with start_etcd(tmp_path / "etcd", tls=tls) as etcd:
        _least_privilege(etcd.url, str(tmp_path / "ca.pem"))
        proxy = proxy_factory(etcd_url=etcd.url, extra_args=[
            "--root", ROOT, "--etcd-cacert", str(tmp_path / "ca.pem"), "--etcd-user",
            "vaultkey", "--etcd-password-file", str(password)])
        proxy.tokens = {"alpha": proxy.create_token("alpha")}  # tokens: under ROOT/sys
        ok(vk(proxy, "alpha", "set", "/alpha/rbac/x", "works", "--ttl", "30s"))  # and a lease
        assert ok(vk(proxy, "alpha", "get", "/alpha/rbac/x")) == b"works"
        assert b"/alpha/rbac/x" in ok(vk(proxy, "alpha", "ls", "-r", "/alpha/"))

        limited = EtcdConnection(EtcdSettings(endpoints=[etcd.url],
                                              ca_cert=str(tmp_path / "ca.pem"),
                                              user="vaultkey", password="proxy-password"))
        try:
            assert EtcdStore(limited, ROOT + "/kv").get("/alpha/rbac/x") is not None
            with pytest.raises(StoreError, match="permission denied"):
                EtcdStore(limited, "/other-app").get("/secret")
        finally:
            limited.close()
