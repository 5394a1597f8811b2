"""Run the proxy under uvicorn: TLS (optionally mutual), logging, audit log file.

Plain HTTP is refused unless ``insecure`` is set *and* the listen address is
loopback (checked by :meth:`ProxyConfig.check`).
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import socket
import ssl

from vaultkey.errors import UsageError
from vaultkey.proxy.config import ProxyConfig, split_listen
from vaultkey.proxy.state import ProxyState

AUDIT_QUEUE_LINES = 10_000


def configure_logging(config: ProxyConfig, level: int = logging.INFO
                      ) -> queue.Queue[logging.LogRecord] | None:
    """Server logs to stderr; audit lines to their own file through a bounded queue.

    Why a queue: a slow audit disk must not stall request handling; the
    listener thread writes lines in order. Why bounded: a stuck disk must not
    eat memory; when the queue is full the proxy refuses requests (503) rather
    than serve them unaudited. Returns the queue (None without an audit log).
    """
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    audit = logging.getLogger("vaultkey.audit")
    audit.propagate = False
    audit.setLevel(logging.INFO)
    if config.audit_log:
        q: queue.Queue[logging.LogRecord] = queue.Queue(AUDIT_QUEUE_LINES)
        file_handler = logging.FileHandler(config.audit_log, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(message)s"))
        listener = logging.handlers.QueueListener(q, file_handler)
        listener.start()
        atexit.register(listener.stop)
        audit.addHandler(logging.handlers.QueueHandler(q))
        return q
    audit.addHandler(logging.NullHandler())
    return None


def check_can_listen(host: str, port: int) -> None:
    """Fail with a clear message if the address is taken (uvicorn only logs it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}",
                             hint="choose another address with --listen") from exc


def serve(config: ProxyConfig, *, state: ProxyState | None = None,
          log_level: int = logging.INFO) -> None:
    """Validate the config, build the app and serve until SIGINT/SIGTERM."""
    import uvicorn

    from vaultkey.proxy.app import create_app

    config.check()
    audit_queue = configure_logging(config, log_level)
    host, port = split_listen(config.listen)
    check_can_listen(host, port)
    state = state or ProxyState(config)
    state.audit_queue = audit_queue
    app = create_app(config, state=state)
    log = logging.getLogger("vaultkey.proxy")
    scheme = "https" if config.tls_cert else "http"
    log.info("vaultkey proxy listening on %s://%s:%d, etcd %s%s", scheme, host, port,
             ",".join(config.etcd), "" if config.tls_cert else " (INSECURE: plain HTTP)")
    uv_config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, server_header=False,
        proxy_headers=False, ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key,
        ssl_ca_certs=config.client_ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED if config.client_ca else ssl.CERT_NONE,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(uv_config).run()
