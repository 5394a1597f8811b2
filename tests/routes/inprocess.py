"""The proxy app in-process on the memory store, with the e2e proxy's interface.

Route and ACL behaviour tests run against this in milliseconds (no uvicorn,
no TLS, no etcd); the same tests also run once against a real proxy and a real
etcd (tests/e2e), which shows the memory store hides no difference::

    p = InProcessProxy.start(POLICIES)
    with p.client(p.tokens["alpha"]) as c:
        c.put("/v1/kv/alpha/x", content=p.envelope("/alpha/x", b"v"))
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from starlette.testclient import TestClient

from tests._helpers.envelopes import reader_keys, write_policies
from vaultkey.crypto import SecretKey, encrypt
from vaultkey.proxy.app import create_app
from vaultkey.proxy.config import ProxyConfig
from vaultkey.proxy.state import ProxyState
from vaultkey.proxy.store.etcd import EtcdSettings
from vaultkey.proxy.store.memory import MemoryKV


@dataclass
class InProcessProxy:
    state: ProxyState
    kv: MemoryKV
    policy_dir: Path
    admin_token: str
    keys: dict[str, SecretKey] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, policies: dict[str, str], workdir: Path | None = None) -> InProcessProxy:
        d = workdir or Path(tempfile.mkdtemp(prefix="vk-routes-"))
        pol, keys = write_policies(policies, d)
        admin = secrets.token_urlsafe(32)
        config = ProxyConfig(policies=str(pol), etcd=EtcdSettings(), admin_token=admin,
                             insecure=True)
        kv = MemoryKV()
        state = ProxyState(config, kv=kv, sys=MemoryKV())
        return cls(state, kv, pol, admin, keys)

    @property
    def app(self):  # type: ignore[no-untyped-def]
        if not hasattr(self, "_app"):
            self._app = create_app(self.state.config, state=self.state,
                                   reload_on_sighup=False)
        return self._app

    def create_token(self, group: str, **body: object) -> str:
        with self.client(self.admin_token) as c:
            r = c.post("/v1/tokens", json={"group": group, **body})
            assert r.status_code == 200, r.text
            return str(r.json()["token"])

    @contextlib.contextmanager
    def client(self, token: str | None = None) -> Iterator[TestClient]:
        # Not entered as a context manager: that would run the app's lifespan, whose end
        # closes the state that the next test still uses.
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        yield TestClient(self.app, base_url="https://proxy", headers=headers,
                         raise_server_exceptions=False)

    def envelope(self, path: str, value: bytes) -> bytes:
        """An envelope encrypted for exactly the groups that may read *path*."""
        return encrypt(value, path, reader_keys(self.policy_dir, path))

    def store(self) -> SyncKV:
        """Direct access to the store, past the proxy (like writing to etcd directly)."""
        return SyncKV(self.kv)


class SyncKV:
    """Blocking calls on a memory store, shaped like the e2e tests' EtcdStore."""

    def __init__(self, kv: MemoryKV) -> None:
        self.kv = kv

    def put(self, path: str, value: bytes, **kw: object) -> int:
        return asyncio.run(self.kv.put(path, value, **kw))  # type: ignore[arg-type]

    def get(self, path: str):  # type: ignore[no-untyped-def]
        return asyncio.run(self.kv.get(path))

    def delete(self, path: str, **kw: object) -> bool:
        return asyncio.run(self.kv.delete(path, **kw))  # type: ignore[arg-type]
