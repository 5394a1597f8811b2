"""Proxy settings. Built explicitly by the caller (CLI or tests), never at import time.

Every setting can come from a ``vaultkey serve`` flag, a ``VAULTKEY_...``
environment variable, or the ``[serve]`` table of a TOML config file
(``--config``); that precedence is applied by the CLI. This module validates
the combined result::

    cfg = ProxyConfig(policies="policies", etcd=["http://127.0.0.1:2379"],
                      listen="127.0.0.1:8443", tls_cert="s.pem", tls_key="s.key",
                      admin_token="...32+ characters...")
    cfg.check()
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from vaultkey.errors import UsageError
from vaultkey.store import EtcdSettings

MIN_ADMIN_TOKEN_CHARS = 32
DEFAULT_LISTEN = "127.0.0.1:8443"


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UsageError(f"bad --listen {listen!r}: use HOST:PORT, e.g. 127.0.0.1:8443")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ProxyConfig:
    policies: str
    etcd: list[str]
    admin_token: str = field(repr=False)
    listen: str = DEFAULT_LISTEN
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    insecure: bool = False
    root: str = "/vaultkey"
    audit_log: str | None = None
    escrow_keys: list[str] = field(default_factory=list)
    etcd_cacert: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    etcd_user: str | None = None
    etcd_password: str | None = field(default=None, repr=False)
    etcd_timeout: float = 5.0

    def check(self) -> None:
        """Refuse unsafe or inconsistent settings with a message naming the fix."""
        host, _port = split_listen(self.listen)
        if len(self.admin_token.strip()) < MIN_ADMIN_TOKEN_CHARS:
            raise UsageError(
                f"the admin token must be at least {MIN_ADMIN_TOKEN_CHARS} characters",
                hint="generate one with: "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise UsageError("--tls-cert and --tls-key go together")
        if not self.tls_cert:
            # Why: tokens and envelopes must never cross a network in clear text.
            if not self.insecure:
                raise UsageError(
                    "refusing to serve plain HTTP",
                    hint="pass --tls-cert and --tls-key "
                    "(or --insecure, loopback only, for development)",
                )
            if not is_loopback(host):
                raise UsageError(f"--insecure is only allowed on a loopback address, not {host}")
        if self.client_ca and not self.tls_cert:
            raise UsageError("--client-ca needs --tls-cert/--tls-key")
        for name in ("tls_cert", "tls_key", "client_ca", "etcd_cacert", "etcd_cert", "etcd_key"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                raise UsageError(f"--{name.replace('_', '-')} {value}: no such file")
        if not Path(self.policies).is_dir():
            raise UsageError(f"--policies {self.policies}: not a directory")
        if not self.root.startswith("/") or self.root.endswith("/"):
            raise UsageError(f"--root {self.root!r} must start with '/' and not end with '/'")

    def etcd_settings(self) -> EtcdSettings:
        return EtcdSettings(
            endpoints=list(self.etcd), ca_cert=self.etcd_cacert, client_cert=self.etcd_cert,
            client_key=self.etcd_key, user=self.etcd_user, password=self.etcd_password,
            timeout=self.etcd_timeout,
        )
