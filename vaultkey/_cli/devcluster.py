"""``vaultkey dev --cluster 3 --replicas 2``: the production layout, on one machine.

A 3-member etcd cluster with TLS to clients and mutual TLS between members, a
least-privilege etcd user for the proxies (etcd RBAC: read and write under
``/vaultkey/`` only), and N stateless proxy replicas (``vaultkey serve``
processes) on consecutive ports, all sharing the dev CA, keys, policy and admin
token of :mod:`vaultkey._cli.dev`. The exports list every replica in
``VAULTKEY_ADDR``, so the CLI and SDK fail over between them; ``--lb haproxy``
or ``--lb nginx`` prints a ready-made load-balancer configuration.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import click

ROOT_PREFIX = "/vaultkey"
ETCD_USER = "vaultkey"


def run_cluster(root: Path, state: dict[str, Any], host: str, port: int, members: int,
                replicas: int, lb: str | None, keep: bool) -> None:
    """Start etcd members and proxy replicas; block until SIGINT/SIGTERM; stop them all."""
    from vaultkey._dev.cluster import EtcdCluster, lb_snippet, least_privilege
    from vaultkey._files import write_private
    from vaultkey.errors import Unavailable, UsageError
    from vaultkey.proxy.workers import reap

    if (root / "etcd-cluster").exists() and not (root / "etcd-password").exists():
        raise UsageError(f"{root} holds an unfinished cluster", hint="use a new --dir")
    fresh = not (root / "etcd-password").exists()
    cluster = EtcdCluster.start(root / "etcd-cluster", members,
                                ports=state.get("cluster_ports"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        state["cluster_ports"] = [[m.client_port, m.peer_port] for m in cluster.members]
        (root / "state.json").write_text(json.dumps(state, indent=2))
        if fresh:
            password, root_password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            least_privilege(cluster.endpoints[0], cluster.ca, ROOT_PREFIX, user=ETCD_USER,
                            password=password, root_password=root_password)
            # etcd's root, for trying the etcdctl commands of OPERATIONS.md on this cluster
            write_private(root / "etcd-root-password", (root_password + "\n").encode())
            write_private(root / "etcd-password", (password + "\n").encode())
        addrs = []
        for i in range(replicas):
            addrs.append(f"https://{host}:{port + i}")
            procs.append(_serve(root, state, cluster, f"{host}:{port + i}", i))
        for i, addr in enumerate(addrs):
            _wait_ready(addr, root / "ca.pem", procs[i], root / f"proxy-{i + 1}.log")
        token = _token(root, addrs[0])
        from vaultkey._cli.dev import _exports

        exports = _exports(",".join(addrs), root, token)
        write_private(root / "env", ("\n".join(exports) + "\n").encode())
        _announce(exports, cluster, procs, addrs, root, keep)
        if lb:
            click.echo(f"\n# {lb} configuration for these replicas:")
            click.echo(lb_snippet(lb, addrs))
        click.echo("# Ctrl-C stops every replica and etcd member.", nl=True)
        _wait_for_signal(procs)
    except Unavailable as exc:
        raise UsageError(f"the dev cluster did not start: {exc.message}") from exc
    finally:
        # A second Ctrl-C (or SIGTERM) must not cut the cleanup short and leave etcd running.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        reap(procs, 15)
        cluster.stop()


def _announce(exports: list[str], cluster: Any, procs: list[subprocess.Popen[bytes]],
              addrs: list[str], root: Path, keep: bool) -> None:
    click.echo("vaultkey dev (cluster) is running. In another shell, paste:\n")
    click.echo("\n".join(exports))
    click.echo(f"\n# etcd: {len(cluster.members)} members with TLS, "
               f"{','.join(cluster.endpoints)} (CA {cluster.ca}); the proxies log in as etcd "
               f"user '{ETCD_USER}', who may only read and write {ROOT_PREFIX}/; etcd's root "
               f"password is in {root / 'etcd-root-password'}")
    for i, proc in enumerate(procs):
        click.echo(f"# replica {i + 1}: {addrs[i]} (pid {proc.pid}, log "
                   f"{root / f'proxy-{i + 1}.log'})")
    click.echo(f"# admin token: {root / 'admin.token'}; state in {root}"
               f"{'' if keep else ' (removed on exit)'}")


def _serve(root: Path, state: dict[str, Any], cluster: Any, listen: str,
           index: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTKEY_")}
    args = [sys.executable, "-m", "vaultkey", "serve", "--policies", str(root / "policies"),
            "--etcd", ",".join(cluster.endpoints), "--etcd-cacert", cluster.ca,
            "--etcd-user", ETCD_USER, "--etcd-password-file", str(root / "etcd-password"),
            "--root", ROOT_PREFIX, "--listen", listen, "--tls-cert", state["cert"],
            "--tls-key", state["key"], "--admin-token-file", str(root / "admin.token"),
            "--audit-log", str(root / f"audit-{index + 1}.log")]
    with open(root / f"proxy-{index + 1}.log", "ab") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def _context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def _wait_ready(addr: str, ca: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    from vaultkey.errors import Unavailable

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise Unavailable(f"the replica at {addr} exited ({proc.returncode}):\n{tail}")
        try:
            with urllib.request.urlopen(f"{addr}/readyz", timeout=2,  # noqa: S310
                                        context=_context(ca)) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise Unavailable(f"the replica at {addr} was not ready within 60 s (log: {log})")


def _token(root: Path, addr: str) -> str:
    """The dev group's token: the kept one while it works, else a new one (admin API)."""
    from vaultkey._cli.dev import _read_token
    from vaultkey._files import write_private

    saved = root / "dev.token"
    ctx = _context(root / "ca.pem")
    if saved.exists():
        token = _read_token(saved)
        req = urllib.request.Request(f"{addr}/v1/whoami",  # noqa: S310
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:  # noqa: S310
                if resp.status == 200:
                    return token
        except OSError:
            pass
    admin = _read_token(root / "admin.token")
    req = urllib.request.Request(  # noqa: S310 (our own https address)
        f"{addr}/v1/tokens", method="POST",
        data=json.dumps({"group": "dev", "name": "vaultkey dev"}).encode(),
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:  # noqa: S310
        token = str(json.loads(resp.read())["token"])
    write_private(saved, (token + "\n").encode())
    return token


def _wait_for_signal(procs: list[subprocess.Popen[bytes]]) -> None:
    """Block until Ctrl-C / SIGTERM; say so when a replica dies meanwhile (it is not
    restarted: killing one is how failover is tried)."""
    reported: set[int] = set()
    while True:
        for i, proc in enumerate(procs):
            if proc.poll() is not None and i not in reported:
                reported.add(i)
                click.echo(f"# replica {i + 1} exited ({proc.returncode}); the others go on",
                           err=True)
        time.sleep(0.5)
