"""A throwaway etcd and TLS ``vaultkey serve`` for the benchmarks (scripts/bench.py,
scripts/bench_cache_memory.py): a dev CA, one group ``bench`` that may read, write,
list and watch ``/bench/``, its key pair, an admin token and a group token.

    with Stack.start(tmp) as st:
        st.base, st.token, st.ca, st.etcd.url, st.raw_key("/bench/key")
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from vaultkey._dev.devca import make_dev_tls
from vaultkey._dev.etcdproc import EtcdProcess, free_port
from vaultkey.crypto import SecretKey
from vaultkey.keys import PublicKey
from vaultkey.signkey import write_keypair

GROUP = "bench"
ROOT = "/vaultkey"  # the proxy's etcd root (its default); values live under ROOT + "/kv"
POLICY = (f'group = "{GROUP}"\nrecipients = ["bench.pub"]\n[[rules]]\nprefix = "/bench/"\n'
          'allow = ["read", "write", "list", "watch"]\n')
# A single member elects itself; etcd's default 1 s election timeout only delays the start.
FAST_ELECTION = ["--heartbeat-interval", "10", "--election-timeout", "100"]


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_etcd(data_dir: Path, extra_args: list[str] | None = None) -> EtcdProcess:
    """EtcdProcess.start, retried on new ports if another process took the chosen ones."""
    for attempt in range(3):
        try:
            return EtcdProcess.start(data_dir, extra_args=[*FAST_ELECTION, *(extra_args or [])])
        except Exception as exc:
            if attempt == 2 or "address already in use" not in str(exc).lower():
                raise
            shutil.rmtree(data_dir / "etcd-data", ignore_errors=True)
    raise AssertionError("unreachable")


@dataclass
class Stack:
    tmp: Path
    etcd: EtcdProcess
    proxy: subprocess.Popen[bytes]
    proxy_args: list[str]
    base: str  # https://127.0.0.1:PORT
    ca: Path
    token: str
    key_path: Path
    trust_dir: Path
    public: PublicKey
    secret: SecretKey
    _clients: list[Any] = field(default_factory=list)

    @classmethod
    def start(cls, tmp: Path, proxy_extra: list[str] | None = None) -> Stack:
        """Everything up; *proxy_extra*: more ``vaultkey serve`` flags (e.g. --workers 2)."""
        tmp.mkdir(parents=True, exist_ok=True)
        tls = make_dev_tls(tmp)
        (pol := tmp / "policies").mkdir()
        (pol / "bench.toml").write_text(POLICY)
        key_path, pub_path = write_keypair(pol / "bench")
        key_path = Path(shutil.move(str(key_path), str(tmp / "bench.key")))
        (trust := tmp / "trust").mkdir()
        shutil.copy(pub_path, trust / "bench.pub")
        admin = secrets.token_urlsafe(32)
        (tmp / "admin-token").write_text(admin + "\n")
        (tmp / "admin-token").chmod(0o600)
        etcd = start_etcd(tmp / "etcd")
        try:
            proxy, args, base = cls._start_proxy(tmp, etcd.url, tls.cert, tls.key, tls.ca,
                                                 proxy_extra or [])
        except BaseException:
            etcd.stop()
            raise
        st = cls(tmp, etcd, proxy, args, base, tls.ca, "", key_path, trust,
                 PublicKey.load(pub_path), SecretKey.load(key_path))
        try:
            r = httpx.post(base + "/v1/tokens", verify=st.ssl_context(), timeout=30,
                           json={"group": GROUP, "name": "bench"},
                           headers={"Authorization": f"Bearer {admin}"})
            st.token = r.raise_for_status().json()["token"]
        except BaseException:
            st.close()
            raise
        return st

    @staticmethod
    def _start_proxy(tmp: Path, etcd_url: str, cert: Path, key: Path, ca: Path,
                     extra: list[str]) -> tuple[subprocess.Popen[bytes], list[str], str]:
        ctx = ssl.create_default_context(cafile=str(ca))
        for _attempt in range(3):
            addr = f"127.0.0.1:{free_port()}"
            args = ["vaultkey", "serve", "--policies", str(tmp / "policies"), "--etcd", etcd_url,
                    "--listen", addr, "--tls-cert", str(cert), "--tls-key", str(key),
                    "--admin-token-file", str(tmp / "admin-token"), "--root", ROOT, *extra]
            with open(tmp / "proxy.log", "wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", *args], stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"https://{addr}/readyz", verify=ctx).status_code == 200:
                        return proc, args, f"https://{addr}"
                time.sleep(0.05)
            stop_process(proc)
            log_text = (tmp / "proxy.log").read_text(errors="replace")
            if "address already in use" not in log_text.lower():
                raise RuntimeError("the proxy did not start:\n" + log_text[-3000:])
        raise RuntimeError("the proxy did not start: no free port")

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def raw_key(self, path: str) -> bytes:
        """The etcd key under which the proxy stores *path*."""
        return (ROOT + "/kv" + path).encode()

    def http(self) -> httpx.Client:
        """An httpx client with the group token (closed with the stack)."""
        c = httpx.Client(base_url=self.base, verify=self.ssl_context(), timeout=30,
                         headers={"Authorization": f"Bearer {self.token}"})
        self._clients.append(c)
        return c

    def proxy_command(self) -> str:
        """The proxy's command line, with the temp paths shortened to their names."""
        return " ".join(a.replace(str(self.tmp) + "/", "") for a in self.proxy_args)

    def close(self) -> None:
        for c in self._clients:  # an open keep-alive connection would hold the shutdown
            with contextlib.suppress(Exception):
                c.close()
        stop_process(self.proxy)
        self.etcd.stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
