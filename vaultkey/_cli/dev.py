"""``vaultkey dev``: a complete local vaultkey in one command (like ``vault server -dev``).

It starts a local etcd in a temporary directory, creates a throwaway CA and
server certificate, a ``dev`` group (policy, key pair, token) and an admin
token, runs the TLS proxy, prints the ``export VAULTKEY_...`` lines to paste,
and on Ctrl-C stops everything it started and deletes the directory (unless
``--dir`` asked to keep it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import click

from vaultkey._cli.common import cli

DEV_POLICY = """\
# Created by `vaultkey dev`: one group that may do everything, for local development.
group = "dev"
description = "local development (vaultkey dev)"
recipients = ["dev.pub"]

[[rules]]
prefix = "/"
allow = ["read", "list", "write", "delete", "watch"]
"""


def _prepare(root: Path) -> dict[str, Any]:
    """Create (or reuse) keys, policy, trust store, CA and admin token under *root*."""
    from vaultkey._dev.devca import make_dev_tls
    from vaultkey._files import write_private
    from vaultkey.signkey import write_keypair

    state_file = root / "state.json"
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    policies, trust = root / "policies", root / "trust"
    policies.mkdir(exist_ok=True)
    trust.mkdir(exist_ok=True)
    if not (root / "dev.key").exists():
        _key_path, pub_path = write_keypair(root / "dev")
        shutil.copy(pub_path, policies / "dev.pub")
        shutil.copy(pub_path, trust / "dev.pub")
    if not (policies / "dev.toml").exists():  # yours to edit in a kept --dir
        (policies / "dev.toml").write_text(DEV_POLICY)
    if not (root / "admin.token").exists():
        write_private(root / "admin.token", (secrets.token_urlsafe(32) + "\n").encode())
    tls = make_dev_tls(root)
    state.update(ca=str(tls.ca), cert=str(tls.cert), key=str(tls.key))
    return state


def _exports(addr: str, root: Path, token: str) -> list[str]:
    return [
        f"export VAULTKEY_ADDR={addr}",
        f"export VAULTKEY_CACERT={root / 'ca.pem'}",
        f"export VAULTKEY_TOKEN={token}",
        f"export VAULTKEY_KEY={root / 'dev.key'}",
        f"export VAULTKEY_TRUST={root / 'trust'}",
    ]


@cli.command("dev", epilog="""\b
Examples:
  vaultkey dev                          # temporary; everything is removed on Ctrl-C
  vaultkey dev --dir ~/.vaultkey-dev    # keep etcd data, keys and tokens for next time
  vaultkey dev --cluster 3 --replicas 2 --lb haproxy   # the production layout, locally
  source <dir>/env                      # the exports, from another shell""")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Keep all state here and reuse it next time (default: a temp dir).")
@click.option("--listen", default="127.0.0.1:8443", show_default=True,
              help="Proxy address (loopback); replicas take the following ports.")
@click.option("--cluster", "members", type=click.IntRange(0, 7), default=0,
              help="Run an etcd cluster of this many members (3 or 5) with TLS between "
              "them and a least-privilege etcd user for the proxies.")
@click.option("--replicas", type=click.IntRange(1, 16), default=None,
              help="Proxy replicas with --cluster (default 2), on consecutive ports.")
@click.option("--lb", type=click.Choice(["haproxy", "nginx"]),
              help="With --cluster, print a load-balancer configuration for the replicas.")
def dev(directory: str | None, listen: str, members: int, replicas: int | None,
        lb: str | None) -> None:
    """Run etcd, a throwaway CA and the TLS proxy locally, for development."""
    import logging

    from vaultkey._dev.etcdproc import EtcdProcess, free_port
    from vaultkey._files import write_private
    from vaultkey._net import is_loopback
    from vaultkey.errors import UsageError
    from vaultkey.proxy.config import ProxyConfig, split_listen
    from vaultkey.proxy.server import check_can_listen, serve
    from vaultkey.proxy.store.etcdconn import EtcdSettings

    host, port = split_listen(listen)
    if not is_loopback(host):
        raise UsageError("vaultkey dev only listens on loopback addresses")
    _check_cluster_options(members, replicas, lb)
    for offset in range(replicas or (2 if members else 1)):
        check_can_listen(host, port + offset)
    # Until the proxy runs, SIGTERM and SIGHUP also go through the cleanup below.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    # Why: a shell that started us in the background may have set SIGINT to "ignore",
    # which Python then keeps; Ctrl-C (or a test's SIGINT) must still stop and clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    keep = directory is not None
    root = _state_dir(directory)
    lock = _lock(root)
    etcd = None
    try:
        state = _prepare(root)
        if members:
            from vaultkey._cli.devcluster import run_cluster

            run_cluster(root, state, host, port, members, replicas or 2, lb, keep)
            return
        ports = state.setdefault("etcd_ports", [free_port(), free_port()])
        (root / "state.json").write_text(json.dumps(state, indent=2))
        try:
            etcd = EtcdProcess.start(root / "etcd", client_port=ports[0], peer_port=ports[1])
        except UsageError as exc:
            raise UsageError(exc.message, hint="etcd's ports are fixed for a kept --dir: free "
                             "the port, or start over with a new --dir") from exc
        config = ProxyConfig(
            policies=str(root / "policies"), etcd=EtcdSettings(endpoints=[etcd.url]),
            listen=listen,
            tls_cert=state["cert"], tls_key=state["key"],
            admin_token=_read_token(root / "admin.token"),
            audit_log=str(root / "audit.log"),
        )
        config.check()
        addr = f"https://{host if ':' not in host else f'[{host}]'}:{port}"

        async def ready(proxy_state: Any) -> None:
            # Why inside the server: the token is made through the proxy's own etcd
            # connection and event loop; a second gRPC channel opened and closed before
            # the server starts could abort the process (seen in CI).
            token = await _dev_token(root, proxy_state.tokens)
            exports = _exports(addr, root, token)
            write_private(root / "env", ("\n".join(exports) + "\n").encode())
            _announce(exports, root, etcd, keep)

        serve(config, log_level=logging.WARNING, on_sighup="stop", on_startup=ready)
    finally:
        if etcd is not None:
            etcd.stop()
        lock.close()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        click.echo("vaultkey dev stopped" + ("" if keep else "; temporary state removed"),
                   err=True)


def _check_cluster_options(members: int, replicas: int | None, lb: str | None) -> None:
    from vaultkey.errors import UsageError

    if members and members % 2 == 0:
        raise UsageError(f"--cluster {members}: use an odd number of members (3 or 5); an "
                         "even one tolerates no more failures than one member fewer")
    if (replicas is not None or lb) and not members:
        raise UsageError("--replicas and --lb go with --cluster (e.g. --cluster 3)")


def _announce(exports: list[str], root: Path, etcd: Any, keep: bool) -> None:
    click.echo("vaultkey dev is running. In another shell, paste:\n")
    click.echo("\n".join(exports))
    click.echo(f"\n# admin token (token create/list/revoke): {root / 'admin.token'}")
    click.echo(f"# etcd {etcd.url} (pid {etcd.proc.pid if etcd.proc else '?'}), "
               f"state in {root}{'' if keep else ' (removed on exit)'}")
    click.echo("# try: vaultkey set /hello world && vaultkey get /hello\n"
               "# Ctrl-C stops etcd and the proxy.", nl=True)


def _state_dir(directory: str | None) -> Path:
    """The state directory: a new 0700 temporary one, or --dir, checked and never chmod-ed.

    Why: it holds the admin token, the dev key and etcd's data. A directory someone else
    owns, or that group or others may write to, lets them swap those files (or read the
    token through a planted file); changing the mode of a directory the user already has
    would silently alter their own setup, so such a directory is refused instead.
    """
    from vaultkey.errors import UsageError

    if directory is None:
        return Path(tempfile.mkdtemp(prefix="vaultkey-dev-"))  # created 0700
    root = Path(directory).expanduser().resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        root.mkdir(mode=0o700)
        root.chmod(0o700)  # ours, just made: 0700 whatever the umask
        return root
    except FileExistsError:
        pass
    st = root.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"--dir {root} is not a directory")
    check_dir_is_private(root, st)
    return root


def check_dir_is_private(root: Path, st: os.stat_result) -> None:
    """Refuse an existing --dir that is not ours or that group or others may write."""
    import shlex

    from vaultkey.errors import UsageError

    if st.st_uid != os.getuid():
        raise UsageError(
            f"--dir {root} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}); "
            "its owner could replace the tokens and keys vaultkey dev keeps there",
            hint="use a directory of your own (a new --dir is created with mode 0700)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise UsageError(
            f"--dir {root} is writable by group or others (mode {mode:04o}); they could "
            "replace the tokens and keys vaultkey dev keeps there",
            hint=f"run: chmod go-w {shlex.quote(str(root))}, or use a new --dir "
            "(created with mode 0700)")


def _read_token(path: Path) -> str:
    from vaultkey._files import read_private

    return read_private(path, "token file").decode("utf-8").strip()


def _lock(root: Path) -> IO[bytes]:
    """One `vaultkey dev` per directory: a second one would share (and break) its etcd."""
    import fcntl

    from vaultkey.errors import UsageError

    handle = (root / ".lock").open("wb")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UsageError(f"another vaultkey dev is already running with --dir {root}",
                         hint="stop it first, or use another --dir") from None
    return handle


async def _dev_token(root: Path, tokens: Any) -> str:
    """Reuse the token of a kept --dir while it is valid; otherwise make a new one."""
    from vaultkey._files import write_private
    from vaultkey.errors import VaultkeyError

    saved = root / "dev.token"
    if saved.exists():
        token = _read_token(saved)
        try:
            await tokens.authenticate(token)
            return token
        except VaultkeyError:
            pass
    token, _record = await tokens.create("dev", name="vaultkey dev")
    write_private(saved, (token + "\n").encode())
    return str(token)
