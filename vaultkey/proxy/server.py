"""Run the proxy under uvicorn: TLS (optionally mutual), logging, audit log file.

Plain HTTP is refused unless ``insecure`` is set *and* the listen address is
loopback (checked by :meth:`ProxyConfig.check`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from vaultkey.errors import UsageError
from vaultkey.proxy.config import ProxyConfig, split_listen
from vaultkey.proxy.protocol import guarded_protocol
from vaultkey.proxy.state import ProxyState
from vaultkey.proxy.workers import exit_with_supervisor


def configure_logging(level: int = logging.INFO) -> None:
    """Server logs go to stderr (the audit log has its own writer: proxy/audit.py)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def check_can_listen(host: str, port: int, *, reuse_port: bool = False) -> None:
    """Fail with a clear message if the address is taken (uvicorn only logs it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # a worker: its siblings listen there already (proxy/workers.py)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}",
                             hint="choose another address with --listen") from exc


def check_tls_files(config: ProxyConfig) -> None:
    """Load the certificate and key once, so a mismatch is a clear error, not a traceback."""
    if not config.tls_cert or not config.tls_key:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            config.tls_cert, config.tls_key)
        if config.client_ca:
            ssl.create_default_context(cafile=config.client_ca)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"cannot use the TLS files: {exc}",
                         hint="check that --tls-key belongs to --tls-cert and both are PEM "
                         "(and that --client-ca is a PEM CA bundle)") from exc


class _Server(uvicorn.Server):
    """uvicorn's server, listening with a TLS handshake timeout.

    Why: asyncio waits 60 s for a TLS handshake by default, and a connection that
    never finishes one is not yet an HTTP connection, so no HTTP-level limit sees
    it. This override is the one place where the listener is created.
    """

    def __init__(self, config: uvicorn.Config, *, handshake_timeout: float,
                 before_shutdown: Callable[[], None] = lambda: None,
                 reuse_port: bool = False) -> None:
        super().__init__(config)
        self.handshake_timeout = handshake_timeout
        self.reuse_port = reuse_port
        self.before_shutdown = before_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Why first: uvicorn waits for open connections before the app's shutdown runs,
        # and watch streams never end by themselves; ended now, they tell their clients
        # to resume elsewhere ("restarted") and the graceful stop takes milliseconds.
        self.before_shutdown()
        await super().shutdown(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(3)
        config = self.config

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> Any:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state,
                app_state=self.lifespan.state, _loop=_loop)

        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            create_protocol, host=config.host, port=config.port, ssl=config.ssl,
            backlog=config.backlog, reuse_port=self.reuse_port or None,
            ssl_handshake_timeout=self.handshake_timeout if config.ssl else None)
        self.servers = [server]
        self.started = True


def _exit_with_status(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def serve(config: ProxyConfig, *, state: ProxyState | None = None,
          log_level: int = logging.INFO, on_sighup: str = "reload",
          on_startup: Callable[[ProxyState], Awaitable[None]] | None = None) -> None:
    """Validate the config, build the app and serve until SIGINT/SIGTERM."""
    from vaultkey.proxy.app import create_app

    config.check()
    configure_logging(log_level)
    host, port = split_listen(config.listen)
    check_can_listen(host, port, reuse_port=config.reuse_port)
    check_tls_files(config)
    if config.reuse_port:
        exit_with_supervisor()
    state = state or ProxyState.from_config(config)
    app = create_app(config, state=state, reload_on_sighup=on_sighup == "reload",
                     on_startup=on_startup)
    log = logging.getLogger("vaultkey.proxy")
    scheme = "https" if config.tls_cert else "http"
    log.info("vaultkey proxy listening on %s://%s:%d, etcd %s%s", scheme, host, port,
             ",".join(config.etcd.endpoints), "" if config.tls_cert else " (INSECURE: plain HTTP)")
    limits = config.connection_limits()
    uv_config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, server_header=False,
        proxy_headers=False, ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key,
        ssl_ca_certs=config.client_ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED if config.client_ca else ssl.CERT_NONE,
        timeout_graceful_shutdown=10, timeout_keep_alive=max(1, round(limits.idle_timeout)),
        http=guarded_protocol(limits, state.connection_counters), ws="none",
    )
    server = _Server(uv_config, handshake_timeout=limits.handshake_timeout,
                     before_shutdown=lambda: state.hub.end_all("restarted"),
                     reuse_port=config.reuse_port)
    # Why: everything loaded so far (modules, the app, policies) lives as long as the
    # process; moving it out of the collector's generations keeps full collections short,
    # and they pause every watch stream and request while they run.
    gc.collect()
    gc.freeze()
    if on_sighup == "stop":
        # vaultkey dev: uvicorn shuts down gracefully on SIGTERM, then re-raises it; with
        # this handler that becomes SystemExit(143), so dev's cleanup (finally) runs. A
        # closed terminal (SIGHUP) stops it like Ctrl-C. `serve` keeps the default, so a
        # service manager sees a clean "killed by SIGTERM".
        signal.signal(signal.SIGTERM, _exit_with_status)
        signal.signal(signal.SIGHUP,
                      lambda _s, frame: server.handle_exit(signal.SIGINT, frame))
    server.run()
