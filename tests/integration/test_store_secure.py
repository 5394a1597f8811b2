"""The store against etcd with TLS, mutual TLS, user/password auth, and several endpoints."""

from __future__ import annotations

import pytest
import trustme
from etcd3 import etcdrpc

from tests._helpers.procs import start_etcd
from tests._helpers.wait import wait_until
from vaultkey._dev.etcdproc import EtcdTLS, free_port
from vaultkey.errors import StoreError, Unavailable, UsageError
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings, EtcdStore


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("etcd-pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(str(d / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(d / "server.pem"))
    client = ca.issue_cert("vaultkey-proxy")
    client.private_key_pem.write_to_path(str(d / "client.key"))
    client.cert_chain_pems[0].write_to_path(str(d / "client.pem"))
    return d


def _roundtrip(settings: EtcdSettings) -> bytes:
    conn = EtcdConnection(settings)
    try:
        store = EtcdStore(conn, "/secure")
        store.put("/k", b"over tls")
        entry = store.get("/k")
        assert entry is not None
        return entry.value
    finally:
        conn.close()


def test_store_over_mutual_tls(tmp_path, pki):
    tls = EtcdTLS(cert=str(pki / "server.pem"), key=str(pki / "server.key"),
                  ca=str(pki / "ca.pem"), client_cert_auth=True,
                  client_cert=str(pki / "client.pem"), client_key=str(pki / "client.key"))
    with start_etcd(tmp_path / "etcd", tls=tls) as etcd:
        assert etcd.url.startswith("https://")
        good = EtcdSettings(endpoints=[etcd.url], ca_cert=str(pki / "ca.pem"),
                            client_cert=str(pki / "client.pem"),
                            client_key=str(pki / "client.key"), timeout=3)
        assert _roundtrip(good) == b"over tls"
        no_client_cert = EtcdSettings(endpoints=[etcd.url], ca_cert=str(pki / "ca.pem"),
                                      timeout=2, retry_endpoint_after=0.1)
        with pytest.raises((Unavailable, StoreError)):
            _roundtrip(no_client_cert)


def test_store_over_server_tls_refuses_unknown_ca(tmp_path, pki):
    tls = EtcdTLS(cert=str(pki / "server.pem"), key=str(pki / "server.key"),
                  ca=str(pki / "ca.pem"))
    with start_etcd(tmp_path / "etcd", tls=tls) as etcd:
        assert _roundtrip(EtcdSettings(endpoints=[etcd.url], ca_cert=str(pki / "ca.pem"))) \
            == b"over tls"
        other_ca = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca))
        with pytest.raises((Unavailable, StoreError)):
            _roundtrip(EtcdSettings(endpoints=[etcd.url], ca_cert=str(other_ca), timeout=2))


def _enable_auth(url: str, ca: str) -> None:
    """Turn on etcd auth with user root / password rootpw."""
    admin = EtcdConnection(EtcdSettings(endpoints=[url], ca_cert=ca))
    try:
        client = admin.client()
        client.authstub.UserAdd(etcdrpc.AuthUserAddRequest(name="root", password="rootpw"))
        client.authstub.UserGrantRole(etcdrpc.AuthUserGrantRoleRequest(user="root", role="root"))
        client.authstub.AuthEnable(etcdrpc.AuthEnableRequest())
    finally:
        admin.close()


def test_store_with_etcd_user_and_password_over_tls(tmp_path, pki):
    tls = EtcdTLS(cert=str(pki / "server.pem"), key=str(pki / "server.key"),
                  ca=str(pki / "ca.pem"))
    ca = str(pki / "ca.pem")
    with start_etcd(tmp_path / "etcd", tls=tls) as etcd:
        _enable_auth(etcd.url, ca)
        settings = EtcdSettings(endpoints=[etcd.url], ca_cert=ca, user="root", password="rootpw")
        assert "rootpw" not in repr(settings)
        assert _roundtrip(settings) == b"over tls"
        with pytest.raises(StoreError, match="authentication failed"):
            _roundtrip(EtcdSettings(endpoints=[etcd.url], ca_cert=ca, user="root",
                                    password="wrong"))
        with pytest.raises(StoreError):
            _roundtrip(EtcdSettings(endpoints=[etcd.url], ca_cert=ca))


def test_password_over_plain_http_is_refused(etcd_server):
    with pytest.raises(UsageError, match="needs https"):
        EtcdConnection(EtcdSettings(endpoints=[etcd_server.url], user="u", password="p"))


def test_failover_to_the_next_endpoint(etcd_server):
    dead = f"http://127.0.0.1:{free_port()}"
    conn = EtcdConnection(EtcdSettings(endpoints=[dead, etcd_server.url], timeout=2))
    try:
        store = EtcdStore(conn, "/failover")
        for i in range(10):  # whichever endpoint the client starts on, every call succeeds
            store.put(f"/k{i}", b"v")
            assert store.get(f"/k{i}") is not None
    finally:
        conn.client().delete_prefix(b"/failover")
        conn.close()


def test_an_expired_etcd_auth_token_is_renewed(tmp_path, pki):
    tls = EtcdTLS(cert=str(pki / "server.pem"), key=str(pki / "server.key"),
                  ca=str(pki / "ca.pem"))
    ca = str(pki / "ca.pem")
    with start_etcd(tmp_path / "etcd", tls=tls,
                           extra_args=["--auth-token", "simple", "--auth-token-ttl", "1"]) as etcd:
        _enable_auth(etcd.url, ca)
        conn = EtcdConnection(EtcdSettings(endpoints=[etcd.url], ca_cert=ca, user="root",
                                           password="rootpw"))
        try:
            store = EtcdStore(conn, "/renew")
            store.put("/k", b"before")
            first = conn.client()
            # etcd drops a simple token after 1 s of idleness (checked once a second), and
            # says so in its log: wait for that rather than for a guessed time.
            assert wait_until(lambda: "deleted a simple token" in etcd.log_path.read_text(),
                              timeout=10, interval=0.1)
            assert store.get("/k").value == b"before"  # reconnected with a fresh token
            assert conn.client() is not first
        finally:
            conn.close()
