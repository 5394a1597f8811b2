"""Proxy settings. Built explicitly by the caller (CLI or tests), never at import time.

Every setting can come from a ``vaultkey serve`` flag, a ``VAULTKEY_...``
environment variable, or the ``[serve]`` table of a TOML config file
(``--config``); that precedence is applied by the CLI. This module validates
the combined result::

    cfg = ProxyConfig(policies="policies",
                      etcd=EtcdSettings(endpoints=["https://etcd1:2379"], ca_cert="ca.pem"),
                      listen="127.0.0.1:8443", tls_cert="s.pem", tls_key="s.key",
                      admin_token="...32+ characters...")
    cfg.check()
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from vaultkey._net import is_loopback
from vaultkey.errors import UsageError
from vaultkey.proxy.protocol import ConnectionLimits
from vaultkey.proxy.store.etcdconn import EtcdSettings

MIN_ADMIN_TOKEN_CHARS = 32
DEFAULT_LISTEN = "127.0.0.1:8443"


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UsageError(f"bad --listen {listen!r}: use HOST:PORT, e.g. 127.0.0.1:8443")
    return host.strip("[]"), int(port)


# The segments under a root that a vaultkey proxy writes (see state.py).
_ROOT_SEGMENTS = ("kv", "sys")
_ROOT_RE = re.compile(r"/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")


def check_root(root: str) -> None:
    """Refuse a root that is malformed or lies inside another installation's keyspace.

    Why: a root such as ``/vaultkey/kv/app`` would make this proxy's tokens and
    values ordinary keys of the installation at ``/vaultkey``, readable and
    writable through that installation's API.
    """
    if not _ROOT_RE.fullmatch(root) or any(seg in (".", "..") for seg in root.split("/")):
        raise UsageError(f"--root {root!r} must start with '/', not end with '/', and use "
                         "only letters, digits, '.', '_' and '-' in its segments")
    segments = root.split("/")[1:]
    if any(seg in _ROOT_SEGMENTS for seg in segments[1:]):
        raise UsageError(f"--root {root} lies inside another vaultkey root "
                         f"(a '/kv' or '/sys' segment below the first)",
                         hint="give each installation its own top-level root, e.g. /vaultkey-b")


def admin_tokens(text: str) -> list[str]:
    """The admin tokens in an admin token file (or $VAULTKEY_ADMIN_TOKEN): one per line,
    blank lines and ``#`` comments ignored. Several are accepted at once, so a new one can
    be added, rolled out, and the old one removed, each with a SIGHUP and no restart."""
    tokens = [line.strip() for line in text.splitlines()]
    found = [t for t in tokens if t and not t.startswith("#")]
    if not found:
        raise UsageError("no admin token", hint="pass --admin-token-file FILE or set "
                         "VAULTKEY_ADMIN_TOKEN (one token per line)")
    for token in found:
        _check_admin_token(token)
    return found


def _check_admin_token(token: str) -> None:
    """Refuse short or obviously low-entropy admin tokens (they guard every group)."""
    hint = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if len(token) < MIN_ADMIN_TOKEN_CHARS:
        raise UsageError(f"the admin token must be at least {MIN_ADMIN_TOKEN_CHARS} characters",
                         hint=hint)
    # Why: a 32-character token of 'a's or a repeated short pattern passes a length check
    # but has almost no entropy. Real random tokens of 32 base64url characters have ~25
    # distinct characters; 12 is a generous floor that no generator output falls below.
    if len(set(token)) < 12 or _repeats_a_short_pattern(token):
        raise UsageError("the admin token has too little entropy (repeated characters or a "
                         "repeated pattern)", hint=hint)


def _repeats_a_short_pattern(token: str) -> bool:
    return any(token == (token[:n] * (len(token) // n + 1))[:len(token)] for n in range(1, 9))


@dataclass
class ProxyConfig:
    policies: str
    etcd: EtcdSettings
    admin_token: str = field(repr=False)  # one or more tokens, one per line
    listen: str = DEFAULT_LISTEN
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    insecure: bool = False
    root: str = "/vaultkey"
    audit_log: str | None = None
    escrow_keys: list[str] = field(default_factory=list)
    max_connections: int = ConnectionLimits.max_connections
    watch_queue: int = 1024  # events a watcher may have waiting before it must resync
    cache_bytes: int = 256 * 1024 * 1024  # the read cache's bound (0: no cache)
    workers: int = 1  # processes sharing the address (proxy/workers.py)
    reuse_port: bool = False  # set in each worker by the supervisor
    admin_token_file: str | None = None  # read again on SIGHUP (admin_token: its contents)
    max_header_bytes: int = ConnectionLimits.max_header_bytes
    header_timeout: float = ConnectionLimits.head_timeout
    idle_timeout: float = ConnectionLimits.idle_timeout
    body_timeout: float = ConnectionLimits.body_timeout
    handshake_timeout: float = ConnectionLimits.handshake_timeout
    rate_limit: float = 0.0  # requests/s per token (0: off)
    address_rate_limit: float = 0.0  # requests/s per client address (0: off)
    auth_failure_limit: float = 0.0  # failed authentications/s per address (0: off)
    rate_burst: float = 0.0  # bucket size of each limit (0: the limit's rate, at least 1)

    def check(self) -> None:
        """Refuse unsafe or inconsistent settings with a message naming the fix."""
        host, _port = split_listen(self.listen)
        admin_tokens(self.admin_token)
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
        files = {"tls-cert": self.tls_cert, "tls-key": self.tls_key,
                 "client-ca": self.client_ca, "etcd-cacert": self.etcd.ca_cert,
                 "etcd-cert": self.etcd.client_cert, "etcd-key": self.etcd.client_key}
        for flag, value in files.items():
            if value and not Path(value).is_file():
                raise UsageError(f"--{flag} {value}: no such file")
        if not Path(self.policies).is_dir():
            raise UsageError(f"--policies {self.policies}: not a directory")
        check_root(self.root)
        self.connection_limits()

    def connection_limits(self) -> ConnectionLimits:
        """The HTTP connection limits, refusing values that would disable them."""
        for name in ("header_timeout", "idle_timeout", "body_timeout", "handshake_timeout"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise UsageError(f"--{name.replace('_', '-')} must be between 0 and 3600 s")
        if not 1 <= self.workers <= 64:
            raise UsageError("--workers must be between 1 and 64")
        if self.cache_bytes != 0 and not 1024 * 1024 <= self.cache_bytes <= 2**40:
            raise UsageError("--cache-bytes must be 0 (off) or between 1 MiB and 1 TiB")
        if not 16 <= self.watch_queue <= 1_000_000:
            raise UsageError("--watch-queue must be between 16 and 1000000")
        if not 1 <= self.max_connections <= 1_000_000:
            raise UsageError("--max-connections must be between 1 and 1000000")
        for name in ("rate_limit", "address_rate_limit", "auth_failure_limit", "rate_burst"):
            if not 0 <= getattr(self, name) <= 1_000_000:
                raise UsageError(f"--{name.replace('_', '-')} must be between 0 (off) and "
                                 "1000000")
        if not 1024 <= self.max_header_bytes <= 1024 * 1024:
            raise UsageError("--max-header-bytes must be between 1024 and 1048576")
        return ConnectionLimits(
            max_header_bytes=self.max_header_bytes, head_timeout=self.header_timeout,
            idle_timeout=self.idle_timeout, body_timeout=self.body_timeout,
            handshake_timeout=self.handshake_timeout, max_connections=self.max_connections)
