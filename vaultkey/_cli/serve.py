"""``vaultkey serve``: run the TLS proxy. Heavy imports happen inside the command."""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable
from typing import Any, TypeVar

import click

from vaultkey._cli.common import cli
from vaultkey.errors import UsageError

FC = TypeVar("FC", bound=Callable[..., Any])


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """--config FILE: the [serve] table supplies defaults; flags and env override it."""
    if value:
        try:
            with open(value, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise click.BadParameter(f"cannot read config {value}: {exc}") from exc
        table = data.get("serve", {})
        if not isinstance(table, dict):
            raise click.BadParameter(f"{value}: [serve] must be a table")
        known = {p.name for p in ctx.command.params}
        unknown = sorted(set(table) - known)
        if unknown:
            raise click.BadParameter(f"{value}: unknown keys in [serve]: {', '.join(unknown)}")
        if isinstance(table.get("etcd"), list):  # etcd = ["https://a:2379", "https://b:2379"]
            table["etcd"] = ",".join(str(e) for e in table["etcd"])
        ctx.default_map = {**(ctx.default_map or {}), **table}
    return value


def _opt(*decls: str, env: str, **kw: Any) -> Callable[[FC], FC]:
    return click.option(*decls, envvar=env, show_envvar=True, **kw)


# Connection limits (docs/OPERATIONS.md, "Connection limits"): flag, type, default, help.
_LIMITS: tuple[tuple[str, type, float, str], ...] = (
    ("--max-connections", int, 1000, "Concurrent connections; past it idle ones are closed, "
     "then 503."),
    ("--max-header-bytes", int, 65536, "Request line + headers; larger heads get 431."),
    ("--header-timeout", float, 10.0, "Seconds to send a complete request head."),
    ("--idle-timeout", float, 5.0, "Seconds an idle keep-alive connection is kept."),
    ("--body-timeout", float, 30.0, "Seconds to send a whole request body."),
    ("--handshake-timeout", float, 10.0, "Seconds to finish the TLS handshake."),
    ("--watch-queue", int, 1024, "Events a watch stream may have waiting; past it, the "
     "stream ends with a resync."),
    ("--cache-bytes", int, 256 * 1024 * 1024, "Memory for the read cache of the keyspace "
     "(0: off, every read goes to etcd); past it, reads go to etcd."),
    ("--rate-limit", float, 0.0, "Requests per second per token (0: off); past it, 429."),
    ("--address-rate-limit", float, 0.0, "Requests per second per client address (0: off)."),
    ("--auth-failure-limit", float, 0.0, "Failed authentications per second per client "
     "address (0: off); past it, that address gets 429 before its token is checked."),
    ("--rate-burst", float, 0.0, "Requests a limit lets through at once (0: its rate)."),
)


def _limit_options(fn: FC) -> FC:
    for flag, kind, default, text in reversed(_LIMITS):
        env = "VAULTKEY_" + flag.removeprefix("--").replace("-", "_").upper()
        fn = _opt(flag, env=env, type=kind, default=kind(default), show_default=True,
                  help=text)(fn)
    return fn


def _secret_from(file_value: str | None, env_name: str, what: str) -> str | None:
    """The secret in *file_value* (checked like a key file: not readable by group or
    others, so the admin token is not everyone's on a shared host), else $*env_name*."""
    if file_value:
        from vaultkey._files import read_private

        try:
            return read_private(file_value, f"{what} file").decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UsageError(f"{what} file {file_value} is not UTF-8 text") from None
    return os.environ.get(env_name) or None


@cli.command(epilog="""\b
Examples:
  vaultkey serve --policies policies/ --etcd https://etcd1:2379,https://etcd2:2379 \\
      --listen 0.0.0.0:8443 --tls-cert server.pem --tls-key server.key \\
      --admin-token-file /run/secrets/vaultkey-admin --etcd-cacert etcd-ca.pem
  vaultkey serve --config /etc/vaultkey/serve.toml     # keys of its [serve] table = flag names
Reload policies without dropping requests: kill -HUP <pid>""")
@click.option("--config", callback=_load_config, is_eager=True, expose_value=False,
              envvar="VAULTKEY_SERVE_CONFIG", show_envvar=True, metavar="FILE",
              help="TOML file whose [serve] table sets defaults (e.g. policies = \"...\").")
@_opt("--policies", env="VAULTKEY_POLICIES", default="policies", show_default=True,
      help="Directory of policy files.")
@_opt("--etcd", env="VAULTKEY_ETCD", default="http://127.0.0.1:2379", show_default=True,
      help="etcd endpoints, comma-separated (failover in order).")
@_opt("--listen", env="VAULTKEY_LISTEN", default="127.0.0.1:8443", show_default=True)
@_opt("--tls-cert", env="VAULTKEY_TLS_CERT", help="Server certificate (PEM).")
@_opt("--tls-key", env="VAULTKEY_TLS_KEY", help="Server private key (PEM).")
@_opt("--client-ca", env="VAULTKEY_CLIENT_CA", help="Require client certificates from this CA.")
@_opt("--admin-token-file", env="VAULTKEY_ADMIN_TOKEN_FILE",
      help="File holding the admin token, or several (one per line), read again on SIGHUP "
      "(or set VAULTKEY_ADMIN_TOKEN).")
@_opt("--etcd-cacert", env="VAULTKEY_ETCD_CACERT")
@_opt("--etcd-cert", env="VAULTKEY_ETCD_CERT")
@_opt("--etcd-key", env="VAULTKEY_ETCD_KEY")
@_opt("--etcd-user", env="VAULTKEY_ETCD_USER")
@_opt("--etcd-password-file", env="VAULTKEY_ETCD_PASSWORD_FILE",
      help="File holding the etcd password (or set VAULTKEY_ETCD_PASSWORD).")
@_opt("--root", env="VAULTKEY_ROOT", default="/vaultkey", show_default=True,
      help="etcd key prefix for all vaultkey data.")
@_opt("--escrow-key", "escrow_keys", env="VAULTKEY_ESCROW_KEYS", multiple=True,
      help="Recovery public key (file or vkpub1_ text) allowed on every value; repeatable.")
@_opt("--audit-log", env="VAULTKEY_AUDIT_LOG", help="Append one JSON line per request here.")
@_limit_options
@_opt("--workers", env="VAULTKEY_WORKERS", type=int, default=1, show_default=True,
      help="Processes serving the address (SO_REUSEPORT), each like a replica: its own "
      "etcd watch and read cache. Use one per core.")
@click.option("--reuse-port", is_flag=True, hidden=True)  # set in each worker by --workers
@_opt("--insecure", env="VAULTKEY_INSECURE", is_flag=True,
      help="Serve plain HTTP (development only; loopback addresses only).")
def serve(**opts: Any) -> None:
    """Run the ACL-enforcing TLS proxy in front of etcd."""
    from vaultkey.proxy.config import ProxyConfig
    from vaultkey.proxy.server import serve as run
    from vaultkey.proxy.store.etcdconn import EtcdSettings

    admin_file = opts.pop("admin_token_file")
    admin = _secret_from(admin_file, "VAULTKEY_ADMIN_TOKEN", "admin token")
    if not admin:
        raise UsageError("no admin token",
                         hint="pass --admin-token-file FILE or set VAULTKEY_ADMIN_TOKEN")
    password = _secret_from(opts.pop("etcd_password_file"), "VAULTKEY_ETCD_PASSWORD",
                            "etcd password")
    etcd = opts.pop("etcd")
    settings = EtcdSettings(
        endpoints=etcd if isinstance(etcd, list) else [e for e in etcd.split(",") if e.strip()],
        ca_cert=opts.pop("etcd_cacert"), client_cert=opts.pop("etcd_cert"),
        client_key=opts.pop("etcd_key"), user=opts.pop("etcd_user"), password=password)
    escrow = list(opts.pop("escrow_keys") or [])
    config = ProxyConfig(etcd=settings, admin_token=admin, escrow_keys=escrow,
                         admin_token_file=admin_file or None, **opts)
    if config.workers > 1 and not config.reuse_port:
        from vaultkey.proxy.config import split_listen
        from vaultkey.proxy.server import check_can_listen, check_tls_files, configure_logging
        from vaultkey.proxy.workers import supervise

        config.check()  # refuse a bad setting once, here, not once per worker
        check_can_listen(*split_listen(config.listen))
        check_tls_files(config)
        configure_logging()
        sys.exit(supervise(sys.argv[1:], config.workers))
    run(config)
